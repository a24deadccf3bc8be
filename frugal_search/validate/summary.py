"""The numbers of a fidelity report, computed from the re-run results (pure), and its Markdown."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from frugal_search.validate.stats import (
    Correlation,
    FrontSurvival,
    correlate,
    front_survival,
    memory_bands,
)


@dataclass(frozen=True)
class FidelityRow:
    """One re-run partition: its proxy loss from the study and its long-run loss for every seed."""

    number: int
    # "best" (picked from the proxy's front), "other" (spread over memory), "baseline" (the transfer
    # check's baselines) or "reference" (re-run only for the baseline verdicts: the recommendation or
    # a baseline's best run not picked otherwise; left out of the correlations and the plot)
    group: str
    state_mib: float
    proxy_loss: float
    long_losses: tuple[float, ...]  # one per seed, in seed order; +inf for a diverged run
    description: str = ""

    @property
    def long_loss(self) -> float:
        """Mean long-run loss over the seeds; +inf when any seed diverged or none ran."""
        if not self.long_losses or not all(math.isfinite(loss) for loss in self.long_losses):
            return math.inf
        return sum(self.long_losses) / len(self.long_losses)

    @property
    def long_spread(self) -> float:
        """Sample standard deviation of the long-run losses over the seeds (NaN with one seed)."""
        if len(self.long_losses) < 2 or not math.isfinite(self.long_loss):
            return math.nan
        return statistics.stdev(self.long_losses)


@dataclass(frozen=True)
class BandCorrelation:
    """Proxy-vs-long rank agreement among partitions of similar memory."""

    band: int
    low_mib: float
    high_mib: float
    correlation: Correlation


@dataclass(frozen=True)
class LongVerdict:
    """The recommendation against one baseline's best run of its lr grid, after long training."""

    baseline: str
    number: int  # the baseline's trial
    recommended: int
    difference: float  # recommended mean long loss - the baseline's
    spread: float  # the larger of the two seed spreads (NaN with one seed)
    verdict: str | None  # beats / ties / loses (see frugal_search.report.verdict); None: a run diverged


@dataclass(frozen=True)
class FidelitySummary:
    """Everything ``fidelity.md`` and ``fidelity.png`` show."""

    rows: list[FidelityRow]
    overall: Correlation  # proxy loss vs mean long-run loss
    per_seed: list[Correlation]  # proxy loss vs each seed's long-run loss
    ceiling: Correlation  # first seed's long-run loss vs the second's: the best a proxy could do
    bands: list[BandCorrelation]
    survival: FrontSurvival
    settings: dict[str, Any] = field(default_factory=dict)
    verdicts: list[LongVerdict] = field(default_factory=list)


def summarize_fidelity(
    rows: Sequence[FidelityRow],
    *,
    bands: int = 3,
    settings: Mapping[str, Any] | None = None,
    recommended: int | None = None,
    baselines: Mapping[int, str] | None = None,
) -> FidelitySummary:
    """Return the correlations, memory-band correlations and front survival of ``rows``, and the
    long-run verdict of the ``recommended`` trial against each baseline run of ``baselines``
    (``{trial number: name}``).

    Rows without a long run for every seed are left out. Memory bands cut the rows into ``bands``
    equal-count groups by state memory: within a band memory cannot explain the ranking, so this is
    the harder test (memory and loss are strongly tied overall). "reference" rows count only for
    the verdicts.
    """
    every = [row for row in rows if row.long_losses]
    complete = [row for row in every if row.group != "reference"]
    seed_count = min((len(row.long_losses) for row in complete), default=0)
    proxy = [row.proxy_loss for row in complete]
    long_mean = [row.long_loss for row in complete]
    per_seed = [correlate(proxy, [row.long_losses[s] for row in complete]) for s in range(seed_count)]
    if seed_count >= 2:
        ceiling = correlate([row.long_losses[0] for row in complete], [row.long_losses[1] for row in complete])
    else:
        ceiling = Correlation(count=0, spearman=math.nan, kendall=math.nan)
    band_of = memory_bands([row.state_mib for row in complete], bands=bands) if complete else []
    band_results = []
    for band in sorted(set(band_of)):
        members = [row for row, label in zip(complete, band_of) if label == band]
        band_results.append(
            BandCorrelation(
                band=band,
                low_mib=min(row.state_mib for row in members),
                high_mib=max(row.state_mib for row in members),
                correlation=correlate([row.proxy_loss for row in members], [row.long_loss for row in members]),
            )
        )
    survival = front_survival(
        [row.number for row in complete], proxy, long_mean, [row.state_mib for row in complete]
    )
    return FidelitySummary(
        rows=every,
        overall=correlate(proxy, long_mean),
        per_seed=per_seed,
        ceiling=ceiling,
        bands=band_results,
        survival=survival,
        settings=dict(settings or {}),
        verdicts=_long_verdicts(every, recommended, baselines or {}),
    )


