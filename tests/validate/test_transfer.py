"""The transfer check and confirmation end to end on a hand-made study of a very small model (seconds on a CPU)."""

from __future__ import annotations

import json
import logging
import math

import optuna
import pytest

from frugal_search.cli import main
from frugal_search.partition import Partition, Rule
from frugal_search.proxy import ModelSpec
from frugal_search.validate import (
    TransferPlan,
    TransferResults,
    plan_runs,
    plan_seed_runs,
    run_transfer,
    summarize_transfer,
    transfer_study_name,
)
from frugal_search.validate.selection import Candidate

from .conftest import MINI_STUDY_TOML, write_mini_study

optuna.logging.set_verbosity(optuna.logging.WARNING)

STUDY_TOML = MINI_STUDY_TOML + """
[transfer]
model = {{ source = "tiny-llama", overrides = {{ hidden_size = 64, intermediate_size = 128, num_hidden_layers = 2, num_attention_heads = 4 }} }}
top = 1
top_k = 1
lr_multipliers = [0.5, 1.0]
"""
TARGET = ModelSpec(
    "tiny-llama", overrides={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4}
)


@pytest.fixture()
def mini_study(tmp_path):
    trials = [
        (Partition.adamw(lr=3e-3), "adamw", (3.4, 6.0)),
        (Partition.paper(0.25, lr=3e-3, update_gap=2), None, (3.0, 2.0)),  # the front's best searched trial
        (Partition.paper(0.0, lr=3e-3, update_gap=2), None, (3.9, 1.0)),  # front, low memory
        (Partition.badam(0.5, lr=3e-3, update_gap=2), None, (4.2, 5.0)),
    ]
    attrs = [(partition, {"summary": "s", "baseline": baseline}, value) for partition, baseline, value in trials]
    return write_mini_study(tmp_path, STUDY_TOML, attrs)


def test_plan_checks_front_spread_and_baselines_and_confirms_top_k_plus_baselines() -> None:
    candidates = [Candidate(0, 3.4, 6.0), Candidate(1, 3.0, 2.0), Candidate(2, 3.9, 1.0), Candidate(3, 4.2, 5.0)]
    checked, front, confirmed, runs = plan_runs(candidates, {0: "adamw"}, TransferPlan(model=TARGET, top=1, top_k=1))
    assert 0 in checked and len(front) == 1 and front[0] in (1, 2)
    assert confirmed == [1, 0]  # the best searched front trial by proxy loss, then the baseline
    keys = {(r.source_trial, r.lr_rule, r.lr_multiplier) for r in runs}
    assert {(n, rule, 1.0) for n in checked for rule in ("none", "width")} <= keys
    assert {(n, "width", m) for n in confirmed for m in (0.5, 1.0, 2.0)} <= keys  # swept around the width rule
    assert len(keys) == len(runs)  # the check's x1 "width" run is the sweep's x1: planned once


def test_transfer_runs_resume_after_a_kill_and_store_the_confirmed_lr(mini_study, tmp_path) -> None:
    study_file, db = mini_study
    plan = TransferPlan(model=TARGET, top=1, top_k=1, lr_multipliers=(0.5, 1.0))
    partial = run_transfer(study_file, plan=plan, max_runs=2)
    assert len(partial.losses) == 2
    storage = f"sqlite:///{db}"
    transfer = optuna.load_study(study_name=transfer_study_name("mini"), storage=storage)
    killed = transfer.ask()  # a run whose command was killed: left RUNNING, never told
    killed.set_user_attr("run_key", next(iter(t.user_attrs["run_key"] for t in transfer.get_trials()
                                              if t.state.name in ("COMPLETE", "PRUNED"))) + "-killed")
    done = run_transfer(study_file, plan=plan)
    trials = optuna.load_study(study_name=transfer_study_name("mini"), storage=storage).get_trials()
    told = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    planned = plan_runs(
        [Candidate(0, 3.4, 6.0), Candidate(1, 3.0, 2.0), Candidate(2, 3.9, 1.0), Candidate(3, 4.2, 5.0)],
        {0: "adamw"}, plan,
    )[3]
    seeds = plan_seed_runs(done.losses, done.confirmed, plan)
    assert len(seeds) == 2 * len(done.confirmed)  # 2 more seeds of each confirmed run's best point
    assert len(told) == len(planned) + len(seeds) and len(done.losses) == len(planned)  # nothing twice, none missing
    for number in done.confirmed:
        points = {key: loss for key, loss in done.losses.items() if key[0] == number}
        best = min(points, key=points.get)
        assert done.seed_losses[best][0] == points[best] and len(done.seed_losses[best]) == 3
        assert len(set(done.seed_losses[best])) == 3  # other seeds, other losses
    assert trials[killed.number].state.name == "FAIL"
    assert len({t.user_attrs["run_key"] for t in told}) == len(told)
    # a third call makes no new run
    again = run_transfer(study_file, plan=plan)
    assert again.seed_losses == done.seed_losses
    assert len(optuna.load_study(study_name=transfer_study_name("mini"), storage=storage).get_trials()) == len(trials)
    for frozen in told:
        split = Partition.from_dict(frozen.user_attrs["split"])
        source = Partition.from_dict(optuna.load_study(study_name="mini", storage=storage)
                                     .trials[frozen.user_attrs["source_trial"]].user_attrs["split"])
        assert split.settings.lr == pytest.approx(source.settings.lr * frozen.user_attrs["lr_multiplier"])
        assert split.lr_transfer == frozen.user_attrs["lr_rule"]
        if split.lr_transfer == "width":
            assert split.base_widths["model.layers.*.mlp.down_proj.weight"] == 64  # the proxy's ffn


