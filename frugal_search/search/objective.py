"""The Optuna objective: one trial = one partition, checked against the memory budget, then scored
by a proxy run. Every outcome is written into the trial (see docs/ARCHITECTURE.md, "search ->
report"): failures are data, never lost.

Outcomes and Optuna states:

- ``ok``: COMPLETE with the values of ``[study] objectives``: a figure (``eval_loss``, or for a
  classification task ``accuracy`` / ``macro_f1``) and a memory (``state_mib``: optimizer state;
  ``training_mib``: weights + gradients + state); the memory budget is always on optimizer state;
- ``infeasible`` (optimizer state over ``memory_budget``, no proxy run; baselines run anyway and
  carry ``over_budget=True``), ``diverged``, ``oom``
  (CUDA out of memory, infeasible for memory) and ``stopped-early`` (successive halving): PRUNED;
- ``error`` (an exception; the reason holds the traceback's last lines): FAIL. A trial whose
  worker was killed keeps the ``error`` outcome set when it started and is marked FAIL by the
  heartbeat check.

With ``[proxy] nproc`` > 1 the proxy runs on that many ranks under torchrun
(``frugal_search.proxy.run_proxy_multiprocess``); a rank that dies is the trial's ``error``, its
reason naming the rank, its exit code and its last log lines, and the worker goes on.
"""

from __future__ import annotations

import logging
import math
import traceback
from typing import TYPE_CHECKING, Any

from frugal_search.search.storage import WORKER_LOST_REASON
from frugal_search.search.study import RUNG_ON_TARGET, counts_towards_target, describe_reference, reference_key
from frugal_search.units import MIB, format_bytes

if TYPE_CHECKING:
    import optuna
    import torch
    from torch import nn

    from frugal_search.search.config import StudyConfig

logger = logging.getLogger(__name__)

SURPLUS_REASON = "not run: the study already held the requested number of trials when this one started"
# user attributes copied from the proxy result into the trial
RESULT_ATTRS = (
    "eval_loss",
    "best_eval_loss",
    "eval_curve",
    "tokens_per_s",
    "wall_s",
    "steps",
    "peak_memory_bytes",
    "accuracy",
    "macro_f1",
    "best_accuracy",
    "accuracy_curve",
    "macro_f1_curve",
    "training_memory",
)
_TRACEBACK_LINES = 6


class SurplusTrialError(RuntimeError):
    """A trial started by a worker that raced another one past the study's trial count."""


class DuplicateReferenceError(RuntimeError):
    """A reference run enqueued twice by two runs started at the same moment; the later copy is dropped."""


