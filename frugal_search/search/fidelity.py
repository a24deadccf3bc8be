"""Multi-fidelity search: successive halving by non-dominated rank.

A plain search gives every sampled partition the full proxy budget. With
``[search] fidelity = "successive-halving"`` each proxy run is checked at *rungs*, the steps
``min_fraction * steps * reduction_factor**i`` (``i = 0, 1, ...`` while below ``steps``). At a rung
the trial records its ``(eval_loss, state_mib)`` there as the user attribute ``rung_<step>`` and is
compared with every other trial of the study that recorded the same rung. It goes on only if its
non-dominated rank (memory against loss at that rung, both minimised) places it within the top
``1 / reduction_factor`` of those trials; otherwise the run stops early and the search stage records
the trial as PRUNED with outcome ``stopped-early``. So a study of the same wall time gives more
partitions a first look and spends the full budget on the promising ones.

Two rules keep the scheme from throwing away what it cannot yet judge:

- *The first trials at a rung pass.* While fewer than ``reduction_factor`` trials (this one
  included) have reached a rung there is no "top 1/reduction_factor" to be in, so the trial goes on.
  (Optuna's own successive-halving pruner keeps only the best of the first trials; we are more
  lenient because a multi-objective rung with two points says little.)
- *A trial on the rung's front always passes*: no trial there is better on both memory and loss.
- Baseline trials (user attribute ``baseline`` set by the search stage) are never stopped, so they
  always land on the report's plot; their rung values still count for the others.

The decision is asynchronous (as in ASHA): a trial is compared with whoever has reached the rung by
then, which is what makes it work with many workers on one storage and no scheduler.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from frugal_search.search.pareto import non_dominated_ranks

if TYPE_CHECKING:  # pragma: no cover - imports for type checkers only
    import optuna

logger = logging.getLogger(__name__)

SUCCESSIVE_HALVING = "successive-halving"
RUNG_ATTR_PREFIX = "rung_"
_MIB = 2**20


def rung_steps(*, total_steps: int, min_fraction: float, reduction_factor: float) -> list[int]:
    """Return the steps at which a run is checked: ``min_fraction * total_steps * r**i`` below the end.

    Steps are rounded to integers (at least 1) and deduplicated; the full budget itself is not a rung
    (a trial that got there is finished, not judged).
    """
    if not isinstance(total_steps, int) or isinstance(total_steps, bool) or total_steps < 1:
        raise ValueError(f"total_steps must be an integer >= 1, got {total_steps!r}")
    if not 0.0 < min_fraction < 1.0:
        raise ValueError(
            f"min_fraction must lie in (0, 1), got {min_fraction!r}; "
            "it is the share of the proxy budget every trial gets, e.g. 0.25"
        )
    if not reduction_factor > 1.0:
        raise ValueError(
            f"reduction_factor must be > 1, got {reduction_factor!r}; 3 keeps the top third at each rung"
        )
    steps: list[int] = []
    fraction = min_fraction
    while fraction < 1.0:
        step = max(1, int(round(fraction * total_steps)))
        if step >= total_steps:
            break
        if step not in steps:
            steps.append(step)
        fraction *= reduction_factor
    return steps


def should_continue(
    own: tuple[float, float],
    others: Sequence[tuple[float, float]],
    *,
    reduction_factor: float,
) -> bool:
    """Return whether a trial at a rung goes on, given its and the other trials' (loss, MiB) there.

    With ``n`` trials at the rung (this one included), the trial goes on when fewer than
    ``reduction_factor`` have reached it, or when fewer than ``ceil(n / reduction_factor)`` trials have
    a strictly better non-dominated rank than its own (so the whole rung front always goes on).
    """
    count = len(others) + 1
    if count < reduction_factor:
        return True
    ranks = non_dominated_ranks([tuple(own), *[tuple(point) for point in others]])
    better = sum(1 for rank in ranks[1:] if rank < ranks[0])
    return better < math.ceil(count / reduction_factor)


def rung_attr_name(step: int) -> str:
    """Return the user-attribute name under which a trial records its values at rung ``step``."""
    return f"{RUNG_ATTR_PREFIX}{step}"


def collect_rung_points(trials: Sequence[Any], *, step: int, exclude_number: int) -> list[tuple[float, float]]:
    """Return the ``(loss, MiB)`` pairs recorded at rung ``step`` by ``trials`` other than ``exclude_number``."""
    name = rung_attr_name(step)
    points = []
    for frozen in trials:
        if frozen.number == exclude_number:
            continue
        value = frozen.user_attrs.get(name)
        if value is None:
            continue
        points.append((float(value[0]), float(value[1])))
    return points


class SuccessiveHalvingStop:
    """The ``on_eval`` callable of one trial: records rung values and says when to stop.

    Called by ``run_proxy`` after every evaluation with ``(step, eval_loss)``; returns True to stop.
    A rung counts as reached at the first evaluation at or after its step, so trials with the same
    evaluation interval are compared at the same step; choose ``[proxy] eval_every`` so that it
    divides the rung steps, or rungs are judged at the next evaluation. The last evaluation (step
    ``total_steps``) is never judged.
    """

    def __init__(
        self,
        trial: optuna.Trial,
        *,
        rungs: Sequence[int],
        reduction_factor: float,
        state_bytes: int | None = None,
        total_steps: int | None = None,
    ) -> None:
        self.trial = trial
        self.rungs = sorted(rungs)
        self.total_steps = total_steps
        self.reduction_factor = reduction_factor
        self.state_bytes = state_bytes
        self._next_rung = 0
        self.stopped_at: int | None = None

    def _state_mib(self) -> float:
        state_bytes = self.state_bytes
        if state_bytes is None:
            state_bytes = self.trial.user_attrs.get("state_bytes")
        if state_bytes is None:
            # Without the memory the rung ranks on loss alone; say so rather than guess.
            logger.warning(
                "trial %d has no state_bytes when reaching a rung; ranking it on loss alone", self.trial.number
            )
            return 0.0
        return float(state_bytes) / _MIB

    def __call__(self, step: int, eval_loss: float) -> bool:
        if self.total_steps is not None and step >= self.total_steps:
            return False  # the run is over anyway: judging it now would only mislabel a finished run
        stop = False
        while self._next_rung < len(self.rungs) and step >= self.rungs[self._next_rung]:
            rung = self.rungs[self._next_rung]
            self._next_rung += 1
            own = (float(eval_loss), self._state_mib())
            self.trial.set_user_attr(rung_attr_name(rung), [own[0], own[1]])
            others = collect_rung_points(
                self.trial.study.get_trials(deepcopy=False), step=rung, exclude_number=self.trial.number
            )
            if self.trial.user_attrs.get("baseline"):
                continue
            if not should_continue(own, others, reduction_factor=self.reduction_factor):
                logger.info(
                    "trial %d stopped at rung %d (step %d): loss %.4f, %.3f MiB against %d trials",
                    self.trial.number, rung, step, own[0], own[1], len(others),
                )
                self.stopped_at = step
                stop = True
                break
        return stop


def make_early_stop(
    trial: optuna.Trial, config: Any, *, state_bytes: int | None = None
) -> Callable[[int, float], bool] | None:
    """Return the ``on_eval`` callable for ``trial`` under ``config``, or None for a plain search.

    ``config`` is the study's ``StudyConfig``; its ``search.fidelity``, ``search.min_fraction`` and
    ``search.reduction_factor`` choose the scheme and the proxy's step count sets the rungs. The
    trial's optimizer-state size comes from ``state_bytes`` or, when that is None, from the trial's
    ``state_bytes`` user attribute at the first rung.
    """
    search = config.search
    fidelity = getattr(search, "fidelity", None)
    if fidelity in (None, "", "none", "full"):
        return None
    if fidelity != SUCCESSIVE_HALVING:
        raise ValueError(
            f"unknown [search] fidelity {fidelity!r}; allowed: 'none' or {SUCCESSIVE_HALVING!r}"
        )
    total_steps = config.proxy.steps
    if total_steps is None:
        from frugal_search.proxy import DEFAULT_STEPS  # the proxy's own default length

        total_steps = DEFAULT_STEPS
    rungs = rung_steps(
        total_steps=int(total_steps),
        min_fraction=float(search.min_fraction),
        reduction_factor=float(search.reduction_factor),
    )
    return SuccessiveHalvingStop(
        trial,
        rungs=rungs,
        reduction_factor=float(search.reduction_factor),
        state_bytes=state_bytes,
        total_steps=int(total_steps),
    )