def test_transfer_command_writes_the_report_and_export_takes_a_confirmed_run(mini_study, tmp_path, capsys) -> None:
    study_file, db = mini_study
    out = tmp_path / "report"
    assert main(["transfer", str(study_file), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "lr rule none, as found" in printed and "lr rule width, as found" in printed
    text = (out / "transfer.md").read_text()
    assert "## Confirmation: a short lr sweep on the target" in text and (out / "transfer.png").stat().st_size > 0
    split = tmp_path / "confirmed.json"
    assert main(["export", "--storage", f"sqlite:///{db}", "--name", "mini-transfer", "--best",
                 "-o", str(split)]) == 0
    exported = json.loads(split.read_text())
    source = exported["provenance"]["source"]
    assert source["study"] == "mini-transfer" and source["target_model"]["overrides"]["hidden_size"] == 64
    confirmed = Partition.from_json(split)
    proxy_lr = Partition.from_dict(
        optuna.load_study(study_name="mini", storage=f"sqlite:///{db}").trials[source["source_trial"]].user_attrs["split"]
    ).settings.lr
    assert confirmed.settings.lr == pytest.approx(proxy_lr * source["lr_multiplier"])  # carries the confirmed lr
    # exported from the study file, a split records the proxy's widths, the base of the lr rule
    proxy_split = tmp_path / "proxy.json"
    assert main(["export", str(study_file), "--trial", "1", "-o", str(proxy_split)]) == 0
    recorded = Partition.from_json(proxy_split)
    assert recorded.lr_transfer == "width"  # exported proxy splits transfer by the width rule
    assert recorded.base_widths["model.layers.*.mlp.down_proj.weight"] == 64
    assert recorded.base_widths["model.layers.*.self_attn.q_proj.weight"] == 32


def _results(losses, *, baselines=None, confirmed=(), rules=("none",), seed_losses=None) -> TransferResults:
    numbers = sorted({k[0] for k in losses})
    return TransferResults(
        study="s", proxy_loss={n: 1.0 + n for n in numbers}, state_mib={n: 1.0 if n else 8.0 for n in numbers},
        description={n: "" for n in numbers}, baselines=baselines or {}, checked=numbers, front=[], confirmed=list(confirmed),
        losses=losses, seed_losses=seed_losses or {}, transfer_trials={}, settings={"lr_rules": list(rules), "lr_multipliers": [0.5, 1.0, 2.0],
                                                     "confirm_rules": ["none"]},
    )


def test_summary_ranks_a_diverged_run_last_and_reverses_a_reversed_ranking() -> None:
    # proxy order 0 < 1 < 2 < 3; target: 3 best, 2, 1, then 0 diverged -> exactly reversed: Spearman -1
    losses = {(0, "none", 1.0): math.inf, (1, "none", 1.0): 2.0, (2, "none", 1.0): 1.5, (3, "none", 1.0): 1.0}
    condition = summarize_transfer(_results(losses)).conditions[0]
    assert condition.summary.overall.spearman == pytest.approx(-1.0)
    assert condition.diverged == [0]


def test_recommendation_is_the_best_confirmed_searched_run_under_the_state_share() -> None:
    # trial 0 is AdamW (8 MiB); trials 1 and 2 keep 1 MiB (12.5%); 2 is best at x0.5
    losses = {(0, "none", m): 2.0 for m in (0.5, 1.0, 2.0)}
    losses.update({(1, "none", 0.5): 1.9, (1, "none", 1.0): 1.95, (2, "none", 0.5): 1.7, (2, "none", 1.0): math.inf})
    summary = summarize_transfer(_results(losses, baselines={0: "adamw"}, confirmed=[1, 2, 0]))
    assert (summary.recommendation.number, summary.recommendation.best_point) == (2, ("none", 0.5))
    assert summary.best_baseline.number == 0
    assert summary.conditions[-1].summary.overall.count == 3


def test_the_verdict_on_the_target_is_over_seeds_and_calls_a_gap_inside_the_spread_a_tie() -> None:
    from frugal_search.validate.transfer_report import format_transfer_markdown

    losses = {(0, "none", m): 2.0 for m in (0.5, 1.0, 2.0)}  # adamw, best at x0.5 (ties break by point)
    losses.update({(1, "none", 1.0): 1.9, (2, "none", 1.0): 1.95})
    seed_losses = {(0, "none", 0.5): (2.0, 2.02, 1.98), (1, "none", 1.0): (1.9, 1.96, 1.84)}
    summary = summarize_transfer(_results(losses, baselines={0: "adamw"}, confirmed=[1, 2, 0], seed_losses=seed_losses))
    rec = summary.recommendation
    assert rec.number == 1 and rec.mean == pytest.approx(1.9) and rec.spread == pytest.approx(0.06)
    text = format_transfer_markdown(summary)
    assert "| adamw | none x0.5 | 2.000 ± 0.020 | 3 | -0.100 | beats |" in text
    assert "Trial 1 beats every baseline at its best lr on the target by more than the seed spread (3 seed(s))." in text
    # a gap no larger than the spread is a tie
    seed_losses[(1, "none", 1.0)] = (1.9, 2.1, 1.7)
    text = format_transfer_markdown(summarize_transfer(
        _results(losses, baselines={0: "adamw"}, confirmed=[1, 2, 0], seed_losses=seed_losses)))
    assert "| ties |" in text and "does not beat adamw by more than the seed spread" in text


def test_a_baseline_is_checked_at_its_best_grid_run_and_seed_replicas_are_no_candidates() -> None:
    from frugal_search.validate.check import candidates_of
    from frugal_search.validate.transfer import _with_best_baseline_runs

    study = optuna.create_study(directions=["minimize", "minimize"])
    split = Partition.adamw().to_dict()
    for values, attrs in (
        ([3.0, 6.0], {"baseline": "adamw", "baseline_lr": 1e-3}),  # 0
        ([2.8, 6.0], {"baseline": "adamw", "baseline_lr": 3e-3}),  # 1: adamw's best lr
        ([2.5, 1.0], {"baseline": None}),  # 2: searched
        ([2.6, 1.0], {"baseline": None, "seed_of": 2, "seed": 1}),  # 3: a seed of 2
    ):
        study.add_trial(optuna.trial.create_trial(values=values, user_attrs={"split": split, **attrs}))
    candidates = candidates_of(study)
    assert [c.number for c in candidates] == [0, 1, 2]
    kept, baselines = _with_best_baseline_runs(candidates, study)
    assert [c.number for c in kept] == [1, 2] and baselines == {1: "adamw"}


def test_a_split_with_rules_the_target_does_not_need_runs_without_warnings(tmp_path, caplog) -> None:
    # sampled splits end with catch-all rules; on a model without biases the bias rule matches nothing
    split = Partition(
        [Rule("frugal", kinds=("attention", "mlp")), Rule("stateful", kinds=("bias",)), Rule("stateful")],
        lr=3e-3, update_gap=2,
    )
    trials = [(Partition.adamw(lr=3e-3), {"summary": "s", "baseline": "adamw"}, (3.4, 6.0)),
              (split, {"summary": "s"}, (3.0, 2.0))]
    study_file, _ = write_mini_study(tmp_path, STUDY_TOML, trials)
    with caplog.at_level(logging.WARNING, logger="frugal_search"):
        run_transfer(study_file, plan=TransferPlan(model=TARGET, top=1, top_k=1, lr_multipliers=(1.0,)), max_runs=2)
    assert not [record for record in caplog.records if "matches no parameter" in record.getMessage()]


def test_a_method_baseline_is_left_out_of_the_transfer(tmp_path, caplog) -> None:
    from frugal_search.proxy import method_spec

    trials = [
        (Partition.adamw(lr=3e-3), "adamw", (3.4, 6.0)),
        (Partition.paper(0.25, lr=3e-3, update_gap=2), None, (3.0, 2.0)),
        (Partition.paper(0.0, lr=3e-3, update_gap=2), None, (3.9, 1.0)),
        (method_spec("muon", lr=0.02), "muon", (3.1, 3.5)),  # an optimizer of its own: no split to carry
    ]
    study_file, _ = write_mini_study(tmp_path, STUDY_TOML, [(p, {"summary": "s", "baseline": b}, v) for p, b, v in trials])
    trained = []

    def runner(model, data, partition, budget, device, seed):
        trained.append(partition)
        return {"outcome": "ok", "eval_loss": 3.0 + 0.01 * len(trained), "reason": None, "steps": budget.total_steps,
                "wall_s": 0.0, "tokens_per_s": 0.0}

    from frugal_search.search import load_study_config

    plan = TransferPlan.from_section(load_study_config(study_file).transfer)
    with caplog.at_level(logging.INFO, logger="frugal_search.validate.transfer"):
        results = run_transfer(study_file, plan=plan, runner=runner)
    assert 3 not in results.checked and 3 not in results.confirmed and results.baselines == {0: "adamw"}
    assert trained and all(isinstance(partition, Partition) for partition in trained)
    assert "leaves out the method baselines muon" in caplog.text
