"""The objective alone, on an in-memory study with a fake proxy run: each outcome and its attributes.

The proxy run is replaced by a function that returns a made-up ``ProxyResult`` (or raises), so
these tests take well under a second each; tests/search/test_runner.py runs real proxies.
"""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import frugal_search.proxy
from frugal_search.partition import Partition, baseline_partition
from frugal_search.proxy import ProxyResult
from frugal_search.search import load_study_config
from frugal_search.search.objective import SURPLUS_REASON, TrialObjective, build_memory_model

optuna.logging.set_verbosity(optuna.logging.WARNING)
MIB = 2**20


def study_config(tmp_path: Path, *, trials: int = 4, budget: str | None = None):
    lines = [
        "[study]",
        'name = "objective"',
        f"trials = {trials}",
        "baselines = []",
        *([f'memory_budget = "{budget}"'] if budget else []),
        "[model]",
        'source = "tiny-llama"',
        "overrides = { num_hidden_layers = 2, hidden_size = 32, intermediate_size = 64, num_attention_heads = 2 }",
        "[proxy]",
        "steps = 4",
        "[space]",
        "density = [0.05, 0.5]",
    ]
    path = tmp_path / "objective.toml"
    path.write_text("\n".join(lines) + "\n")
    return load_study_config(path)


def fake_result(*, eval_loss: float = 2.5, diverged: bool = False, reason: str = "completed") -> ProxyResult:
    return ProxyResult(
        eval_loss=eval_loss,
        best_eval_loss=2.4,
        first_eval_loss=5.0,
        train_curve=[[1, 4.0]],
        eval_curve=[[0, 5.0], [4, eval_loss]],
        state_bytes=123,
        peak_memory_bytes=None,
        state_memory_bytes=None,
        tokens_per_s=1000.0,
        wall_s=0.5,
        steps=4,
        diverged=diverged,
        reason=reason,
        corpus_fingerprint="abc",
        device="cpu",
        seed=0,
    )


class FakeProxy:
    """Stands in for ``run_proxy``: records each partition and gives ``answer`` (or raises it)."""

    def __init__(self) -> None:
        self.calls: list = []
        self.answer: ProxyResult | BaseException = fake_result()

    def __call__(self, model, data, partition, budget, **kwargs):
        self.calls.append(partition)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> FakeProxy:
    fake = FakeProxy()
    monkeypatch.setattr(frugal_search.proxy, "run_proxy", fake)
    return fake


def run_one(config, study: optuna.Study | None = None) -> optuna.trial.FrozenTrial:
    study = study or optuna.create_study(directions=["minimize", "minimize"])
    objective = TrialObjective(config, device="cpu", memory_model=build_memory_model(config))
    finished: list[optuna.trial.FrozenTrial] = []
    study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=[lambda _, frozen: finished.append(frozen)])
    return finished[-1]


def test_ok_is_complete_with_loss_and_state_mib(tmp_path: Path, proxy: FakeProxy) -> None:
    config = study_config(tmp_path)
    trial = run_one(config)
    assert trial.state == TrialState.COMPLETE
    assert trial.user_attrs["outcome"] == "ok" and trial.user_attrs["reason"] is None
    (partition,) = proxy.calls
    state_bytes = Partition.from_dict(trial.user_attrs["split"]).state_bytes(build_memory_model(config))
    assert trial.user_attrs["state_bytes"] == state_bytes == partition.state_bytes(build_memory_model(config))
    assert trial.values == [2.5, pytest.approx(state_bytes / MIB)]
    assert trial.user_attrs["baseline"] is None and trial.user_attrs["over_budget"] is False
    assert trial.user_attrs["eval_curve"] == [[0, 5.0], [4, 2.5]] and trial.user_attrs["steps"] == 4
    assert 0.05 <= trial.params["density"] <= 0.5 and trial.user_attrs["summary"]


def test_diverged_is_pruned_with_the_proxy_reason(tmp_path: Path, proxy: FakeProxy) -> None:
    proxy.answer = fake_result(eval_loss=math.nan, diverged=True, reason="loss is nan at step 3")
    trial = run_one(study_config(tmp_path))
    assert trial.state == TrialState.PRUNED
    assert trial.user_attrs["outcome"] == "diverged" and trial.user_attrs["reason"] == "loss is nan at step 3"


def test_over_budget_is_infeasible_without_a_run_but_a_baseline_runs(tmp_path: Path, proxy: FakeProxy) -> None:
    config = study_config(tmp_path, budget="1 KiB")
    trial = run_one(config)
    assert trial.state == TrialState.PRUNED and proxy.calls == []
    assert trial.user_attrs["outcome"] == "infeasible" and trial.user_attrs["over_budget"] is True
    assert "over the memory budget 1.00 KiB" in trial.user_attrs["reason"]
    assert trial.constraints["memory_budget"] > 0  # samplers that know constraints learn "infeasible"

    study = optuna.create_study(directions=["minimize", "minimize"])
    study.enqueue_trial({}, user_attrs={"baseline": "adamw"})
    baseline = run_one(config, study)
    assert baseline.state == TrialState.COMPLETE and len(proxy.calls) == 1
    assert baseline.user_attrs["over_budget"] is True and baseline.user_attrs["baseline"] == "adamw"
    adamw_bytes = baseline_partition("adamw").state_bytes(build_memory_model(config))
    assert baseline.user_attrs["state_bytes"] == adamw_bytes


def test_an_exception_is_fail_with_outcome_error_and_the_message(tmp_path: Path, proxy: FakeProxy) -> None:
    proxy.answer = RuntimeError("simulated crash")
    trial = run_one(study_config(tmp_path))
    assert trial.state == TrialState.FAIL and trial.user_attrs["outcome"] == "error"
    assert trial.user_attrs["reason"].startswith("RuntimeError: simulated crash")
    assert "split" in trial.user_attrs  # the partition that failed is kept


def test_a_trial_past_the_target_is_dropped_as_surplus(tmp_path: Path, proxy: FakeProxy) -> None:
    config = study_config(tmp_path, trials=1)
    study = optuna.create_study(directions=["minimize", "minimize"])
    first = run_one(config, study)
    assert first.state == TrialState.COMPLETE
    second = run_one(config, study)  # as a worker that raced past the count would start it
    assert second.state == TrialState.FAIL and second.user_attrs["reason"] == SURPLUS_REASON
    assert len(proxy.calls) == 1


def test_an_infeasible_trial_takes_no_place_in_the_count(tmp_path: Path, proxy: FakeProxy) -> None:
    study = optuna.create_study(directions=["minimize", "minimize"])
    assert run_one(study_config(tmp_path, trials=1, budget="1 KiB"), study).user_attrs["outcome"] == "infeasible"
    assert run_one(study_config(tmp_path, trials=1), study).state == TrialState.COMPLETE


def test_a_baseline_enqueued_twice_runs_once(tmp_path: Path, proxy: FakeProxy) -> None:
    config = study_config(tmp_path)
    study = optuna.create_study(directions=["minimize", "minimize"])
    for _ in range(2):
        study.enqueue_trial({}, user_attrs={"baseline": "frugal"})
    first = run_one(config, study)
    second = run_one(config, study)
    assert first.state == TrialState.COMPLETE and first.user_attrs["baseline"] == "frugal"
    assert second.state == TrialState.FAIL and second.user_attrs["outcome"] == "error"
    assert second.user_attrs["reason"] == f"baseline 'frugal' is already trial {first.number}; this copy is dropped"
    assert len(proxy.calls) == 1
