"""The answer is taken at the confirmation rung: rung_summary, recommend, verdicts, the memory win.

Studies are filled by hand with proxy trials and rung runs (``rung_of``, ``rung_factor``, ``seed``),
so every expected figure below is computed here from the numbers put in.
"""

from __future__ import annotations

import io
import math
import statistics

import optuna
import pytest

from frugal_search.report import draw_pareto, pareto_front, trials_table, write_report
from frugal_search.report._decision import (
    baseline_verdicts,
    dominating_points,
    memory_win,
    proxy_summary,
    recommend,
    rung_summary,
    study_answer,
)
from frugal_search.report._export import select_trial

MIB = 2**20


def add_rung_runs(study: optuna.Study, of: int, losses: list[float], *, factor: int = 4) -> None:
    """Rung runs of trial ``of``: one COMPLETE trial per loss, its seeds 0, 1, ..."""
    source = study.trials[of]
    for seed, loss in enumerate(losses):
        attrs = {**source.user_attrs, "baseline": None, "baseline_lr": None, "rung_of": of, "rung_factor": factor,
                 "seed": seed, "eval_loss": loss, "steps": 40}
        study.add_trial(optuna.trial.create_trial(
            state=optuna.trial.TrialState.COMPLETE, values=[loss, source.values[1]], user_attrs=attrs))


@pytest.fixture
def confirmed(make_study, add_trial_to) -> optuna.Study:
    """Proxy: #0 adamw (8 MiB, over the 3 MiB budget), #1 galore (2.5 MiB), #2 a split at 2 MiB,
    #3 a split at 0.5 MiB, #4 a split at 1 MiB; the proxy ranks #2 first. At the rung #4 and #2 tie
    with galore, #3 falls back."""
    study = make_study()
    add_trial_to(study, outcome="ok", state_bytes=8 * MIB, eval_loss=2.30, baseline="adamw", over_budget=True, baseline_lr=1e-3)
    add_trial_to(study, outcome="ok", state_bytes=2.5 * MIB, eval_loss=1.91, baseline="galore", baseline_lr=0.03)
    add_trial_to(study, outcome="ok", state_bytes=2 * MIB, eval_loss=1.88, params={"density": 0.3})
    add_trial_to(study, outcome="ok", state_bytes=0.5 * MIB, eval_loss=1.93, params={"density": 0.0})
    add_trial_to(study, outcome="ok", state_bytes=1 * MIB, eval_loss=1.90, params={"density": 0.1})
    add_rung_runs(study, 1, [1.550, 1.560, 1.540])
    add_rung_runs(study, 2, [1.545, 1.555, 1.565])
    add_rung_runs(study, 3, [1.700, 1.690, 1.710])
    add_rung_runs(study, 4, [1.552, 1.548, 1.556])
    add_rung_runs(study, 0, [1.600, 1.610, 1.590])
    return study


def test_rung_summary_averages_each_candidates_rung_runs(confirmed) -> None:
    summary = rung_summary(trials_table(confirmed)).set_index("number")
    assert sorted(summary.index) == [0, 1, 2, 3, 4]
    assert summary.loc[4, "mean"] == pytest.approx(statistics.fmean([1.552, 1.548, 1.556]))
    assert summary.loc[4, "spread"] == pytest.approx(statistics.stdev([1.552, 1.548, 1.556]))
    assert summary.loc[4, "seeds"] == 3 and summary.loc[4, "factor"] == 4
    assert summary.loc[4, "proxy_mean"] == pytest.approx(1.90) and summary.loc[4, "proxy_seeds"] == 1
    assert summary.loc[1, "baseline"] == "galore" and summary.loc[1, "lr"] == pytest.approx(0.03)


