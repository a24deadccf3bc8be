"""The progress bar counts searched trials as the stop rule does (infeasible ones take no place) and
every reference run once, with the phases running named."""

from __future__ import annotations

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from frugal_search.search.progress import StudyProgressBar, study_progress
from frugal_search.search.study import count_finished_trials

DISTRIBUTIONS = {"lr": FloatDistribution(1e-4, 1e-1, log=True)}


def _trial(state: TrialState, values: list[float] | None, **user_attrs) -> optuna.trial.FrozenTrial:
    return create_trial(state=state, values=values, params={"lr": 1e-3}, distributions=DISTRIBUTIONS, user_attrs=user_attrs)


def test_searched_trials_count_as_the_stop_rule_counts_them() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["minimize", "minimize"])
    for loss, mib in ((2.0, 1.0), (1.9, 2.0), (2.5, 0.5)):
        study.add_trial(_trial(TrialState.COMPLETE, [loss, mib], outcome="ok"))
    for _ in range(4):  # over the memory budget: recorded, never run, no place taken
        study.add_trial(_trial(TrialState.PRUNED, None, outcome="infeasible"))
    study.add_trial(_trial(TrialState.COMPLETE, [1.8, 6.5], outcome="ok", baseline="adamw", baseline_lr=1e-3))
    study.add_trial(_trial(TrialState.PRUNED, None, outcome="diverged"))  # a scored trial that diverged counts

    bar = StudyProgressBar(study, target=10)
    try:
        bar.refresh()
        # 4 searched places taken, plus the adamw run as a reference of its own
        assert count_finished_trials(study) == 4
        assert (bar.bar.n, bar.bar.total) == (4 + 1, 10 + 1)
    finally:
        bar.close()


def test_the_bar_stops_at_its_target() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["minimize", "minimize"])
    for index in range(5):
        study.add_trial(_trial(TrialState.COMPLETE, [2.0 - index / 10, 1.0 + index], outcome="ok"))
    bar = StudyProgressBar(study, target=3)
    try:
        bar.refresh()
        assert bar.bar.n == 3
    finally:
        bar.close()


def test_the_bar_counts_every_run_and_names_the_phases_running() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["minimize", "minimize"])
    study.add_trial(_trial(TrialState.COMPLETE, [2.0, 1.0], outcome="ok"))  # a searched trial
    for lr in (1e-3, 1e-2):  # a baseline's grid: one run finished, one failed then ran again
        study.add_trial(_trial(TrialState.COMPLETE, [1.9, 2.0], outcome="ok", baseline="galore", baseline_lr=lr))
    study.add_trial(_trial(TrialState.FAIL, None, outcome="error", baseline="galore", baseline_lr=1e-2))
    study.add_trial(_trial(TrialState.COMPLETE, [2.1, 1.0], outcome="ok", seed_of=0, seed=1))
    rung = {"rung_of": 0, "rung_factor": 4}
    study.add_trial(_trial(TrialState.COMPLETE, [1.6, 1.0], outcome="ok", seed=0, **rung))
    study.enqueue_trial({}, user_attrs={"seed": 1, **rung})  # waiting: known, not done
    running = study.ask()  # the enqueued rung run starts
    assert running.user_attrs["rung_of"] == 0

    progress = study_progress(study.get_trials(), target=5, finished_searched=count_finished_trials(study))
    # 5 searched places + galore at 2 lrs + 1 seed + 2 rung runs; done: 1 searched + 2 + 1 + 1
    assert (progress.done, progress.total) == (5, 10)
    assert progress.phases == ("confirmation rung",)
    bar = StudyProgressBar(study, target=5)
    try:
        bar.refresh()
        assert (bar.bar.n, bar.bar.total) == (5, 10) and "[confirmation rung]" in bar.bar.desc
    finally:
        bar.close()


def test_the_bar_shows_the_proxy_front_not_the_longer_rung_runs() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["minimize", "minimize"])
    for loss, mib in ((2.0, 1.0), (1.9, 2.0), (2.5, 0.5), (2.6, 3.0)):  # the first three are the front
        study.add_trial(_trial(TrialState.COMPLETE, [loss, mib], outcome="ok"))
    study.add_trial(_trial(TrialState.COMPLETE, [1.7, 2.4], outcome="ok", baseline="galore", baseline_lr=0.03))
    # 4x longer runs reach lower losses than any proxy run: they would dominate the whole front
    for seed in range(3):
        study.add_trial(_trial(TrialState.COMPLETE, [1.5, 0.4], outcome="ok", rung_of=0, rung_factor=4, seed=seed))
    study.add_trial(_trial(TrialState.COMPLETE, [1.6, 1.0], outcome="ok", seed_of=0, seed=1))

    bar = StudyProgressBar(study, target=4)
    try:
        bar.refresh()
        assert bar.bar.postfix == "front=3"
    finally:
        bar.close()
