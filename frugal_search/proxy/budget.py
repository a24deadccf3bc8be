"""The budget of a proxy run (length, batch shape, schedule, stopping rules) and its lr schedule."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

DEFAULT_STEPS = 200


@dataclass(frozen=True)
class ProxyBudget:
    """How long and how a proxy run trains.

    Give the length as ``steps`` or as ``tokens`` (not both; neither means ``DEFAULT_STEPS``).
    One optimizer step sees ``batch_size * grad_accum * seq_len`` tokens. The learning rate warms
    up linearly for ``warmup_steps`` and then follows a cosine down to ``min_lr_ratio`` of its
    peak, as in the FRUGAL paper; each parameter group keeps its own peak lr.
    """

    steps: int | None = None  # optimizer steps
    tokens: int | None = None  # or: train tokens, rounded up to whole steps
    batch_size: int = 16  # sequences per micro-batch
    seq_len: int = 128  # tokens per sequence
    grad_accum: int = 1  # micro-batches per optimizer step
    lr: float | None = None  # None keeps the partition's lr; a value replaces it, keeping per-group ratios
    warmup_steps: int | None = None  # None: 10% of the steps
    min_lr_ratio: float = 0.1  # cosine floor as a fraction of the peak lr
    grad_clip: float | None = 1.0  # max global gradient norm; None or 0 turns clipping off
    eval_every: int = 50  # steps between evaluations (step 0 and the last step are always evaluated)
    eval_batches: int = 4  # held-out batches (of batch_size sequences) per evaluation
    log_every: int = 10  # steps per point of the train curve (mean loss over those steps)
    diverge_factor: float = 3.0  # a train loss above this times the first eval loss means diverged

    def __post_init__(self) -> None:
        if self.steps is not None and self.tokens is not None:
            raise ValueError(f"give steps ({self.steps}) or tokens ({self.tokens}), not both")
        for name in ("steps", "tokens"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("batch_size", "seq_len", "grad_accum", "eval_every", "eval_batches", "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number or None (keep the partition's lr), got {self.lr!r}")
        if self.warmup_steps is not None and (not isinstance(self.warmup_steps, int) or self.warmup_steps < 0):
            raise ValueError(f"warmup_steps must be an integer >= 0 or None (10% of the steps), got {self.warmup_steps!r}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio!r}")
        if self.grad_clip is not None and self.grad_clip < 0:
            raise ValueError(f"grad_clip must be >= 0 or None, got {self.grad_clip!r}")
        if not self.diverge_factor > 1.0:
            raise ValueError(f"diverge_factor must be > 1, got {self.diverge_factor!r}")

    @property
    def tokens_per_step(self) -> int:
        """Train tokens per optimizer step."""
        return self.batch_size * self.grad_accum * self.seq_len

    @property
    def total_steps(self) -> int:
        """Optimizer steps of the run."""
        if self.tokens is not None:
            return math.ceil(self.tokens / self.tokens_per_step)
        return self.steps if self.steps is not None else DEFAULT_STEPS

    @property
    def total_warmup_steps(self) -> int:
        """Warmup steps of the run (10% of the steps when ``warmup_steps`` is None)."""
        if self.warmup_steps is not None:
            return min(self.warmup_steps, self.total_steps)
        return max(1, round(0.1 * self.total_steps))

    def scaled(self, factor: int) -> ProxyBudget:
        """This budget trained ``factor`` times longer: steps, warmup and evaluation interval scaled
        alike, so the lr schedule keeps its shape (warmup, then the cosine decay of the new length)."""
        if not isinstance(factor, int) or isinstance(factor, bool) or factor < 1:
            raise ValueError(f"factor must be an integer >= 1 (times the steps), got {factor!r}")
        warmup = None if self.warmup_steps is None else self.warmup_steps * factor
        return dataclasses.replace(
            self, steps=self.total_steps * factor, tokens=None, warmup_steps=warmup, eval_every=self.eval_every * factor
        )


def lr_factor(step: int, *, total_steps: int, warmup_steps: int, min_lr_ratio: float) -> float:
    """Return the lr multiplier for the optimizer step with 0-based index ``step``.

    Linear warmup from ``1/warmup_steps`` to 1 over the first ``warmup_steps`` steps, then a cosine
    from 1 down to ``min_lr_ratio`` at the last step.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - 1 - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
