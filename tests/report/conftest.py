"""Studies filled by hand the way the search stage fills them (docs/ARCHITECTURE.md, search -> report)."""

from __future__ import annotations

import math
import random
import warnings
from typing import Any, Callable

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

MIB = 2**20
ADAMW_BYTES = 8 * MIB

optuna.logging.set_verbosity(optuna.logging.WARNING)

_DISTRIBUTIONS = {
    "density": FloatDistribution(0.0, 1.0),
    "mode": CategoricalDistribution(["blocks", "svd", "columns"]),
}


def new_study(storage: Any = None, name: str = "hand-made") -> optuna.Study:
    """Return an empty two-objective study named and oriented as the search stage makes it."""
    study = optuna.create_study(study_name=name, storage=storage, directions=["minimize", "minimize"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["eval_loss", "state_mib"])
    return study


def add_trial(
    study: optuna.Study,
    *,
    outcome: str,
    state_bytes: float | None,
    eval_loss: float | None = None,
    baseline: str | None = None,
    params: dict[str, Any] | None = None,
    split: dict[str, Any] | None = None,
    curve: list[list[float]] | None = None,
    reason: str = "",
    over_budget: bool = False,
    baseline_lr: float | None = None,
) -> None:
    """Add one finished trial following the trial-attribute contract for ``outcome``.

    The split is the baseline's partition for baseline trials, otherwise the paper's FRUGAL at the
    trial's ``density`` parameter (0.25 without one), as the search stage stores them.
    """
    from frugal_search.partition import Partition, baseline_partition

    partition = baseline_partition(baseline) if baseline else Partition.paper((params or {}).get("density", 0.25))
    state = {"ok": TrialState.COMPLETE, "error": TrialState.FAIL}.get(outcome, TrialState.PRUNED)
    attrs: dict[str, Any] = {
        "outcome": outcome,
        "reason": reason,
        "split": split if split is not None else partition.to_dict(),
        "summary": partition.summary(),
        "baseline": baseline,
        "baseline_lr": baseline_lr,
        "state_bytes": state_bytes,
        "eval_loss": eval_loss,
        "best_eval_loss": eval_loss,
        "eval_curve": curve if curve is not None else ([[0, 10.0], [10, eval_loss]] if eval_loss is not None else []),
        "tokens_per_s": 1000.0,
        "wall_s": 2.5,
        "steps": 10,
        "peak_memory_bytes": None,
        "over_budget": over_budget,
    }
    values = [eval_loss, state_bytes / MIB] if state == TrialState.COMPLETE else None
    params = params or {}
    study.add_trial(
        optuna.trial.create_trial(
            state=state,
            values=values,
            params=params,
            distributions={name: _DISTRIBUTIONS[name] for name in params},
            user_attrs=attrs,
        )
    )


def fill_random_trials(study: optuna.Study, *, count: int, seed: int) -> None:
    """Add ``count`` trials of mixed outcomes with tied and duplicated objective values."""
    rng = random.Random(seed)
    add_trial(study, outcome="ok", state_bytes=ADAMW_BYTES, eval_loss=3.0, baseline="adamw")
    for _ in range(count):
        outcome = rng.choice(["ok"] * 6 + ["diverged", "infeasible", "error"])
        # few distinct values, so equal memories, equal losses and duplicated points all occur
        memory = rng.choice([1, 2, 2.5, 3, 4, 6]) * MIB
        loss = rng.choice([3.0, 3.1, 3.2, 3.5, 4.0])
        params = {"density": rng.random(), "mode": rng.choice(["blocks", "svd", "columns"])}
        if outcome == "ok":
            add_trial(study, outcome=outcome, state_bytes=memory, eval_loss=loss, params=params)
        elif outcome == "diverged":
            add_trial(study, outcome=outcome, state_bytes=memory, eval_loss=math.nan, params=params,
                      reason="loss is NaN at step 7")
        elif outcome == "infeasible":
            add_trial(study, outcome=outcome, state_bytes=memory + 10 * MIB, params=params,
                      reason="optimizer state over the memory budget")
        else:
            add_trial(study, outcome=outcome, state_bytes=None, params=params, reason="RuntimeError: boom")


@pytest.fixture
def make_study() -> Callable[..., optuna.Study]:
    """Factory fixture: ``make_study(storage=None, name=...)`` returns an empty contract study."""
    return new_study


@pytest.fixture
def add_trial_to() -> Callable[..., None]:
    """The `add_trial` helper: ``add_trial_to(study, outcome=..., state_bytes=..., ...)``."""
    return add_trial


@pytest.fixture
def fill_random() -> Callable[..., None]:
    """The `fill_random` helper: ``fill_random(study, count=..., seed=...)``."""
    return fill_random_trials