def test_the_answer_comes_from_the_rung_and_is_the_least_state_among_ties(confirmed) -> None:
    table = trials_table(confirmed)
    # the proxy alone would pick #2 (lowest proxy loss under the budget)
    assert int(pareto_front(table).sort_values("eval_loss").iloc[0]["number"]) == 2
    answer = recommend(rung_summary(table), memory_budget_bytes=3 * MIB)
    # at the rung galore (1.550 ± 0.010) is the best mean; #2 (1.555 ± 0.010) and #4 (1.552 ± 0.004)
    # tie with it; #3 (1.700) does not; adamw is over the budget. Least state among the tie: #4.
    assert answer.best_number == 1 and answer.number == 4 and answer.tied == (1, 2) and answer.factor == 4
    assert answer.chosen_for_less_state
    # the rung's top and the answer differ from what the proxy ranked first
    assert answer.number != 2


def test_a_baseline_is_the_answer_when_nothing_searched_matches_it(make_study, add_trial_to, tmp_path) -> None:
    study = make_study()
    add_trial_to(study, outcome="ok", state_bytes=2.5 * MIB, eval_loss=1.91, baseline="galore", baseline_lr=0.03)
    add_trial_to(study, outcome="ok", state_bytes=1 * MIB, eval_loss=1.89, params={"density": 0.1})
    add_rung_runs(study, 0, [1.540, 1.545, 1.550])
    add_rung_runs(study, 1, [1.600, 1.610, 1.605])
    answer, summary = study_answer(trials_table(study), memory_budget_bytes=3 * MIB)
    assert answer.number == 0 and summary.set_index("number").loc[0, "baseline"] == "galore"
    text = write_report(study, tmp_path / "report").read_text()
    assert "**The answer is a baseline: galore at lr 0.03** (trial #0)" in text
    assert text.index("## The answer") < text.index("## Trials") < text.index("## Study settings")


def test_verdicts_say_what_users_decide_by(confirmed) -> None:
    summary = rung_summary(trials_table(confirmed))
    verdicts = baseline_verdicts(summary, 4).set_index("baseline")
    # #4 ties galore on 1 / 2.5 of its state
    assert verdicts.loc["galore", "verdict"] == "matches its loss with 40% of its state"
    # #4 beats adamw (1.600 ± 0.010) beyond the spread with 1/8 of its state
    assert verdicts.loc["adamw", "verdict"] == "dominates"
    assert verdicts.loc["adamw", "difference"] == pytest.approx(statistics.fmean([1.552, 1.548, 1.556]) - 1.6)
    # #3 loses to galore; #2 ties it with more state than #4 but less than galore
    assert baseline_verdicts(summary, 3).set_index("baseline").loc["galore", "verdict"] == "loses"
    assert baseline_verdicts(summary, 1).set_index("baseline").loc["galore", "verdict"] == "is this baseline"


def test_equal_memory_and_more_state_verdicts(make_study, add_trial_to) -> None:
    study = make_study()
    add_trial_to(study, outcome="ok", state_bytes=2.0 * MIB, eval_loss=1.9, baseline="badam", baseline_lr=0.01)
    add_trial_to(study, outcome="ok", state_bytes=2.05 * MIB, eval_loss=1.8, params={"density": 0.3})
    add_trial_to(study, outcome="ok", state_bytes=3.0 * MIB, eval_loss=1.8, params={"density": 0.4})
    add_rung_runs(study, 0, [1.70, 1.71, 1.69])
    add_rung_runs(study, 1, [1.50, 1.51, 1.49])
    add_rung_runs(study, 2, [1.50, 1.51, 1.49])
    summary = rung_summary(trials_table(study))
    assert baseline_verdicts(summary, 1).loc[0, "verdict"] == "beats at equal memory"
    assert baseline_verdicts(summary, 2).loc[0, "verdict"] == "beats with 50% more state"


def test_memory_win_is_the_least_state_matching_the_best_baseline(confirmed) -> None:
    point, baseline = memory_win(rung_summary(trials_table(confirmed)))
    assert int(baseline["number"]) == 1  # galore: the best baseline at the rung (adamw 1.600 is worse)
    assert int(point["number"]) == 4  # 1 MiB; #3 at 0.5 MiB loses beyond the spread
    assert point["state_bytes"] / baseline["state_bytes"] == pytest.approx(0.4)


