"""``run_proxy``: one short, seeded training run of a partition's optimizer, with its figures.

The loop reads top to bottom: build data, model and optimizer; evaluate at step 0; then per step
sample ``grad_accum`` micro-batches, clip, step, schedule; check for divergence; log the train
loss; evaluate every ``eval_every`` steps. Losses stay on the device between log points, so on a
GPU the loop syncs with the host only there (and at evaluations), not every step.

What a micro-batch is, its loss and the evaluation belong to the task: ``_CausalLM`` here
(windows of token data), :class:`~frugal_search.proxy.classification.SequenceClassification`
for labelled rows. Both offer ``build_model(model, seed=)``, ``train_loss(net, generator)`` and
``evaluate(net) -> (eval_loss, scores)``.

Before the optimizer is built, the method may change the model: a partition's ``frozen``
parameters get ``requires_grad=False`` (:meth:`Partition.freeze`: no gradients, left out of
clipping), and a method with ``prepare_model(model)`` (LoRA, :class:`~frugal_search.proxy.lora.LoraSpec`)
returns the model to train (the adapter-wrapped one).

The multi-process proxy (``frugal_search.proxy.distributed``, ``[proxy] nproc``) runs this same
loop on every rank with a causal-lm task of its own: it also offers ``shard(net)`` (FSDP2 over the
ranks, after freezing and before the optimizer is built) and ``mean_over_ranks(loss)`` (each
step's train loss averaged over the ranks, so every rank takes the same divergence decision).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from frugal_search.optimizer import optimizer_state_bytes
from frugal_search.proxy.budget import ProxyBudget, lr_factor
from frugal_search.proxy.classification import SequenceClassification
from frugal_search.proxy.data import DataLike, DataSpec, TokenData, check_data, check_vocab_fits
from frugal_search.proxy.labelled_data import (
    LabelledData,
    LabelledDataLike,
    LabelledDataSpec,
    build_labelled_data,
    is_labelled_source,
)
from frugal_search.proxy.models import (
    ModelLike,
    build_model,
    causal_lm_loss,
    describe_model,
    model_vocab_size,
)
from frugal_search.proxy.result import REASON_COMPLETED, REASON_STOPPED, ProxyResult
from frugal_search.proxy.tasks import CAUSAL_LM, TaskSpec, as_task

logger = logging.getLogger(__name__)

OnEval = Callable[[int, float], "bool | None"]


def run_proxy(
    model: ModelLike,
    data: DataLike | LabelledDataLike,
    partition: Any,
    budget: ProxyBudget | None = None,
    *,
    task: TaskSpec | str | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    progress: bool = False,
    on_eval: OnEval | None = None,
) -> ProxyResult:
    """Train ``model`` on ``data`` with ``partition``'s optimizer for ``budget``; return the figures.

    Args:
        model: a ``ModelSpec``, a model source string (``"tiny-llama"``, a config path, a model
            directory, ``"package.module:function"``), a zero-argument factory, or a built module
            (deep-copied, never trained in place). Built afresh for each run, weights seeded by ``seed``.
        data: causal-lm: a ``DataSpec``, a data source string (``"stdlib"``, a folder, a glob, a
            token file) or a ``TokenData`` from ``build_data``. sequence-classification: a
            ``LabelledDataSpec``, a source string (``"stdlib-packages"``, a .csv/.jsonl/.parquet
            file) or a ``LabelledData`` from ``build_labelled_data``.
        partition: a ``Partition`` (anything with ``build_optimizer(model)``), a baseline name
            (``"adamw"``, ``"frugal"``, ...), a ``LoraSpec`` (anything with ``prepare_model`` and
            ``build_optimizer``), a ``CompetitorSpec`` (``competitor_spec("muon", lr=0.02)``: its
            ``measure_state_bytes`` counts the state), or a callable ``model -> torch.optim.Optimizer``.
        budget: steps or tokens, batch shape, schedule and stopping rules (default ``ProxyBudget()``).
            For classification a micro-batch is ``batch_size`` rows cut to ``seq_len`` tokens, and
            an evaluation scores ``eval_batches * batch_size`` fixed validation rows (or all).
        task: ``"causal-lm"``, ``"sequence-classification"`` or a ``TaskSpec``; None reads
            sequence-classification from labelled ``data`` (a labelled spec or record,
            ``"stdlib-packages"``, a .csv/.jsonl/.parquet path) and causal-lm otherwise.
        device: where to train (``"cpu"``, ``"cuda"``, ``"cuda:1"``); CUDA runs use bf16 autocast.
        seed: seeds the weights, the train batches and the global RNG inside the run (restored
            afterwards). The evaluation batches do not depend on it.
        progress: show a tqdm bar on stderr (steps, loss, tokens/s).
        on_eval: called as ``on_eval(step, eval_loss)`` after every evaluation, step 0 included;
            returning True ends the run (reason ``"stopped by on_eval"``, not diverged).

    Returns:
        A ``ProxyResult``. Divergence is reported there, never raised.

    Raises:
        torch.cuda.OutOfMemoryError: the run did not fit on the GPU. It is raised after the run's
            model, optimizer and activations are released, so the caller can go on to the next run.
        ValueError, TypeError: bad input, naming the value and what to use instead.
    """
    return _run_proxy(
        model, data, partition, budget, task=task, device=device, seed=seed, progress=progress, on_eval=on_eval
    )


def _run_proxy(
    model: ModelLike,
    data: DataLike | LabelledDataLike,
    partition: Any,
    budget: ProxyBudget | None,
    *,
    task: TaskSpec | str | None,
    device: str | torch.device,
    seed: int,
    progress: bool,
    on_eval: OnEval | None,
    causal_lm: type[_CausalLM] | None = None,
) -> ProxyResult:
    """``run_proxy``'s body; ``causal_lm`` replaces the causal-lm task (the multi-process proxy's ranks)."""
    budget = ProxyBudget() if budget is None else budget
    if not isinstance(budget, ProxyBudget):
        raise TypeError(f"budget must be a ProxyBudget, got {type(budget).__name__}")
    device = resolve_device(device)
    started = time.perf_counter()
    task = _infer_task(task, data)
    # the data is opened (and bad data raised) before any model is built
    source = check_data(data, seq_len=budget.seq_len) if task.kind == CAUSAL_LM else build_labelled_data(data)
    rng_devices = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=rng_devices):
        torch.manual_seed(seed)
        try:
            if isinstance(source, TokenData):
                objective = (causal_lm or _CausalLM)(source, budget, device=device)
            else:
                objective = SequenceClassification(source, model, budget, device=device)
            loop = _ProxyLoop(model, objective, partition, budget, device=device, seed=seed, on_eval=on_eval)
            return loop.run(started=started, progress=progress)
        except torch.cuda.OutOfMemoryError as error:
            message = str(error)
    # Raised again out here, without the original traceback: its frames hold the model, the
    # optimizer and the activations, which must be freed before the caller's next run.
    loop = objective = None
    gc.collect()
    torch.cuda.empty_cache()
    raise torch.cuda.OutOfMemoryError(f"proxy run out of CUDA memory on {device}: {message}")


class _ProxyLoop:
    """The state of one proxy run; ``run`` is the training loop."""

    def __init__(
        self,
        model: ModelLike,
        objective: _CausalLM | SequenceClassification,
        partition: Any,
        budget: ProxyBudget,
        *,
        device: torch.device,
        seed: int,
        on_eval: OnEval | None,
    ) -> None:
        self.budget = budget
        self.objective = objective
        self.device = device
        self.seed = seed
        self.on_eval = on_eval
        self.on_cuda = device.type == "cuda"
        if self.on_cuda:
            torch.cuda.reset_peak_memory_stats(device)
        self.model_name = describe_model(model)
        partition = _resolve_partition(partition)
        self.net = _prepare_model(partition, objective.build_model(model, seed=seed))
        self.net.to(device).train()
        shard = getattr(objective, "shard", None)  # the multi-process proxy: FSDP2 over its ranks
        if shard is not None:
            self.net = shard(self.net)
        self._mean_over_ranks = getattr(objective, "mean_over_ranks", None)
        self.optimizer = _build_optimizer(partition, self.net)
        # a competitor optimizer (CompetitorSpec) counts its own state: storages inside tensor
        # subclasses and helper objects, each once; every other method is counted the FRUGAL way
        self.count_state_bytes = getattr(partition, "measure_state_bytes", None) or optimizer_state_bytes
        if budget.lr is not None:
            _override_lr(self.optimizer, budget.lr)
        self.total_steps = budget.total_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda step: lr_factor(
                step,
                total_steps=self.total_steps,
                warmup_steps=budget.total_warmup_steps,
                min_lr_ratio=budget.min_lr_ratio,
            ),
        )
        self.trainable = [p for p in self.net.parameters() if p.requires_grad]
        self.generator = torch.Generator().manual_seed(seed)
        # bf16 autocast on CUDA (fp32 master weights, as the paper); plain fp32 on the CPU
        self.autocast = (
            (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if self.on_cuda else contextlib.nullcontext
        )
        self.state_bytes = 0
        self.state_device_bytes = 0
        self.gradient_bytes = 0
        self.scores_curve: list[tuple[int, dict[str, float]]] = []

    # ---- the loop ----------------------------------------------------------------------------

    def run(self, *, started: float, progress: bool) -> ProxyResult:
        budget = self.budget
        # on the CPU a host read costs nothing, so divergence is caught at the exact step
        check_every = budget.log_every if self.on_cuda else 1
        train_curve: list[list[float]] = []
        eval_curve: list[list[float]] = []
        first_eval = self._evaluate(0)
        eval_curve.append([0, first_eval])
        loss_limit = budget.diverge_factor * first_eval
        reason, diverged, step = REASON_COMPLETED, False, 0
        if not math.isfinite(first_eval):
            reason, diverged = f"eval loss {first_eval} at step 0 (the initial weights)", True
        elif self._stop_requested(0, first_eval):
            reason = REASON_STOPPED
        bar = _progress_bar(self.total_steps) if progress else None
        log_sum = torch.zeros((), device=self.device)
        log_count = 0
        check_max = torch.full((), -math.inf, device=self.device)
        train_seconds = 0.0
        clock = time.perf_counter()
        while reason == REASON_COMPLETED and step < self.total_steps:
            step += 1
            step_loss = self._train_step()
            log_sum += step_loss
            log_count += 1
            # NaN-propagating max: a NaN anywhere in the window shows up at the check
            check_max = torch.maximum(check_max, step_loss)
            self._measure_state()
            is_last = step == self.total_steps
            is_eval = step % budget.eval_every == 0 or is_last
            if step % check_every == 0 or is_eval:
                worst = check_max.item()
                check_max.fill_(-math.inf)
                if not math.isfinite(worst) or worst > loss_limit:
                    diverged = True
                    reason = _divergence_reason(worst, step, loss_limit, budget.diverge_factor, first_eval)
            if step % budget.log_every == 0 or is_last or diverged:
                train_curve.append([step, (log_sum / log_count).item()])
                log_sum.zero_()
                log_count = 0
            if bar is not None:
                bar.update(1)
                if log_count == 0:  # a train-curve point was just logged
                    bar.set_postfix(loss=f"{train_curve[-1][1]:.4f}", tok_s=f"{self._rate(step, train_seconds, clock):.0f}")
            if diverged:
                break
            if is_eval:
                train_seconds += self._elapsed_since(clock)
                eval_loss = self._evaluate(step)
                eval_curve.append([step, eval_loss])
                if not math.isfinite(eval_loss):
                    diverged, reason = True, f"eval loss {eval_loss} at step {step}"
                elif self._stop_requested(step, eval_loss):
                    reason = REASON_STOPPED
                clock = time.perf_counter()
        # training since the last evaluation (only a diverged run stops between evaluations)
        train_seconds += self._elapsed_since(clock)
        if bar is not None:
            bar.close()
        return self._result(
            train_curve=train_curve,
            eval_curve=eval_curve,
            steps=step,
            diverged=diverged,
            reason=reason,
            train_seconds=train_seconds,
            wall_s=time.perf_counter() - started,
        )

    def _train_step(self) -> torch.Tensor:
        """One optimizer step over ``grad_accum`` micro-batches; returns their mean loss (on the device)."""
        budget = self.budget
        step_loss = torch.zeros((), device=self.device)
        for _ in range(budget.grad_accum):
            with self.autocast():
                loss = self.objective.train_loss(self.net, self.generator)
            (loss / budget.grad_accum).backward()
            step_loss += loss.detach()
        if budget.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.trainable, budget.grad_clip)
        # what the run holds in gradients (frozen weights have none), before they are released
        self.gradient_bytes = max(self.gradient_bytes, _tensor_bytes(p.grad for p in self.net.parameters()))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        step_loss /= budget.grad_accum
        return step_loss if self._mean_over_ranks is None else self._mean_over_ranks(step_loss)

    @torch.no_grad()
    def _evaluate(self, step: int) -> float:
        """Mean loss over the fixed held-out data; the task's other scores go to ``scores_curve``."""
        self.net.eval()
        with self.autocast():
            eval_loss, scores = self.objective.evaluate(self.net)
        self.net.train()
        if scores:
            self.scores_curve.append((step, scores))
        report_loss = getattr(self.optimizer, "report_loss", None)
        if report_loss is not None:  # FRUGAL's loss-aware T (a plateau of the eval loss grows it)
            report_loss(eval_loss)
        return eval_loss

    def _stop_requested(self, step: int, eval_loss: float) -> bool:
        return self.on_eval is not None and self.on_eval(step, eval_loss) is True

    def _measure_state(self) -> None:
        # every step: in blocks mode the state changes size at each re-selection
        self.state_bytes = max(self.state_bytes, self.count_state_bytes(self.optimizer))
        if self.on_cuda:
            self.state_device_bytes = max(self.state_device_bytes, self.count_state_bytes(self.optimizer, device_type="cuda"))

    def _elapsed_since(self, clock: float) -> float:
        if self.on_cuda:
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - clock

    def _rate(self, step: int, train_seconds: float, clock: float) -> float:
        seconds = train_seconds + (time.perf_counter() - clock)
        return step * self.budget.tokens_per_step / seconds if seconds > 0 else 0.0

    def _result(
        self,
        *,
        train_curve: list[list[float]],
        eval_curve: list[list[float]],
        steps: int,
        diverged: bool,
        reason: str,
        train_seconds: float,
        wall_s: float,
    ) -> ProxyResult:
        eval_losses = [loss for _, loss in eval_curve if math.isfinite(loss)]
        train_tokens = steps * self.budget.tokens_per_step
        if diverged:
            logger.info("proxy run diverged: %s", reason)
        # the scores of the weights the run ended with; none for a diverged run, as its eval loss
        final_scores = self.scores_curve[-1][1] if self.scores_curve and not diverged else {}
        curve = lambda name: [[step, scores[name]] for step, scores in self.scores_curve]  # noqa: E731
        weights_bytes = _tensor_bytes(self.net.parameters())
        return ProxyResult(
            eval_loss=math.nan if diverged else eval_curve[-1][1],
            best_eval_loss=min(eval_losses) if eval_losses else math.nan,
            first_eval_loss=eval_curve[0][1],
            train_curve=train_curve,
            eval_curve=eval_curve,
            state_bytes=self.state_bytes,
            peak_memory_bytes=torch.cuda.max_memory_allocated(self.device) if self.on_cuda else None,
            state_memory_bytes=self.state_device_bytes if self.on_cuda else None,
            tokens_per_s=train_tokens / train_seconds if train_seconds > 0 else 0.0,
            wall_s=wall_s,
            steps=steps,
            diverged=diverged,
            reason=reason,
            corpus_fingerprint=self.objective.fingerprint,
            device=str(self.device),
            seed=self.seed,
            details={
                "model": self.model_name,
                "parameters": sum(p.numel() for p in self.net.parameters()),
                "data": self.objective.description,
                "optimizer": type(self.optimizer).__name__,
                "train_tokens": train_tokens,
                "budget": asdict(self.budget),
            },
            task=self.objective.kind,
            accuracy=final_scores.get("accuracy"),
            macro_f1=final_scores.get("macro_f1"),
            best_accuracy=max((s["accuracy"] for _, s in self.scores_curve), default=None),
            accuracy_curve=curve("accuracy") if self.scores_curve else [],
            macro_f1_curve=curve("macro_f1") if self.scores_curve else [],
            training_memory={
                "weights_bytes": weights_bytes,
                "gradient_bytes": self.gradient_bytes,
                "state_bytes": self.state_bytes,
                "total_bytes": weights_bytes + self.gradient_bytes + self.state_bytes,
            },
        )


