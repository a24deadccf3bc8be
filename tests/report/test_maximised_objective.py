"""A report whose figure is maximised (accuracy): the front, the best trial, the baselines' best runs,
seeds and verdicts go the other way, and the words and plots name the figure. By equality on
hand-made tables and a hand-filled study."""

from __future__ import annotations

import io
import math
import warnings

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from frugal_search.report import (
    LOSS_OBJECTIVE,
    Objective,
    best_under_budget,
    compare_with_baselines,
    draw_pareto,
    pareto_front,
    study_objective,
    trials_table,
    verdict,
    write_report,
)
from frugal_search.report._front import hypervolume_reference_point
from frugal_search.report._seeds import best_baseline_runs, seed_summary
from frugal_search.search import pareto_front_indices

NAN = math.nan
MIB = 2**20
ACCURACY = Objective(name="accuracy", direction="maximize")


def table() -> pd.DataFrame:
    rows = [
        # number, state, outcome, baseline, baseline_lr, seed_of, accuracy, state_mib
        (0, "COMPLETE", "ok", "adamw", 0.001, NAN, 0.60, 6.0),
        (1, "COMPLETE", "ok", "adamw", 0.003, NAN, 0.70, 6.0),
        (2, "PRUNED", "diverged", "adamw", 0.01, NAN, NAN, 6.0),
        (3, "COMPLETE", "ok", None, NAN, NAN, 0.50, 0.5),  # on the front: least memory
        (4, "COMPLETE", "ok", None, NAN, NAN, 0.65, 1.0),  # on the front
        (5, "COMPLETE", "ok", None, NAN, NAN, 0.55, 1.5),  # beaten by #4 (more memory, lower accuracy)
        (6, "COMPLETE", "ok", None, NAN, 4.0, 0.61, 1.0),  # seeds of #4
        (7, "COMPLETE", "ok", None, NAN, 4.0, 0.63, 1.0),
    ]
    frame = pd.DataFrame(
        rows, columns=["number", "state", "outcome", "baseline", "baseline_lr", "seed_of", "accuracy", "state_mib"]
    )
    frame["state_bytes"] = frame["state_mib"] * MIB
    frame["eval_loss"] = 3.0 - frame["accuracy"]  # a loss that agrees, so nothing is read from it by mistake
    frame.loc[4, "eval_loss"] = 9.0
    frame["over_budget"] = False
    return frame


def test_the_front_keeps_the_highest_accuracy_at_each_memory() -> None:
    front = pareto_front(table(), ACCURACY)
    assert list(front["number"]) == [3, 4, 1]
    # the search stage's function agrees, with the maximised coordinate named
    points = [(0.5, 0.50), (1.0, 0.65), (1.5, 0.55)]
    assert pareto_front_indices(points, directions=("minimize", "maximize")) == [0, 1]
    assert pareto_front_indices(points) == [0]  # read as a loss, the lowest value would win


def test_best_baseline_runs_seeds_and_verdicts_follow_the_direction() -> None:
    frame = table()
    best = best_baseline_runs(frame, ACCURACY).set_index("baseline")
    assert best.loc["adamw", "number"] == 1 and best.loc["adamw", "accuracy"] == pytest.approx(0.70)
    assert best_under_budget(frame, memory_budget_bytes=2 * MIB, objective=ACCURACY)["number"] == 4
    summary = seed_summary(frame, ACCURACY).set_index("number")
    assert summary.loc[4, "mean"] == pytest.approx(0.63) and summary.loc[4, "seeds"] == 3
    frame.loc[7, ["state", "outcome", "accuracy"]] = ["PRUNED", "diverged", NAN]
    assert seed_summary(frame, ACCURACY).set_index("number").loc[4, "mean"] == -math.inf  # the worst accuracy
    assert verdict(0.8, NAN, 0.7, NAN, maximize=True) == "beats"
    assert verdict(0.8, NAN, 0.7, NAN) == "loses"  # as losses
    comparison = compare_with_baselines(table(), table().loc[4], ACCURACY).set_index("baseline")
    assert comparison.loc["adamw", "accuracy"] == pytest.approx(0.70)
    assert comparison.loc["adamw", "loss_difference"] == pytest.approx(0.63 - 0.70)
    assert comparison.loc["adamw", "verdict"] == "loses"


def test_the_hypervolume_reference_negates_a_maximised_figure() -> None:
    memory, figure = hypervolume_reference_point(table(), ACCURACY)
    assert memory == pytest.approx(1.1 * 6.0)
    assert figure == pytest.approx(-0.50 + 0.1 * 0.50)  # 0.9 x the lowest accuracy, negated


def _study() -> optuna.Study:
    from frugal_search.partition import Partition

    study = optuna.create_study(directions=["maximize", "minimize"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["accuracy", "state_mib"])
    for accuracy, mib, baseline in ((0.7, 6.0, "adamw"), (0.5, 0.5, None), (0.65, 1.0, None), (0.55, 1.5, None)):
        split = Partition.paper(0.25).to_dict()
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.COMPLETE,
                values=[accuracy, mib],
                user_attrs={
                    "outcome": "ok", "split": split, "summary": "s", "baseline": baseline, "state_bytes": mib * MIB,
                    "eval_loss": 2.0, "accuracy": accuracy, "accuracy_curve": [[0, 0.1], [4, accuracy]],
                    "eval_curve": [[0, 3.0], [4, 2.0]],
                },
            )
        )
    return study


def test_a_study_with_accuracy_reports_it_with_higher_better(tmp_path) -> None:
    study = _study()
    assert study_objective(study) == ACCURACY
    table = trials_table(study)
    assert list(table["accuracy"]) == [0.7, 0.5, 0.65, 0.55]
    text = write_report(study, tmp_path).read_text()
    assert "## Pareto front: optimizer state against accuracy" in text
    assert "accuracy: higher is better" in text and "highest accuracy overall" in text
    assert "lower is better" not in text and "lowest loss" not in text
    assert list(pd.read_csv(tmp_path / "pareto.csv")["number"]) == [1, 2, 0]
    buffer = io.BytesIO()
    draw_pareto(table, pareto_front(table, ACCURACY), buffer, objective=ACCURACY)
    assert buffer.getvalue()[:4] == b"\x89PNG"


def test_the_default_objective_is_eval_loss_minimised() -> None:
    assert LOSS_OBJECTIVE == Objective("eval_loss", "minimize", "state_mib")
    assert LOSS_OBJECTIVE.better == "lower is better" and ACCURACY.better == "higher is better"
