"""Thin drawing functions: each takes numbers computed elsewhere and writes one PNG.

They use matplotlib's object API (``Figure`` without pyplot), so no global backend or GUI is
touched and they run on headless machines; PNGs are rendered by the Agg canvas.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import IO, TYPE_CHECKING

import pandas as pd

from frugal_search.report._analysis import EvalCurve, ObjectiveImportance
from frugal_search.report._objective import LOSS_OBJECTIVE, Objective
from frugal_search.report._table import repeat_mask

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_DPI = 120
# front points get their trial number written next to them up to this many (more would overlap)
_MAX_FRONT_LABELS = 15
# y position (axes fraction) of the strip that holds trials without a loss
_NO_LOSS_STRIP_Y = 0.95
# marker and colour per outcome of trials drawn apart from the front
_APART_STYLE: dict[str, tuple[str, str]] = {
    "diverged": ("x", "tab:red"),
    "infeasible": ("^", "tab:orange"),
    "oom": ("v", "tab:purple"),
    "stopped-early": ("s", "tab:brown"),
}


def _new_figure(width: float = 7.5, height: float = 5.0) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=_DPI, layout="constrained")


def _save(figure: Figure, target: str | Path | IO[bytes]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    figure.savefig(target, format="png")


def _empty_note(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def draw_pareto(
    table: pd.DataFrame,
    front: pd.DataFrame,
    target: str | Path | IO[bytes],
    *,
    memory_budget_mib: float | None = None,
    adamw_state_mib: float | None = None,
    seeds: pd.DataFrame | None = None,
    best_baseline_numbers: set[int] | None = None,
    objective: Objective = LOSS_OBJECTIVE,
    rung: pd.DataFrame | None = None,
    answer: int | None = None,
) -> None:
    """Draw memory (MiB; ``objective.memory``) against the figure (``objective.name``: eval loss,
    or accuracy with higher better): the front, the baselines, the rest.

    ``rung`` (`rung_summary`) draws each promoted candidate twice, at its proxy mean and at its mean
    at the confirmation rung (a diamond with a one-std bar), joined by a line, so a reader sees which
    points held up; ``answer`` (a trial number) is ringed there.

    ``seeds`` (`seed_summary`) adds the mean over seeds with a one-std error bar for the trials
    that have replicas; ``best_baseline_numbers`` draws each baseline's best run as a large star and
    the other runs of its lr grid as small ones.

    The front is a step line; completed trials off the front are grey dots; baselines are stars
    labelled by name; diverged, infeasible and out-of-memory trials have no loss and sit on a strip
    at the top, at their memory, each with its own marker; the budget is a vertical line. With
    ``adamw_state_mib`` a second x axis on top shows memory as % of AdamW's state.
    """
    x_column, y_column = objective.memory, objective.name
    # trials without the figure sit on a strip at the worst end of the y axis (top for a loss)
    strip_y = 1.0 - _NO_LOSS_STRIP_Y if objective.maximize else _NO_LOSS_STRIP_Y
    no_value = "no loss" if objective.name == "eval_loss" else f"no {objective.words}"
    figure = _new_figure(width=9.0, height=5.0)
    ax = figure.add_subplot()
    if table.empty:
        _empty_note(ax, "The study has no trials yet.")
        ax.set_title("Pareto front: no trials")
        _save(figure, target)
        return
    complete = table[(table["state"] == "COMPLETE") & ~repeat_mask(table)]
    front_numbers = set(front["number"])
    others = complete[~complete["number"].isin(front_numbers) & complete["baseline"].isna()]
    if not others.empty:
        ax.scatter(others[x_column], others[y_column], s=18, color="0.6", label="completed trial", zorder=2)
    if not front.empty:
        ax.step(front[x_column], front[y_column], where="post", color="tab:blue", zorder=3)
        ax.scatter(front[x_column], front[y_column], s=30, color="tab:blue", label="Pareto front", zorder=4)
        if len(front) <= _MAX_FRONT_LABELS:
            # trials with identical values share one label ("#3, #4") instead of overprinting
            for (mib, loss), group in front.groupby([x_column, y_column], sort=False):
                label = ", ".join(f"#{number}" for number in group["number"])
                ax.annotate(label, (mib, loss), textcoords="offset points", xytext=(4, -10), fontsize=7,
                            color="tab:blue")
    baselines = complete[complete["baseline"].notna()]
    if best_baseline_numbers is not None:
        grid = baselines[~baselines["number"].isin(best_baseline_numbers)]
        if not grid.empty:
            ax.scatter(grid[x_column], grid[y_column], s=16, marker="*", color="tab:green", alpha=0.5,
                       label="baseline at another lr of its grid", zorder=4)
        baselines = baselines[baselines["number"].isin(best_baseline_numbers)]
    if seeds is not None and not seeds.empty:
        # mean over the seeds with one standard deviation, at the trial's memory
        spread = seeds.merge(table[["number", x_column]], on="number")
        spread = spread[spread["mean"].map(math.isfinite)]
        ax.errorbar(spread[x_column], spread["mean"], yerr=spread["std"].fillna(0.0), fmt="_", color="black",
                    capsize=3, linewidth=0.8, label="mean over seeds, ±1 std", zorder=6)
    if not baselines.empty:
        ax.scatter(baselines[x_column], baselines[y_column], s=110, marker="*", color="tab:green",
                   edgecolor="black", linewidth=0.5, label="baseline", zorder=5)
        rows = list(baselines.itertuples(index=False))
        points = [(getattr(row, x_column), getattr(row, y_column)) for row in rows]
        for row, point, lift in zip(rows, points, _label_lifts(points, table[x_column], table[y_column])):
            lr = getattr(row, "baseline_lr", math.nan)
            label = f"{row.baseline} (lr {lr:g})" if math.isfinite(lr) else str(row.baseline)
            ax.annotate(label, point, textcoords="offset points", xytext=(6, 6 + lift), fontsize=8)
    if rung is not None and not rung.empty:
        _draw_rung(ax, rung, x_column, answer)
    # trials without a loss: on a shaded strip at the top, x in data units, y in axes units
    strip = ax.get_xaxis_transform()
    apart = table[table["outcome"].isin(list(_APART_STYLE)) & table[x_column].map(math.isfinite)]
    if not apart.empty:
        low, high = (0.0, strip_y + 0.04) if objective.maximize else (strip_y - 0.04, 1.0)
        ax.fill_between([0, 1], [low] * 2, [high] * 2, transform=ax.transAxes, color="0.93", zorder=0)
        ax.text(0.01, strip_y, no_value, transform=ax.transAxes, va="center", fontsize=8, color="0.4")
        ax.margins(y=0.3)  # keep the finished trials below the strip
    for outcome, (marker, color) in _APART_STYLE.items():
        rows = apart[apart["outcome"] == outcome]
        if rows.empty:
            continue
        ax.scatter(rows[x_column], [strip_y] * len(rows), transform=strip, marker=marker,
                   color=color, s=40, label=f"{outcome} ({no_value})", zorder=4)
        for row in rows[rows["baseline"].notna()].itertuples(index=False):
            ax.annotate(str(row.baseline), (getattr(row, x_column), strip_y), xycoords=strip,
                        textcoords="offset points", xytext=(5, -12), fontsize=8, color=color)
    # the strip's markers do not take part in autoscaling, so the x range is set from every trial
    memories = [m for m in table[x_column] if math.isfinite(m)]
    if memory_budget_mib is not None:
        memories.append(memory_budget_mib)
    if memories:
        ax.set_xlim(0, max(memories) * 1.08 or 1.0)
    if memory_budget_mib is not None:
        ax.axvline(memory_budget_mib, color="tab:red", linestyle="--", linewidth=1,
                   label=f"memory budget ({memory_budget_mib:.3g} MiB)")
    if complete.empty and apart.empty:
        _empty_note(ax, f"No trial finished with {objective.a_value}.")
    ax.set_xlabel(objective.memory_axis_label)
    ax.set_ylabel(objective.axis_label)
    ax.grid(True, alpha=0.3)
    if adamw_state_mib and x_column == "state_mib":
        secondary = ax.secondary_xaxis(
            "top",
            functions=(lambda mib: 100.0 * mib / adamw_state_mib, lambda pct: pct * adamw_state_mib / 100.0),
        )
        secondary.set_xlabel("optimizer state (% of AdamW)")
    corner = "upper left" if objective.maximize else "lower left"
    ax.set_title(f"Pareto front: {objective.memory_words} against {objective.words} ({corner} is better)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, borderaxespad=0)
    _save(figure, target)


LABEL_STEP_POINTS = 10  # a label's height: close labels are stacked this far apart


def _label_lifts(points: list[tuple[float, float]], xs: pd.Series, ys: pd.Series) -> list[float]:
    """Upward offsets (points) that stack the labels of points close together (within 12% of the
    plotted x span, a label's length, and 3.5% of the y span) instead of overprinting them."""
    def span(values: pd.Series) -> float:
        finite = values[values.map(math.isfinite)]
        return float(finite.max() - finite.min()) if len(finite) > 1 and finite.max() > finite.min() else 1.0

    x_span, y_span = span(xs), span(ys)
    lifts: list[float] = []
    for index, (x, y) in enumerate(points):
        close = [
            lifts[other] for other, (ox, oy) in enumerate(points[:index])
            if abs(x - ox) <= 0.12 * x_span and abs(y - oy) <= 0.035 * y_span
        ]
        lift = 0.0
        while lift in close:
            lift += LABEL_STEP_POINTS
        lifts.append(lift)
    return lifts


def _draw_rung(ax: Axes, rung: pd.DataFrame, x_column: str, answer: int | None) -> None:
    """Each promoted candidate from its proxy mean to its rung mean (diamond, ±1 std)."""
    shown = rung[(rung["mean"].map(math.isfinite) & rung[x_column].map(math.isfinite)).astype(bool)]
    if shown.empty:
        return
    factor = int(shown["factor"].iloc[0])
    for row in shown.itertuples(index=False):
        x = getattr(row, x_column)
        ax.plot([x, x], [row.proxy_mean, row.mean], color="tab:purple", linewidth=0.8, alpha=0.6, zorder=3)
        name = f"#{row.number}" + (f" {row.baseline}" if isinstance(row.baseline, str) else "")
        ax.annotate(name, (x, row.mean), textcoords="offset points", xytext=(5, -3), fontsize=7, color="tab:purple")
    ax.errorbar(shown[x_column], shown["mean"], yerr=shown["spread"].fillna(0.0), fmt="D", color="tab:purple",
                markersize=5, capsize=3, linewidth=0.8, label=f"promoted, at {factor}x the steps (mean ±1 std)",
                zorder=6)
    chosen = shown[shown["number"] == answer]
    if not chosen.empty:
        ax.scatter(chosen[x_column], chosen["mean"], s=180, facecolors="none", edgecolors="tab:red", linewidth=1.5,
                   label="the answer", zorder=7)


def draw_curves(
    curves: list[EvalCurve], target: str | Path | IO[bytes], *, objective: Objective = LOSS_OBJECTIVE
) -> None:
    """Draw the eval curves of ``objective``'s figure: front trials as solid lines, baselines dashed."""
    figure = _new_figure()
    ax = figure.add_subplot()
    if not curves:
        _empty_note(ax, f"No {objective.words} curves: no trial on the front and no baseline stored one.")
    for curve in curves:
        style = "--" if curve.baseline else "-"
        label = curve.label + (" (front)" if curve.on_front and curve.baseline else "")
        ax.plot(curve.steps, curve.losses, linestyle=style, marker=".", markersize=3, label=label)
    if curves:
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(objective.axis_label)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, ncols=2 if len(curves) > 8 else 1)
    words = objective.words[0].upper() + objective.words[1:]
    ax.set_title(f"{words} during the proxy run: Pareto front (solid) and baselines (dashed)")
    _save(figure, target)


