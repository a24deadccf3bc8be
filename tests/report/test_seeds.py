"""Baselines at their best lr and losses over seeds, by equality on a hand-made table."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from frugal_search.report import compare_with_baselines
from frugal_search.report._markdown import verdict_sentences
from frugal_search.report._seeds import best_baseline_runs, seed_summary, verdict

NAN = math.nan
MIB = 2**20


def table() -> pd.DataFrame:
    rows = [
        # number, state, outcome, baseline, baseline_lr, seed_of, eval_loss, state_mib
        (0, "COMPLETE", "ok", "galore", 0.001, NAN, 2.5, 2.0),
        (1, "COMPLETE", "ok", "galore", 0.003, NAN, 2.1, 2.0),
        (2, "PRUNED", "diverged", "galore", 0.01, NAN, NAN, 2.0),
        (3, "PRUNED", "diverged", "badam", 0.001, NAN, NAN, 1.5),
        (4, "COMPLETE", "ok", None, NAN, NAN, 2.0, 0.5),  # a searched trial
        (5, "COMPLETE", "ok", None, NAN, 4.0, 2.2, 0.5),  # its seeds
        (6, "COMPLETE", "ok", None, NAN, 4.0, 2.4, 0.5),
        (7, "COMPLETE", "ok", None, NAN, 1.0, 2.15, 2.0),  # a seed of galore's best run
        (8, "COMPLETE", "ok", None, NAN, 1.0, 2.05, 2.0),
    ]
    frame = pd.DataFrame(
        rows, columns=["number", "state", "outcome", "baseline", "baseline_lr", "seed_of", "eval_loss", "state_mib"]
    )
    frame["state_bytes"] = frame["state_mib"] * MIB
    return frame


def test_seed_summary_is_the_mean_and_sample_spread_of_each_trial_and_its_replicas() -> None:
    summary = seed_summary(table()).set_index("number")
    assert list(summary.index) == [1, 4]
    assert summary.loc[4, "seeds"] == 3 and summary.loc[4, "mean"] == pytest.approx(2.2)
    assert summary.loc[4, "std"] == pytest.approx(0.2) and summary.loc[4, "max"] == pytest.approx(2.4)
    assert summary.loc[1, "mean"] == pytest.approx(2.1) and summary.loc[1, "std"] == pytest.approx(0.05)


def test_a_diverged_seed_makes_the_mean_infinite() -> None:
    frame = table()
    frame.loc[6, ["state", "outcome", "eval_loss"]] = ["PRUNED", "diverged", NAN]
    assert seed_summary(frame).set_index("number").loc[4, "mean"] == math.inf


def test_each_baseline_is_its_best_run_of_the_grid() -> None:
    best = best_baseline_runs(table()).set_index("baseline")
    assert best.loc["galore", "number"] == 1 and best.loc["galore", "lr"] == 0.003
    assert best.loc["galore", "grid"] == "lr 0.001: 2.5, lr 0.003: 2.1, lr 0.01: diverged"
    assert best.loc["badam", "number"] == 3 and math.isnan(best.loc["badam", "eval_loss"])


def test_a_best_run_on_an_edge_of_the_grid_is_said() -> None:
    frame = table()
    frame.loc[2, ["state", "outcome", "eval_loss"]] = ["COMPLETE", "ok", 2.0]  # lr 0.01 is best now
    grid = best_baseline_runs(frame).set_index("baseline").loc["galore", "grid"]
    assert grid == "lr 0.001: 2.5, lr 0.003: 2.1, lr 0.01: 2 (best on an edge of the grid: its best lr may lie further out)"


def test_a_difference_inside_the_larger_spread_is_a_tie() -> None:
    assert verdict(2.2, 0.2, 2.1, 0.05) == "ties"
    assert verdict(2.2, 0.05, 2.4, 0.1) == "beats"
    assert verdict(2.6, 0.05, 2.4, 0.1) == "loses"
    assert verdict(2.2, NAN, 2.3, NAN) == "beats"  # one seed each: the sign only
    assert verdict(2.2, 0.1, math.inf, NAN) is None


def test_comparison_uses_means_over_seeds_and_says_the_verdict_in_words() -> None:
    frame = table()
    comparison = compare_with_baselines(frame, frame.loc[4]).set_index("baseline")
    galore = comparison.loc["galore"]
    assert galore["number"] == 1 and galore["seeds"] == 3 and galore["chosen_seeds"] == 3
    assert galore["loss_difference"] == pytest.approx(0.1) and galore["verdict"] == "ties"
    assert galore["memory_ratio"] == pytest.approx(0.25)
    assert comparison.loc["badam", "verdict"] is None or math.isnan(comparison.loc["badam", "loss_difference"])
    sentences = verdict_sentences(4, comparison.reset_index())
    assert sentences == ["- #4 and galore (lr 0.003) are indistinguishable at 3 seeds (difference 0.1, spread 0.2)."]
