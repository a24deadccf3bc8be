"""The Pareto front of memory against the study's figure, and how its hypervolume grew with trials.

Memory is minimized; the figure goes the way of its :class:`~frugal_search.report._objective.Objective`
(eval loss minimized, accuracy maximized). Trial A dominates trial B when A is no worse in both objectives and
strictly better in at least one; two trials with identical values do not dominate each other, so
both stay on the front.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from frugal_search.report._objective import LOSS_OBJECTIVE, Objective
from frugal_search.report._table import feasible_rows
from frugal_search.search import pareto_front_indices

# The hypervolume reference point sits this fraction beyond the worst value of each objective.
REFERENCE_MARGIN = 0.1


def pareto_front(table: pd.DataFrame, objective: Objective = LOSS_OBJECTIVE) -> pd.DataFrame:
    """Return the non-dominated rows of the finished feasible (COMPLETE) trials of ``table``.

    Objectives: ``objective.memory`` (minimized) and ``objective.name`` in its direction (default
    ``state_mib`` and ``eval_loss``, both minimized; the search stage's ``pareto_front_indices``).
    Rows are sorted by memory, then the figure best first, then trial number.
    """
    candidates = feasible_rows(table, objective)
    candidates = candidates.assign(_ranked=objective.sign * candidates[objective.name]).sort_values(
        [objective.memory, "_ranked", "number"], kind="stable"
    ).drop(columns="_ranked")
    points = list(zip(candidates[objective.memory], candidates[objective.name]))
    indices = pareto_front_indices(points, directions=("minimize", objective.direction))
    return candidates.iloc[indices].reset_index(drop=True)


def hypervolume_reference_point(table: pd.DataFrame, objective: Objective = LOSS_OBJECTIVE) -> tuple[float, float] | None:
    """Return the reference point (memory MiB, loss) for the hypervolume, None without feasible trials.

    A maximized figure enters as its negation (``objective.sign * value``), so the point and the
    volume are those of two minimized coordinates either way.

    Each coordinate is the largest value of that objective among finished feasible trials, plus
    ``REFERENCE_MARGIN`` (10%) of its magnitude, i.e. 1.1 x the worst value for positive
    objectives (0.1 above it when the worst value is 0). Every feasible trial then adds volume.
    """
    feasible = feasible_rows(table, objective)
    if feasible.empty:
        return None
    point = []
    for column, sign in ((objective.memory, 1.0), (objective.name, objective.sign)):
        worst = float((sign * feasible[column]).max())
        point.append(worst + REFERENCE_MARGIN * (abs(worst) if worst != 0 else 1.0))
    return point[0], point[1]


def hypervolume_2d(points: np.ndarray, reference_point: tuple[float, float]) -> float:
    """Return the area dominated by ``points`` (shape ``(n, 2)``, minimized) and bounded by the reference.

    Points not strictly better than the reference in both coordinates add nothing.
    """
    ref_x, ref_y = reference_point
    points = np.asarray(points, dtype=float).reshape(-1, 2)
    points = points[(points[:, 0] < ref_x) & (points[:, 1] < ref_y)]
    if len(points) == 0:
        return 0.0
    # sweep from the smallest x: each point adds the strip up to the next x, above the best y so far
    order = np.lexsort((points[:, 1], points[:, 0]))
    area = 0.0
    best_y = ref_y
    xs = points[order, 0]
    ys = points[order, 1]
    for i in range(len(xs)):
        best_y = min(best_y, ys[i])
        next_x = xs[i + 1] if i + 1 < len(xs) else ref_x
        area += (next_x - xs[i]) * (ref_y - best_y)
    return float(area)


def hypervolume_history(
    table: pd.DataFrame, *, reference_point: tuple[float, float] | None = None, objective: Objective = LOSS_OBJECTIVE
) -> pd.DataFrame:
    """Return the hypervolume of the front after each trial, by trial number.

    Columns ``number`` and ``hypervolume``: for every trial number (all states, in order), the
    hypervolume of the finished feasible trials with a number up to it. ``reference_point``
    defaults to `hypervolume_reference_point` of the whole table. Empty without feasible trials.
    """
    if reference_point is None:
        reference_point = hypervolume_reference_point(table, objective)
    if reference_point is None:
        return pd.DataFrame({"number": pd.Series(dtype=int), "hypervolume": pd.Series(dtype=float)})
    ordered = table.sort_values("number", kind="stable")
    feasible_numbers = set(feasible_rows(ordered, objective)["number"])
    points: list[tuple[float, float]] = []
    numbers: list[int] = []
    volumes: list[float] = []
    volume = 0.0
    for row in ordered.itertuples(index=False):
        if row.number in feasible_numbers:
            points.append((getattr(row, objective.memory), objective.sign * getattr(row, objective.name)))
            volume = hypervolume_2d(np.array(points), reference_point)
        numbers.append(int(row.number))
        volumes.append(volume)
    return pd.DataFrame({"number": numbers, "hypervolume": volumes})
