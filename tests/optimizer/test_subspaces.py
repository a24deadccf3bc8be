"""Density 0 moves, residual orthogonality, moment shapes by the side rule, coordinate counts."""

from __future__ import annotations

import math

import pytest
import torch

from frugal_search.optimizer import FRUGAL, MODES

LR, WD, SPLIT, FREE = 0.01, 0.1, 0.5, 0.3


def _params(seed: int = 0) -> list[torch.nn.Parameter]:
    torch.manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s)) for s in [(8, 12), (12, 8), (16,), (4, 3, 5)]]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("rule", ["signsgd", "sgd", "none"])
@pytest.mark.parametrize("foreach", [True, False])
def test_density_zero_moves_by_the_state_free_rule_exactly(mode, rule, foreach):
    params = _params()
    optimizer = FRUGAL(
        params, lr=LR, weight_decay=WD, mode=mode, density=0.0, state_free=rule,
        split_lr_scale=SPLIT, state_free_lr_scale=FREE, update_gap=2, foreach=foreach,
    )
    generator = torch.Generator().manual_seed(1)
    lr_free = LR * SPLIT * FREE
    for _ in range(3):
        before = [p.detach().clone() for p in params]
        for p in params:
            p.grad = torch.randn(p.shape, generator=generator)
        optimizer.step()
        for p, start in zip(params, before, strict=True):
            expected = start * (1 - LR * WD)  # decoupled decay with the unscaled lr
            if rule == "signsgd":
                expected = expected.add(p.grad.sign(), alpha=-lr_free)
            elif rule == "sgd":
                expected = expected.add(p.grad, alpha=-lr_free)
            assert torch.equal(p.detach(), expected)
    assert len(optimizer.state) == 0 or all(
        "exp_avg" not in state for state in optimizer.state.values()
    ), "density 0 must hold no moments"


def test_rule_none_without_decay_does_not_move():
    params = _params()
    before = [p.detach().clone() for p in params]
    optimizer = FRUGAL(params, mode="columns", density=0.0, state_free="none")
    for p in params:
        p.grad = torch.ones_like(p)
    optimizer.step()
    assert all(torch.equal(p.detach(), b) for p, b in zip(params, before, strict=True))


@pytest.mark.parametrize("mode", ["svd", "random", "randperm"])
@pytest.mark.parametrize("shape", [(12, 8), (6, 10)])
def test_state_free_residual_is_orthogonal_to_the_subspace(mode, shape):
    """With SGD as the state-free rule, the update's part outside the subspace is exactly
    -lr_free * G (I - P) and the state-full part lies inside it (P: projector on the basis)."""
    torch.manual_seed(2)
    weight = torch.nn.Parameter(torch.randn(shape))
    start = weight.detach().double().clone()
    optimizer = FRUGAL([weight], lr=LR, mode=mode, density=0.5, state_free="sgd", state_free_lr_scale=FREE)
    weight.grad = torch.randn(shape)
    optimizer.step()
    m, n = shape
    right = m >= n
    state = optimizer.state[weight]
    r = round(0.5 * (n if right else m))
    selection = state["selection"]
    if mode == "randperm":  # one-hot basis rows, stored as the chosen feature indices
        assert selection.dtype == torch.int64 and selection.shape == (r,)
        basis = torch.eye(n if right else m, dtype=torch.float64)[selection]
        basis = basis if right else basis.T
    else:
        assert selection.shape == ((r, n) if right else (m, r))
        basis = selection.double()
    assert state["exp_avg"].shape == ((m, r) if right else (r, n))
    assert state["exp_avg_sq"].shape == state["exp_avg"].shape
    grad = weight.grad.double()
    delta = weight.detach().double() - start
    if right:
        outside, inside = torch.eye(n, dtype=torch.float64) - basis.T @ basis, basis.T @ basis
        assert torch.allclose(delta @ outside, -LR * FREE * grad @ outside, atol=1e-6)
        assert torch.allclose((grad - grad @ inside) @ basis.T, torch.zeros(m, r, dtype=torch.float64), atol=1e-5)
    else:
        outside, inside = torch.eye(m, dtype=torch.float64) - basis @ basis.T, basis @ basis.T
        assert torch.allclose(outside @ delta, -LR * FREE * outside @ grad, atol=1e-6)
        assert torch.allclose(basis.T @ (grad - inside @ grad), torch.zeros(r, n, dtype=torch.float64), atol=1e-5)


@pytest.mark.parametrize(
    ("mode", "density", "shape", "moment_shape"),
    [
        ("columns", 0.3, (5, 12), (5, 3)),  # floor(0.3 * 12) = 3 of 12 input columns
        ("rows", 0.3, (12, 5), (3, 5)),  # floor(0.3 * 12) = 3 of 12 output rows
        ("randk", 0.3, (5, 7), (10,)),  # floor(0.3 * 35) = 10 entries
        ("columns", 0.29, (3, 100), (3, 29)),  # 0.29 * 100 is 28.999... in floats; rho * n is 29
    ],
)
def test_coordinate_modes_pick_floor_rho_size(mode, density, shape, moment_shape):
    weight = torch.nn.Parameter(torch.zeros(shape))
    optimizer = FRUGAL([weight], lr=0.1, mode=mode, density=density, state_free="none")
    weight.grad = torch.randn(shape)
    optimizer.step()
    state = optimizer.state[weight]
    count = moment_shape[0] if mode == "rows" else moment_shape[-1]
    assert state["exp_avg"].shape == moment_shape
    indices = state["selection"]
    assert indices.dtype == torch.int64 and indices.unique().numel() == indices.numel() == count
    # with state-free 'none', exactly the chosen coordinates move
    moved = (weight.detach() != 0).sum().item()
    assert moved == math.prod(moment_shape)


def test_rank_overrides_density():
    weight = torch.nn.Parameter(torch.zeros(12, 8))
    optimizer = FRUGAL([weight], mode="svd", density=0.9, rank=3)
    weight.grad = torch.randn(12, 8)
    optimizer.step()
    assert optimizer.state[weight]["exp_avg"].shape == (12, 3)
    huge = torch.nn.Parameter(torch.zeros(4, 6))
    optimizer = FRUGAL([huge], mode="columns", rank=100)
    huge.grad = torch.randn(4, 6)
    optimizer.step()
    assert optimizer.state[huge]["exp_avg"].shape == (4, 6)  # clipped to the 6 columns
