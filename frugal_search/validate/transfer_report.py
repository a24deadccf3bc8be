"""The numbers of ``transfer.md`` (pure, from :class:`~frugal_search.validate.transfer.TransferResults`), its
Markdown and ``transfer.png``.

Each condition (an lr rule at the transferred lr, and the confirmation sweep's best point) is a
:class:`~frugal_search.validate.summary.FidelitySummary` of proxy loss against target loss: the
fidelity check's correlations, divergences-rank-last convention and front survival, reused.
"""

from __future__ import annotations

import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from frugal_search.partition import ADAMW_BASELINE
from frugal_search.validate.summary import FidelityRow, FidelitySummary, format_number, shorten, summarize_fidelity

MARKDOWN_FILE = "transfer.md"
PLOT_FILE = "transfer.png"


@dataclass(frozen=True)
class Condition:
    """Proxy vs target over one set of runs: its label, summary and diverged trial numbers."""

    label: str
    summary: FidelitySummary
    diverged: list[int]


@dataclass(frozen=True)
class Confirmation:
    """One confirmed partition: its target loss at every (lr rule, multiplier) run and its best point."""

    number: int
    baseline: str | None
    state_mib: float
    proxy_loss: float
    losses: dict[tuple[str, float], float]  # (rule, multiplier) -> target loss (+inf diverged); missing: not run
    best_point: tuple[str, float] | None  # (rule, multiplier) of the lowest loss
    best_loss: float
    description: str
    transfer_trial: int | None = None  # the best point's trial in the transfer study (to export it)
    seed_losses: tuple[float, ...] = ()  # the best point's loss at every seed that ran (its first: best_loss)

    @property
    def mean(self) -> float:
        """Mean target loss of the best point over its seeds (+inf when one diverged)."""
        losses = self.seed_losses or (self.best_loss,)
        return statistics.fmean(losses) if all(math.isfinite(loss) for loss in losses) else math.inf

    @property
    def spread(self) -> float:
        """Sample standard deviation over the seeds (NaN with one seed or a diverged one)."""
        losses = self.seed_losses
        return statistics.stdev(losses) if len(losses) > 1 and math.isfinite(self.mean) else math.nan


@dataclass(frozen=True)
class TransferSummary:
    """Everything ``transfer.md`` and ``transfer.png`` show."""

    conditions: list[Condition]
    confirmations: list[Confirmation]
    recommendation: Confirmation | None  # best confirmed searched partition under the state share
    best_baseline: Confirmation | None  # best baseline at its best lr
    state_share: float  # the recommendation keeps at most this share of AdamW's state
    adamw_mib: float = math.nan  # AdamW's state among the confirmed runs (NaN: AdamW not confirmed)
    settings: dict[str, Any] = field(default_factory=dict)


def _condition(label: str, results: Any, numbers: list[int], loss_of) -> Condition:
    rows = []
    for number in numbers:
        loss = loss_of(number)
        if loss is None:
            continue  # not run yet: left out rather than guessed
        rows.append(
            FidelityRow(
                number=number,
                group="best" if number in results.front else ("baseline" if number in results.baselines else "other"),
                state_mib=results.state_mib[number],
                proxy_loss=results.proxy_loss[number],
                long_losses=(loss,),
                description=results.description[number],
            )
        )
    summary = summarize_fidelity(rows, bands=1, settings=results.settings)
    return Condition(label=label, summary=summary, diverged=sorted(r.number for r in rows if not math.isfinite(r.long_loss)))


def summarize_transfer(results: Any, *, state_share: float = 0.25) -> TransferSummary:
    """Return the per-rule and after-sweep correlations, the confirmations and the recommendation.

    The recommendation is the confirmed searched partition with the lowest target loss (at its
    best multiplier) whose state is at most ``state_share`` of AdamW's (when AdamW is among the
    baselines); it is compared with the best baseline at its best multiplier.
    """
    conditions = [
        _condition(f"lr rule {rule}, as found", results, results.checked,
                   lambda n, rule=rule: results.losses.get((n, rule, 1.0)))
        for rule in results.settings["lr_rules"]
    ]
    rules = sweep_rules(results.settings)
    multipliers = results.settings["lr_multipliers"]
    confirmations = []
    for number in results.confirmed:
        losses = {(r, m): results.losses[(number, r, m)] for r in rules for m in multipliers
                  if (number, r, m) in results.losses}
        best = min(losses, key=lambda point: (losses[point], point)) if losses else None
        confirmations.append(
            Confirmation(
                number=number,
                baseline=results.baselines.get(number),
                state_mib=results.state_mib[number],
                proxy_loss=results.proxy_loss[number],
                losses=losses,
                best_point=best,
                best_loss=losses[best] if best is not None else math.inf,
                description=results.description[number],
                transfer_trial=None if best is None else results.transfer_trials.get((number, *best)),
                seed_losses=() if best is None else results.seed_losses.get((number, *best), ()),
            )
        )
    if confirmations:
        conditions.append(
            _condition(f"best of the sweep (rules {', '.join(rules)}; lr x{', x'.join(f'{m:g}' for m in multipliers)})",
                       results,
                       results.confirmed,
                       lambda n: next((c.best_loss for c in confirmations if c.number == n and c.losses), None))
        )
    adamw = next((c.state_mib for c in confirmations if c.baseline == ADAMW_BASELINE), None)
    limit = math.inf if adamw is None else state_share * adamw
    searched = [c for c in confirmations if c.baseline is None and c.losses and c.state_mib <= limit]
    baselines = [c for c in confirmations if c.baseline is not None and c.losses]
    return TransferSummary(
        conditions=conditions,
        confirmations=confirmations,
        recommendation=min(searched, key=lambda c: (c.best_loss, c.state_mib), default=None),
        best_baseline=min(baselines, key=lambda c: (c.best_loss, c.state_mib), default=None),
        state_share=state_share,
        adamw_mib=math.nan if adamw is None else adamw,
        settings=dict(results.settings),
    )


