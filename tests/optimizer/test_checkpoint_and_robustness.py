"""Checkpoint/resume bit identity, None grads, bf16, LR schedulers."""

from __future__ import annotations

import io

import pytest
import torch

from frugal_search.optimizer import FRUGAL, MODES, paper_param_groups

SETTINGS = [
    *({"mode": mode} for mode in MODES),
    {"mode": "blocks", "block_order": "random"},
    {"mode": "blocks", "block_order": "mirror", "density": 0.15},
    {"mode": "svd", "reset_state": False, "state_free": "none"},
    {"mode": "columns", "state_free": "sgd", "weight_decay": 0.1},
]


def _optimizer(model, settings: dict, seed: int = 0) -> FRUGAL:
    base = {"lr": 1e-3, "density": 0.25, "update_gap": 4, "seed": seed, "block_order": "descending"}
    return FRUGAL(paper_param_groups(model), **{**base, **settings})


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: "-".join(f"{v}" for v in s.values()))
@pytest.mark.parametrize("save_after", [4, 6])
def test_resume_from_checkpoint_is_bit_identical(settings, save_after, llama_factory, trainer):
    total = 10  # re-selection at steps 1, 5, 9: saving after 4 or 6 crosses a boundary on resume
    straight_model = llama_factory()
    trainer(straight_model, _optimizer(straight_model, settings), range(total))

    model = llama_factory()
    optimizer = _optimizer(model, settings)
    trainer(model, optimizer, range(save_after))
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)

    resumed_model = llama_factory(seed=123)  # different weights and generator seed: all must come from the checkpoint
    resumed_model.load_state_dict(checkpoint["model"])
    resumed = _optimizer(resumed_model, settings, seed=123)
    resumed.load_state_dict(checkpoint["optimizer"])
    trainer(resumed_model, resumed, range(save_after, total))
    for (name, expected), actual in zip(straight_model.named_parameters(), resumed_model.parameters(), strict=True):
        assert torch.equal(actual, expected), name


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("foreach", [True, False])
def test_none_grads_are_skipped_also_at_reselection(mode, foreach):
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(6, 10)) for _ in range(4)]
    optimizer = FRUGAL(params, mode=mode, density=0.5, update_gap=2, block_order="descending", foreach=foreach)
    lonely = params[3]  # active in the first blocks window (descending), grad-less at step 1
    for step in range(1, 6):
        before = lonely.detach().clone()
        for p in params:
            p.grad = torch.randn(p.shape)
        if step in (1, 3):  # re-selection steps (T = 2)
            lonely.grad = None
        optimizer.step()
        if lonely.grad is None:
            assert torch.equal(lonely.detach(), before)
        else:
            assert not torch.equal(lonely.detach(), before)
            if mode != "blocks":  # selected at its first step with a grad in the period
                assert int(optimizer.state[lonely]["period"]) == (step - 1) // 2


@pytest.mark.parametrize("mode", MODES)
def test_bfloat16_params(mode, llama_factory, trainer):
    model = llama_factory(dtype=torch.bfloat16)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = FRUGAL(paper_param_groups(model), mode=mode, density=0.5, update_gap=2, lr=1e-2)
    trainer(model, optimizer, range(3))
    for p, start in zip(model.parameters(), before, strict=True):
        assert p.dtype == torch.bfloat16 and torch.isfinite(p).all()
        assert not torch.equal(p, start)
    for state in optimizer.state.values():
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                assert state[key].dtype == torch.bfloat16  # state in the parameter's dtype


@pytest.mark.parametrize("foreach", [True, False])
def test_bfloat16_density_zero_is_exact_signsgd(foreach):
    weight = torch.nn.Parameter(torch.randn(8, 8).to(torch.bfloat16))
    start = weight.detach().clone()
    optimizer = FRUGAL([weight], lr=0.01, density=0.0, foreach=foreach)
    weight.grad = torch.randn(8, 8).to(torch.bfloat16)
    optimizer.step()
    assert torch.equal(weight.detach(), start.add(weight.grad.sign(), alpha=-0.01))


@pytest.mark.parametrize("foreach", [True, False])
def test_lr_scheduler_sets_the_step_size(foreach):
    weight = torch.nn.Parameter(torch.zeros(4, 4))
    optimizer = FRUGAL([weight], lr=0.1, density=0.0, foreach=foreach)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5**step)
    for step in range(4):
        before = weight.detach().clone()
        weight.grad = torch.ones(4, 4)
        optimizer.step()
        scheduler.step()
        assert torch.allclose(before - weight.detach(), torch.full((4, 4), 0.1 * 0.5**step))
    # the scheduler's key survives a round trip
    fresh = FRUGAL([torch.nn.Parameter(torch.zeros(4, 4))], lr=0.1, density=0.0)
    fresh.load_state_dict(optimizer.state_dict())
    assert fresh.param_groups[0]["initial_lr"] == 0.1
