"""The progress bar counts what the stop rule counts: infeasible trials and references take no place."""

from __future__ import annotations

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from frugal_search.search.progress import StudyProgressBar
from frugal_search.search.study import count_finished_trials

DISTRIBUTIONS = {"lr": FloatDistribution(1e-4, 1e-1, log=True)}


def _trial(state: TrialState, values: list[float] | None, **user_attrs) -> optuna.trial.FrozenTrial:
    return create_trial(state=state, values=values, params={"lr": 1e-3}, distributions=DISTRIBUTIONS, user_attrs=user_attrs)


def test_the_bar_counts_only_trials_that_take_a_place() -> None:
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
        assert bar.bar.n == count_finished_trials(study) == 4
        assert bar.bar.total == 10
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