def format_transfer_markdown(summary: TransferSummary) -> str:
    """Return ``transfer.md``: settings, correlations per condition, divergences, the sweep, the recommendation."""
    settings = summary.settings
    target = settings.get("target", {})
    overrides = ", ".join(f"{k} {v}" for k, v in target.get("overrides", {}).items())
    lines = [f"# Transfer of the proxy's splits: {settings.get('study', 'study')}", ""]
    lines.append(
        f"Partitions of the study re-run on the target model `{target.get('source', '?')}`"
        + (f" ({overrides})" if overrides else "")
        + f" for {settings.get('target_steps', '?')} steps (the proxy ran {settings.get('proxy_steps', '?')}), "
        f"seed {settings.get('seed', 0)}; the confirmed runs also with {settings.get('seeds', 0)} more seed(s). A "
        "diverged run ranks last. Runs are trials of the Optuna study "
        f"`{settings.get('transfer_study', '?')}` in the study's storage."
    )
    lines.append("")
    if settings.get("command"):
        lines += ["Regenerate (resumes; runs already stored are reused) with:", "", "```bash",
                  str(settings["command"]), "```", ""]
    lines += ["## Does the proxy's ranking hold on the target?", "",
              "| condition | partitions | Spearman | Kendall tau-b | diverged | front kept | dropped from the front |",
              "|---|---|---|---|---|---|---|"]
    for condition in summary.conditions:
        s = condition.summary
        lines.append(
            f"| {condition.label} | {s.overall.count} | {format_number(s.overall.spearman)} | "
            f"{format_number(s.overall.kendall)} | {condition.diverged or 'none'} | {s.survival.kept or 'none'} | "
            f"{s.survival.dropped or 'none'} |"
        )
    lines += ["", "`lr rule width`: the lr of every attention, mlp and head matrix times proxy fan-in / target "
              "fan-in (`frugal_search.partition.lr_transfer`); embeddings, norms and biases keep theirs.", ""]
    lines += _confirmation_lines(summary)
    lines += ["## Runs", ""]
    labels = [c.label for c in summary.conditions]
    lines.append("| trial | picked as | state MiB | proxy loss | " + " | ".join(labels) + " | partition |")
    lines.append("|" + "---|" * (5 + len(labels)))
    by_label = [{row.number: row.long_loss for row in c.summary.rows} for c in summary.conditions]
    numbers = sorted({n for losses in by_label for n in losses},
                     key=lambda n: next(r.proxy_loss for c in summary.conditions for r in c.summary.rows if r.number == n))
    rows = {r.number: r for c in summary.conditions for r in c.summary.rows}
    for number in numbers:
        row = rows[number]
        cells = " | ".join(format_number(losses[number]) if number in losses else "-" for losses in by_label)
        lines.append(f"| {number} | {row.group} | {row.state_mib:.3f} | {format_number(row.proxy_loss)} | {cells} | "
                     f"{shorten(row.description, 120)} |")
    return "\n".join(lines) + "\n"


def sweep_rules(settings: dict[str, Any]) -> list[str]:
    """The lr rules whose runs count for a confirmation: the sweep's rule, then the check's."""
    return list(dict.fromkeys([*settings["confirm_rules"], *settings["lr_rules"]]))


def _point(point: tuple[str, float]) -> str:
    return f"{point[0]} x{point[1]:g}"


