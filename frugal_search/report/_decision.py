"""The answer of a study: the recommendation taken at the confirmation rung, and its verdicts (pure).

The search promotes its most promising candidates (front members and baselines) to a rung that
trains several times longer, several seeds each (``frugal_search.search.rungs``). The answer is
chosen there: among the candidates within the memory budget (baselines included), the lowest mean
loss wins, and among those that tie with it (a difference no larger than the seed spread) the one
with the least optimizer state. A study without a rung is answered at the proxy the same way,
over the proxy's seeds.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import pandas as pd

from frugal_search.report._objective import LOSS_OBJECTIVE, Objective
from frugal_search.report._seeds import BEATS, TIES, best_baseline_runs, seed_summary, verdict
from frugal_search.search import RUNG_ON_PROXY, RUNG_ON_TARGET

# A baseline whose state is within this share of the answer's counts as "equal memory".
EQUAL_MEMORY_TOLERANCE = 0.05

SUMMARY_COLUMNS = [
    "number", "baseline", "lr", "summary", "state_bytes", "state_mib", "state_pct_of_adamw", "over_budget",
    "proxy_mean", "proxy_spread", "proxy_seeds", "mean", "spread", "seeds", "factor", "rung_on",
]


def rung_summary(table: pd.DataFrame, objective: Objective = LOSS_OBJECTIVE, *, on: str | None = None) -> pd.DataFrame:
    """One row per candidate of a rung: ``on`` ``"proxy"`` the confirmation rung (the largest
    ``rung_factor`` of the rungs on the proxy), ``"target"`` the rung on the ``[transfer]`` model,
    None the top rung (the target's when it has finished runs, else the confirmation rung).

    ``mean`` / ``spread`` / ``seeds``: the figure of ``objective`` over the candidate's rung runs
    (sample standard deviation; NaN for one run; a run that diverged makes the mean the worst
    value); ``proxy_mean`` / ``proxy_spread`` / ``proxy_seeds`` the same at the proxy (the trial and
    its extra seeds); ``lr`` a baseline's lr of its grid; on the target, the state columns are the
    target's. Sorted by state, then trial number. Empty when the rung has no runs that finished.
    """
    if "rung_of" not in table or table["rung_of"].isna().all():
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    runs = table[table["rung_of"].notna() & table["state"].isin(["COMPLETE", "PRUNED"])]
    if on is None:
        on = RUNG_ON_TARGET if (runs["rung_on"] == RUNG_ON_TARGET).any() else RUNG_ON_PROXY
    runs = runs[runs["rung_on"] == on]
    if runs.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    factor = runs["rung_factor"].max()
    runs = runs[runs["rung_factor"] == factor]
    proxy = _proxy_figures(table, objective)
    by_number = table.set_index("number")
    rows = []
    for number, group in runs.groupby(runs["rung_of"].astype(int)):
        values = [_figure(row, objective) for _, row in group.iterrows()]
        rung = (*_mean_and_spread(values, objective), len(values))
        row = _candidate_row(by_number.loc[number], int(number), proxy(int(number)), rung, int(factor), on)
        if on == RUNG_ON_TARGET:  # its state on the model it trained there
            first = group.iloc[0]
            row.update({key: float(first[key]) for key in ("state_bytes", "state_mib", "state_pct_of_adamw")})
        rows.append(row)
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    return summary.sort_values(["state_bytes", "number"], kind="stable").reset_index(drop=True)


def proxy_summary(table: pd.DataFrame, objective: Objective = LOSS_OBJECTIVE) -> pd.DataFrame:
    """The same columns as :func:`rung_summary` for a study without a rung: its proxy front's
    trials and each baseline's best run, with the figures over the proxy's seeds (``factor`` 1)."""
    from frugal_search.report._front import pareto_front

    numbers = [int(n) for n in pareto_front(table, objective)["number"]]
    numbers += [int(n) for n in best_baseline_runs(table, objective)["number"] if math.isfinite(n)]
    proxy = _proxy_figures(table, objective)
    by_number = table.set_index("number")
    rows = [_candidate_row(by_number.loc[n], n, proxy(n), proxy(n), 1, RUNG_ON_PROXY) for n in sorted(set(numbers))]
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    return summary.sort_values(["state_bytes", "number"], kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class Recommendation:
    """The answer: the candidate chosen, the best candidate it ties with (itself when it is the best),
    the other candidates in that tie, and where the decision was taken (``factor`` x the proxy steps,
    on the proxy or, ``on_target``, on the ``[transfer]`` model)."""

    number: int
    best_number: int
    tied: tuple[int, ...]
    factor: int
    on_target: bool = False

    @property
    def at_a_rung(self) -> bool:
        """Whether the answer was taken above the proxy budget (a rung) rather than at it."""
        return self.factor > 1 or self.on_target

    @property
    def chosen_for_less_state(self) -> bool:
        """Whether the answer is not the lowest mean but ties with it on less state."""
        return self.number != self.best_number


def recommend(
    summary: pd.DataFrame, *, memory_budget_bytes: int | None, objective: Objective = LOSS_OBJECTIVE
) -> Recommendation | None:
    """The answer from a :func:`rung_summary` (or :func:`proxy_summary`): among candidates within
    ``memory_budget_bytes`` with a finite mean, the least state among those that tie with the best
    mean (:func:`~frugal_search.report._seeds.verdict`); None when no candidate qualifies. On the
    target the budget (on the proxy's state) is the candidates' ``over_budget`` at the proxy."""
    if summary.empty:
        return None
    on_target = bool((summary["rung_on"] == RUNG_ON_TARGET).any())
    eligible = summary[summary["mean"].map(math.isfinite).astype(bool)]
    if memory_budget_bytes is not None and not on_target:
        eligible = eligible[eligible["state_bytes"] <= memory_budget_bytes]
    eligible = eligible[~eligible["over_budget"].astype(bool)]
    if eligible.empty:
        return None
    ranked = eligible.assign(_signed=objective.sign * eligible["mean"])
    best = ranked.sort_values(["_signed", "state_bytes", "number"], kind="stable").iloc[0]
    tied = [
        row
        for _, row in ranked.iterrows()
        if row["number"] == best["number"] or _verdict(row, best, objective) in (TIES, BEATS)
    ]
    chosen = min(tied, key=lambda row: (row["state_bytes"], row["_signed"], row["number"]))
    return Recommendation(
        number=int(chosen["number"]),
        best_number=int(best["number"]),
        tied=tuple(sorted(int(row["number"]) for row in tied if row["number"] != chosen["number"])),
        factor=int(best["factor"]),
        on_target=on_target,
    )


def study_answer(
    table: pd.DataFrame, *, memory_budget_bytes: int | None, objective: Objective = LOSS_OBJECTIVE
) -> tuple[Recommendation | None, pd.DataFrame]:
    """The study's answer and the summary it was taken from: the top rung's that holds a candidate
    within ``memory_budget_bytes`` (the rung on the target model, then the confirmation rung:
    :func:`rung_summary`), else the proxy's (:func:`proxy_summary`; ``Recommendation.factor`` then says 1)."""
    for on in (RUNG_ON_TARGET, RUNG_ON_PROXY):
        summary = rung_summary(table, objective, on=on)
        answer = recommend(summary, memory_budget_bytes=memory_budget_bytes, objective=objective)
        if answer is not None:
            return answer, summary
    summary = proxy_summary(table, objective)
    return recommend(summary, memory_budget_bytes=memory_budget_bytes, objective=objective), summary


def baseline_verdicts(summary: pd.DataFrame, number: int, objective: Objective = LOSS_OBJECTIVE) -> pd.DataFrame:
    """The answer (trial ``number``) against each baseline of ``summary``, in the terms users decide by.

    ``verdict``: ``dominates`` (no more state and a better mean beyond the spread), ``matches its loss
    with N% of its state`` (a tie on less state), ``beats at equal memory`` (better, with at most
    ``EQUAL_MEMORY_TOLERANCE`` more state), ``beats with N% more state``, ``ties with more state``,
    ``loses``, or ``is this baseline``; ``difference`` is the answer's mean minus the baseline's,
    ``state_ratio`` the answer's state over the baseline's.
    """
    columns = ["baseline", "number", "lr", "mean", "spread", "seeds", "state_mib", "over_budget",
               "difference", "state_ratio", "verdict"]
    chosen = summary.set_index("number").loc[number]
    rows = []
    for _, row in summary[summary["baseline"].notna()].iterrows():
        ratio = chosen["state_bytes"] / row["state_bytes"] if row["state_bytes"] > 0 else math.nan
        rows.append(
            {
                "baseline": row["baseline"],
                "number": int(row["number"]),
                "lr": row["lr"],
                "mean": row["mean"],
                "spread": row["spread"],
                "seeds": int(row["seeds"]),
                "state_mib": row["state_mib"],
                "over_budget": bool(row["over_budget"]),
                "difference": chosen["mean"] - row["mean"],
                "state_ratio": ratio,
                "verdict": "is this baseline" if int(row["number"]) == number else _words(chosen, row, ratio, objective),
            }
        )
    return pd.DataFrame(rows, columns=columns)


def dominating_points(summary: pd.DataFrame, objective: Objective = LOSS_OBJECTIVE) -> dict[int, int | None]:
    """For each baseline of ``summary`` (by its trial number): the searched candidate that dominates it
    with the least state (no more state, a better mean beyond the seed spread), or None when none does.

    Taken over a :func:`rung_summary` it says which baselines the searched points dominate at the
    rung; over a :func:`proxy_summary`, at the proxy (the front's members against each baseline's best run).
    """
    searched = [row for _, row in summary[summary["baseline"].isna()].iterrows()]
    dominated: dict[int, int | None] = {}
    for _, baseline in summary[summary["baseline"].notna()].iterrows():
        winners = [
            row for row in searched
            if row["state_bytes"] <= baseline["state_bytes"] and _verdict(row, baseline, objective) == BEATS
        ]
        best = min(winners, key=lambda row: (row["state_bytes"], row["number"]), default=None)
        dominated[int(baseline["number"])] = None if best is None else int(best["number"])
    return dominated


def memory_win(summary: pd.DataFrame, objective: Objective = LOSS_OBJECTIVE) -> tuple[pd.Series, pd.Series] | None:
    """``(point, best baseline)``: the candidate with the least state whose mean ties with or beats
    the best baseline's (the baseline with the best mean at this rung), or None without a baseline
    or a finite mean. The point may be the baseline itself, when nothing with less state matches it."""
    if summary.empty:
        return None
    finite = summary[summary["mean"].map(math.isfinite).astype(bool)]
    baselines = finite[finite["baseline"].notna()]
    if baselines.empty:
        return None
    signed = baselines.assign(_signed=objective.sign * baselines["mean"])
    best = signed.sort_values(["_signed", "state_bytes"], kind="stable").iloc[0]
    matching = [row for _, row in finite.iterrows() if _verdict(row, best, objective) in (TIES, BEATS)]
    point = min(matching, key=lambda row: (row["state_bytes"], objective.sign * row["mean"]), default=best)
    return point, best.drop("_signed")


def _proxy_figures(table: pd.DataFrame, objective: Objective):
    """``figures(number) -> (mean, spread, seeds)`` of a trial at the proxy: over its extra seeds
    when it has some, else its own run (spread NaN)."""
    seeds = seed_summary(table, objective).set_index("number")
    by_number = table.set_index("number")

    def figures(number: int) -> tuple[float, float, int]:
        if number in seeds.index:
            row = seeds.loc[number]
            return float(row["mean"]), float(row["std"]), int(row["seeds"])
        return _figure(by_number.loc[number], objective), math.nan, 1

    return figures


def _candidate_row(
    trial: pd.Series, number: int, proxy: tuple[float, float, int], rung: tuple[float, float, int], factor: int,
    on: str,
) -> dict:
    """A row of SUMMARY_COLUMNS: the trial's identity and state, its proxy and rung figures."""
    baseline = trial["baseline"]
    return {
        "number": number,
        "baseline": baseline if isinstance(baseline, str) and baseline else None,
        "lr": float(trial["baseline_lr"]),
        "summary": trial["summary"],
        "state_bytes": float(trial["state_bytes"]),
        "state_mib": float(trial["state_mib"]),
        "state_pct_of_adamw": float(trial["state_pct_of_adamw"]),
        "over_budget": bool(trial["over_budget"]),
        "proxy_mean": proxy[0],
        "proxy_spread": proxy[1],
        "proxy_seeds": proxy[2],
        "mean": rung[0],
        "spread": rung[1],
        "seeds": rung[2],
        "factor": factor,
        "rung_on": on,
    }


def _verdict(row: pd.Series, other: pd.Series, objective: Objective) -> str | None:
    return verdict(row["mean"], row["spread"], other["mean"], other["spread"], maximize=objective.maximize)


def _words(chosen: pd.Series, baseline: pd.Series, ratio: float, objective: Objective) -> str:
    outcome = _verdict(chosen, baseline, objective)
    if outcome is None:
        return "no verdict (a mean is not finite)"
    if outcome == BEATS:
        if ratio <= 1:
            return "dominates"
        if ratio <= 1 + EQUAL_MEMORY_TOLERANCE:
            return "beats at equal memory"
        return f"beats with {100 * (ratio - 1):.0f}% more state"
    if outcome == TIES:
        figure = "loss" if not objective.maximize else objective.words
        return f"matches its {figure} with {100 * ratio:.0f}% of its state" if ratio < 1 else "ties with more state"
    return "loses"


def _figure(row: pd.Series, objective: Objective) -> float:
    value = row[objective.name]
    return float(value) if row["state"] == "COMPLETE" and math.isfinite(value) else objective.worst()


def _mean_and_spread(values: list[float], objective: Objective) -> tuple[float, float]:
    if not all(math.isfinite(value) for value in values):
        return objective.worst(), math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan
