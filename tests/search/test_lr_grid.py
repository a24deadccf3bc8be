"""A baseline's lr grid grows past an edge that holds its best run, so it is compared at its best lr."""

from __future__ import annotations

import math
from pathlib import Path

from frugal_search.cli import main as cli_main
from frugal_search.search import run_search
from frugal_search.search.config import load_study_config
from frugal_search.search.study import BASELINE_GRID_EXTENSIONS, extend_past_edge_best

from tests.search.test_runner import load, study_text, write_study

GRID = (1e-3, 2e-3, 4e-3, 8e-3)


def test_a_best_inside_the_grid_keeps_the_grid() -> None:
    losses = {1e-3: 2.5, 2e-3: 2.1, 4e-3: 2.3, 8e-3: 2.4}
    assert extend_past_edge_best(GRID, losses) == GRID


def test_a_best_on_the_top_edge_adds_a_point_one_step_above() -> None:
    losses = {1e-3: 2.5, 2e-3: 2.4, 4e-3: 2.3, 8e-3: 2.2}
    assert extend_past_edge_best(GRID, losses) == (*GRID, 0.016)
    # once that point ran and is better still, one more; then the cap holds
    losses[0.016] = 2.1
    assert extend_past_edge_best(GRID, losses) == (*GRID, 0.016, 0.032)
    losses[0.032] = 2.0
    assert BASELINE_GRID_EXTENSIONS == 2 and extend_past_edge_best(GRID, losses) == (*GRID, 0.016, 0.032)


def test_a_best_on_the_bottom_edge_adds_a_point_below_and_a_worse_one_stops_it() -> None:
    losses = {1e-3: 2.0, 2e-3: 2.4, 4e-3: 2.5, 8e-3: math.inf}  # the highest lr diverged
    assert extend_past_edge_best(GRID, losses) == (0.0005, *GRID)
    losses[0.0005] = 2.2  # worse than 1e-3: the best is inside now
    assert extend_past_edge_best(GRID, losses) == (0.0005, *GRID)


def test_nothing_grows_until_every_point_has_run_or_when_all_diverged() -> None:
    assert extend_past_edge_best(GRID, {1e-3: 2.5, 2e-3: 2.4, 4e-3: 2.3}) == GRID
    assert extend_past_edge_best(GRID, dict.fromkeys(GRID, math.inf)) == GRID
    assert extend_past_edge_best((1e-3,), {1e-3: 2.0}) == (1e-3,)


def test_a_study_runs_the_extra_points_once_and_they_take_no_place_among_the_trials(tmp_path: Path) -> None:
    # lrs far too small for 6 steps: the loss falls with the lr, so the top edge holds the best run
    text = study_text(name="edge", trials=1, baselines='["adamw"]', extra_study="baseline_lrs = [1e-6, 1e-5]")
    path = write_study(tmp_path, text)
    study = run_search(load_study_config(path), progress=False)
    runs = {t.user_attrs["baseline_lr"]: t.values[0] for t in study.get_trials() if t.user_attrs["baseline"]}
    assert sorted(runs) == [1e-6, 1e-5, 1e-4, 1e-3]  # two steps of x10 past the edge
    assert runs[1e-3] < runs[1e-4] < runs[1e-5] < runs[1e-6]
    assert sum(1 for t in study.get_trials() if not t.user_attrs["baseline"]) == 1
    assert cli_main(["run", str(path), "--no-progress"]) == 0
    assert len(load(path).get_trials()) == len(study.get_trials())  # a finished study adds nothing


def test_a_baseline_over_the_memory_budget_still_grows_its_grid() -> None:
    import optuna

    from frugal_search.search.study import baseline_grid_losses

    study = optuna.create_study(directions=["minimize", "minimize"])
    for lr, loss in ((1e-3, 2.5), (1e-2, 2.2)):
        attrs = {"baseline": "adamw", "baseline_lr": lr, "over_budget": True, "outcome": "ok"}
        study.add_trial(optuna.trial.create_trial(values=[loss, 6.5], user_attrs=attrs))
    losses = baseline_grid_losses(study, "adamw")
    assert losses == {1e-3: 2.5, 1e-2: 2.2}
    assert extend_past_edge_best((1e-3, 1e-2), losses) == (1e-3, 1e-2, 0.1)
