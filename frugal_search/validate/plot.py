"""``fidelity.png``: a thin drawing of a :class:`FidelitySummary` (the numbers come from summary.py)."""

from __future__ import annotations

import math
import os

from frugal_search.validate.summary import FidelitySummary, format_number


def plot_fidelity(summary: FidelitySummary, path: str | os.PathLike[str]) -> None:
    """Draw proxy loss against long-run loss, and memory against long-run loss with both fronts."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never open a window
    import matplotlib.pyplot as plt

    rows = finite_rows(summary)
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
    draw_rank_panel(figure, left, summary, ylabel="long-run eval loss (mean of seeds; bar: half range)")
    left.set_title(
        f"Spearman {format_number(summary.overall.spearman, 2)}, Kendall {format_number(summary.overall.kendall, 2)}"
        f" (seed-to-seed ceiling {format_number(summary.ceiling.spearman, 2)})",
        fontsize=10,
    )

    proxy_front = set(summary.survival.proxy_front)
    long_front = set(summary.survival.long_front)
    for row in rows:
        marker = "o"
        colour = "tab:blue" if row.number in proxy_front else "lightgrey"
        right.scatter(row.state_mib, row.long_loss, marker=marker, color=colour, s=40, zorder=3)
        right.annotate(str(row.number), (row.state_mib, row.long_loss), fontsize=7, alpha=0.7)
    front_rows = sorted((row for row in rows if row.number in long_front), key=lambda r: r.state_mib)
    if front_rows:
        right.step(
            [row.state_mib for row in front_rows],
            [row.long_loss for row in front_rows],
            where="post",
            color="tab:red",
            label="front after long training",
        )
    right.scatter([], [], color="tab:blue", label="on the proxy's front")
    right.scatter([], [], color="lightgrey", label="other re-run trials")
    right.set_xlabel("optimizer state (MiB)")
    right.set_ylabel("long-run eval loss")
    right.set_title(f"dropped from the front: {summary.survival.dropped or 'none'}", fontsize=10)
    right.legend(fontsize=8)
    right.grid(alpha=0.3)
    figure.suptitle(f"Proxy fidelity: {summary.settings.get('study', '')}")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def finite_rows(summary: FidelitySummary) -> list:
    """The rows of ``summary`` with a finite proxy and long-run loss (what a scatter can draw)."""
    return [
        row for row in summary.rows
        if row.group != "reference" and math.isfinite(row.long_loss) and math.isfinite(row.proxy_loss)
    ]


def draw_rank_panel(figure, axis, summary: FidelitySummary, *, ylabel: str) -> None:
    """Draw proxy loss against re-run loss on ``axis``, coloured by memory, bars for the seed range."""
    rows = finite_rows(summary)
    if rows:
        scatter = axis.scatter(
            [row.proxy_loss for row in rows], [row.long_loss for row in rows],
            c=[row.state_mib for row in rows], cmap="viridis", s=40,
        )
        for row in rows:
            spread = (max(row.long_losses) - min(row.long_losses)) / 2 if len(row.long_losses) > 1 else 0.0
            axis.errorbar(row.proxy_loss, row.long_loss, yerr=spread, color="grey", alpha=0.5, lw=1)
            axis.annotate(str(row.number), (row.proxy_loss, row.long_loss), fontsize=7, alpha=0.7)
        figure.colorbar(scatter, ax=axis, label="optimizer state (MiB)")
    axis.set_xlabel("proxy eval loss (study)")
    axis.set_ylabel(ylabel)
    axis.grid(alpha=0.3)
