"""Blocks order, re-selection cadence (steps 1, T+1, 2T+1, ...) and the state it holds."""

from __future__ import annotations

import pytest
import torch

from frugal_search.optimizer import FRUGAL, optimizer_state_bytes, paper_param_groups


def _layer_of(name: str) -> int:
    return int(name.split(".layers.")[1].split(".")[0])


def _active_layers(optimizer: FRUGAL, group: dict) -> list[str]:
    """Names of the group's tensors that hold moments now (the active blocks)."""
    return [name for p, name in zip(group["params"], group["names"], strict=True) if "exp_avg" in optimizer.state.get(p, {})]


def _fill_grads(model: torch.nn.Module) -> None:
    for p in model.parameters():
        p.grad = torch.ones_like(p)


@pytest.mark.parametrize(
    ("order", "expected_layers"),
    [
        ("descending", [{6, 7}, {4, 5}, {2, 3}, {0, 1}, {6, 7}]),
        ("ascending", [{0, 1}, {2, 3}, {4, 5}, {6, 7}, {0, 1}]),
        ("mirror", [{0, 7}, {1, 6}, {2, 5}, {3, 4}, {0, 7}]),
    ],
)
def test_block_orders_follow_the_window(order, expected_layers, llama_factory):
    model = llama_factory(layers=8, hidden=16, ffn=32)
    groups = paper_param_groups(model)
    optimizer = FRUGAL(groups, mode="blocks", density=0.25, update_gap=1, block_order=order, lr=1e-4)
    frugal = optimizer.param_groups[1]
    assert len(frugal["params"]) == 56  # 8 layers x 7 Linear weights
    for expected in expected_layers:
        _fill_grads(model)
        optimizer.step()
        names = _active_layers(optimizer, frugal)
        assert len(names) == 14  # the 14 tensors of two whole layers
        assert {_layer_of(n) for n in names} == expected


def test_random_block_order_draws_distinct_tensors_reproducibly(llama_factory):
    def draws(seed: int) -> list[tuple[str, ...]]:
        model = llama_factory(layers=8, hidden=16, ffn=32)
        optimizer = FRUGAL(paper_param_groups(model), density=0.25, update_gap=1, block_order="random", seed=seed)
        out = []
        for _ in range(4):
            _fill_grads(model)
            optimizer.step()
            out.append(tuple(_active_layers(optimizer, optimizer.param_groups[1])))
        return out

    first = draws(seed=0)
    assert all(len(set(window)) == 14 for window in first)
    assert len(set(first)) > 1  # a new draw each period
    assert draws(seed=0) == first
    assert draws(seed=1) != first


@pytest.mark.parametrize("mode", ["blocks", "svd", "random", "randperm", "columns", "rows", "randk"])
def test_reselection_at_steps_1_T_plus_1_2T_plus_1(mode):
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(6, 10)) for _ in range(4)]
    gap = 3
    optimizer = FRUGAL(params, mode=mode, density=0.5, update_gap=gap, block_order="ascending", lr=1e-3)
    generator = torch.Generator().manual_seed(1)

    def selection() -> tuple:
        if mode == "blocks":
            return tuple(i for i, p in enumerate(params) if p in optimizer.state)
        return tuple(optimizer.state[params[0]]["selection"].flatten().tolist())

    reselected_at, previous = [], None
    for step in range(1, 11):
        for p in params:
            p.grad = torch.randn(p.shape, generator=generator)
        optimizer.step()
        current = selection()
        if current != previous:
            reselected_at.append(step)
        previous = current
        counter = optimizer.state[params[0] if mode != "blocks" else params[current[0]]]["step"]
        assert int(counter) == (step - 1) % gap + 1  # reset_state=True: the Adam counter restarts
    assert reselected_at == [1, 4, 7, 10]


def test_reset_off_carries_moments_and_counter():
    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(6, 10))
    optimizer = FRUGAL([weight], mode="svd", density=0.5, update_gap=2, reset_state=False)
    for step in range(1, 6):
        weight.grad = torch.randn(6, 10)
        optimizer.step()
        assert int(optimizer.state[weight]["step"]) == step


def test_blocks_state_bytes_is_moments_of_stateful_and_active_tensors(llama_factory):
    model = llama_factory(layers=4)
    groups = paper_param_groups(model)
    n_stateful = sum(p.numel() for p in groups[0]["params"])
    optimizer = FRUGAL(groups, mode="blocks", density=0.25, update_gap=2)
    frugal = optimizer.param_groups[1]
    for _ in range(6):
        _fill_grads(model)
        optimizer.step()
        active_numel = sum(p.numel() for p in frugal["params"] if p in optimizer.state)
        assert active_numel > 0
        assert optimizer_state_bytes(optimizer) == 2 * 4 * (n_stateful + active_numel)


def test_adamw_state_bytes_is_two_fp32_moments(llama_factory):
    model = llama_factory()
    optimizer = torch.optim.AdamW(model.parameters())
    _fill_grads(model)
    optimizer.step()
    assert optimizer_state_bytes(optimizer) == 2 * 4 * sum(p.numel() for p in model.parameters())
