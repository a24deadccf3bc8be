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

from frugal_search.report._table import feasible_rows

if TYPE_CHECKING:
    import optuna

logger = logging.getLogger(__name__)

# Objective names in the order of the study's values (docs/ARCHITECTURE.md, "search -> report").
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


def eval_curves(study: optuna.Study, front: pd.DataFrame) -> list[EvalCurve]:
    """Return the eval-loss curves of the front's trials and of every baseline trial that has one.

    Sorted by trial number. Baseline trials appear whatever their state (a diverged baseline's
    curve shows where it went wrong); trials without a stored curve are left out.
    """
    front_numbers = set(int(n) for n in front["number"])
    curves: list[EvalCurve] = []
    for frozen in study.get_trials(deepcopy=False):
        baseline = frozen.user_attrs.get("baseline")
        on_front = frozen.number in front_numbers
        if not (on_front or baseline):
            continue
        curve = frozen.user_attrs.get("eval_curve") or []
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
    for index, objective in enumerate(OBJECTIVE_NAMES):
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


def best_under_budget(table: pd.DataFrame, *, memory_budget_bytes: int | None) -> pd.Series | None:
    """Return the row of the lowest-loss feasible trial with ``state_bytes <= memory_budget_bytes``.

    With no budget, the lowest-loss feasible trial overall. Ties go to the smaller memory, then the
    lower trial number. None when no trial qualifies.
    """
    feasible = feasible_rows(table)
    if memory_budget_bytes is not None:
        feasible = feasible[feasible["state_bytes"] <= memory_budget_bytes]
    if feasible.empty:
        return None
    ordered = feasible.sort_values(["eval_loss", "state_bytes", "number"], kind="stable")
    return ordered.iloc[0]


def compare_with_baselines(table: pd.DataFrame, chosen: pd.Series) -> pd.DataFrame:
    """Return how ``chosen`` (a row of `trials_table`) compares with each baseline trial.

    One row per baseline trial, by trial number, with ``loss_difference`` = chosen loss - baseline
    loss (negative: the chosen trial reached a lower loss) and ``memory_ratio`` = chosen state
    bytes / baseline state bytes (below 1: the chosen trial keeps less state). NaN where the
    baseline has no loss (diverged, infeasible, failed) or no memory.
    """
    baselines = table[table["baseline"].notna() & (table["baseline"] != "")]
    rows = []
    for row in baselines.sort_values("number").itertuples(index=False):
        loss = row.eval_loss if row.state == "COMPLETE" else math.nan
        memory = row.state_bytes
        rows.append(
            {
                "baseline": row.baseline,
                "number": int(row.number),
                "outcome": row.outcome,
                "eval_loss": loss,
                "state_mib": row.state_mib,
                "loss_difference": float(chosen["eval_loss"]) - loss,
                "memory_ratio": (float(chosen["state_bytes"]) / memory) if memory and memory > 0 else math.nan,
            }
        )
    columns = ["baseline", "number", "outcome", "eval_loss", "state_mib", "loss_difference", "memory_ratio"]
    return pd.DataFrame(rows, columns=columns)


def outcome_counts(table: pd.DataFrame) -> dict[str, int]:
    """Return how many trials ended with each outcome, most common first (ties by name)."""
    counts = table["outcome"].value_counts()
    return dict(sorted(((str(k), int(v)) for k, v in counts.items()), key=lambda kv: (-kv[1], kv[0])))
