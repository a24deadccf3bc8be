"""The numbers behind curves.png and importance.png, the best trial under a budget, baselines.

Pure functions of the study or of `trials_table`; the plots and the Markdown only draw them.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from frugal_search.report._objective import LOSS_OBJECTIVE, Objective
from frugal_search.report._seeds import best_baseline_runs, seed_summary, verdict
from frugal_search.report._table import feasible_rows
from frugal_search.search import is_repeat

if TYPE_CHECKING:
    import optuna

logger = logging.getLogger(__name__)

# Objective names of a study without metric names, in the order of its values (docs/ARCHITECTURE.md).
OBJECTIVE_NAMES: tuple[str, str] = ("eval_loss", "state_mib")

# Fewer COMPLETE trials than this give importances that are noise (PED-ANOVA compares the best
# 10% of trials with the rest), so the report says so instead of drawing bars.
MIN_TRIALS_FOR_IMPORTANCE = 10


@dataclass(frozen=True)
class EvalCurve:
    """The eval-loss curve of one trial, as drawn in curves.png."""

    number: int
    label: str
    steps: list[int]
    losses: list[float]
    on_front: bool
    baseline: str | None


@dataclass(frozen=True)
class ObjectiveImportance:
    """Parameter importances for one objective, or the reason there are none."""

    objective: str
    importances: dict[str, float] = field(default_factory=dict)
    message: str | None = None


def trial_label(number: int, baseline: str | None) -> str:
    """Return how a trial is named on plots and in tables: ``#7`` or ``#0 adamw``."""
    return f"#{number} {baseline}" if baseline else f"#{number}"


# the stored curve of each figure (trial user attributes, from the proxy result)
CURVE_ATTRS: dict[str, str] = {"eval_loss": "eval_curve", "accuracy": "accuracy_curve", "macro_f1": "macro_f1_curve"}


def eval_curves(
    study: optuna.Study,
    front: pd.DataFrame,
    *,
    baseline_runs: set[int] | None = None,
    objective: Objective = LOSS_OBJECTIVE,
) -> list[EvalCurve]:
    """Return the eval curves (of ``objective``'s figure: eval loss, accuracy, macro-F1) of the
    front's trials and of the baseline runs that have one (``EvalCurve.losses`` holds the figure).

    ``baseline_runs``: the numbers of the baseline trials to draw (each baseline's best run of its
    lr grid); None draws every baseline trial. Sorted by trial number. Baseline trials appear
    whatever their state (a diverged baseline's curve shows where it went wrong); trials without a
    stored curve and extra-seed replicas are left out.
    """
    front_numbers = set(int(n) for n in front["number"])
    curves: list[EvalCurve] = []
    for frozen in study.get_trials(deepcopy=False):
        if is_repeat(frozen.user_attrs):
            continue
        baseline = frozen.user_attrs.get("baseline")
        on_front = frozen.number in front_numbers
        drawn_baseline = bool(baseline) and (baseline_runs is None or frozen.number in baseline_runs)
        if not (on_front or drawn_baseline):
            continue
        curve = frozen.user_attrs.get(CURVE_ATTRS.get(objective.name, "eval_curve")) or []
        points = [(int(step), float(loss)) for step, loss in curve]
        if not points:
            continue
        curves.append(
            EvalCurve(
                number=frozen.number,
                label=trial_label(frozen.number, baseline),
                steps=[step for step, _ in points],
                losses=[loss for _, loss in points],
                on_front=on_front,
                baseline=baseline,
            )
        )
    return sorted(curves, key=lambda curve: curve.number)


def objective_importances(
    study: optuna.Study, *, min_trials: int = MIN_TRIALS_FOR_IMPORTANCE
) -> list[ObjectiveImportance]:
    """Return, for each objective, how much each search parameter matters (PED-ANOVA, sums to 1).

    Uses ``optuna.importance.get_param_importances`` with one target per objective over the
    COMPLETE trials that have parameters. With fewer than ``min_trials`` of them, or when Optuna
    cannot compute importances, the entry carries a ``message`` in words instead.
    """
    import optuna

    complete = [
        t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if t.params
    ]
    results: list[ObjectiveImportance] = []
    for index, objective in enumerate(study.metric_names or OBJECTIVE_NAMES):
        if len(complete) < min_trials:
            message = (
                f"too few completed trials with search parameters to rank them "
                f"({len(complete)}, need at least {min_trials})"
            )
            results.append(ObjectiveImportance(objective=objective, message=message))
            continue
        try:
            with warnings.catch_warnings():
                # Optuna warns about small regimes and experimental APIs; the message says enough
                warnings.simplefilter("ignore")
                importances = optuna.importance.get_param_importances(
                    study, target=lambda frozen, i=index: frozen.values[i]
                )
        except (RuntimeError, ValueError) as error:
            logger.info("no importances for %s: %s", objective, error)
            results.append(
                ObjectiveImportance(objective=objective, message=f"Optuna could not rank the parameters: {error}")
            )
            continue
        results.append(
            ObjectiveImportance(objective=objective, importances={k: float(v) for k, v in importances.items()})
        )
    return results


