"""The confirmation rung: where the search's answer is decided.

A 150-step proxy cannot separate partitions whose losses differ by less than the seed spread, and
its ranking shifts when training runs longer. So once the search trials, the baselines' lr grids
and the proxy seeds are done, the most promising candidates are trained again at
``[search] confirm_factor`` times the proxy steps (the lr schedule of that length), each
``confirm_seeds`` times with different seeds; the report takes the recommendation there.

Promotion: the pool is the proxy front of the searched trials within the memory budget and every
baseline's best run of its lr grid (over the budget too, as a reference). Each member's proxy loss
is its mean over the seeds that ran; members are ordered by non-dominated rank (loss against
optimizer state) and, within a rank, by crowding distance (NSGA-II's: the two ends of the rank
first, then the members farthest from their neighbours), and the first ``confirm_top`` are promoted.
Within a rank the order spreads the rung over memory rather than taking the lowest proxy losses:
the answer is the least state that ties with the best at the rung, and a small split that trails
at 150 steps can catch up when trained longer. The best baseline within the budget is always
promoted, so the answer is measured against what a user would otherwise pick.

With ``[search] target_rung``, a last rung follows on the model the user trains (``[transfer]
model``): every candidate of the confirmation rung within the memory budget whose mean there is
finite, trained ``target_factor`` times the proxy steps under the width lr rule
(``frugal_search.partition.lr_transfer``), ``confirm_seeds`` times each; the answer is then taken
there. It is planned once no confirmation-rung run waits or runs.

Every rung run is a reference trial (``rung_of``: the trial it re-runs; ``rung_factor``; ``seed``;
``rung_on``: ``proxy`` or ``target``), enqueued once and run again only if its worker died, like the
other references.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from frugal_search.search.pareto import non_dominated_ranks
from frugal_search.search.study import (
    RUNG_ON_PROXY,
    RUNG_ON_TARGET,
    ReferenceRun,
    first_objective_sign,
    front_and_best_baselines,
)

if TYPE_CHECKING:
    import optuna

    from frugal_search.search.config import StudyConfig


@dataclass(frozen=True)
class PromotionCandidate:
    """A member of the pool the rung is filled from: a trial with its proxy figures."""

    number: int
    loss: float  # mean over its proxy seeds, lower is better (a maximised figure enters negated)
    state_bytes: int
    baseline: str | None
    over_budget: bool


def proxy_pool(study: optuna.Study) -> list[PromotionCandidate]:
    """The searched front within the budget and each baseline's best run, with their proxy means."""
    from optuna.trial import TrialState

    sign = first_objective_sign(study)
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    by_number = {trial.number: trial for trial in trials}
    repeats: dict[int, list[float]] = defaultdict(list)
    for trial in trials:
        if trial.user_attrs.get("seed_of") is not None:
            repeats[int(trial.user_attrs["seed_of"])].append(_signed_figure(trial, sign))
    pool = []
    for number in front_and_best_baselines(study):
        trial = by_number[number]
        losses = [_signed_figure(trial, sign), *repeats.get(number, [])]
        pool.append(
            PromotionCandidate(
                number=number,
                loss=sum(losses) / len(losses),
                state_bytes=int(trial.user_attrs.get("state_bytes") or 0),
                baseline=trial.user_attrs.get("baseline"),
                over_budget=bool(trial.user_attrs.get("over_budget")),
            )
        )
    return pool


def promoted_numbers(pool: list[PromotionCandidate], *, top: int) -> list[int]:
    """The trials promoted from ``pool``: ``top`` by non-dominated rank and, within a rank, by
    crowding distance (:func:`crowding_distances`; ties by loss, then trial number), plus the best
    baseline within the budget when it is not among them. In promotion order."""
    points = [(member.loss, member.state_bytes) for member in pool]
    ranks = non_dominated_ranks(points)
    crowding = crowding_distances(points, ranks)
    order = sorted(range(len(pool)), key=lambda i: (ranks[i], -crowding[i], pool[i].loss, pool[i].number))
    chosen = [pool[i].number for i in order[:top]]
    fitting = [member for member in pool if member.baseline and not member.over_budget and math.isfinite(member.loss)]
    if fitting:
        best = min(fitting, key=lambda member: (member.loss, member.state_bytes, member.number))
        if best.number not in chosen:
            chosen.append(best.number)
    return chosen