def test_a_diverged_rung_run_ends_a_candidate(confirmed) -> None:
    source = confirmed.trials[3]
    attrs = {**source.user_attrs, "rung_of": 3, "rung_factor": 4, "seed": 3, "outcome": "diverged"}
    confirmed.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED, user_attrs=attrs))
    summary = rung_summary(trials_table(confirmed)).set_index("number")
    assert summary.loc[3, "mean"] == math.inf and summary.loc[3, "seeds"] == 4


def test_export_best_takes_the_answer_at_the_rung(confirmed) -> None:
    confirmed.set_user_attr("memory_budget", 3 * MIB)
    assert select_trial(confirmed, best=True).number == 4
    # a tighter limit: nothing at the rung under 0.75 MiB but #3
    assert select_trial(confirmed, best=True, max_memory="0.75 MiB").number == 3


def test_the_plot_joins_proxy_and_rung_markers(confirmed) -> None:
    table = trials_table(confirmed)
    summary = rung_summary(table)
    buffer = io.BytesIO()
    draw_pareto(table, pareto_front(table), buffer, rung=summary, answer=4)
    assert buffer.getvalue().startswith(b"\x89PNG")


def test_the_report_opens_with_the_answer(confirmed, tmp_path) -> None:
    confirmed.set_user_attr("memory_budget", 3 * MIB)
    text = write_report(confirmed, tmp_path / "report").read_text()
    answer = text[text.index("## The answer"): text.index("## Trials")]
    assert "were trained again 4x longer, 3 seeds each" in answer
    assert "**Trial #4**" in answer
    assert "It ties with the lowest mean, #1 galore at lr 0.03" in answer
    assert "**Memory win:** #4 matches the eval loss of the best baseline, #1 galore at lr 0.03" in answer
    assert "with 40% of its state" in answer
    assert "--best -o split.json" in answer


def test_each_baseline_is_dominated_by_the_least_state_searched_point_that_beats_it(confirmed) -> None:
    table = trials_table(confirmed)
    # at the rung: adamw (1.600 ± 0.010, 8 MiB) is beaten beyond the spread by #2 and #4, #4 with less
    # state; galore (1.550 ± 0.010) only ties with them, so nothing dominates it
    assert dominating_points(rung_summary(table)) == {0: 4, 1: None}
    # at the proxy (one seed each: the sign decides): adamw 2.30 falls to #3 (1.93, 0.5 MiB); galore
    # 1.91 to #4 (1.90, 1 MiB), not to #3 (1.93)
    assert dominating_points(proxy_summary(table)) == {0: 3, 1: 4}


def test_a_point_with_more_state_never_dominates(make_study, add_trial_to) -> None:
    study = make_study()
    add_trial_to(study, outcome="ok", state_bytes=1.0 * MIB, eval_loss=2.0, baseline="badam", baseline_lr=0.01)
    add_trial_to(study, outcome="ok", state_bytes=1.5 * MIB, eval_loss=1.5, params={"density": 0.3})
    assert dominating_points(proxy_summary(trials_table(study))) == {0: None}


def test_the_report_says_where_every_baseline_stands_at_the_proxy_and_the_rung(confirmed, tmp_path) -> None:
    confirmed.set_user_attr("memory_budget", 3 * MIB)
    text = write_report(confirmed, tmp_path / "report").read_text()
    answer = text[text.index("## The answer"): text.index("## Trials")]
    rows = [line for line in answer.splitlines() if line.startswith(("| adamw |", "| galore |"))]
    # the rung's verdict table, then the proxy's standing table, one row each per baseline (by state)
    assert [row.split(" | ")[0] for row in rows] == ["| galore", "| adamw"] * 2
    assert rows[0].endswith("| matches its loss with 40% of its state | not dominated |")
    assert rows[1].endswith("| dominates | #4 (1.552, 1 MiB) |")
    assert "Every baseline at its best lr at the proxy, against the proxy's front" in answer
    assert rows[2].endswith("| yes | #4 (1.9, 1 MiB) |")  # galore: promoted, dominated by #4 at the proxy
    assert rows[3].endswith("| yes | #3 (1.93, 0.5 MiB) |")  # adamw: by #3


