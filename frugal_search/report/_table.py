"""One row per trial: the table every other report function reads.

The study stores what each trial did in its user attributes (see docs/ARCHITECTURE.md, "search ->
report"); this module turns them into a pandas DataFrame with stable columns, so the numbers behind
the plots and the Markdown come from one place and can be tested by equality.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pandas as pd

from frugal_search.partition import ADAMW_BASELINE
from frugal_search.report._objective import LOSS_OBJECTIVE, Objective, study_objective
from frugal_search.search import RUNG_ON_PROXY
from frugal_search.units import MIB

if TYPE_CHECKING:
    import optuna

# Columns of `trials_table`, in order; `param_<name>` columns for the sampled parameters follow.
TRIAL_COLUMNS: tuple[str, ...] = (
    "number",
    "state",
    "outcome",
    "baseline",
    "baseline_lr",
    "seed",
    "seed_of",
    "rung_of",
    "rung_factor",
    "rung_on",
    "summary",
    "eval_loss",
    "best_eval_loss",
    "state_bytes",
    "state_mib",
    "state_pct_of_adamw",
    "tokens_per_s",
    "wall_s",
    "steps",
    "peak_memory_bytes",
    "reason",
    "over_budget",
    "accuracy",
    "macro_f1",
    "training_mib",
)

# What a trial without an `outcome` attribute did, judged from its Optuna state: a worker killed
# before it wrote its attributes leaves a FAIL trial with none.
_OUTCOME_BY_STATE: dict[str, str] = {
    "COMPLETE": "ok",
    "PRUNED": "pruned",
    "FAIL": "error",
    "RUNNING": "running",
    "WAITING": "waiting",
}


def _float_or_nan(value: Any) -> float:
    """Return ``value`` as a float, NaN for None or anything that is not a number."""
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _outcome(state: str, stored: str | None) -> str:
    # A running trial already carries outcome "error" (written first, so a killed worker's trial
    # says what happened); while it runs, its state is the truth.
    if state in ("RUNNING", "WAITING") or not stored:
        return _OUTCOME_BY_STATE.get(state, state.lower())
    return stored


def adamw_state_bytes(study: optuna.Study) -> int | None:
    """Return the optimizer-state bytes of plain AdamW on the study's model, or None if unknown.

    Read from the study user attribute ``adamw_state_bytes`` when the search stored it, otherwise
    from the ``state_bytes`` of the AdamW baseline trial (any state: an infeasible AdamW trial still
    counted its memory).
    """
    stored = study.user_attrs.get("adamw_state_bytes")
    if stored is not None:
        return int(stored)
    for frozen in study.get_trials(deepcopy=False):
        if frozen.user_attrs.get("baseline") == ADAMW_BASELINE:
            state_bytes = frozen.user_attrs.get("state_bytes")
            if state_bytes is not None:
                return int(state_bytes)
    return None


def trials_table(study: optuna.Study, *, adamw_bytes: int | None = None) -> pd.DataFrame:
    """Return one row per trial of ``study`` with the columns of ``TRIAL_COLUMNS`` and the params.

    The study's two objective values (``[study] objectives``: ``eval_loss``, ``accuracy`` or
    ``macro_f1``, and ``state_mib`` or ``training_mib``) fill their columns for COMPLETE trials;
    every other figure comes from the stored attributes (NaN when absent, e.g. an infeasible trial
    has no loss; ``accuracy`` and ``macro_f1`` only for classification runs).
    ``state_pct_of_adamw`` is ``100 * state_bytes / adamw_bytes``; ``adamw_bytes`` defaults to
    `adamw_state_bytes` of the study, and the column is NaN when it is unknown (a run on another
    model, the rung on the target, stores its own AdamW bytes). ``rung_on`` is ``proxy`` or
    ``target`` for a rung run, None otherwise.
    Sampled parameters follow as ``param_<name>`` columns, sorted by name.
    """
    if adamw_bytes is None:
        adamw_bytes = adamw_state_bytes(study)
    objective = study_objective(study)
    rows: list[dict[str, Any]] = []
    param_names: set[str] = set()
    for frozen in study.get_trials(deepcopy=False):
        attrs = frozen.user_attrs
        state = frozen.state.name
        state_bytes = _float_or_nan(attrs.get("state_bytes"))
        figures = {name: _float_or_nan(attrs.get(name)) for name in ("eval_loss", "accuracy", "macro_f1")}
        training_bytes = _float_or_nan(attrs.get("training_bytes"))
        memories = {"state_mib": state_bytes / MIB, "training_mib": training_bytes / MIB}
        if state == "COMPLETE" and frozen.values is not None and len(frozen.values) == 2:
            figures[objective.name] = float(frozen.values[0])
            memories[objective.memory] = float(frozen.values[1])
            if math.isnan(state_bytes) and objective.memory == "state_mib":
                state_bytes = memories["state_mib"] * MIB
        eval_loss, state_mib = figures["eval_loss"], memories["state_mib"]
        row: dict[str, Any] = {
            "number": frozen.number,
            "state": state,
            "outcome": _outcome(state, attrs.get("outcome")),
            "baseline": attrs.get("baseline"),
            "baseline_lr": _float_or_nan(attrs.get("baseline_lr")),
            "seed": _float_or_nan(attrs.get("seed")),
            "seed_of": _float_or_nan(attrs.get("seed_of")),
            "rung_of": _float_or_nan(attrs.get("rung_of")),
            "rung_factor": _float_or_nan(attrs.get("rung_factor")),
            "rung_on": (attrs.get("rung_on") or RUNG_ON_PROXY) if attrs.get("rung_of") is not None else None,
            "summary": attrs.get("summary") or "",
            "eval_loss": eval_loss,
            "best_eval_loss": _float_or_nan(attrs.get("best_eval_loss")),
            "state_bytes": state_bytes,
            "state_mib": state_mib,
            "state_pct_of_adamw": _pct_of(state_bytes, attrs.get("adamw_state_bytes") or adamw_bytes),
            "tokens_per_s": _float_or_nan(attrs.get("tokens_per_s")),
            "wall_s": _float_or_nan(attrs.get("wall_s")),
            "steps": _float_or_nan(attrs.get("steps")),
            "peak_memory_bytes": _float_or_nan(attrs.get("peak_memory_bytes")),
            "reason": attrs.get("reason") or "",
            "over_budget": bool(attrs.get("over_budget", False)),
            "accuracy": figures["accuracy"],
            "macro_f1": figures["macro_f1"],
            "training_mib": memories["training_mib"],
        }
        for name, value in frozen.params.items():
            row[f"param_{name}"] = value
            param_names.add(name)
        rows.append(row)
    columns = list(TRIAL_COLUMNS) + [f"param_{name}" for name in sorted(param_names)]
    table = pd.DataFrame(rows, columns=columns)
    # an empty study still gets the right dtypes, so callers can filter without special cases
    for column in ("baseline_lr", "seed", "seed_of", "rung_of", "rung_factor", "eval_loss", "best_eval_loss", "state_bytes", "state_mib", "state_pct_of_adamw",
                   "tokens_per_s", "wall_s", "steps", "peak_memory_bytes", "accuracy", "macro_f1", "training_mib"):
        table[column] = table[column].astype(float)
    table["number"] = table["number"].astype(int)
    return table.sort_values("number", kind="stable").reset_index(drop=True)


def _pct_of(state_bytes: float, adamw_bytes: float | None) -> float:
    return 100.0 * state_bytes / adamw_bytes if adamw_bytes else math.nan


def repeat_mask(table: pd.DataFrame) -> pd.Series:
    """Rows that repeat another trial: an extra seed (``seed_of``) or a confirmation-rung run (``rung_of``)."""
    mask = pd.Series(False, index=table.index)
    for column in ("seed_of", "rung_of"):
        if column in table:
            mask |= table[column].notna()
    return mask


def feasible_rows(table: pd.DataFrame, objective: Objective = LOSS_OBJECTIVE) -> pd.DataFrame:
    """Return the finished feasible trials: COMPLETE, within the memory budget, finite values of
    ``objective`` (its figure and its memory).

    A baseline runs even over the budget (it is a reference) and is then marked ``over_budget``:
    it is drawn and compared with, but it is not feasible (tables without the column: none is).
    Repeats are not trials of their own: extra-seed replicas (``seed_of``) are averaged into the
    trial they repeat (``_seeds.seed_summary``), confirmation-rung runs (``rung_of``) into its rung
    figures (``_decision.rung_summary``).
    """
    over_budget = table["over_budget"].astype(bool) if "over_budget" in table else False
    mask = (
        (table["state"] == "COMPLETE")
        & ~repeat_mask(table)
        & ~over_budget
        & table[objective.name].map(math.isfinite)
        & table[objective.memory].map(math.isfinite)
    )
    return table[mask.astype(bool)]
