"""trials_table and the numbers derived from it, checked value by value."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from frugal_search.report import (
    TRIAL_COLUMNS,
    adamw_state_bytes,
    best_under_budget,
    compare_with_baselines,
    eval_curves,
    objective_importances,
    outcome_counts,
    pareto_front,
    trials_table,
)

MIB = 2**20


@pytest.fixture
def small_study(make_study, add_trial_to):
    study = make_study()
    add_trial_to(study, outcome="ok", state_bytes=8 * MIB, eval_loss=3.0, baseline="adamw")
    add_trial_to(study, outcome="ok", state_bytes=2 * MIB, eval_loss=3.4, params={"density": 0.1})
    add_trial_to(study, outcome="diverged", state_bytes=1 * MIB, eval_loss=math.nan, baseline="galore",
                 reason="loss is NaN at step 3")
    add_trial_to(study, outcome="infeasible", state_bytes=20 * MIB, reason="over the budget")
    add_trial_to(study, outcome="error", state_bytes=None, reason="RuntimeError: boom")
    add_trial_to(study, outcome="ok", state_bytes=4 * MIB, eval_loss=3.1, params={"density": 0.5})
    add_trial_to(study, outcome="ok", state_bytes=5 * MIB, eval_loss=3.2, params={"density": 0.6})
    return study


def test_table_has_one_row_per_trial_with_contract_values(small_study) -> None:
    table = trials_table(small_study)
    assert list(table.columns) == list(TRIAL_COLUMNS) + ["param_density"]
    assert list(table["number"]) == list(range(7))
    assert list(table["state"]) == ["COMPLETE", "COMPLETE", "PRUNED", "PRUNED", "FAIL", "COMPLETE", "COMPLETE"]
    assert list(table["outcome"]) == ["ok", "ok", "diverged", "infeasible", "error", "ok", "ok"]
    assert table.loc[1, "state_mib"] == 2.0 and table.loc[1, "eval_loss"] == 3.4
    assert table.loc[3, "state_mib"] == 20.0 and math.isnan(table.loc[3, "eval_loss"])
    assert math.isnan(table.loc[4, "state_mib"])
    assert table.loc[4, "reason"] == "RuntimeError: boom"
    # % of AdamW comes from the adamw baseline trial (8 MiB)
    assert adamw_state_bytes(small_study) == 8 * MIB
    assert list(table["state_pct_of_adamw"].fillna(-1)) == [100.0, 25.0, 12.5, 250.0, -1, 50.0, 62.5]
    assert table.loc[1, "param_density"] == 0.1 and math.isnan(table.loc[0, "param_density"])


def test_killed_worker_trial_without_attributes_reads_as_error(make_study) -> None:
    import optuna

    study = make_study()
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    table = trials_table(study)
    assert table.loc[0, "outcome"] == "error"
    assert math.isnan(table.loc[0, "state_pct_of_adamw"])


def test_empty_study_gives_empty_table_with_all_columns(make_study) -> None:
    table = trials_table(make_study())
    assert table.empty and list(table.columns) == list(TRIAL_COLUMNS)
    assert pareto_front(table).empty


def test_best_under_budget_is_lowest_loss_within_memory(small_study) -> None:
    table = trials_table(small_study)
    assert int(best_under_budget(table, memory_budget_bytes=None)["number"]) == 0
    assert int(best_under_budget(table, memory_budget_bytes=5 * MIB)["number"]) == 5
    assert int(best_under_budget(table, memory_budget_bytes=4 * MIB)["number"]) == 5
    assert int(best_under_budget(table, memory_budget_bytes=4 * MIB - 1)["number"]) == 1
    # the diverged trial at 1 MiB has no loss, so nothing fits under 1.5 MiB
    assert best_under_budget(table, memory_budget_bytes=int(1.5 * MIB)) is None


def test_best_under_budget_matches_brute_force(make_study, fill_random) -> None:
    study = make_study()
    fill_random(study, count=80, seed=5)
    table = trials_table(study)
    for budget in [0.5 * MIB, 1 * MIB, 2.2 * MIB, 3 * MIB, 100 * MIB]:
        fits = [r for r in table.itertuples() if r.state == "COMPLETE" and r.state_bytes <= budget]
        expected = min(fits, key=lambda r: (r.eval_loss, r.state_bytes, r.number)).number if fits else None
        got = best_under_budget(table, memory_budget_bytes=int(budget))
        assert (None if got is None else int(got["number"])) == expected


def test_comparison_with_each_baseline(small_study) -> None:
    table = trials_table(small_study)
    chosen = table.loc[5]  # 4 MiB, loss 3.1
    comparison = compare_with_baselines(table, chosen)
    assert list(comparison["baseline"]) == ["adamw", "galore"]
    adamw = comparison.iloc[0]
    assert adamw["loss_difference"] == pytest.approx(0.1)
    assert adamw["memory_ratio"] == pytest.approx(0.5)
    galore = comparison.iloc[1]
    assert galore["outcome"] == "diverged" and math.isnan(galore["loss_difference"])
    assert galore["memory_ratio"] == pytest.approx(4.0)


def test_outcome_counts(small_study) -> None:
    assert outcome_counts(trials_table(small_study)) == {"ok": 4, "diverged": 1, "error": 1, "infeasible": 1}


def test_eval_curves_are_front_and_baselines(small_study) -> None:
    table = trials_table(small_study)
    front = pareto_front(table)
    assert list(front["number"]) == [1, 5, 0]
    curves = eval_curves(small_study, front)
    # trial 2 (diverged galore baseline) stored NaN as its last eval: still drawn, it is a baseline
    assert [c.number for c in curves] == [0, 1, 2, 5]
    assert [c.label for c in curves] == ["#0 adamw", "#1", "#2 galore", "#5"]
    assert curves[1].steps == [0, 10] and curves[1].losses == [10.0, 3.4]
    assert [c.on_front for c in curves] == [True, True, False, True]


def test_importance_says_too_few_trials(small_study) -> None:
    entries = objective_importances(small_study)
    assert [e.objective for e in entries] == ["eval_loss", "state_mib"]
    assert all(e.message and "too few" in e.message and not e.importances for e in entries)


def test_importance_finds_the_parameter_that_drives_each_objective(make_study, add_trial_to) -> None:
    study = make_study()
    for i in range(24):
        density = (i + 0.5) / 24
        mode = ["blocks", "svd", "columns"][i % 3]
        # memory follows density only; loss follows mode only
        loss = {"blocks": 3.0, "svd": 3.5, "columns": 4.0}[mode]
        add_trial_to(study, outcome="ok", state_bytes=density * 8 * MIB, eval_loss=loss,
                     params={"density": density, "mode": mode})
    entries = {e.objective: e for e in objective_importances(study)}
    assert entries["state_mib"].message is None
    assert max(entries["state_mib"].importances, key=entries["state_mib"].importances.get) == "density"
    assert max(entries["eval_loss"].importances, key=entries["eval_loss"].importances.get) == "mode"
    assert sum(entries["eval_loss"].importances.values()) == pytest.approx(1.0)


def test_table_is_a_dataframe_sorted_by_number(small_study) -> None:
    table = trials_table(small_study)
    assert isinstance(table, pd.DataFrame) and table["number"].is_monotonic_increasing