def crowding_distances(points: list[tuple[float, float]], ranks: list[int]) -> list[float]:
    """NSGA-II's crowding distance of each point within its rank: the ends of a rank (lowest and
    highest in either coordinate) get infinity, the others the sum over both coordinates of the gap
    between their two neighbours, divided by the rank's range in that coordinate (0 where the range
    is 0). Non-finite coordinates count as the rank's worst end."""
    distances = [0.0] * len(points)
    for rank in set(ranks):
        members = [i for i, r in enumerate(ranks) if r == rank]
        for axis in (0, 1):
            values = {i: points[i][axis] if math.isfinite(points[i][axis]) else math.inf for i in members}
            ordered = sorted(members, key=lambda i: (values[i], i))
            distances[ordered[0]] = distances[ordered[-1]] = math.inf
            finite = [values[i] for i in ordered if math.isfinite(values[i])]
            span = (finite[-1] - finite[0]) if len(finite) > 1 else 0.0
            for before, here, after in zip(ordered, ordered[1:], ordered[2:]):
                if span > 0 and math.isfinite(values[after]):
                    distances[here] += (values[after] - values[before]) / span
    return distances


def planned_rung_runs(study: optuna.Study, config: StudyConfig) -> list[ReferenceRun]:
    """The rung runs of the promoted candidates (``[search] confirm_seeds`` each), or none when the
    study confirms nothing."""
    search = config.search
    if not search.confirms:
        return []
    numbers = promoted_numbers(proxy_pool(study), top=search.confirm_top)
    seeds = [config.study.seed + offset for offset in range(search.confirm_seeds)]
    return _rung_runs(numbers, seeds, factor=search.confirm_factor, on=RUNG_ON_PROXY)


def confirmation_rung_means(study: optuna.Study, config: StudyConfig) -> dict[int, float]:
    """Each confirmation-rung candidate's mean loss over its finished runs there (a maximised figure
    negated; +inf when a run diverged), by the trial it re-runs."""
    from optuna.trial import TrialState

    sign = first_objective_sign(study)
    losses: dict[int, list[float]] = defaultdict(list)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        attrs = trial.user_attrs
        if (
            attrs.get("rung_of") is not None
            and attrs.get("rung_on", RUNG_ON_PROXY) == RUNG_ON_PROXY
            and attrs.get("rung_factor") == config.search.confirm_factor
        ):
            losses[int(attrs["rung_of"])].append(_signed_figure(trial, sign))
    return {number: sum(values) / len(values) for number, values in losses.items()}


def planned_target_runs(study: optuna.Study, config: StudyConfig) -> list[ReferenceRun]:
    """The runs of the rung on ``[transfer] model`` (``[search] target_rung``): every candidate of the
    confirmation rung within the budget with a finite mean there, best mean first, ``confirm_seeds``
    each; none when the study has no such rung. Call it once the confirmation rung has finished."""
    search = config.search
    if not search.confirms_on_target:
        return []
    trials = study.trials
    means = confirmation_rung_means(study, config)
    numbers = sorted(
        (n for n, mean in means.items() if math.isfinite(mean) and not trials[n].user_attrs.get("over_budget")),
        key=lambda n: (means[n], n),
    )
    seeds = [config.study.seed + offset for offset in range(search.confirm_seeds)]
    return _rung_runs(numbers, seeds, factor=search.target_factor, on=RUNG_ON_TARGET)


def _rung_runs(numbers: list[int], seeds: list[int], *, factor: int, on: str) -> list[ReferenceRun]:
    return [
        ReferenceRun({"rung_of": number, "rung_factor": factor, "seed": seed, "rung_on": on, "baseline": None})
        for number in numbers
        for seed in seeds
    ]


def _signed_figure(trial: optuna.trial.FrozenTrial, sign: float) -> float:
    """The trial's first objective as a loss (lower is better); +inf when it has none (diverged)."""
    if trial.values is None or not math.isfinite(trial.values[0]):
        return math.inf
    return sign * float(trial.values[0])


__all__ = [
    "PromotionCandidate",
    "confirmation_rung_means",
    "crowding_distances",
    "planned_rung_runs",
    "planned_target_runs",
    "promoted_numbers",
    "proxy_pool",
]