def add_target_runs(study: optuna.Study, of: int, losses: list[float], *, state_mib: float) -> None:
    """Runs of trial ``of`` at the rung on a target model with 32 MiB of AdamW state, seeds 0, 1, ..."""
    source = study.trials[of]
    for seed, loss in enumerate(losses):
        attrs = {**source.user_attrs, "baseline": None, "baseline_lr": None, "rung_of": of, "rung_factor": 1,
                 "rung_on": "target", "seed": seed, "eval_loss": loss, "state_bytes": int(state_mib * MIB),
                 "adamw_state_bytes": 32 * MIB, "target_model": {"source": "tiny-llama", "overrides": {"hidden_size": 256}}}
        study.add_trial(optuna.trial.create_trial(
            state=optuna.trial.TrialState.COMPLETE, values=[loss, state_mib], user_attrs=attrs))


@pytest.fixture
def on_target(confirmed) -> optuna.Study:
    """``confirmed`` (#4 the answer at the rung) with its candidates within the budget on a target: there
    #2 (1.900 ± 0.010, 8 MiB) beats galore (2.000 ± 0.010, 10 MiB) and #4 (2.005 ± 0.005, 4 MiB)."""
    confirmed.set_user_attr("memory_budget", 3 * MIB)
    add_target_runs(confirmed, 1, [2.00, 2.01, 1.99], state_mib=10)
    add_target_runs(confirmed, 2, [1.90, 1.91, 1.89], state_mib=8)
    add_target_runs(confirmed, 4, [2.005, 2.000, 2.010], state_mib=4)
    return confirmed


def test_the_answer_moves_to_the_rung_on_the_target_with_the_targets_state(on_target) -> None:
    table = trials_table(on_target)
    answer, summary = study_answer(table, memory_budget_bytes=3 * MIB)
    # every state on the target is over the proxy's 3 MiB budget: the budget is the proxy's, kept by over_budget
    assert answer.on_target and answer.number == 2 and answer.best_number == 2 and answer.factor == 1
    rows = summary.set_index("number")
    assert sorted(rows.index) == [1, 2, 4]
    assert rows.loc[2, "state_mib"] == pytest.approx(8) and rows.loc[2, "state_pct_of_adamw"] == pytest.approx(25)
    assert rows.loc[2, "mean"] == pytest.approx(1.90) and rows.loc[2, "proxy_mean"] == pytest.approx(1.88)
    # the confirmation rung alone still answers #4, as before the target rung ran
    assert recommend(rung_summary(table, on="proxy"), memory_budget_bytes=3 * MIB).number == 4


def test_the_report_and_export_follow_the_answer_on_the_target(on_target, tmp_path) -> None:
    text = write_report(on_target, tmp_path / "report").read_text()
    answer = text[text.index("## The answer"): text.index("## Trials")]
    assert "then on the target model `tiny-llama` (hidden_size 256), 1x the proxy steps with the width lr rule" in answer
    assert "**Trial #2**" in answer
    assert "on the target model `tiny-llama` (hidden_size 256) at 1x the proxy steps: 1.9 ± 0.01 over 3 seed(s)" in answer
    # #3 fell back at the confirmation rung and was not trained on the target
    row = next(line for line in answer.splitlines() if line.startswith("| #3 |"))
    assert "not trained there" in row
    exported = select_trial(on_target, best=True)
    assert exported.user_attrs["rung_on"] == "target" and exported.user_attrs["rung_of"] == 2
    assert exported.user_attrs["seed"] == 0
