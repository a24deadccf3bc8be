"""report.md: the study in words and tables, rendered from the numbers of the other modules."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from frugal_search.report._analysis import ObjectiveImportance
from frugal_search.report._decision import Recommendation, baseline_verdicts, dominating_points, memory_win
from frugal_search.report._objective import LOSS_OBJECTIVE, Objective
from frugal_search.proxy import METHODS
from frugal_search.units import format_bytes

# outcomes that end a trial without a loss, and how the report says so
_NO_LOSS_WORDS: dict[str, str] = {
    "diverged": "diverged (loss became NaN/inf or blew up)",
    "infeasible": "infeasible (optimizer state over the memory budget; not run)",
    "oom": "out of device memory",
    "stopped-early": "stopped early by successive halving (partial proxy run)",
    "error": "failed with an error (or its worker stopped)",
    "pruned": "pruned",
    "running": "still running (or its worker stopped before finishing)",
    "waiting": "waiting to run",
}


@dataclass(frozen=True)
class ReportContent:
    """Everything report.md shows; built by `write_report`, rendered by `render_markdown`."""

    study_name: str
    settings: dict[str, str]
    table: pd.DataFrame
    front: pd.DataFrame
    outcome_counts: dict[str, int]
    memory_budget_bytes: int | None
    best: pd.Series | None
    baseline_comparison: pd.DataFrame | None
    importances: list[ObjectiveImportance]
    reference_point: tuple[float, float] | None
    final_hypervolume: float | None
    export_command_prefix: str
    memory_command: str
    objective: Objective = LOSS_OBJECTIVE  # the figure trials are ranked by, and its direction
    answer: Recommendation | None = None  # the study's answer (``_decision.study_answer``)
    decision: pd.DataFrame | None = None  # the candidates it was chosen from (``_decision.rung_summary``)
    # the proxy's front and each baseline's best run over the proxy's seeds (``_decision.proxy_summary``),
    # when the answer was taken at a rung: where every baseline stands before the promotion
    proxy_standing: pd.DataFrame | None = None
    proxy_steps: int | None = None  # steps of the proxy run, to say how long the rung trained
    # when the answer was taken on the target model: the confirmation rung before it, and the target's name
    confirmation: pd.DataFrame | None = None
    target_words: str = "the target model"


def flatten_settings(config: Any, prefix: str = "") -> dict[str, str]:
    """Return ``{"section.key": "value"}`` for a (nested) dataclass or mapping, for the settings table.

    Objects with a ``to_dict()`` (the search space) are flattened through it; unset (None) values
    are left out, since they mean "the default".
    """
    if hasattr(config, "to_dict") and not isinstance(config, Mapping):
        config = config.to_dict()
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        items = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    elif isinstance(config, Mapping):
        items = dict(config)
    else:
        return {prefix.rstrip("."): str(config)} if prefix else {}
    flat: dict[str, str] = {}
    for key, value in items.items():
        name = f"{prefix}{key}"
        if value is None:
            continue
        if _is_range(value):
            flat[name] = f"{value['low']} .. {value['high']}" + (" (log)" if value.get("log") else "")
        elif hasattr(value, "to_dict") or (dataclasses.is_dataclass(value) and not isinstance(value, type)) or isinstance(value, Mapping):
            flat.update(flatten_settings(value, prefix=f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat[name] = ", ".join(str(item) for item in value)
        else:
            flat[name] = str(value)
    return flat


def _is_range(value: Any) -> bool:
    # a searched numeric dimension as the search space writes it: {"low": ..., "high": ..., "log": ...}
    return isinstance(value, Mapping) and "low" in value and "high" in value


def _cell(value: Any, digits: int = 4) -> str:
    """Format one table cell: numbers to ``digits`` significant digits, NaN/None as an en dash."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.{digits}g}"
    text = str(value)
    return text.replace("|", "\\|").replace("\n", " ") if text else "–"


