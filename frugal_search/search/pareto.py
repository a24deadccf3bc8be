"""Non-dominated sorting of two objectives: the one Pareto-front function of the package.

Successive halving ranks trials at a rung with it, the report draws the front of memory against
loss with it, and the fidelity check compares fronts with it (both reach it through
``frugal_search.search``).

A point dominates another when it is no worse in both coordinates and strictly better in at least
one. Equal points do not dominate each other, so they share a rank (both stay on the front).
Non-finite coordinates (a NaN or infinite loss) count as the worst value: worse than every number.
Both coordinates are minimised unless ``directions`` says ``"maximize"`` for one (an accuracy):
that coordinate is negated before sorting, so a higher value is better.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def _finite_or_inf(value: float) -> float:
    # NaN compares false with everything and would otherwise be "not worse" than any point.
    value = float(value)
    return value if math.isfinite(value) else math.inf


MINIMIZE_BOTH = ("minimize", "minimize")


def _signs(directions: Sequence[str]) -> tuple[float, float]:
    if len(directions) != 2 or any(str(d).lower() not in ("minimize", "maximize") for d in directions):
        raise ValueError(f"directions must be two of 'minimize' / 'maximize', got {list(directions)!r}")
    return tuple(-1.0 if str(d).lower() == "maximize" else 1.0 for d in directions)  # type: ignore[return-value]


def _cleaned(points: Sequence[Sequence[float]], directions: Sequence[str] = MINIMIZE_BOTH) -> list[tuple[float, float]]:
    first_sign, second_sign = _signs(directions)
    cleaned = []
    for index, point in enumerate(points):
        if len(point) != 2:
            raise ValueError(
                f"point {index} has {len(point)} coordinates ({point!r}); non-dominated sorting "
                "here takes pairs (e.g. (loss, MiB)): pass two values per point"
            )
        cleaned.append((_finite_or_inf(first_sign * point[0]), _finite_or_inf(second_sign * point[1])))
    return cleaned


def _front_of(points: list[tuple[float, float]], indices: list[int]) -> list[int]:
    """The non-dominated members of ``indices``, in O(n log n): sorted by the first coordinate,
    a point is on the front when its second coordinate is the lowest among points with the same
    first coordinate and strictly below every second coordinate seen at a smaller first one."""
    order = sorted(indices, key=lambda i: points[i])
    front: list[int] = []
    best_at_smaller_first: float | None = None  # None: no point seen yet
    start = 0
    while start < len(order):
        first = points[order[start]][0]
        end = start
        while end < len(order) and points[order[end]][0] == first:
            end += 1
        group_best = points[order[start]][1]  # sorted: the lowest second coordinate comes first
        if best_at_smaller_first is None or group_best < best_at_smaller_first:
            front.extend(i for i in order[start:end] if points[i][1] == group_best)
            best_at_smaller_first = group_best
        start = end
    return sorted(front)


def non_dominated_ranks(points: Sequence[Sequence[float]], *, directions: Sequence[str] = MINIMIZE_BOTH) -> list[int]:
    """Return the non-dominated rank of every ``(a, b)`` point, each coordinate optimised in its
    direction of ``directions`` (default: both minimised).

    Rank 0 is the Pareto front, rank 1 the front of what is left once rank 0 is removed, and so
    on. Equal points share a rank; non-finite coordinates count as the worst value.
    """
    cleaned = _cleaned(points, directions)
    ranks = [-1] * len(cleaned)
    remaining = list(range(len(cleaned)))
    rank = 0
    while remaining:
        front = _front_of(cleaned, remaining)
        for index in front:
            ranks[index] = rank
        on_front = set(front)
        remaining = [index for index in remaining if index not in on_front]
        rank += 1
    return ranks


def pareto_front_indices(points: Sequence[Sequence[float]], *, directions: Sequence[str] = MINIMIZE_BOTH) -> list[int]:
    """Return the indices of the non-dominated ``(a, b)`` points (rank 0), in input order
    (``directions`` as in :func:`non_dominated_ranks`)."""
    cleaned = _cleaned(points, directions)
    return _front_of(cleaned, list(range(len(cleaned))))


__all__ = ["non_dominated_ranks", "pareto_front_indices"]
