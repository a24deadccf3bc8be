"""Study bookkeeping: counting trials, baselines and the other reference runs (studies are opened by
``frugal_search.search.storage``).

A study holds its target in *finished* trials (COMPLETE or PRUNED) that are not infeasible: an
infeasible trial (over the memory budget, never trained) is recorded but takes no place. The
workers (``frugal_search.search.workers``), the objective's surplus check and the progress bar
all count with :func:`count_finished_and_running`, so they agree on what "done" means.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from frugal_search.proxy import COMPETITORS, METHODS

if TYPE_CHECKING:
    import optuna
    from torch import nn

    from frugal_search.search.config import StudyConfig

logger = logging.getLogger(__name__)

DIRECTIONS = ("minimize", "minimize")  # of the default objectives; a study's own: StudyConfig.directions
METRIC_NAMES = ["eval_loss", "state_mib"]  # the default objectives; a study's own: StudyConfig.metric_names
BASELINE_GRID_POINTS = 4  # lrs per baseline when [study] baseline_lrs is not given
BASELINE_GRID_EXTENSIONS = 2  # points a baseline's grid grows by past an edge that holds its best run


def record_adamw_state_bytes(study: optuna.Study, memory_model: nn.Module) -> None:
    """Store AdamW's optimizer-state bytes on the study's model, once (the report's memory axis)."""
    if "adamw_state_bytes" in study.user_attrs:
        return
    from frugal_search.partition import adamw_state_bytes_of

    study.set_user_attr("adamw_state_bytes", adamw_state_bytes_of(memory_model))


def counts_towards_target(frozen: optuna.trial.FrozenTrial) -> bool:
    """Whether a COMPLETE, PRUNED or RUNNING trial takes one of the ``trials`` places.

    An infeasible trial (over the memory budget) is recorded but takes no place: it cost no proxy
    run, and a space that is mostly over the budget would otherwise end the study with few
    partitions actually scored (the workers stop after many infeasible samples in a row).
    References (baselines on their lr grid, extra seeds) take no place either: they are what the
    searched partitions are compared with, not part of the search's budget.
    """
    return frozen.user_attrs.get("outcome") != "infeasible" and reference_key(frozen.user_attrs) is None


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


RUNG_ON_PROXY = "proxy"
"""``rung_on`` of a confirmation-rung run: the proxy model, trained longer."""
RUNG_ON_TARGET = "target"
"""``rung_on`` of a run at the rung on ``[transfer] model`` (``[search] target_rung``)."""


@dataclass(frozen=True)
class ReferenceRun:
    """A trial to compare with that takes no place among ``[study] trials``.

    ``baseline``: a baseline at one lr of its grid (``lr`` None: its own lr); ``seed``: another seed
    of a finished trial (``seed_of``); ``rung``: a finished trial trained ``rung_factor`` times
    longer at one seed (``rung_of``, ``frugal_search.search.rungs``), on the proxy or, with
    ``rung_on = "target"``, on the ``[transfer]`` model. ``params`` are the space's values that rebuild it, enqueued so
    the sampler learns from it (empty when the space does not hold it).
    """

    user_attrs: Mapping[str, Any]
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple:
        """What makes two reference runs the same run (see :func:`reference_key`)."""
        return reference_key(self.user_attrs)


def reference_key(user_attrs: Mapping[str, Any]) -> tuple | None:
    """``("baseline", name, lr)``, ``("seed", trial number, seed)`` or ``("rung", trial number, seed,
    factor, model)`` for a reference trial, else None; a rung's ``model`` is ``"proxy"`` or, at the
    rung on the ``[transfer]`` model, ``"target"`` (``rung_on``)."""
    if user_attrs.get("rung_of") is not None:
        return (
            "rung", int(user_attrs["rung_of"]), int(user_attrs["seed"]), int(user_attrs["rung_factor"]),
            str(user_attrs.get("rung_on") or RUNG_ON_PROXY),
        )
    if user_attrs.get("seed_of") is not None:
        return ("seed", int(user_attrs["seed_of"]), int(user_attrs["seed"]))
    if user_attrs.get("baseline"):
        return ("baseline", user_attrs["baseline"], user_attrs.get("baseline_lr"))
    return None


def baseline_lr_grid(config: StudyConfig, name: str | None = None) -> tuple[float | None, ...]:
    """The lrs baseline ``name`` runs at.

    A competitor (APOLLO, Adam-mini, Muon, ...) with ``[study] competitor_lr_multipliers`` runs at its
    authors' default lr times each multiplier. Any other baseline runs at ``[study] baseline_lrs``,
    else ``BASELINE_GRID_POINTS`` log-spaced points over the space's lr range, else (lr not
    searched) at its own lr (None).
    """
    multipliers = config.study.competitor_lr_multipliers
    if name in COMPETITORS and multipliers:
        default = COMPETITORS[name].default_lr
        return tuple(sorted({_lr_key(default * factor) for factor in multipliers}))
    if config.study.baseline_lrs:
        return config.study.baseline_lrs
    lr = config.space["lr"]
    if not lr.varies or lr.low is None or lr.low <= 0:
        return (None,)
    ratio = (lr.high / lr.low) ** (1 / (BASELINE_GRID_POINTS - 1))
    return tuple(_lr_key(lr.low * ratio**index) for index in range(BASELINE_GRID_POINTS))


def _lr_key(lr: float | None) -> float | None:
    """An lr as stored and compared (three significant digits), so a grid point and its run agree."""
    return None if lr is None else float(f"{lr:.3g}")


def first_objective_sign(study: optuna.Study) -> float:
    """1 when the study's first objective is minimised (eval loss), -1 when maximised (accuracy):
    ``sign * value`` is then lower-is-better either way."""
    import optuna

    return -1.0 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1.0


def baseline_grid_losses(study: optuna.Study, name: str) -> dict[float | None, float]:
    """The first objective of each lr baseline ``name`` has run at in ``study`` (first seed only), as a
    loss: lower is better (a maximised objective such as accuracy enters negated).

    A run that diverged counts as an infinite loss; one that failed (its worker died) or still
    runs is left out, so it is not yet known. A baseline over the memory budget runs all the same
    (it is a reference), so its grid grows like any other.
    """
    from optuna.trial import TrialState

    sign = first_objective_sign(study)

    losses: dict[float | None, float] = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        attrs = trial.user_attrs
        if attrs.get("baseline") != name or is_repeat(attrs) or attrs.get("outcome") == "infeasible":
            continue
        finite = trial.state == TrialState.COMPLETE and trial.values is not None and math.isfinite(trial.values[0])
        losses[_lr_key(attrs.get("baseline_lr"))] = sign * trial.values[0] if finite else math.inf
    return losses


def extend_past_edge_best(grid: tuple[float, ...], losses: Mapping[float | None, float]) -> tuple[float, ...]:
    """``grid`` grown past an edge that holds the lowest loss, one step at a time.

    Once every point of the grid has a loss and the lowest sits on the lowest or highest lr, the next
    point one step further out (the step between the two outermost points, on a log scale) is added,
    up to ``BASELINE_GRID_EXTENSIONS`` times: a baseline is compared at its best lr, not at the edge
    of a range chosen for the searched trials. A best inside the grid, or a point not yet run, stops it.
    """
    points = sorted(_lr_key(lr) for lr in grid)
    if len(points) < 2:
        return tuple(points)
    for _ in range(BASELINE_GRID_EXTENSIONS):
        if any(lr not in losses for lr in points):
            break
        best = min(points, key=lambda lr: (losses[lr], lr))
        if not math.isfinite(losses[best]):
            break
        if best == points[-1]:
            points.append(_lr_key(points[-1] ** 2 / points[-2]))
        elif best == points[0]:
            points.insert(0, _lr_key(points[0] ** 2 / points[1]))
        else:
            break
    return tuple(points)


def planned_baseline_runs(config: StudyConfig, study: optuna.Study | None = None) -> list[ReferenceRun]:
    """Every baseline of the study at every lr of :func:`baseline_lr_grid`; given the ``study``, each
    baseline's grid also grows past an edge that holds its best run (:func:`extend_past_edge_best`)."""
    from frugal_search.search.space import baseline_point

    runs = []
    for name in config.study.baselines:
        grid = baseline_lr_grid(config, name)
        lrs = grid if study is None or grid == (None,) else extend_past_edge_best(grid, baseline_grid_losses(study, name))
        for lr in lrs:
            lr = config.proxy.lr if lr is None and config.proxy.lr is not None else lr
            point = {} if name in METHODS else baseline_point(name, lr=lr)  # LoRA, a competitor: no partition
            held = bool(point) and all(config.space[key].holds(value) for key, value in point.items())
            attrs = {"baseline": name, "baseline_lr": lr, "space_point": held}
            runs.append(ReferenceRun(attrs, point if held else {}))
    return runs


def planned_seed_runs(study: optuna.Study, config: StudyConfig) -> list[ReferenceRun]:
    """Extra seeds (``[study] front_seeds``) of the front's members and of each baseline's best run."""
    seeds = [config.study.seed + offset for offset in range(1, config.study.front_seeds + 1)]
    if not seeds:
        return []
    return [
        ReferenceRun({"seed_of": number, "seed": seed, "baseline": None})
        for number in front_and_best_baselines(study)
        for seed in seeds
    ]


def is_repeat(user_attrs: Mapping[str, Any]) -> bool:
    """Whether a trial repeats another one (an extra seed, or a run at a confirmation rung): it is
    summarised into that trial, never a point of the proxy's front or a baseline's grid of its own."""
    return user_attrs.get("seed_of") is not None or user_attrs.get("rung_of") is not None


def searched_front(study: optuna.Study, trials: list[optuna.trial.FrozenTrial] | None = None) -> list[int]:
    """Numbers of the proxy's front: the searched trials within the budget that no other one dominates
    (baselines and repeats, which train longer or again, left out). ``trials``: the study's, already read."""
    from optuna.trial import TrialState

    from frugal_search.search.pareto import pareto_front_indices

    trials = study.get_trials(deepcopy=False) if trials is None else trials
    searched = [
        trial
        for trial in trials
        if trial.state == TrialState.COMPLETE and trial.values is not None and not is_repeat(trial.user_attrs)
        and not trial.user_attrs.get("baseline") and not trial.user_attrs.get("over_budget")
    ]
    directions = [direction.name.lower() for direction in study.directions]
    return [searched[index].number for index in pareto_front_indices([trial.values for trial in searched], directions=directions)]


def front_and_best_baselines(study: optuna.Study) -> list[int]:
    """Numbers of the trials whose seeds are compared: the front of the searched trials within the
    budget, and each baseline's best run of its grid (in the direction of the first objective)."""
    from optuna.trial import TrialState

    complete = [
        trial
        for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if trial.values is not None and not is_repeat(trial.user_attrs)
    ]
    front = searched_front(study, complete)
    sign = first_objective_sign(study)
    best: dict[str, optuna.trial.FrozenTrial] = {}
    for trial in complete:
        name = trial.user_attrs.get("baseline")
        if name and (name not in best or sign * trial.values[0] < sign * best[name].values[0]):
            best[name] = trial
    return sorted({*front, *(trial.number for trial in best.values())})


def enqueue_references(study: optuna.Study, runs: list[ReferenceRun], *, retry_failed: bool = True) -> list[ReferenceRun]:
    """Enqueue each run the study does not hold yet (finished, running or waiting); return those.

    A run whose every copy failed because its worker was lost (killed, crashed: the storage's
    lost-worker reason) is always enqueued again; one whose copy failed by an error of its own only
    when ``retry_failed`` (not in a worker's own loop: a run that fails every time must not be
    retried without end). Two runs started at the same moment could both enqueue one; the objective
    then drops the later copy.
    """
    from optuna.trial import TrialState

    from frugal_search.search.storage import WORKER_LOST_REASON

    held = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
    present = {
        reference_key(trial.user_attrs)
        for trial in study.get_trials(deepcopy=False)
        if trial.state in held
        or (not retry_failed and trial.state == TrialState.FAIL and trial.user_attrs.get("reason") != WORKER_LOST_REASON)
    }
    added = [run for run in runs if run.key not in present]
    for run in added:
        study.enqueue_trial(dict(run.params), user_attrs=dict(run.user_attrs))
    if added:
        logger.info("enqueued %d reference run(s): %s", len(added), ", ".join(describe_reference(run.key) for run in added))
    return added


def has_waiting_trials(study: optuna.Study) -> bool:
    """Whether enqueued trials wait to be run (they run before anything is sampled)."""
    from optuna.trial import TrialState

    return bool(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def describe_reference(key: tuple) -> str:
    """Words for a :func:`reference_key`: ``baseline 'galore' at lr 0.003``, ``seed 2 of trial 17``,
    ``trial 17 at 4x the steps, seed 1``."""
    kind, first, second, *rest = key
    if kind == "rung":
        model = " on the target model" if rest[1] == RUNG_ON_TARGET else ""
        return f"trial {first}{model} at {rest[0]}x the steps, seed {second}"
    if kind == "seed":
        return f"seed {second} of trial {first}"
    return f"baseline {first!r}" + (f" at lr {second:g}" if second is not None else "")


__all__ = [
    "DIRECTIONS",
    "METRIC_NAMES",
    "count_finished_and_running",
    "count_finished_trials",
    "counts_towards_target",
    "RUNG_ON_PROXY",
    "RUNG_ON_TARGET",
    "ReferenceRun",
    "baseline_grid_losses",
    "baseline_lr_grid",
    "describe_reference",
    "enqueue_references",
    "extend_past_edge_best",
    "first_objective_sign",
    "front_and_best_baselines",
    "searched_front",
    "has_waiting_trials",
    "is_repeat",
    "planned_baseline_runs",
    "planned_seed_runs",
    "reference_key",
    "record_adamw_state_bytes",
]