class _CausalLM:
    """Next-token prediction on token windows: the task of pre-training proxies."""

    kind = CAUSAL_LM

    def __init__(self, tokens: TokenData, budget: ProxyBudget, *, device: torch.device) -> None:
        self.tokens = tokens
        self.budget = budget
        self.device = device
        self.fingerprint = tokens.fingerprint
        self.description = tokens.description
        self.eval_set = [
            batch.to(device)
            for batch in tokens.eval_batches(
                num_batches=budget.eval_batches, batch_size=budget.batch_size, seq_len=budget.seq_len
            )
        ]

    def build_model(self, model: ModelLike, *, seed: int) -> nn.Module:
        net = build_model(model, seed=seed)
        check_vocab_fits(self.tokens, model_vocab_size(net))
        return net

    def train_loss(self, net: nn.Module, generator: torch.Generator) -> torch.Tensor:
        batch = self.tokens.sample_train_batch(generator, batch_size=self.budget.batch_size, seq_len=self.budget.seq_len)
        batch = batch.to(self.device, non_blocking=True)
        return causal_lm_loss(net, batch[:, :-1], batch[:, 1:])

    def evaluate(self, net: nn.Module) -> tuple[float, dict[str, float]]:
        total = torch.zeros((), device=self.device)
        for batch in self.eval_set:
            total += causal_lm_loss(net, batch[:, :-1], batch[:, 1:])
        return (total / len(self.eval_set)).item(), {}


