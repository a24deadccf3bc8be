"""Successive halving by non-dominated rank (frugal_search/search/fidelity.py) on synthetic studies."""

from __future__ import annotations

import types

import optuna
import pytest

from frugal_search.search.fidelity import (
    SuccessiveHalvingStop,
    make_early_stop,
    rung_attr_name,
    rung_steps,
    should_continue,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)
MIB = 2**20


def test_rung_steps():
    assert rung_steps(total_steps=300, min_fraction=1 / 9, reduction_factor=3) == [33, 100]
    assert rung_steps(total_steps=200, min_fraction=0.25, reduction_factor=2) == [50, 100]
    assert rung_steps(total_steps=100, min_fraction=0.5, reduction_factor=3) == [50]
    with pytest.raises(ValueError, match="reduction_factor"):
        rung_steps(total_steps=100, min_fraction=0.5, reduction_factor=1)
    with pytest.raises(ValueError, match="min_fraction"):
        rung_steps(total_steps=100, min_fraction=1.5, reduction_factor=3)


def test_should_continue_counts_strictly_better_ranks():
    others = [(1.0, 1.0), (2.0, 2.0), (3.0, 3.0), (4.0, 4.0), (5.0, 5.0)]
    # 6 trials, reduction factor 3: keep when fewer than 2 trials rank strictly better.
    assert should_continue((0.5, 0.5), others, reduction_factor=3)
    assert should_continue((1.5, 1.5), others, reduction_factor=3)  # one better
    assert not should_continue((2.5, 2.5), others, reduction_factor=3)  # two better
    # A point on the front always goes on, however large the front.
    front = [(float(i), float(10 - i)) for i in range(9)]
    assert should_continue((9.5, 0.5), front, reduction_factor=3)
    # Fewer trials than the reduction factor at the rung: nothing to compare with yet.
    assert should_continue((9.0, 9.0), [(1.0, 1.0)], reduction_factor=3)


def _run_trial(study, losses_by_step, state_mib, *, rungs=(10, 30), eta=3.0, baseline=None):
    """Drive one trial's on_eval as run_proxy would; return the step it stopped at or None."""
    trial = study.ask()
    trial.set_user_attr("state_bytes", int(state_mib * MIB))
    if baseline:
        trial.set_user_attr("baseline", baseline)
    stop = SuccessiveHalvingStop(trial, rungs=list(rungs), reduction_factor=eta)
    stopped = None
    for step, loss in losses_by_step:
        if stop(step, loss):
            stopped = step
            break
    study.tell(trial, state=optuna.trial.TrialState.PRUNED if stopped else optuna.trial.TrialState.COMPLETE,
               values=None if stopped else [losses_by_step[-1][1], state_mib])
    return trial.number, stopped


def _curve(level):
    # eval every 10 steps; loss falls with steps, offset by the partition's level
    return [(step, level + 1.0 / step) for step in (10, 20, 30, 40)]


def test_rung_decisions_on_a_synthetic_study():
    study = optuna.create_study(directions=["minimize", "minimize"])
    outcomes = {}
    # All trials use the same memory, so the rank is the loss rank at the rung.
    for level in [5.0, 4.0, 3.0, 6.0, 7.0, 1.0]:
        number, stopped = _run_trial(study, _curve(level), 1.0)
        outcomes[level] = stopped
    # The first two trials at a rung pass (fewer than 3 there); 3.0 is best so far; 6.0 ranks 4th of 4
    # (ceil(4/3)=2 may be better): stopped at rung 10; 7.0 likewise; 1.0 is the best: runs to the end.
    assert outcomes == {5.0: None, 4.0: None, 3.0: None, 6.0: 10, 7.0: 10, 1.0: None}
    # Every trial recorded its values at the first rung, stopped ones included.
    recorded = [t.user_attrs.get(rung_attr_name(10)) for t in study.get_trials()]
    assert all(value is not None and value[1] == pytest.approx(1.0) for value in recorded)
    # Stopped trials never reach the second rung.
    stopped_numbers = [t.number for t in study.get_trials() if t.state == optuna.trial.TrialState.PRUNED]
    assert all(rung_attr_name(30) not in study.trials[n].user_attrs for n in stopped_numbers)


def test_low_memory_trial_with_worse_loss_goes_on():
    study = optuna.create_study(directions=["minimize", "minimize"])
    for level in [1.0, 1.1, 1.2, 1.3]:
        _run_trial(study, _curve(level), 4.0)
    # Much worse loss, but the least memory: it is on the rung's front, so it continues.
    _, stopped = _run_trial(study, _curve(3.0), 0.5)
    assert stopped is None
    # Same worse loss at the same high memory: dominated by all, stopped.
    _, stopped = _run_trial(study, _curve(3.0), 4.0)
    assert stopped == 10


def test_baseline_is_never_stopped_but_counts():
    study = optuna.create_study(directions=["minimize", "minimize"])
    for level in [1.0, 1.1, 1.2]:
        _run_trial(study, _curve(level), 1.0)
    number, stopped = _run_trial(study, _curve(9.0), 1.0, baseline="adamw")
    assert stopped is None
    assert study.trials[number].user_attrs[rung_attr_name(10)][0] == pytest.approx(9.1)


def test_make_early_stop_reads_the_config():
    study = optuna.create_study(directions=["minimize", "minimize"])
    trial = study.ask()
    plain = types.SimpleNamespace(search=types.SimpleNamespace(fidelity="none"), proxy=types.SimpleNamespace(steps=90))
    assert make_early_stop(trial, plain) is None
    halving = types.SimpleNamespace(
        search=types.SimpleNamespace(fidelity="successive-halving", min_fraction=1 / 9, reduction_factor=3),
        proxy=types.SimpleNamespace(steps=90),
    )
    stop = make_early_stop(trial, halving, state_bytes=MIB)
    assert stop.rungs == [10, 30]
    bad = types.SimpleNamespace(search=types.SimpleNamespace(fidelity="hyperband"), proxy=types.SimpleNamespace(steps=90))
    with pytest.raises(ValueError, match="successive-halving"):
        make_early_stop(trial, bad)


def test_run_proxy_stops_at_the_rung_when_dominated():
    """The callable plugged into a real proxy run: a dominated trial stops at the first rung."""
    from frugal_search.partition import Partition
    from frugal_search.proxy import ProxyBudget, run_proxy
    from frugal_search.proxy.models import ModelSpec

    study = optuna.create_study(directions=["minimize", "minimize"])
    for _ in range(3):  # three earlier trials, far better at rung 2 with less memory
        earlier = study.ask()
        earlier.set_user_attr(rung_attr_name(2), [0.1, 0.0])
        study.tell(earlier, state=optuna.trial.TrialState.PRUNED)
    trial = study.ask()
    config = types.SimpleNamespace(
        search=types.SimpleNamespace(fidelity="successive-halving", min_fraction=0.25, reduction_factor=2),
        proxy=types.SimpleNamespace(steps=8),
    )
    on_eval = make_early_stop(trial, config, state_bytes=MIB)
    model = ModelSpec("tiny-llama", overrides={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                               "num_attention_heads": 2})
    budget = ProxyBudget(steps=8, batch_size=2, seq_len=16, eval_every=2, eval_batches=1)
    result = run_proxy(model, "stdlib", Partition.paper(0.25, update_gap=2), budget, on_eval=on_eval)
    assert on_eval.rungs == [2, 4]
    assert result.reason == "stopped by on_eval" and result.steps == 2 and on_eval.stopped_at == 2
    assert trial.user_attrs[rung_attr_name(2)] == [pytest.approx(result.eval_loss), pytest.approx(1.0)]