def verdict_sentences(number: int, comparison: pd.DataFrame) -> list[str]:
    """One plain sentence per baseline: "#49 beats galore (lr 0.01) by 0.021 at 3 / 3 seeds", or
    "#49 and galore (lr 0.01) are indistinguishable at 3 seeds (difference 0.004, spread 0.006)"."""
    sentences = []
    for row in comparison.itertuples(index=False):
        if not isinstance(row.verdict, str):
            continue
        name = f"{row.baseline} ({_lr_cell(row.lr)})"
        seeds = f"{row.chosen_seeds} seeds" if row.chosen_seeds == row.seeds else f"{row.chosen_seeds} / {row.seeds} seeds"
        spreads = [value for value in (row.chosen_spread, row.spread) if math.isfinite(value)]
        spread = f"spread {max(spreads):.2g}" if spreads else "spread unknown at one seed"
        difference = abs(row.loss_difference)
        if row.verdict == "ties":
            sentences.append(
                f"- #{number} and {name} are indistinguishable at {seeds} (difference {difference:.2g}, {spread})."
            )
        else:
            sentences.append(f"- #{number} {row.verdict} {name} by {difference:.3g} at {seeds} ({spread}).")
    return sentences


def _lr_cell(lr: float) -> str:
    return "own lr" if lr is None or not math.isfinite(lr) else f"lr {lr:g}"


def _trial_cell(number: Any) -> str:
    return "–" if number is None or (isinstance(number, float) and math.isnan(number)) else f"#{int(number)}"


def _mean_cell(mean: float, spread: float) -> str:
    if mean is None or not math.isfinite(mean):
        return "–" if mean is None or math.isnan(mean) else "diverged"
    return f"{mean:.4g} ± {spread:.2g}" if math.isfinite(spread) else f"{mean:.4g}"


def _markdown_table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return lines