def draw_importance(importances: list[ObjectiveImportance], target: str | Path | IO[bytes]) -> None:
    """Draw one horizontal bar chart of parameter importance per objective (or its message)."""
    figure = _new_figure(width=9.0, height=4.5)
    axes = figure.subplots(1, max(1, len(importances)), squeeze=False)[0]
    figure.suptitle("Which search parameters matter (importances of each objective sum to 1)", fontsize=10)
    for ax, entry in zip(axes, importances):
        ax.set_title(f"importance for {entry.objective}")
        if entry.message or not entry.importances:
            _empty_note(ax, entry.message or "no parameters to rank")
            continue
        names = list(entry.importances)[::-1]  # largest on top
        ax.barh(names, [entry.importances[name] for name in names], color="tab:blue")
        ax.set_xlabel("PED-ANOVA importance")  # short: the right panel's label must fit the figure
        ax.set_xlim(0, 1)
        ax.grid(True, axis="x", alpha=0.3)
    _save(figure, target)


def draw_hypervolume(
    history: pd.DataFrame,
    target: str | Path | IO[bytes],
    *,
    reference_point: tuple[float, float] | None,
    objective: Objective = LOSS_OBJECTIVE,
) -> None:
    """Draw the hypervolume of the front against the trial number."""
    figure = _new_figure(width=7.0, height=4.0)
    ax = figure.add_subplot()
    if history.empty or reference_point is None:
        _empty_note(ax, "No finished feasible trials: the front is empty.")
        ax.set_title("Hypervolume of the front")
    else:
        ax.step(history["number"], history["hypervolume"], where="post", color="tab:blue")
        ax.set_xlabel("trial number")
        figure_words = objective.words if not objective.maximize else f"-{objective.words}"
        ax.set_ylabel(f"hypervolume (MiB x {figure_words})")
        ax.set_title(
            f"Hypervolume of the front (reference: {reference_point[0]:.4g} MiB, "
            f"{objective.words} {objective.sign * reference_point[1]:.4g})"
        )
        ax.grid(True, alpha=0.3)
    _save(figure, target)

