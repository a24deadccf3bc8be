"""The fidelity check end to end on a hand-made study of a very small model (seconds on a CPU)."""

from __future__ import annotations

import json
import math

import optuna
import pytest

from frugal_search.partition import Partition
from frugal_search.proxy import ProxyBudget, run_proxy
from frugal_search.proxy.models import ModelSpec
from frugal_search.validate.check import FidelityCheck, run_fidelity_check, write_fidelity_report

from .conftest import MINI_STUDY_TOML, write_mini_study

optuna.logging.set_verbosity(optuna.logging.WARNING)

_MODEL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
STUDY_TOML = MINI_STUDY_TOML


def six_partitions() -> list[Partition]:
    return [
        Partition.adamw(lr=3e-3),
        Partition.paper(0.25, lr=3e-3, update_gap=2),
        Partition.paper(0.0, lr=3e-3, update_gap=2),
        Partition.badam(0.5, lr=3e-3, update_gap=2),
        Partition.paper(0.5, lr=1e-2, update_gap=2),
        Partition.adamw(lr=1e-2),
    ]


@pytest.fixture()
def mini_study(tmp_path):
    partitions = six_partitions()
    # proxy losses and memory made up for the selection: trials 0, 2, 4 form the front
    values = [(3.0, 6.0), (3.5, 4.0), (4.0, 1.0), (4.2, 5.0), (3.2, 3.0), (3.6, 6.5)]
    trials = [(partition, {"summary": partition.name or ""}, value) for partition, value in zip(partitions, values)]
    study_file, _ = write_mini_study(tmp_path, STUDY_TOML, trials)
    return study_file, partitions


def test_scale_budget_keeps_the_schedule_shape():
    budget = ProxyBudget(steps=100, warmup_steps=10, eval_every=25)
    long_budget = budget.scaled(4)
    assert (long_budget.total_steps, long_budget.total_warmup_steps, long_budget.eval_every) == (400, 40, 100)
    assert ProxyBudget(steps=100).scaled(3).total_warmup_steps == 30  # default 10% scales too


def test_fidelity_check_runs_resumes_and_reports(mini_study, tmp_path):
    study_file, partitions = mini_study
    report_dir = tmp_path / "report"
    runs = []
    check = FidelityCheck(top=2, factor=2, seeds=(0, 1), bands=2)
    summary = run_fidelity_check(study_file, check=check, report_dir=report_dir, on_run=lambda k, r: runs.append(k))
    # front members 2 (least memory) and 0 (best loss) are spread along the front; two others
    assert [row.number for row in summary.rows if row.group == "best"] == [2, 0]
    assert len([row for row in summary.rows if row.group == "other"]) == 2
    assert len(runs) == 8 and summary.settings["long_steps"] == 8
    # a long run is exactly run_proxy with 2x the steps, warmup and eval interval, same seed
    budget = ProxyBudget(steps=8, batch_size=2, seq_len=16, eval_every=4, eval_batches=1, warmup_steps=2)
    reference = run_proxy(ModelSpec("tiny-llama", overrides=_MODEL), "stdlib", partitions[2], budget, seed=1)
    row = next(row for row in summary.rows if row.number == 2)
    assert row.long_losses[1] == pytest.approx(reference.eval_loss, rel=1e-6)
    assert row.proxy_loss == 4.0 and row.state_mib == 1.0
    assert all(math.isfinite(loss) for row in summary.rows for loss in row.long_losses)
    stored = json.loads((report_dir / "fidelity_runs.json").read_text())
    assert len(stored["runs"]) == 8

    # the same check again runs nothing and gives the same numbers
    again = run_fidelity_check(study_file, check=check, report_dir=report_dir, on_run=lambda k, r: runs.append(k))
    assert len(runs) == 8
    assert [r.long_losses for r in again.rows] == [r.long_losses for r in summary.rows]

    paths = write_fidelity_report(summary, report_dir)
    assert [p.name for p in paths] == ["fidelity.md", "fidelity.png"]
    assert "--top 2 --factor 2 --seeds 2" in paths[0].read_text()


def test_fidelity_check_needs_finished_trials(tmp_path):
    db = tmp_path / "empty.db"
    study_file = tmp_path / "empty.toml"
    study_file.write_text(STUDY_TOML.format(db=db).replace('name = "mini"', 'name = "empty"'))
    optuna.create_study(study_name="empty", storage=f"sqlite:///{db}", directions=["minimize", "minimize"])
    with pytest.raises(ValueError, match="at least 2"):
        run_fidelity_check(study_file, check=FidelityCheck(top=1), report_dir=tmp_path / "r")


def test_check_rejects_bad_settings():
    with pytest.raises(ValueError, match="factor"):
        FidelityCheck(factor=0)
    with pytest.raises(ValueError, match="seeds"):
        FidelityCheck(seeds=(0, 0))


def test_the_recommendation_meets_each_baselines_best_run_after_long_training(tmp_path):
    partitions = six_partitions()
    attrs = [{"baseline": "adamw", "baseline_lr": 3e-3}, {}, {}, {"baseline": "badam"}, {},
             {"baseline": "adamw", "baseline_lr": 1e-2}]
    # trial 4 is the recommendation (best loss); adamw's best run is trial 0, not trial 5
    values = [(3.0, 6.0), (3.5, 4.0), (4.0, 1.0), (4.2, 5.0), (2.9, 3.0), (3.6, 6.5)]
    study_file, _ = write_mini_study(tmp_path, STUDY_TOML, list(zip(partitions, attrs, values)))
    runs = []
    summary = run_fidelity_check(study_file, check=FidelityCheck(top=1, factor=1, seeds=(0, 1), bands=1),
                                 report_dir=tmp_path / "report", on_run=lambda k, r: runs.append(k))
    groups = {row.number: row.group for row in summary.rows}
    selected = {n for n, g in groups.items() if g in ("best", "other")}
    assert len(selected) == 2
    # what the selection left out of the recommendation and the baselines' best runs is re-run too,
    # and nothing else (trial 5 is adamw at a worse lr)
    assert {n for n, g in groups.items() if g == "reference"} == {4, 0, 3} - selected
    assert summary.overall.count == 2  # the correlations stay about the selection
    assert len(runs) == 2 * len(groups)
    verdicts = {item.baseline: item for item in summary.verdicts}
    assert set(verdicts) == {"adamw", "badam"} and verdicts["adamw"].number == 0
    rows = {row.number: row for row in summary.rows}
    for item in verdicts.values():
        assert item.recommended == 4
        assert item.difference == pytest.approx(rows[4].long_loss - rows[item.number].long_loss)
        assert item.spread == pytest.approx(max(rows[4].long_spread, rows[item.number].long_spread))
        expected = "ties" if abs(item.difference) <= item.spread else ("beats" if item.difference < 0 else "loses")
        assert item.verdict == expected
    text = (write_fidelity_report(summary, tmp_path / "report")[0]).read_text()
    assert "## The recommendation against the baselines after long training" in text
    assert f"| adamw | #0 | {verdicts['adamw'].difference:.3f} |" in text