def _long_verdicts(rows: Sequence[FidelityRow], recommended: int | None, baselines: Mapping[int, str]) -> list[LongVerdict]:
    from frugal_search.report import verdict

    by_number = {row.number: row for row in rows}
    ours = by_number.get(recommended) if recommended is not None else None
    if ours is None:
        return []
    verdicts = []
    for number, name in baselines.items():
        theirs = by_number.get(number)
        if theirs is None or number == recommended:
            continue
        spreads = [s for s in (ours.long_spread, theirs.long_spread) if math.isfinite(s)]
        verdicts.append(
            LongVerdict(
                baseline=name,
                number=number,
                recommended=ours.number,
                difference=ours.long_loss - theirs.long_loss,
                spread=max(spreads) if spreads else math.nan,
                verdict=verdict(ours.long_loss, ours.long_spread, theirs.long_loss, theirs.long_spread),
            )
        )
    return verdicts


def format_number(value: float, digits: int = 3) -> str:
    """Return a loss or correlation for a table: "n/a" for NaN, "diverged" for inf."""
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "diverged"
    return f"{value:.{digits}f}"


_DESCRIPTION_CHARS = 160  # a partition's words in the runs table; the full text is in the study


def shorten(text: str, chars: int = _DESCRIPTION_CHARS) -> str:
    """Return ``text`` cut to ``chars`` characters (ending in "...") for a table cell."""
    return text if len(text) <= chars else text[: chars - 3] + "..."


def format_fidelity_markdown(summary: FidelitySummary) -> str:
    """Return ``fidelity.md``: settings, correlations with their ceiling, bands, front survival, runs."""
    settings = summary.settings
    lines = [f"# Fidelity of the proxy: {settings.get('study', 'study')}", ""]
    lines.append(
        "Does the short proxy run rank partitions the way a longer run does? The partitions below were "
        f"trained again with {settings.get('factor', '?')}x the proxy steps "
        f"({settings.get('proxy_steps', '?')} -> {settings.get('long_steps', '?')} steps), "
        f"seeds {settings.get('seeds', '?')}, and their proxy loss compared with the long-run loss "
        "(mean over seeds). A diverged run ranks last."
    )
    lines.append("")
    if settings.get("command"):
        lines += ["Regenerate with:", "", "```bash", str(settings["command"]), "```", ""]
    lines += ["## Rank correlation", "", "| comparison | partitions | Spearman | Kendall tau-b |", "|---|---|---|---|"]
    lines.append(
        f"| proxy vs long run (all) | {summary.overall.count} | {format_number(summary.overall.spearman)} | "
        f"{format_number(summary.overall.kendall)} |"
    )
    seeds = list(settings.get("seeds", range(len(summary.per_seed))))
    for index, correlation in enumerate(summary.per_seed):
        seed = seeds[index] if index < len(seeds) else index
        lines.append(
            f"| proxy vs long run, seed {seed} | {correlation.count} | {format_number(correlation.spearman)} | "
            f"{format_number(correlation.kendall)} |"
        )
    lines.append(
        f"| ceiling: long run seed vs seed | {summary.ceiling.count} | {format_number(summary.ceiling.spearman)} | "
        f"{format_number(summary.ceiling.kendall)} |"
    )
    lines += ["", "Within memory bands (equal-count groups by optimizer-state memory, where memory cannot "
              "explain the ranking):", "", "| band | MiB | partitions | Spearman | Kendall tau-b |", "|---|---|---|---|---|"]
    for band in summary.bands:
        lines.append(
            f"| {band.band} | {band.low_mib:.3f} - {band.high_mib:.3f} | {band.correlation.count} | "
            f"{format_number(band.correlation.spearman)} | {format_number(band.correlation.kendall)} |"
        )
    survival = summary.survival
    lines += ["", "## Is the proxy's front still the front?", ""]
    lines.append(
        f"Among the re-run partitions, the proxy's front has trials {survival.proxy_front or 'none'}; "
        f"after long training the front is {survival.long_front or 'none'}."
    )
    lines.append(
        f"Kept: {survival.kept or 'none'}. Dropped out (dominated after long training): "
        f"{survival.dropped or 'none'}. Joined the front: {survival.joined or 'none'}."
    )
    if summary.verdicts:
        seed_count = len(seeds)
        lines += ["", "## The recommendation against the baselines after long training", ""]
        lines.append(
            f"The study's recommended trial #{summary.verdicts[0].recommended} against each baseline at its best "
            f"lr of the study's grid, both trained {settings.get('factor', '?')}x longer, mean over {seed_count} "
            "seed(s); a difference no larger than the larger seed spread is a tie:"
        )
        lines += ["", "| baseline | its trial | difference (recommended - baseline) | spread | verdict |", "|---|---|---|---|---|"]
        for item in summary.verdicts:
            lines.append(
                f"| {item.baseline} | #{item.number} | {format_number(item.difference)} | "
                f"{format_number(item.spread)} | {item.verdict or 'a run diverged'} |"
            )
    lines += ["", "## Runs", ""]
    header = "| trial | picked as | state MiB | proxy loss | " + " | ".join(
        f"long loss seed {seed}" for seed in seeds
    ) + " | long loss mean | partition |"
    lines += [header, "|" + "---|" * (5 + len(seeds) + 1)]
    for row in sorted(summary.rows, key=lambda r: (r.state_mib, r.proxy_loss)):
        losses = " | ".join(format_number(loss) for loss in row.long_losses)
        lines.append(
            f"| {row.number} | {row.group} | {row.state_mib:.3f} | {format_number(row.proxy_loss)} | {losses} | "
            f"{format_number(row.long_loss)} | {shorten(row.description)} |"
        )
    return "\n".join(lines) + "\n"
