"""The Pareto front and the hypervolume against brute-force and Optuna's own computation."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pandas as pd
import pytest
from optuna._hypervolume import compute_hypervolume

from frugal_search.report import (
    hypervolume_2d,
    hypervolume_history,
    hypervolume_reference_point,
    pareto_front,
    trials_table,
)


def brute_force_front(table: pd.DataFrame) -> list[int]:
    """Trial numbers that no other finished feasible trial dominates, by an O(n^2) double loop."""
    rows = [
        (int(r.number), float(r.state_mib), float(r.eval_loss))
        for r in table.itertuples()
        if r.state == "COMPLETE" and not r.over_budget and math.isfinite(r.eval_loss) and math.isfinite(r.state_mib)
    ]
    front = []
    for number, mem, loss in rows:
        dominated = any(
            m2 <= mem and l2 <= loss and (m2 < mem or l2 < loss) for n2, m2, l2 in rows if n2 != number
        )
        if not dominated:
            front.append((mem, loss, number))
    return [number for _, _, number in sorted(front)]


def random_table(seed: int, count: int) -> pd.DataFrame:
    rng = random.Random(seed)
    rows = []
    for number in range(count):
        state = rng.choice(["COMPLETE"] * 4 + ["PRUNED", "FAIL"])
        # coarse values: ties in memory, ties in loss and exact duplicates are frequent
        mem = rng.choice([0.5, 1.0, 1.0, 2.0, 3.0, 4.0]) if state != "FAIL" else math.nan
        loss = rng.choice([2.0, 2.5, 2.5, 3.0, 3.5]) if state == "COMPLETE" else math.nan
        # a baseline over the memory budget ran (COMPLETE) but is not feasible
        over_budget = state == "COMPLETE" and rng.random() < 0.15
        rows.append({"number": number, "state": state, "state_mib": mem, "eval_loss": loss, "over_budget": over_budget})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("seed", range(20))
def test_front_equals_brute_force_with_ties_and_duplicates(seed: int) -> None:
    table = random_table(seed, count=5 + seed * 3)
    front = pareto_front(table)
    assert list(front["number"]) == brute_force_front(table)
    # sorted by memory, loss strictly falling along the front except for exact duplicates
    assert list(front["state_mib"]) == sorted(front["state_mib"])


def test_front_keeps_exact_duplicates_and_drops_pruned_points() -> None:
    table = pd.DataFrame(
        {
            "number": [0, 1, 2, 3, 4],
            "state": ["COMPLETE", "COMPLETE", "COMPLETE", "PRUNED", "COMPLETE"],
            "state_mib": [1.0, 1.0, 2.0, 0.1, 1.0],
            "eval_loss": [3.0, 3.0, 2.0, 1.0, 3.5],
        }
    )
    assert list(pareto_front(table)["number"]) == [0, 1, 2]


def test_front_of_table_without_finished_trials_is_empty() -> None:
    table = pd.DataFrame(
        {"number": [0], "state": ["FAIL"], "state_mib": [math.nan], "eval_loss": [math.nan], "over_budget": [False]}
    )
    assert pareto_front(table).empty


@pytest.mark.parametrize("seed", range(10))
def test_hypervolume_2d_matches_optuna(seed: int) -> None:
    rng = np.random.default_rng(seed)
    points = rng.uniform(0, 1, size=(int(rng.integers(1, 30)), 2))
    points[::3] = points[0]  # duplicates
    reference = (1.05, 0.95)  # some points lie beyond it in y and must add nothing
    inside = points[(points[:, 0] < reference[0]) & (points[:, 1] < reference[1])]
    expected = compute_hypervolume(inside, np.array(reference)) if len(inside) else 0.0
    assert hypervolume_2d(points, reference) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_reference_point_is_ten_percent_beyond_the_worst_feasible_values() -> None:
    table = random_table(3, 40)
    feasible = table[(table["state"] == "COMPLETE") & ~table["over_budget"]]
    mem, loss = hypervolume_reference_point(table)
    assert mem == pytest.approx(1.1 * feasible["state_mib"].max())
    assert loss == pytest.approx(1.1 * feasible["eval_loss"].max())


def test_hypervolume_history_recomputes_each_prefix() -> None:
    table = random_table(7, 30)
    reference = hypervolume_reference_point(table)
    history = hypervolume_history(table)
    assert list(history["number"]) == list(range(30))
    for number, volume in zip(history["number"], history["hypervolume"]):
        prefix = table[(table["number"] <= number) & (table["state"] == "COMPLETE") & ~table["over_budget"]]
        points = prefix[["state_mib", "eval_loss"]].to_numpy()
        expected = compute_hypervolume(points, np.array(reference)) if len(points) else 0.0
        assert volume == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert all(a <= b + 1e-12 for a, b in itertools.pairwise(history["hypervolume"]))


def test_front_from_a_study_matches_brute_force(make_study, fill_random) -> None:
    study = make_study()
    fill_random(study, count=60, seed=11)
    table = trials_table(study)
    assert set(table["outcome"]) == {"ok", "diverged", "infeasible", "error"}
    assert list(pareto_front(table)["number"]) == brute_force_front(table)
