"""Baselines at their best lr and losses over seeds: the numbers behind a fair verdict (pure).

A baseline runs on an lr grid (trials with ``baseline_lr``); what it is compared as is its best run.
After the search, the front's members and each baseline's best run are trained again with other
seeds (trials with ``seed_of``): a comparison uses the mean over the seeds, and a difference smaller
than the seed spread is a tie.
"""

from __future__ import annotations

import math
import statistics

import pandas as pd

from frugal_search.report._objective import LOSS_OBJECTIVE, Objective
from frugal_search.report._table import repeat_mask

# verdicts of `verdict`, as the report writes them
BEATS, TIES, LOSES = "beats", "ties", "loses"


def original_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``table`` that repeat no other trial (the trials of the search and the grids): no
    extra-seed replicas, no confirmation-rung runs."""
    return table[~repeat_mask(table)]


def seed_summary(table: pd.DataFrame, objective: Objective = LOSS_OBJECTIVE) -> pd.DataFrame:
    """The figure of ``objective`` (default the eval loss) over seeds of every trial that has replicas,
    by trial number.

    Columns ``number``, ``seeds`` (how many runs: the trial and its replicas that finished or
    diverged), ``mean``, ``std`` (sample standard deviation; NaN for one run), ``min``, ``max``. A run
    without a finite loss (diverged) makes the mean the worst value (+inf for a loss, -inf for an
    accuracy): a partition that diverges at some seed is not a tie with anything.
    """
    columns = ["number", "seeds", "mean", "std", "min", "max"]
    if "seed_of" not in table or table["seed_of"].isna().all():
        return pd.DataFrame(columns=columns)
    replicas = table[table["seed_of"].notna() & table["state"].isin(["COMPLETE", "PRUNED"])]
    rows = []
    by_number = table.set_index("number")
    for number, group in replicas.groupby(replicas["seed_of"].astype(int)):
        losses = [_loss(by_number.loc[number], objective)] + [_loss(row, objective) for _, row in group.iterrows()]
        finite = all(math.isfinite(loss) for loss in losses)
        rows.append(
            {
                "number": int(number),
                "seeds": len(losses),
                "mean": statistics.fmean(losses) if finite else objective.worst(),
                "std": statistics.stdev(losses) if finite and len(losses) > 1 else math.nan,
                "min": min(losses),
                "max": max(losses),
            }
        )
    return pd.DataFrame(rows, columns=columns)


def _loss(row: pd.Series, objective: Objective = LOSS_OBJECTIVE) -> float:
    """The row's figure of ``objective``; the worst value (+inf / -inf) when it has none."""
    value = row[objective.name]
    return float(value) if row["state"] == "COMPLETE" and math.isfinite(value) else objective.worst()


def best_baseline_runs(table: pd.DataFrame, objective: Objective = LOSS_OBJECTIVE) -> pd.DataFrame:
    """Each baseline's best run of its lr grid (lowest loss, or highest accuracy: ``objective``), in
    the order the baselines first appear.

    Columns ``baseline``, ``number`` (the best run; NaN when none finished with a loss),
    ``lr`` (its lr; NaN for the baseline's own lr), the figure (``objective.name``, default
    ``eval_loss``; NaN when no run of the grid finished with one: ``number`` is then its first
    run), ``grid`` (every lr of the grid with its figure, e.g. ``"0.0003: 2.31, 0.001: 2.2, 0.01: diverged"``).
    """
    rows = []
    originals = original_rows(table)
    baselines = originals[originals["baseline"].notna() & (originals["baseline"] != "")]
    for name, runs in baselines.groupby("baseline", sort=False):
        runs = runs.sort_values("baseline_lr", kind="stable", na_position="first")
        losses = [_loss(row, objective) for _, row in runs.iterrows()]
        best = min(range(len(losses)), key=lambda index: (objective.sign * losses[index], index))
        finished = math.isfinite(losses[best])
        grid = ", ".join(
            f"{_lr_words(row['baseline_lr'])}: {loss:.4g}" if math.isfinite(loss) else f"{_lr_words(row['baseline_lr'])}: {row['outcome']}"
            for (_, row), loss in zip(runs.iterrows(), losses)
        )
        chosen = runs.iloc[best]  # with no finished run: the first, to say what happened to it
        if finished and len(runs) > 1 and best in (0, len(runs) - 1):
            grid += " (best on an edge of the grid: its best lr may lie further out)"
        rows.append(
            {
                "baseline": name,
                "number": int(chosen["number"]),
                "lr": float(chosen["baseline_lr"]),
                objective.name: losses[best] if finished else math.nan,
                "grid": grid,
            }
        )
    return pd.DataFrame(rows, columns=["baseline", "number", "lr", objective.name, "grid"])


def _lr_words(lr: float) -> str:
    return "own lr" if lr is None or (isinstance(lr, float) and math.isnan(lr)) else f"lr {lr:g}"


def verdict(
    mean: float, spread: float, other_mean: float, other_spread: float, *, maximize: bool = False
) -> str | None:
    """``beats``, ``ties`` or ``loses``: how a mean loss (or, with ``maximize``, a mean accuracy)
    compares with another one.

    The difference is a tie when it is no larger than the larger of the two seed spreads (sample
    standard deviations). With a spread unknown (one seed) only the sign of the difference counts;
    the report says how many seeds each side had. None when either loss is not finite (diverged).
    """
    if not (math.isfinite(mean) and math.isfinite(other_mean)):
        return None
    difference = mean - other_mean
    spreads = [value for value in (spread, other_spread) if math.isfinite(value)]
    if spreads and abs(difference) <= max(spreads):
        return TIES
    return BEATS if (difference > 0 if maximize else difference < 0) else LOSES
