"""Study bookkeeping: open or create a study, its study attributes, counting trials, baselines.

A study holds its target in *finished* trials (COMPLETE or PRUNED) that are not infeasible: an
infeasible trial (over the memory budget, never trained) is recorded but takes no place. The
workers (``frugal_search.search.workers``), the objective's surplus check and the progress bar
all count with :func:`count_finished_and_running`, so they agree on what "done" means.
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna
    from torch import nn

    from frugal_search.search.config import StudyConfig

logger = logging.getLogger(__name__)

DIRECTIONS = ("minimize", "minimize")
METRIC_NAMES = ["eval_loss", "state_mib"]


def open_study(config: StudyConfig, *, sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
    """Open the config's study, creating it (directions, metric names, study attributes) if new."""
    import optuna

    from frugal_search.search.storage import open_storage

    storage = open_storage(
        config.study.storage,
        heartbeat_interval=config.study.heartbeat_interval,
        grace_period=config.study.grace_period,
    )
    study = optuna.create_study(
        storage=storage,
        study_name=config.study.name,
        directions=list(DIRECTIONS),
        load_if_exists=True,
        sampler=sampler,
    )
    if [direction.name.lower() for direction in study.directions] != list(DIRECTIONS):
        raise ValueError(
            f"study {config.study.name!r} in {config.study.storage} has directions "
            f"{[d.name.lower() for d in study.directions]}, not {list(DIRECTIONS)}; it is not a "
            f"frugal-search study: pick another [study] name or --name"
        )
    if study.metric_names != METRIC_NAMES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(METRIC_NAMES)
    if "space" not in study.user_attrs:
        study.set_user_attr("space", config.space.to_dict())
        study.set_user_attr("memory_budget", config.study.memory_budget)
        study.set_user_attr("study_file", str(config.path) if config.path else None)
    return study


def record_adamw_state_bytes(study: optuna.Study, memory_model: nn.Module) -> None:
    """Store AdamW's optimizer-state bytes on the study's model, once (the report's memory axis)."""
    if "adamw_state_bytes" in study.user_attrs:
        return
    from frugal_search.partition import baseline_partition

    study.set_user_attr("adamw_state_bytes", int(baseline_partition("adamw").state_bytes(memory_model)))


def counts_towards_target(frozen: optuna.trial.FrozenTrial) -> bool:
    """Whether a COMPLETE, PRUNED or RUNNING trial takes one of the ``trials`` places.

    An infeasible trial (over the memory budget) is recorded but takes no place: it cost no proxy
    run, and a space that is mostly over the budget would otherwise end the study with few
    partitions actually scored (the workers stop after many infeasible samples in a row).
    """
    return frozen.user_attrs.get("outcome") != "infeasible"


def count_finished_and_running(study: optuna.Study) -> tuple[int, int]:
    """Return ``(finished, running)``: trials that count towards the target, finished or running."""
    from optuna.trial import TrialState

    trials = study.get_trials(
        deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    )
    trials = [trial for trial in trials if counts_towards_target(trial)]
    running = sum(1 for trial in trials if trial.state == TrialState.RUNNING)
    return len(trials) - running, running


def count_finished_trials(study: optuna.Study) -> int:
    """Number of finished trials that count towards ``trials`` (see :func:`counts_towards_target`)."""
    return count_finished_and_running(study)[0]


def enqueue_baselines(study: optuna.Study, baselines: tuple[str, ...]) -> list[str]:
    """Enqueue each baseline that the study does not hold yet (finished, running or waiting).

    A baseline whose every copy failed (e.g. its worker was killed) is enqueued again. Two runs
    started at the same moment could both enqueue one; the objective then drops the later copy.
    Returns the names enqueued now.
    """
    from optuna.trial import TrialState

    held = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
    present = {trial.user_attrs.get("baseline") for trial in study.get_trials(deepcopy=False, states=held)}
    added = []
    for name in baselines:
        if name not in present:
            study.enqueue_trial({}, user_attrs={"baseline": name})
            added.append(name)
    if added:
        logger.info("enqueued baselines: %s", ", ".join(added))
    return added


__all__ = [
    "DIRECTIONS",
    "METRIC_NAMES",
    "count_finished_and_running",
    "count_finished_trials",
    "counts_towards_target",
    "enqueue_baselines",
    "open_study",
    "record_adamw_state_bytes",
]