class TrialObjective:
    """Callable objective for ``study.optimize``; holds what every trial of one worker shares.

    Args:
        config: the study.
        device: where proxy runs train (this worker's device).
        memory_model: the model (ideally on the ``meta`` device) that ``Partition.state_bytes``
            measures before a trial trains.
    """

    def __init__(self, config: StudyConfig, *, device: str | torch.device, memory_model: nn.Module) -> None:
        import torch

        self.config = config
        self.device = torch.device(device)
        self.memory_model = memory_model
        self.model_spec = _resolved_model_spec(config)
        self.data_spec = config.data
        self.num_layers = _depth(memory_model)
        self._target_memory_model: nn.Module | None = None  # built on the first run on [transfer] model

    def target_memory_model(self) -> nn.Module:
        """The ``[transfer]`` model as ``state_bytes`` measures it (built once, on ``meta`` when possible)."""
        if self._target_memory_model is None:
            self._target_memory_model = build_memory_model(self.config, model=self.config.transfer.model)
        return self._target_memory_model

    def __call__(self, trial: optuna.Trial) -> tuple[float, float]:
        """Run one trial; return its two objective values (``[study] objectives``)."""
        import optuna

        from frugal_search.search.storage import journal_heartbeat

        # Written first, so a trial whose worker is killed still says what happened to it.
        trial.set_user_attr("outcome", "error")
        trial.set_user_attr("reason", WORKER_LOST_REASON)
        try:
            with journal_heartbeat(trial, interval=self.config.study.heartbeat_interval):
                return self._evaluate(trial)
        except optuna.TrialPruned:
            raise
        except (SurplusTrialError, DuplicateReferenceError) as error:
            trial.set_user_attr("reason", str(error))  # expected races: the words suffice, no traceback
            raise
        except Exception as error:
            from frugal_search.proxy import RankFailedError

            trial.set_user_attr("outcome", "error")
            # a dead rank's message already holds its log's last lines; its traceback is the launcher's
            reason = f"RankFailedError: {error}" if isinstance(error, RankFailedError) else _error_reason(error)
            trial.set_user_attr("reason", reason)
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("reason", "interrupted (Ctrl-C) before the trial finished")
            raise

    def _evaluate(self, trial: optuna.Trial) -> tuple[float, float]:
        import optuna
        import torch

        reference = reference_key(trial.user_attrs)
        if reference is None:
            _check_not_surplus(trial, self.config.study.trials)
        else:
            _check_not_duplicate_reference(trial, reference)
        # a Partition, or a method's spec (LoRA, a competitor): each gives to_dict, summary, training_memory
        partition = self._partition(trial)
        trial.set_user_attr("split", partition.to_dict())
        trial.set_user_attr("summary", partition.summary())
        on_target = trial.user_attrs.get("rung_on") == RUNG_ON_TARGET
        memory_model = self.target_memory_model() if on_target else self.memory_model
        if on_target:  # the report's share of AdamW's state, on the model this run trains
            from frugal_search.partition import adamw_state_bytes_of

            trial.set_user_attr("adamw_state_bytes", adamw_state_bytes_of(memory_model))
            trial.set_user_attr("target_model", self.config.transfer.model.to_dict())
        planned = partition.training_memory(memory_model)
        state_bytes = int(planned.state_bytes)
        trial.set_user_attr("state_bytes", state_bytes)
        trial.set_user_attr("training_bytes", int(planned.total_bytes))
        figure_name, memory_name = self.config.study.objectives
        memory_mib = (state_bytes if memory_name == "state_mib" else planned.total_bytes) / MIB
        budget = self.config.study.memory_budget
        if budget is not None:
            # > 0 is infeasible. Stored with the trial (optuna-dashboard shows it); it does not
            # steer the samplers here: TPE already ranks a pruned trial without values below every
            # finished one (benchmarks/constraints.py: 13 of 93 draws infeasible with it and without),
            # and GP and NSGA-II learn from finished trials only. The budget is enforced by not
            # running an infeasible partition.
            trial.set_constraint("memory_budget", (state_bytes - budget) / MIB)
        over_budget = budget is not None and state_bytes > budget
        trial.set_user_attr("over_budget", over_budget)
        # Baselines are references: they run even over the budget, so the report can compare
        # every partition with them; the front only holds trials within the budget.
        if over_budget and reference is None:
            reason = f"optimizer state {format_bytes(state_bytes)} is over the memory budget {format_bytes(budget)}"
            _set_outcome(trial, "infeasible", reason)
            raise optuna.TrialPruned(reason)

        on_eval = None
        rung_factor = trial.user_attrs.get("rung_factor") if trial.user_attrs.get("rung_of") is not None else None
        if self.config.search.fidelity != "none" and rung_factor is None:  # a rung run trains to its end
            from frugal_search.search.fidelity import make_early_stop

            on_eval = make_early_stop(trial, self.config, state_bytes=state_bytes)
        try:
            seed = int(trial.user_attrs.get("seed", self.config.study.seed))
            result = self._run(partition, seed=seed, on_eval=on_eval, factor=int(rung_factor or 1), on_target=on_target)
        except torch.cuda.OutOfMemoryError as error:
            torch.cuda.empty_cache()
            reason = f"CUDA out of memory on {self.device}: {str(error).splitlines()[0]}"
            _set_outcome(trial, "oom", reason)
            raise optuna.TrialPruned(reason) from None

        values = result.to_dict()
        for key in RESULT_ATTRS:
            trial.set_user_attr(key, values.get(key))
        if self.config.proxy.nproc > 1:  # what each rank held: the split's state is sharded over them
            trial.set_user_attr("nproc", self.config.proxy.nproc)
            trial.set_user_attr("state_bytes_per_rank", [rank["state_bytes"] for rank in result.details["per_rank"]])
        if result.diverged:
            _set_outcome(trial, "diverged", result.reason)
            raise optuna.TrialPruned(f"diverged: {result.reason}")
        if getattr(on_eval, "stopped_at", None) is not None:
            reason = f"stopped early at step {on_eval.stopped_at} by successive halving"
            _set_outcome(trial, "stopped-early", reason)
            raise optuna.TrialPruned(reason)
        figure = getattr(result, figure_name)
        if figure is None or not math.isfinite(figure):
            raise ValueError(
                f"the proxy run returned {figure_name} {figure} without reporting divergence"
            )
        _set_outcome(trial, "ok", None)
        return float(figure), memory_mib

    def _run(self, partition: Any, *, seed: int, on_eval: Any, factor: int = 1, on_target: bool = False) -> Any:
        """The trial's proxy run (``factor`` times longer at a rung; ``on_target``: on ``[transfer]
        model``): in this process, or on ``[proxy] nproc`` ranks under torchrun."""
        from frugal_search.proxy import run_proxy, run_proxy_multiprocess

        budget, nproc = self.config.proxy.run_budget, self.config.proxy.nproc  # built once, with the config
        model_spec = self.config.transfer.model if on_target else self.model_spec
        if factor > 1:
            budget = budget.scaled(factor)
        if nproc > 1:  # the study file refuses successive halving (on_eval) with nproc > 1
            return run_proxy_multiprocess(
                model_spec, self.data_spec, partition, budget, nproc=nproc, device=self.device, seed=seed
            )
        return run_proxy(
            model_spec, self.data_spec, partition, budget,
            device=self.device, seed=seed, progress=False, on_eval=on_eval,
        )

    def _partition(self, trial: optuna.Trial) -> Any:
        from frugal_search.partition import Partition, baseline_partition
        from frugal_search.proxy import METHODS, method_spec, spec_from_stored
        from frugal_search.search.space import sample_partition, sample_settings

        study_name = self.config.study.name
        provenance = {"source": {"study": study_name, "trial": trial.number}}
        repeated = trial.user_attrs.get("seed_of", trial.user_attrs.get("rung_of"))
        if repeated is not None:  # another seed, or a rung run, of a finished trial: the same split (or method)
            partition = spec_from_stored(trial.study.trials[int(repeated)].user_attrs["split"])
            if not isinstance(partition, Partition):
                return partition
            factor = trial.user_attrs.get("rung_factor")
            if factor is not None and partition.settings.density_end is not None:
                # a rho schedule spans the proxy's steps: at the rung it spans the rung's
                partition = partition.replace(density_steps=partition.settings.density_steps * int(factor))
            if trial.user_attrs.get("rung_on") == RUNG_ON_TARGET:  # the proxy's lrs, carried by the width rule
                partition = partition.with_base_widths(self.memory_model).replace(lr_transfer="width")
            return partition
        baseline = trial.user_attrs.get("baseline")
        if baseline in METHODS:
            return method_spec(baseline, lr=trial.user_attrs.get("baseline_lr"))
        if baseline:
            lr = trial.user_attrs.get("baseline_lr")
            if trial.user_attrs.get("space_point"):
                # enqueued as a point of the space: suggesting it makes it an observation the
                # sampler learns from (the partition is the baseline's, as test_space_baselines checks)
                sample_settings(trial, self.config.space)
            partition = baseline_partition(baseline, **({} if lr is None else {"lr": lr}))
            return partition.replace(provenance=provenance)
        trial.set_user_attr("baseline", None)
        return sample_partition(
            trial,
            self.config.space,
            name=f"{study_name}-trial-{trial.number}",
            provenance=provenance,
            num_layers=self.num_layers,
            schedule_steps=self.config.proxy.steps,
        )