def _confirmation_lines(summary: TransferSummary) -> list[str]:
    if not summary.confirmations:
        return []
    points = [(r, m) for r in sweep_rules(summary.settings) for m in summary.settings.get("lr_multipliers", [])]
    points = [p for p in points if any(p in c.losses for c in summary.confirmations)]
    lines = ["## Confirmation: a short lr sweep on the target", "",
             f"Each partition's lr times {', '.join(f'x{m:g}' for m in summary.settings.get('lr_multipliers', []))} "
             f"under the sweep's rules ({', '.join(summary.settings.get('confirm_rules', []))}); the best point of "
             "all is the confirmed one.", "",
             "| trial | baseline | state MiB | proxy loss | " + " | ".join(_point(p) for p in points)
             + " | best | transfer trial |", "|" + "---|" * (6 + len(points))]
    for c in summary.confirmations:
        cells = " | ".join(format_number(c.losses[p]) if p in c.losses else "-" for p in points)
        best = f"{_point(c.best_point)}: {format_number(c.best_loss)}" if c.best_point is not None else "-"
        lines.append(f"| {c.number} | {c.baseline or '-'} | {c.state_mib:.3f} | {format_number(c.proxy_loss)} | "
                     f"{cells} | {best} | {'-' if c.transfer_trial is None else c.transfer_trial} |")
    lines.append("")
    rec, base = summary.recommendation, summary.best_baseline
    if rec is None:
        lines.append(f"No confirmed searched partition under {summary.state_share:.0%} of AdamW's state yet.")
    else:
        lines.append(
            f"Recommended (lowest confirmed target loss under {summary.state_share:.0%} of AdamW's state): trial "
            f"{rec.number}, {format_number(rec.best_loss)} at {_point(rec.best_point)}, {rec.state_mib:.3f} MiB"
            + ("." if math.isnan(summary.adamw_mib) else f" ({rec.state_mib / summary.adamw_mib:.1%} of AdamW's state).")
        )
        lines += _seed_comparison_lines(summary, rec)
    lines.append("")
    return lines


def _seed_comparison_lines(summary: TransferSummary, rec: Confirmation) -> list[str]:
    """The recommendation against every baseline, each at its confirmed point, by mean over seeds."""
    from frugal_search.report import verdict

    baselines = [c for c in summary.confirmations if c.baseline is not None and c.losses]
    if not baselines:
        return []
    lines = ["", "Each at its confirmed point, over the seeds that ran (mean ± sample standard deviation); a "
             "difference no larger than the larger spread is a tie:", "",
             "| partition | confirmed point | target loss | seeds | difference (recommended - it) | verdict |",
             "|---|---|---|---|---|---|"]
    for c in [rec, *baselines]:
        said = verdict(rec.mean, rec.spread, c.mean, c.spread) if c is not rec else "-"
        difference = "-" if c is rec else format_number(rec.mean - c.mean)
        lines.append(f"| {'#' + str(c.number) if c.baseline is None else c.baseline} | {_point(c.best_point)} | "
                     f"{_mean_words(c)} | {len(c.seed_losses) or 1} | {difference} | {said or 'diverged'} |")
    worst = [c.baseline for c in baselines if verdict(rec.mean, rec.spread, c.mean, c.spread) != "beats"]
    seeds = len(rec.seed_losses) or 1
    lines += ["", f"Trial {rec.number} beats every baseline at its best lr on the target by more than the seed spread "
              f"({seeds} seed(s))." if not worst else
              f"Trial {rec.number} does not beat {', '.join(worst)} by more than the seed spread ({seeds} seed(s))."]
    lines.append(
        "Export it, with its confirmed lr, with `frugal-search export --storage <the study's storage> --name "
        f"{summary.settings.get('transfer_study', '<study>-transfer')} --trial {rec.transfer_trial}`."
    )
    return lines


def _mean_words(c: Confirmation) -> str:
    if not math.isfinite(c.mean):
        return "diverged"
    return format_number(c.mean) + ("" if math.isnan(c.spread) else f" ± {format_number(c.spread)}")


def plot_transfer(summary: TransferSummary, path: str | os.PathLike[str]) -> None:
    """Draw proxy loss against target loss, one panel per condition."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never open a window
    import matplotlib.pyplot as plt

    from frugal_search.validate.plot import draw_rank_panel

    count = max(1, len(summary.conditions))
    figure, axes = plt.subplots(1, count, figsize=(5.5 * count, 4.8), squeeze=False)
    for axis, condition in zip(axes[0], summary.conditions):
        draw_rank_panel(figure, axis, condition.summary, ylabel="target eval loss")
        s = condition.summary.overall
        axis.set_title(f"{condition.label}\nSpearman {format_number(s.spearman, 2)}, Kendall "
                       f"{format_number(s.kendall, 2)}, diverged {condition.diverged or 'none'}", fontsize=9)
    figure.suptitle(f"Transfer to {summary.settings.get('target', {}).get('source', 'target')}: "
                    f"{summary.settings.get('study', '')}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_transfer_report(summary: TransferSummary, report_dir: str | Path) -> list[Path]:
    """Write ``transfer.md`` and ``transfer.png`` into ``report_dir``; return their paths."""
    from frugal_search.validate.check import write_markdown_and_plot

    return write_markdown_and_plot(report_dir, (MARKDOWN_FILE, format_transfer_markdown(summary)),
                                   (PLOT_FILE, lambda path: plot_transfer(summary, path)))
