"""Pure statistics for the fidelity check: rank correlations, memory bands, front survival.

Plain Python on lists, no scipy at run time: the tests compare each function with ``scipy.stats``
or a brute force, so the formulas here are an independent implementation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from frugal_search.search.fidelity import non_dominated_ranks


def average_ranks(values: Sequence[float]) -> list[float]:
    """Return 1-based ranks of ``values``, ties getting the mean of the ranks they span."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        mean_rank = (start + end) / 2.0 + 1.0
        for position in range(start, end + 1):
            ranks[order[position]] = mean_rank
        start = end + 1
    return ranks


def _check_pairs(x: Sequence[float], y: Sequence[float]) -> None:
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Return Pearson's correlation of ``x`` and ``y``; NaN with fewer than 2 points or a constant input."""
    _check_pairs(x, y)
    count = len(x)
    if count < 2:
        return math.nan
    mean_x = sum(x) / count
    mean_y = sum(y) / count
    cov = sum((a - mean_x) * (b - mean_y) for a, b in zip(x, y))
    var_x = sum((a - mean_x) ** 2 for a in x)
    var_y = sum((b - mean_y) ** 2 for b in y)
    if var_x == 0.0 or var_y == 0.0:
        return math.nan
    return max(-1.0, min(1.0, cov / math.sqrt(var_x * var_y)))


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Return Spearman's rank correlation (Pearson on average ranks), as ``scipy.stats.spearmanr``."""
    _check_pairs(x, y)
    return pearson(average_ranks(x), average_ranks(y))


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Return Kendall's tau-b (ties corrected), as ``scipy.stats.kendalltau``'s default.

    ``tau_b = (concordant - discordant) / sqrt((n0 - ties_x) * (n0 - ties_y))`` over all pairs,
    where ``n0`` is the number of pairs and ``ties_x`` the pairs tied in x. NaN when undefined.
    """
    _check_pairs(x, y)
    concordant = discordant = ties_x = ties_y = pairs = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            pairs += 1
            dx = x[i] - x[j]
            dy = y[i] - y[j]
            if dx == 0:
                ties_x += 1
            if dy == 0:
                ties_y += 1
            if dx == 0 or dy == 0:
                continue
            if (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    denominator = math.sqrt((pairs - ties_x) * (pairs - ties_y))
    if denominator == 0.0:
        return math.nan
    return (concordant - discordant) / denominator


@dataclass(frozen=True)
class Correlation:
    """Rank agreement of two lists of losses over the same partitions."""

    count: int
    spearman: float
    kendall: float


def correlate(x: Sequence[float], y: Sequence[float]) -> Correlation:
    """Return the Spearman and Kendall correlations of ``x`` and ``y``.

    A NaN or +inf loss (a diverged run) counts as worse than every finite loss and ties with the
    other diverged ones: dropping it would hide exactly the disagreement the check is looking for.
    Kendall's tau is computed on the ranks, which gives the same value as on the losses.
    """
    _check_pairs(x, y)
    xs = [_worst_if_not_finite(a) for a in x]
    ys = [_worst_if_not_finite(b) for b in y]
    rank_x = average_ranks(xs)
    rank_y = average_ranks(ys)
    return Correlation(count=len(xs), spearman=pearson(rank_x, rank_y), kendall=kendall_tau_b(rank_x, rank_y))


def _worst_if_not_finite(value: float) -> float:
    return float(value) if math.isfinite(value) else math.inf


def memory_bands(memory: Sequence[float], *, bands: int) -> list[int]:
    """Return, for every item, its memory band ``0 .. bands-1`` by rank (equal-count bands).

    Items are sorted by memory and cut into ``bands`` groups of (nearly) equal size; equal memory
    always lands in one band, so a band may come out larger than the others.
    """
    if bands < 1:
        raise ValueError(f"bands must be >= 1, got {bands!r}")
    order = sorted(range(len(memory)), key=lambda i: memory[i])
    labels = [0] * len(memory)
    for position, index in enumerate(order):
        labels[index] = min(bands - 1, position * bands // max(1, len(memory)))
    # Pull equal memory values into the band of their first occurrence.
    for position in range(1, len(order)):
        if memory[order[position]] == memory[order[position - 1]]:
            labels[order[position]] = labels[order[position - 1]]
    return labels


def pareto_members(points: Sequence[tuple[float, float]]) -> list[int]:
    """Return the indices of the non-dominated points (both coordinates minimised), in input order."""
    ranks = non_dominated_ranks(points)
    return [i for i, rank in enumerate(ranks) if rank == 0]


@dataclass(frozen=True)
class FrontSurvival:
    """How the proxy's front among the re-run partitions compares with the long-run front."""

    proxy_front: list[int]
    long_front: list[int]
    kept: list[int]
    dropped: list[int]
    joined: list[int]


def front_survival(
    keys: Sequence[int], proxy_loss: Sequence[float], long_loss: Sequence[float], memory: Sequence[float]
) -> FrontSurvival:
    """Compare the non-dominated sets by proxy loss and by long-run loss over the same partitions.

    ``keys`` name the partitions (trial numbers); the result lists them: on both fronts (kept), on
    the proxy front only (dropped after long training) and on the long-run front only (joined).
    """
    if not len(keys) == len(proxy_loss) == len(long_loss) == len(memory):
        raise ValueError("keys, proxy_loss, long_loss and memory must have the same length")
    proxy = {keys[i] for i in pareto_members(list(zip(proxy_loss, memory)))}
    long_run = {keys[i] for i in pareto_members(list(zip(long_loss, memory)))}
    return FrontSurvival(
        proxy_front=sorted(proxy),
        long_front=sorted(long_run),
        kept=sorted(proxy & long_run),
        dropped=sorted(proxy - long_run),
        joined=sorted(long_run - proxy),
    )
