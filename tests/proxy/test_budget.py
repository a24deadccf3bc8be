"""ProxyBudget checks and the warmup + cosine schedule against a hand-written formula."""

from __future__ import annotations

import math

import pytest

from frugal_search.proxy import DEFAULT_STEPS, ProxyBudget, lr_factor


def _reference_factor(step: int, total: int, warmup: int, floor: float) -> float:
    # written out independently: linear ramp reaching 1 at the last warmup step, then half a cosine
    # period from 1 at the first decay step to `floor` at the last step
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / (total - 1 - warmup)
    return floor + (1 - floor) * (1 + math.cos(math.pi * progress)) / 2


def test_schedule_matches_warmup_then_cosine_to_the_floor() -> None:
    total, warmup, floor = 50, 5, 0.1
    factors = [lr_factor(s, total_steps=total, warmup_steps=warmup, min_lr_ratio=floor) for s in range(total)]
    expected = [_reference_factor(s, total, warmup, floor) for s in range(total)]
    assert factors == pytest.approx(expected, abs=1e-12)
    assert factors[0] == pytest.approx(0.2)
    assert factors[warmup] == pytest.approx(1.0)
    assert factors[-1] == pytest.approx(floor)
    # after the run the scheduler asks for step `total`: it stays at the floor
    assert lr_factor(total, total_steps=total, warmup_steps=warmup, min_lr_ratio=floor) == pytest.approx(floor)


def test_steps_from_tokens_round_up_and_defaults() -> None:
    budget = ProxyBudget(tokens=1000, batch_size=2, seq_len=16, grad_accum=3)
    assert budget.tokens_per_step == 96
    assert budget.total_steps == 11  # ceil(1000 / 96)
    assert ProxyBudget().total_steps == DEFAULT_STEPS
    assert ProxyBudget(steps=40).total_warmup_steps == 4  # 10% of the steps
    assert ProxyBudget(steps=40, warmup_steps=100).total_warmup_steps == 40


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"steps": 10, "tokens": 100}, "not both"),
        ({"steps": 0}, "steps"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": -1.0}, "lr"),
        ({"min_lr_ratio": 1.5}, "min_lr_ratio"),
        ({"diverge_factor": 1.0}, "diverge_factor"),
    ],
)
def test_bad_budget_values_name_the_field(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ProxyBudget(**fields)