def _resolved_model_spec(config: StudyConfig) -> Any:
    """``[model]`` as the proxy stage builds it: the pretrained demo name mapped to its cached directory
    (pre-trained once, on first use)."""
    from frugal_search.proxy import resolve_pretrained

    return resolve_pretrained(config.model)


def build_memory_model(config: StudyConfig, *, model: Any = None) -> nn.Module:
    """The model ``Partition.state_bytes`` measures: built on ``meta`` (no memory) when possible.

    ``model``: another ``ModelSpec`` than ``[model]`` (the ``[transfer]`` target). For a
    classification task it is the classifier the runs train (a new head of the task's classes)."""
    import torch

    from frugal_search.proxy import build_labelled_data, build_model

    spec = _resolved_model_spec(config) if model is None else model
    num_labels = build_labelled_data(config.data).num_labels if config.is_classification else None
    try:
        with torch.device("meta"):
            return build_model(spec, seed=config.study.seed, num_labels=num_labels)
    except Exception as error:  # some factories or checkpoints cannot be built on meta
        logger.debug("building the model on the meta device failed (%s); measuring a CPU copy", error)
        return build_model(spec, seed=config.study.seed, num_labels=num_labels)


def _depth(model: nn.Module) -> int | None:
    """The number of layers of the model's deepest block stack, None when it has none."""
    from frugal_search.partition import introspect

    depths = [info.num_layers for info in introspect(model) if info.num_layers]
    return max(depths) if depths else None


def _set_outcome(trial: optuna.Trial, outcome: str, reason: str | None) -> None:
    trial.set_user_attr("outcome", outcome)
    trial.set_user_attr("reason", reason)


def _error_reason(error: BaseException) -> str:
    lines = traceback.format_exception(error)
    tail = "".join(lines[-_TRACEBACK_LINES:]).strip()
    return f"{type(error).__name__}: {error}\n{tail}"


def _check_not_surplus(trial: optuna.Trial, target: int) -> None:
    """Raise when ``target`` trials numbered below this one are already finished or running.

    Workers check the count before they start a trial; two that check at the same moment could
    both start one. Trial numbers order them, so exactly the later one drops out (as FAIL, which
    does not count as finished) and the study ends with exactly ``target`` finished trials.
    """
    from optuna.trial import TrialState

    claimed = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    earlier = [
        other
        for other in trial.study.get_trials(deepcopy=False, states=claimed)
        if other.number < trial.number and counts_towards_target(other)
    ]
    if len(earlier) >= target:
        raise SurplusTrialError(SURPLUS_REASON)


def _check_not_duplicate_reference(trial: optuna.Trial, key: tuple) -> None:
    from optuna.trial import TrialState

    alive = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    for other in trial.study.get_trials(deepcopy=False, states=alive):
        if other.number < trial.number and reference_key(other.user_attrs) == key:
            raise DuplicateReferenceError(
                f"{describe_reference(key)} is already trial {other.number}; this copy is dropped"
            )
