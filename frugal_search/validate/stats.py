"""Pure statistics for the fidelity check: rank correlations, memory bands, front survival.

Rank correlations are ``scipy.stats``' (``spearmanr``, and ``kendalltau``'s default tau-b, both
with ties given their average rank); the Pareto front is the search stage's.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from frugal_search.search import pareto_front_indices

_MIN_POINTS = 2  # a rank correlation of fewer points is undefined


def _check_pairs(x: Sequence[float], y: Sequence[float]) -> None:
    if len(x) != len(y):
        raise ValueError(
            f"x and y must have the same length, got {len(x)} and {len(y)}: pass one value of each per partition"
        )


def _statistic(test, x: Sequence[float], y: Sequence[float]) -> float:
    """``test(x, y).statistic`` as a float; NaN below two points or for a constant input."""
    _check_pairs(x, y)
    if len(x) < _MIN_POINTS:
        return math.nan
    with warnings.catch_warnings():
        # scipy warns on a constant input and returns NaN; NaN is the documented answer here
        warnings.simplefilter("ignore")
        return float(test(x, y).statistic)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Return Spearman's rank correlation (``scipy.stats.spearmanr``); NaN when undefined."""
    from scipy.stats import spearmanr

    return _statistic(spearmanr, x, y)


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Return Kendall's tau-b, ties corrected (``scipy.stats.kendalltau``'s default); NaN when undefined."""
    from scipy.stats import kendalltau

    return _statistic(kendalltau, x, y)


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
    """
    _check_pairs(x, y)
    xs = [_worst_if_not_finite(a) for a in x]
    ys = [_worst_if_not_finite(b) for b in y]
    return Correlation(count=len(xs), spearman=spearman(xs, ys), kendall=kendall_tau_b(xs, ys))


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
    proxy = {keys[i] for i in pareto_front_indices(list(zip(proxy_loss, memory)))}
    long_run = {keys[i] for i in pareto_front_indices(list(zip(long_loss, memory)))}
    return FrontSurvival(
        proxy_front=sorted(proxy),
        long_front=sorted(long_run),
        kept=sorted(proxy & long_run),
        dropped=sorted(proxy - long_run),
        joined=sorted(long_run - proxy),
    )
