"""The package's one non-dominated sort against a brute-force double loop."""

from __future__ import annotations

import math
import random

import pytest

from frugal_search.search import non_dominated_ranks, pareto_front_indices


def _worse_or_equal(p: tuple[float, float], q: tuple[float, float]) -> bool:
    return q[0] <= p[0] and q[1] <= p[1]


def brute_force_ranks(points: list[tuple[float, float]]) -> list[int]:
    """Peel fronts with an O(n^2) test per point; non-finite values become +inf by hand."""
    cleaned = [tuple(v if math.isfinite(v) else math.inf for v in point) for point in points]
    ranks = [-1] * len(cleaned)
    remaining = set(range(len(cleaned)))
    rank = 0
    while remaining:
        front = {
            i
            for i in remaining
            if not any(_worse_or_equal(cleaned[i], cleaned[j]) and cleaned[j] != cleaned[i] for j in remaining)
        }
        for i in front:
            ranks[i] = rank
        remaining -= front
        rank += 1
    return ranks


def test_ranks_peel_fronts_by_hand() -> None:
    # (1,3) (2,2) (3,1) are the front; (2,3) is behind (1,3) and (2,2); (3,3) behind (2,3);
    # a NaN loss counts as +inf, yet nothing has both a lower loss and a memory <= 0.5.
    points = [(1, 3), (2, 2), (3, 1), (2, 3), (3, 3), (math.nan, 0.5)]
    assert non_dominated_ranks(points) == [0, 0, 0, 1, 2, 0]
    assert pareto_front_indices(points) == [0, 1, 2, 5]


def test_equal_points_share_the_front_and_infinities_are_dominated() -> None:
    assert non_dominated_ranks([(1.0, 1.0), (1.0, 1.0), (1.0, math.inf), (math.inf, math.inf)]) == [0, 0, 1, 2]
    assert pareto_front_indices([]) == [] and non_dominated_ranks([]) == []


@pytest.mark.parametrize("seed", range(5))
def test_ranks_and_front_equal_brute_force_with_ties(seed: int) -> None:
    rng = random.Random(seed)
    values = [0.5, 1.0, 2.0, 3.0, math.nan, math.inf]
    for _ in range(60):
        points = [(rng.choice(values), rng.choice(values)) for _ in range(rng.randint(1, 10))]
        expected = brute_force_ranks(points)
        assert non_dominated_ranks(points) == expected
        assert pareto_front_indices(points) == [i for i, rank in enumerate(expected) if rank == 0]


def test_a_point_that_is_not_a_pair_is_refused() -> None:
    with pytest.raises(ValueError, match="point 1 has 3 coordinates"):
        non_dominated_ranks([(1.0, 2.0), (1.0, 2.0, 3.0)])
