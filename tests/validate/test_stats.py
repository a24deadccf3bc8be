"""Statistics of the fidelity check against hand-computed small cases and brute force."""

from __future__ import annotations

import math

import pytest

from frugal_search.validate.stats import (
    correlate,
    front_survival,
    kendall_tau_b,
    memory_bands,
    spearman,
)


def test_spearman_and_kendall_on_a_hand_computed_case() -> None:
    # one swapped pair of four: sum d^2 = 2, rho = 1 - 6 * 2 / (4 * 15); 5 concordant, 1 discordant
    xs, ys = [1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0]
    assert spearman(xs, ys) == pytest.approx(0.8, abs=1e-12)
    assert kendall_tau_b(xs, ys) == pytest.approx(4 / 6, abs=1e-12)


def test_ties_take_average_ranks_and_tau_b_corrects_for_them() -> None:
    # ranks x = [1.5, 1.5, 3, 4], y = [1, 2, 3.5, 3.5]: covariance 4, both variances 4.5 -> 8/9;
    # 4 concordant pairs, one tied in x, one tied in y: tau_b = 4 / sqrt((6 - 1) * (6 - 1))
    xs, ys = [1.0, 1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 3.0]
    assert spearman(xs, ys) == pytest.approx(8 / 9, abs=1e-12)
    assert kendall_tau_b(xs, ys) == pytest.approx(0.8, abs=1e-12)


def test_constant_input_and_too_few_points_give_nan() -> None:
    assert math.isnan(spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    assert math.isnan(kendall_tau_b([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    assert math.isnan(spearman([1.0], [2.0])) and math.isnan(kendall_tau_b([], []))
    with pytest.raises(ValueError, match="same length"):
        spearman([1.0, 2.0], [1.0])


def test_correlate_ranks_diverged_runs_last():
    # The diverged long run (inf / nan) ranks worst, as a loss of 99 would.
    proxy = [1.0, 2.0, 3.0, 4.0]
    with_divergence = correlate(proxy, [1.5, math.nan, 2.5, math.inf])
    as_worst = correlate(proxy, [1.5, 99.0, 2.5, 99.0])
    assert with_divergence.count == 4
    assert with_divergence.spearman == pytest.approx(as_worst.spearman)
    assert with_divergence.kendall == pytest.approx(as_worst.kendall)
    # ranks y = [1, 3.5, 2, 3.5] against 1..4: covariance 3, variances 5 and 4.5
    assert as_worst.spearman == pytest.approx(3 / math.sqrt(5 * 4.5), abs=1e-12)


def test_memory_bands_equal_count_and_ties_together():
    assert memory_bands([5.0, 1.0, 3.0, 2.0, 6.0, 4.0], bands=3) == [2, 0, 1, 0, 2, 1]
    labels = memory_bands([1.0, 1.0, 1.0, 2.0, 3.0, 4.0], bands=3)
    assert labels[0] == labels[1] == labels[2]


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
