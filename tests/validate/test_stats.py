"""Statistics of the fidelity check against scipy.stats and brute force."""

from __future__ import annotations

import math
import random

import pytest
from scipy import stats as scipy_stats

from frugal_search.validate.stats import (
    average_ranks,
    correlate,
    front_survival,
    kendall_tau_b,
    memory_bands,
    pareto_members,
    spearman,
)


def _samples():
    rng = random.Random(7)
    yield [1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0]
    yield [1.0, 1.0, 2.0, 3.0, 3.0], [2.0, 1.0, 1.0, 5.0, 4.0]  # ties on both sides
    for _ in range(20):
        size = rng.randint(3, 14)
        xs = [round(rng.uniform(0, 3), 1) for _ in range(size)]  # rounding makes ties
        ys = [x + rng.gauss(0, 0.7) for x in xs]
        yield xs, ys


@pytest.mark.parametrize("xs, ys", list(_samples()))
def test_spearman_and_kendall_match_scipy(xs, ys):
    expected_rho = scipy_stats.spearmanr(xs, ys).statistic
    expected_tau = scipy_stats.kendalltau(xs, ys).statistic
    assert spearman(xs, ys) == pytest.approx(expected_rho, abs=1e-12)
    assert kendall_tau_b(xs, ys) == pytest.approx(expected_tau, abs=1e-12)


def test_average_ranks_match_scipy():
    values = [3.0, 1.0, 3.0, 2.0, 3.0, 0.5]
    assert average_ranks(values) == list(scipy_stats.rankdata(values))


def test_constant_input_gives_nan():
    assert math.isnan(spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    assert math.isnan(kendall_tau_b([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))


def test_correlate_ranks_diverged_runs_last():
    # The diverged long run (inf / nan) ranks worst, as a loss of 99 would.
    proxy = [1.0, 2.0, 3.0, 4.0]
    with_divergence = correlate(proxy, [1.5, math.nan, 2.5, math.inf])
    as_worst = correlate(proxy, [1.5, 99.0, 2.5, 99.0])
    assert with_divergence.count == 4
    assert with_divergence.spearman == pytest.approx(as_worst.spearman)
    assert with_divergence.kendall == pytest.approx(as_worst.kendall)
    assert as_worst.spearman == pytest.approx(scipy_stats.spearmanr(proxy, [1.5, 99.0, 2.5, 99.0]).statistic)


def test_memory_bands_equal_count_and_ties_together():
    assert memory_bands([5.0, 1.0, 3.0, 2.0, 6.0, 4.0], bands=3) == [2, 0, 1, 0, 2, 1]
    labels = memory_bands([1.0, 1.0, 1.0, 2.0, 3.0, 4.0], bands=3)
    assert labels[0] == labels[1] == labels[2]


def _brute_front(points):
    front = []
    for i, (a, b) in enumerate(points):
        if not any(
            (c <= a and d <= b) and (c, d) != (a, b) for j, (c, d) in enumerate(points) if j != i
        ):
            front.append(i)
    return front


def test_pareto_members_match_brute_force():
    rng = random.Random(3)
    for _ in range(30):
        points = [(rng.randint(0, 6) / 2, rng.randint(0, 6) / 2) for _ in range(rng.randint(1, 12))]
        assert pareto_members(points) == _brute_front(points)


def test_front_survival_names_dropped_and_joined():
    keys = [10, 11, 12, 13]
    memory = [1.0, 2.0, 3.0, 4.0]
    proxy = [4.0, 3.0, 2.0, 1.0]  # all on the proxy front
    long_run = [4.0, 3.0, 3.5, 1.0]  # 12 is now dominated by 11
    survival = front_survival(keys, proxy, long_run, memory)
    assert survival.proxy_front == [10, 11, 12, 13]
    assert survival.long_front == [10, 11, 13]
    assert survival.dropped == [12]
    assert survival.kept == [10, 11, 13]
    assert survival.joined == []
    reverse = front_survival(keys, long_run, proxy, memory)
    assert reverse.joined == [12]