def best_under_budget(
    table: pd.DataFrame, *, memory_budget_bytes: int | None, objective: Objective = LOSS_OBJECTIVE
) -> pd.Series | None:
    """Return the row of the best feasible trial (lowest loss, or highest accuracy: ``objective``)
    with ``state_bytes <= memory_budget_bytes``.

    With no budget, the best feasible trial overall. Ties go to the smaller memory, then the
    lower trial number. None when no trial qualifies.
    """
    feasible = feasible_rows(table, objective)
    if memory_budget_bytes is not None:
        feasible = feasible[feasible["state_bytes"] <= memory_budget_bytes]
    if feasible.empty:
        return None
    ranked = feasible.assign(_ranked=objective.sign * feasible[objective.name])
    ordered = ranked.sort_values(["_ranked", "state_bytes", "number"], kind="stable").drop(columns="_ranked")
    return ordered.iloc[0]


def compare_with_baselines(
    table: pd.DataFrame, chosen: pd.Series, objective: Objective = LOSS_OBJECTIVE
) -> pd.DataFrame:
    """Return how ``chosen`` (a row of `trials_table`) compares with each baseline at its best lr.

    One row per baseline (its best run of the lr grid, `best_baseline_runs`): the figure column
    (``objective.name``, default ``eval_loss``) and ``spread`` are the mean and sample standard
    deviation over the seeds that ran (one seed: the run's value, spread NaN), ``seeds`` how many;
    ``chosen_loss`` is chosen's mean of the same figure and ``loss_difference`` = chosen mean -
    baseline mean (for a loss negative is better, for an accuracy positive); ``memory_ratio`` =
    chosen state bytes / baseline state bytes; ``verdict`` `verdict` of chosen against the baseline
    in the figure's direction (NaN: no verdict).
    """
    seeds = seed_summary(table, objective).set_index("number")
    by_number = table.set_index("number")

    def mean_spread_seeds(number: int) -> tuple[float, float, int]:
        if number in seeds.index:
            summary = seeds.loc[number]
            return float(summary["mean"]), float(summary["std"]), int(summary["seeds"])
        row = by_number.loc[number]
        loss = float(row[objective.name]) if row["state"] == "COMPLETE" else math.nan
        return loss, math.nan, 1

    chosen_mean, chosen_spread, chosen_seeds = mean_spread_seeds(int(chosen["number"]))
    rows = []
    for best in best_baseline_runs(table, objective).to_dict("records"):
        best = pd.Series(best)
        number = int(best["number"])
        found = math.isfinite(best[objective.name])
        mean, spread, count = mean_spread_seeds(number) if found else (math.nan, math.nan, 0)
        memory = float(by_number.loc[number, "state_bytes"])
        rows.append(
            {
                "baseline": best["baseline"],
                "number": number,
                "lr": best["lr"],
                "grid": best["grid"],
                "outcome": by_number.loc[number, "outcome"],
                objective.name: mean,
                "spread": spread,
                "seeds": count,
                "state_mib": float(by_number.loc[number, "state_mib"]),
                "chosen_loss": chosen_mean,
                "chosen_spread": chosen_spread,
                "chosen_seeds": chosen_seeds,
                "loss_difference": chosen_mean - mean,
                "memory_ratio": float(chosen["state_bytes"]) / memory if memory > 0 else math.nan,
                "verdict": verdict(chosen_mean, chosen_spread, mean, spread, maximize=objective.maximize),
            }
        )
    columns = [objective.name if column == "eval_loss" else column for column in COMPARISON_COLUMNS]
    return pd.DataFrame(rows, columns=columns)


COMPARISON_COLUMNS = [
    "baseline", "number", "lr", "grid", "outcome", "eval_loss", "spread", "seeds", "state_mib",
    "chosen_loss", "chosen_spread", "chosen_seeds", "loss_difference", "memory_ratio", "verdict",
]


def outcome_counts(table: pd.DataFrame) -> dict[str, int]:
    """Return how many trials ended with each outcome, most common first (ties by name)."""
    counts = table["outcome"].value_counts()
    return dict(sorted(((str(k), int(v)) for k, v in counts.items()), key=lambda kv: (-kv[1], kv[0])))