# ---- helpers ---------------------------------------------------------------------------------


SUPPORTED_DEVICE_TYPES = ("cpu", "cuda", "mps")


def parse_device(device: str | torch.device) -> torch.device:
    """``device`` (``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``) as a ``torch.device``, whether or
    not this machine has it; anything else is a ``ValueError``. A study file's device is read by this
    (``report`` reads a GPU study on a laptop); :func:`resolve_device` checks that it exists here."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"unknown device {device!r}; use 'cpu', 'cuda', 'cuda:N' or 'mps'") from error
    if parsed.type not in SUPPORTED_DEVICE_TYPES:
        raise ValueError(f"device {device!r} is not supported; use 'cpu', 'cuda', 'cuda:N' or 'mps'")
    return parsed


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device`` that exists on this machine, or a ``ValueError`` saying why."""
    resolved = parse_device(device)
    device = str(device)  # the words a user wrote ('cuda:1'), not torch.device's repr
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but CUDA is not available here; use device 'cpu'")
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise ValueError(
            f"device {device!r} asked for, but this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} asked for, but MPS is not available here; use device 'cpu'")
    return resolved


def _infer_task(task: TaskSpec | str | None, data: Any) -> TaskSpec:
    labelled = isinstance(data, (LabelledDataSpec, LabelledData)) or isinstance(data, str) and is_labelled_source(data)
    if task is None:
        return TaskSpec("sequence-classification" if labelled else CAUSAL_LM)
    task = as_task(task)
    if isinstance(data, (DataSpec, TokenData)) and task.kind != CAUSAL_LM or labelled and task.kind == CAUSAL_LM:
        raise TypeError(
            f"task {task.kind!r} does not read {type(data).__name__}: causal-lm reads a DataSpec or TokenData, "
            "sequence-classification a LabelledDataSpec or LabelledData"
        )
    return task


