"""What a proxy run measured."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

REASON_COMPLETED = "completed"
REASON_STOPPED = "stopped by on_eval"


@dataclass
class ProxyResult:
    """The figures of one proxy run.

    Losses are mean cross-entropies in nats: per next token (``causal-lm``) or per row
    (``sequence-classification``). ``eval_loss`` is the mean over a fixed set of held-out batches
    (or rows) that does not depend on the seed, measured at the step where the run ended; it is
    NaN for a diverged run (the weights at that point are not a model).

    Divergence never raises: a NaN/inf train loss, or one above ``diverge_factor`` times the first
    eval loss, ends the run with ``diverged=True`` and a ``reason`` naming the step and the value.
    On CUDA the train loss is checked every ``log_every`` steps (to avoid a device sync per step),
    on the CPU every step. A CUDA out-of-memory error is NOT turned into a result: ``run_proxy``
    releases the run's memory and raises ``torch.cuda.OutOfMemoryError``, so the caller (the
    search) can record the trial as ``oom`` and go on.
    """

    eval_loss: float  # final eval loss (NaN when diverged)
    best_eval_loss: float  # lowest eval loss seen
    first_eval_loss: float  # eval loss of the initial weights (step 0)
    train_curve: list[list[float]]  # [step, mean train loss over the last log_every steps]
    eval_curve: list[list[float]]  # [step, eval loss], step 0 first
    state_bytes: int  # optimizer state (every tensor it holds), max over the run, exact
    peak_memory_bytes: int | None  # torch.cuda.max_memory_allocated over the run; None off CUDA
    state_memory_bytes: int | None  # the part of the CUDA memory that is optimizer state; None off CUDA
    tokens_per_s: float  # train tokens per second of training (evaluation time excluded); classification
    # counts the budget's tokens, batch_size x seq_len per micro-batch, padding included
    wall_s: float  # the whole run: model build, training and evaluation
    steps: int  # optimizer steps taken
    diverged: bool
    reason: str  # "completed", "stopped by on_eval", or why it diverged
    corpus_fingerprint: str  # short hex digest of the data that was read
    device: str
    seed: int
    details: dict[str, Any] = field(default_factory=dict)  # model, data, budget, parameter count
    task: str = "causal-lm"  # the task kind: "causal-lm" or "sequence-classification"
    # sequence-classification only (None / empty otherwise), on the same validation rows as eval_loss:
    accuracy: float | None = None  # final accuracy (None when diverged)
    macro_f1: float | None = None  # final macro-F1, the figure to read when classes are unbalanced
    best_accuracy: float | None = None  # highest accuracy seen
    accuracy_curve: list[list[float]] = field(default_factory=list)  # [step, accuracy], step 0 first
    macro_f1_curve: list[list[float]] = field(default_factory=list)  # [step, macro-F1], step 0 first
    # what the run held, measured: every weight, the gradients present after a backward (frozen
    # weights have none), the optimizer state (as state_bytes) and their total, in bytes
    training_memory: dict[str, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the result as plain JSON-safe values (NaN and inf become None)."""
        return _json_safe(asdict(self))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ProxyResult:
        """Rebuild a result from :meth:`to_dict` output (None losses become NaN again)."""
        values = dict(values)
        for name in ("eval_loss", "best_eval_loss", "first_eval_loss", "tokens_per_s"):
            if values.get(name) is None:
                values[name] = math.nan
        for name in ("train_curve", "eval_curve", "accuracy_curve", "macro_f1_curve"):
            values[name] = [[step, math.nan if value is None else value] for step, value in values.get(name) or []]
        return cls(**values)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)