def _counts_sentence(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    parts = [f"{count} {outcome}" for outcome, count in counts.items()]
    return f"{total} trial{'s' if total != 1 else ''}: " + ", ".join(parts) + "."


def _trials_section(content: ReportContent) -> list[str]:
    lines = ["## Trials", ""]
    if content.table.empty:
        lines += [
            "The study has no trials yet, so there is no front, no best partition and nothing to export.",
            "Run the search first (`frugal-search run <study.toml>`), then this report again.",
        ]
        return lines
    lines += [_counts_sentence(content.outcome_counts), ""]
    lines += _markdown_table(
        ["outcome", "trials", "meaning"],
        [[outcome, count, _NO_LOSS_WORDS.get(outcome, f"finished with {content.objective.a_value}" if outcome == "ok" else outcome)]
         for outcome, count in content.outcome_counts.items()],
    )
    failed = content.table[content.table["state"] != "COMPLETE"]
    reasons = failed[failed["reason"] != ""]
    if not reasons.empty:
        lines += ["", "Why trials ended without a loss (first of each reason):", ""]
        for reason, group in reasons.groupby("reason", sort=False):
            numbers = ", ".join(f"#{n}" for n in group["number"].head(5))
            more = f" and {len(group) - 5} more" if len(group) > 5 else ""
            lines.append(f"- {numbers}{more} ({group['outcome'].iloc[0]}): {reason}")
    return lines


def _front_section(content: ReportContent) -> list[str]:
    objective = content.objective
    lines = [f"## Pareto front: {objective.memory_words} against {objective.words}", ""]
    if content.front.empty:
        lines.append(
            f"No trial finished with {objective.a_value} "
            "(every trial diverged, was infeasible, ran out of memory or failed), so there is no Pareto front yet."
        )
        return lines
    if objective.maximize:
        better, step = f"a higher {objective.words}", f"a higher {objective.words}"
    else:
        better, step = "a lower loss" if objective.name == "eval_loss" else f"a lower {objective.words}", "a lower loss"
    lines += [
        f"{len(content.front)} partition{'s' if len(content.front) != 1 else ''} on the front, by memory "
        f"({objective.words}: {objective.better}). "
        f"No other finished trial has both {better} and less {objective.memory_words} than any of them. "
        f"Read it left to right: each step buys {step} with more {objective.memory_words}.",
        "",
        "![Pareto front](pareto.png)",
        "",
    ]
    extra = [] if objective.name == "eval_loss" else ["eval loss"]
    rows = [
        [f"#{row['number']}", row["state_mib"], row["state_pct_of_adamw"], row[objective.name],
         *([row["eval_loss"]] if extra else []),
         *([row["training_mib"]] if objective.memory == "training_mib" else []),
         row["tokens_per_s"], row["baseline"] or "", row["summary"]]
        for row in content.front.to_dict("records")
    ]
    header = ["trial", "state (MiB)", "% of AdamW", objective.words, *extra]
    if objective.memory == "training_mib":
        header.append("training memory (MiB)")
    lines += _markdown_table([*header, "tokens/s", "baseline", "partition"], rows)
    return lines


def _best_section(content: ReportContent) -> list[str]:
    objective = content.objective
    best_words = f"{objective.best_word} {'loss' if objective.name == 'eval_loss' else objective.words}"
    if content.memory_budget_bytes is None:
        title, where = f"## Best partition (no memory budget set: {best_words} overall)", "overall"
    else:
        budget = format_bytes(content.memory_budget_bytes)
        title, where = f"## Best partition under the memory budget ({budget})", f"under {budget}"
    lines = [title, ""]
    if content.best is None:
        if content.front.empty:
            lines.append(f"None: no trial finished with {objective.a_value}.")
        else:
            lowest = content.front.iloc[0]
            lines.append(
                f"None: no finished trial keeps its optimizer state {where}. The smallest finished one "
                f"is trial #{int(lowest['number'])} with {lowest['state_mib']:.4g} MiB."
            )
        return lines
    best = content.best
    number = int(best["number"])
    lines += [
        f"Trial **#{number}**{' (baseline ' + str(best['baseline']) + ')' if isinstance(best['baseline'], str) else ''}: "
        f"{objective.words} {best[objective.name]:.4g}"
        + (f" (eval loss {best['eval_loss']:.4g})" if objective.name != "eval_loss" and math.isfinite(best["eval_loss"]) else "")
        + f", optimizer state {best['state_mib']:.4g} MiB"
        + (f" ({best['state_pct_of_adamw']:.3g}% of AdamW)" if math.isfinite(best["state_pct_of_adamw"]) else "")
        + ".",
        "",
        f"Partition: {best['summary'] or '(no summary stored)'}",
        "",
    ]
    comparison = content.baseline_comparison
    if comparison is not None and not comparison.empty and comparison["chosen_seeds"].max() > 1:
        first = comparison.iloc[0]
        lines += [
            f"Over {int(first['chosen_seeds'])} seeds its {objective.words} is "
            f"{_mean_cell(first['chosen_loss'], first['chosen_spread'])} (mean ± sample standard deviation).",
            "",
        ]
    if comparison is None or comparison.empty:
        lines.append("The study has no baseline trials to compare with.")
    else:
        plural = "Losses are" if objective.name == "eval_loss" else f"Figures ({objective.words}) are"
        difference = "loss difference" if objective.name == "eval_loss" else f"{objective.words} difference"
        sign = "positive" if objective.maximize else "negative"
        lines += [
            f"Compared with each baseline at its own best lr (the best run of its lr grid). {plural} "
            "means over the seeds that ran, ± their sample standard deviation; a difference no larger "
            f"than the larger spread is a tie. {difference[0].upper() + difference[1:]} = this trial minus the "
            f"baseline ({sign} is better); memory ratio = this trial's state / the baseline's (below 1 is smaller):",
            "",
        ]
        lines += _markdown_table(
            ["baseline", "best lr", "trial", "outcome", objective.words, "seeds", "state (MiB)", difference,
             "memory ratio", "verdict"],
            [[row["baseline"], _lr_cell(row["lr"]), _trial_cell(row["number"]), row["outcome"],
              _mean_cell(row[objective.name], row["spread"]), row["seeds"], row["state_mib"], row["loss_difference"],
              row["memory_ratio"], row["verdict"]]
             for row in comparison.to_dict("records")],
        )
        lines += ["", *verdict_sentences(number, comparison), "", "The lr grid each baseline ran on:", ""]
        lines += [f"- {row.baseline}: {row.grid}" for row in comparison.itertuples(index=False)]
    if best["baseline"] in METHODS:
        lines += [
            "",
            "## Take it away",
            "",
            f"Trial #{number} is a {best['baseline']} trial ({METHODS[best['baseline']].words}), not a split: there is "
            f"no partition to export; train with {best['baseline']} itself, or export a FRUGAL trial of the front by "
            f"its number (`{content.export_command_prefix} --trial N -o split.json`).",
        ]
        return lines
    lines += [
        "",
        "## Take it away",
        "",
        "Write its split config, then see what it costs on your full-size model (a Hugging Face config "
        "JSON; no weights are built):",
        "",
        "```bash",
        f"{content.export_command_prefix} --trial {number} -o split.json",
        content.memory_command,
        "```",
        "",
        "Any other trial exports the same way with its number; "
        f"`{content.export_command_prefix} --best --max-memory \"1.5 MiB\" -o split.json` picks the "
        f"{best_words} under a memory limit, and "
        f"`{content.export_command_prefix} --baseline NAME -o NAME.json` a baseline's best run of its lr grid.",
    ]
    return lines


def how_chosen(
    answer: Recommendation, decision: pd.DataFrame, proxy_steps: int | None, objective: Objective = LOSS_OBJECTIVE,
    *, confirmation: pd.DataFrame | None = None, target_words: str = "the target model",
) -> str:
    """The two sentences that say how the answer was chosen, before any figure (three when it was
    taken on the target model, after the ``confirmation`` rung)."""
    seeds = int(decision["seeds"].max())
    best = f"the {'highest' if objective.maximize else 'lowest'} mean {objective.words}"
    tie = ("baselines included, or among the candidates that tie with it (a difference within the seed spread) "
           "the one with the least optimizer state.")
    if answer.on_target and confirmation is not None and not confirmation.empty:
        first = int(confirmation["factor"].max())
        return (
            f"The {len(confirmation)} most promising candidates of the proxy runs (the Pareto front and the baselines, "
            f"promoted by non-dominated rank of memory against {objective.words}, spread over memory) were trained "
            f"again {first}x longer{_steps(first, proxy_steps)}, and the {len(decision)} of them within the memory budget "
            f"then on {target_words}, {answer.factor}x the proxy steps{_steps(answer.factor, proxy_steps)} with the "
            f"width lr rule, {seeds} seeds each. The answer is {best} on the target, {tie}"
        )
    if answer.factor > 1:
        return (
            f"The {len(decision)} most promising candidates of the proxy runs (the Pareto front and the baselines, "
            f"promoted by non-dominated rank of memory against {objective.words}, spread over memory) were trained "
            f"again {answer.factor}x longer{_steps(answer.factor, proxy_steps)}, {seeds} seeds each. The answer is "
            f"{best} there within the memory budget, {tie}"
        )
    return (
        f"The study has no confirmation rung, so the answer is taken at the proxy budget, over {seeds} seed(s): "
        f"{best} within the memory budget, baselines included, or among the candidates that tie with "
        "it (a difference within the seed spread) the one with the least optimizer state."
    )


def _steps(factor: int, proxy_steps: int | None) -> str:
    """`` (600 steps)``, or nothing when the proxy's steps are unknown."""
    return f" ({factor * proxy_steps} steps)" if proxy_steps else ""


def where_decided(answer: Recommendation, target_words: str = "the target model") -> str:
    """Where the answer was taken, in words: ``at 4x the proxy steps``, ``on <target> at 1x ...``."""
    if answer.on_target:
        return f"on {target_words} at {answer.factor}x the proxy steps"
    return f"at {answer.factor}x the proxy steps" if answer.factor > 1 else "at the proxy budget"


def _candidate_words(row: pd.Series) -> str:
    """``#57`` or ``#3 galore at lr 0.03``."""
    if isinstance(row["baseline"], str):
        return f"#{int(row['number'])} {row['baseline']} at {_lr_cell(row['lr'])}"
    return f"#{int(row['number'])}"


def _dominated_cell(number: int | None, candidates: pd.DataFrame) -> str:
    """``#43 (1.56, 2.03 MiB)`` for the dominating candidate, or ``not dominated``."""
    if number is None:
        return "not dominated"
    row = candidates.loc[number]
    return f"#{number} ({row['mean']:.4g}, {row['state_mib']:.4g} MiB)"


def _proxy_standing_table(standing: pd.DataFrame, promoted: set[int], objective: Objective) -> list[str]:
    """Each baseline's best run at the proxy: its figures over the proxy's seeds, whether it was
    promoted, and the front member with the least state that dominates it."""
    dominated = dominating_points(standing, objective)
    by_number = standing.set_index("number", drop=False)
    rows = []
    for row in standing[standing["baseline"].notna()].to_dict("records"):
        number = int(row["number"])
        rows.append([
            row["baseline"], _lr_cell(row["lr"]), f"#{number}", _mean_cell(row["mean"], row["spread"]), row["seeds"],
            row["state_mib"], row["state_pct_of_adamw"], "yes" if row["over_budget"] else "no",
            "yes" if number in promoted else "no", _dominated_cell(dominated[number], by_number),
        ])
    return _markdown_table(
        ["baseline", "lr", "trial", f"{objective.words} at the proxy", "seeds", "state (MiB)", "% of AdamW", "over budget",
         "promoted", "dominated at the proxy by"],
        rows,
    )


def _answer_section(content: ReportContent) -> list[str]:
    """The answer first: how it was chosen, the recommendation, its verdicts, the memory win, the plot."""
    lines = ["## The answer", ""]
    answer, decision, objective = content.answer, content.decision, content.objective
    if answer is None or decision is None or decision.empty:
        lines += ["No answer yet: no candidate finished with a loss within the memory budget.", "", "![Pareto front](pareto.png)"]
        return lines
    lines += [how_chosen(answer, decision, content.proxy_steps, objective, confirmation=content.confirmation,
                         target_words=content.target_words), ""]
    by_number = decision.set_index("number", drop=False)
    chosen, best = by_number.loc[answer.number], by_number.loc[answer.best_number]
    where = where_decided(answer, content.target_words)
    pct = f" ({chosen['state_pct_of_adamw']:.3g}% of AdamW's)" if math.isfinite(chosen["state_pct_of_adamw"]) else ""
    if isinstance(chosen["baseline"], str):
        lines.append(
            f"**The answer is a baseline: {chosen['baseline']} at {_lr_cell(chosen['lr'])}** (trial #{answer.number}): "
            f"no searched partition beats it {where}."
        )
    else:
        lines.append(f"**Trial #{answer.number}**: {chosen['summary']}.")
    lines += [
        "",
        f"{objective.words[0].upper() + objective.words[1:]} {where}: {_mean_cell(chosen['mean'], chosen['spread'])} "
        f"over {int(chosen['seeds'])} seed(s); optimizer state {chosen['state_mib']:.4g} MiB{pct}.",
    ]
    if answer.chosen_for_less_state:
        lines.append(
            f"It ties with the lowest mean, {_candidate_words(best)} ({_mean_cell(best['mean'], best['spread'])} "
            f"with {best['state_mib']:.4g} MiB), on {100 * chosen['state_bytes'] / best['state_bytes']:.0f}% of its "
            "state, so the smaller state wins."
        )
    if answer.tied:
        lines.append("Candidates in the tie: " + ", ".join(_candidate_words(by_number.loc[n]) for n in answer.tied) + ".")
    win = memory_win(decision, objective)
    if win is not None:
        point, baseline = win
        if int(point["number"]) != int(baseline["number"]):
            lines += [
                "",
                f"**Memory win:** {_candidate_words(point)} matches the {objective.words} of the best baseline, "
                f"{_candidate_words(baseline)} ({_mean_cell(baseline['mean'], baseline['spread'])}), with "
                f"{100 * point['state_bytes'] / baseline['state_bytes']:.0f}% of its state "
                f"({point['state_mib']:.4g} MiB against {baseline['state_mib']:.4g} MiB).",
            ]
        else:
            lines += ["", f"**Memory win:** none: nothing with less state matches the best baseline, {_candidate_words(baseline)}."]
    verdicts = baseline_verdicts(decision, answer.number, objective)
    if not verdicts.empty:
        dominated = dominating_points(decision, objective)
        lines += ["", f"Against each baseline at its best lr of the proxy's grid, {where} (mean ± sample std over seeds; "
                  "a difference within the larger spread is a tie); the last column names the searched candidate with "
                  "the least state that dominates the baseline there (no more state, a better mean beyond the spread):", ""]
        lines += _markdown_table(
            ["baseline", "lr", "trial", objective.words, "seeds", "state (MiB)", "over budget", "difference", "state ratio",
             "verdict", "dominated by a searched point"],
            [[row["baseline"], _lr_cell(row["lr"]), f"#{int(row['number'])}", _mean_cell(row["mean"], row["spread"]),
              row["seeds"], row["state_mib"], "yes" if row["over_budget"] else "no", row["difference"], row["state_ratio"],
              row["verdict"], _dominated_cell(dominated[int(row["number"])], by_number)]
             for row in verdicts.to_dict("records")],
        )
    standing = content.proxy_standing
    if answer.at_a_rung and standing is not None and not standing[standing["baseline"].notna()].empty:
        lines += ["", "Every baseline at its best lr at the proxy, against the proxy's front (the promoted ones were "
                  "also trained longer, above):", ""]
        lines += _proxy_standing_table(standing, set(decision["number"]), objective)
    lines += ["", "![Pareto front](pareto.png)", ""]
    if answer.on_target and content.confirmation is not None:
        lines += _target_table(decision, content.confirmation, content.target_words)
    elif answer.factor > 1:
        lines += [f"Every promoted candidate, at the proxy and {where} (diamonds in the plot):", ""]
        lines += _markdown_table(
            ["candidate", "state (MiB)", "% of AdamW", "at the proxy", f"at {answer.factor}x", "seeds", "partition"],
            [[_candidate_words(row), row["state_mib"], row["state_pct_of_adamw"], _mean_cell(row["proxy_mean"], row["proxy_spread"]),
              _mean_cell(row["mean"], row["spread"]), row["seeds"], row["summary"]]
             for _, row in decision.iterrows()],
        )
        lines.append("")
    lines += ["Export it:", "", "```bash", f"{content.export_command_prefix} --best -o split.json", "```"]
    return lines


def _target_table(target: pd.DataFrame, confirmation: pd.DataFrame, target_words: str) -> list[str]:
    """Every candidate of the confirmation rung at the proxy, at that rung (the plot's diamonds) and on
    the target (its state there), or ``not trained there``."""
    factor = int(confirmation["factor"].max())
    on_target = target.set_index("number")
    lines = [f"Every candidate of the confirmation rung, at the proxy, at {factor}x (diamonds in the plot) and on "
             f"{target_words} (state on the target):", ""]
    rows = []
    for _, row in confirmation.iterrows():
        there = on_target.loc[row["number"]] if row["number"] in on_target.index else None
        rows.append([
            _candidate_words(row), row["state_mib"], _mean_cell(row["proxy_mean"], row["proxy_spread"]),
            _mean_cell(row["mean"], row["spread"]),
            "not trained there" if there is None else _mean_cell(there["mean"], there["spread"]),
            math.nan if there is None else there["state_mib"], math.nan if there is None else there["state_pct_of_adamw"],
            row["summary"],
        ])
    lines += _markdown_table(
        ["candidate", "proxy state (MiB)", "at the proxy", f"at {factor}x", "on the target", "target state (MiB)",
         "% of AdamW on the target", "partition"],
        rows,
    )
    return [*lines, ""]


def _importance_section(content: ReportContent) -> list[str]:
    lines = ["## Which search parameters matter", ""]
    for entry in content.importances:
        if entry.message:
            lines.append(f"- {entry.objective}: {entry.message}.")
        else:
            top = ", ".join(f"{name} {value:.2f}" for name, value in list(entry.importances.items())[:3])
            lines.append(f"- {entry.objective}: {top}")
    lines += ["", "![Parameter importance](importance.png)"]
    return lines


def _progress_section(content: ReportContent) -> list[str]:
    lines = ["## Progress of the search", ""]
    if content.reference_point is None or content.final_hypervolume is None:
        lines.append("No hypervolume: no trial finished with a loss.")
        return lines
    objective = content.objective
    mem, loss = content.reference_point
    if objective.maximize:  # the volume is computed on -figure, so both coordinates are minimized
        words = f"MiB x {objective.words} below the reference"
        reference = f"({mem:.4g} MiB, {objective.words} {-loss:.4g}) = 1.1 x the largest memory and 0.9 x the lowest {objective.words}"
    else:
        words = "MiB x loss"
        reference = f"({mem:.4g} MiB, loss {loss:.4g}) = 1.1 x the largest memory and loss"
    lines += [
        f"Hypervolume after the last trial: {content.final_hypervolume:.4g} ({words}), measured from the "
        f"reference point {reference} among "
        "finished trials. A curve that has flattened means more trials are unlikely to move the front.",
        "",
        "![Hypervolume](hypervolume.png)",
        "",
        f"![{objective.words} curves](curves.png)",
    ]
    return lines


def render_markdown(content: ReportContent) -> str:
    """Return the text of report.md for ``content``."""
    lines = [f"# Report of study `{content.study_name}`", ""]
    if not content.table.empty:
        lines += _answer_section(content) + [""]
    lines += _trials_section(content)
    lines += [""] + _front_section(content)
    if not content.table.empty:
        lines += [""] + _best_section(content)
        lines += [""] + _importance_section(content)
        lines += [""] + _progress_section(content)
    lines += ["", "## Study settings", ""]
    lines += _markdown_table(["setting", "value"], [[k, v] for k, v in content.settings.items()])
    lines += [
        "",
        "## Files",
        "",
        "- `trials.csv`: every trial (state, outcome, partition in words, loss, memory, tokens/s, reason).",
        "- `pareto.csv`: the Pareto front, sorted by memory.",
        "- `pareto.png`, `curves.png`, `importance.png`, `hypervolume.png`: the plots above.",
        "",
    ]
    return "\n".join(lines)