def _resolve_partition(partition: Any) -> Any:
    if isinstance(partition, str):
        from frugal_search.partition import baseline_partition

        return baseline_partition(partition)
    return partition


def _prepare_model(method: Any, net: nn.Module) -> nn.Module:
    """The model to train: LoRA wraps it in its adapters; a partition freezes its frozen parameters."""
    prepare = getattr(method, "prepare_model", None)
    if callable(prepare):
        return prepare(net)
    freeze = getattr(method, "freeze", None)
    if callable(freeze):
        freeze(net)
    return net


def _tensor_bytes(tensors: Any) -> int:
    """Bytes of ``tensors`` held here: of a sharded (DTensor) one, this rank's shard."""
    local = (t.to_local() if hasattr(t, "to_local") else t for t in tensors if t is not None)
    return sum(t.numel() * t.element_size() for t in local)


def _build_optimizer(partition: Any, model: nn.Module) -> torch.optim.Optimizer:
    build = getattr(partition, "build_optimizer", None)
    if callable(build):
        optimizer = build(model)
    elif callable(partition):
        optimizer = partition(model)
    else:
        raise TypeError(
            f"partition must be a Partition, a baseline name or a callable model -> optimizer; got "
            f"{type(partition).__name__}"
        )
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"the partition built {type(optimizer).__name__}, not a torch.optim.Optimizer")
    return optimizer


def _override_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    # a new peak lr for the whole optimizer; groups keep their ratio to the optimizer's own lr
    base_lr = optimizer.defaults.get("lr")
    for group in optimizer.param_groups:
        group["lr"] = lr * group["lr"] / base_lr if base_lr else lr


def _divergence_reason(worst: float, step: int, limit: float, factor: float, first_eval: float) -> str:
    if not math.isfinite(worst):
        return f"non-finite train loss ({worst}) by step {step}"
    return (
        f"train loss {worst:.4g} by step {step}, above {factor:g} x the first eval loss {first_eval:.4g} "
        f"(limit {limit:.4g})"
    )


def _progress_bar(total_steps: int):  # -> tqdm.tqdm
    from tqdm import tqdm

    return tqdm(total=total_steps, unit="step", file=sys.stderr, dynamic_ncols=True)
