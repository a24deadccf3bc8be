"""The rho schedule (linear decay; blocks follow floor(rho_t n), projections re-plan their rank at
re-selection) and the loss-aware T (grown by report_loss on a plateau, up to a cap): when they
re-select, that peak_state_bytes is their peak, and that resume keeps their state."""

from __future__ import annotations

import io
import math

import pytest
import torch

from frugal_search.optimizer import FRUGAL, optimizer_state_bytes


def _set_grads(params: list[torch.Tensor], step: int) -> None:
    generator = torch.Generator().manual_seed(50 + step)
    for p in params:
        p.grad = torch.randn(p.shape, generator=generator)


def test_blocks_follow_floor_of_the_decaying_rho_and_reselect_when_the_count_changes():
    params = [torch.nn.Parameter(torch.randn(4, 3)) for _ in range(8)]
    optimizer = FRUGAL(params, mode="blocks", density=0.5, density_end=0.125, density_steps=8, update_gap=100)
    peak = optimizer.peak_state_bytes()
    windows, measured = [], []
    for step in range(1, 12):
        _set_grads(params, step)
        optimizer.step()
        windows.append(list(optimizer._active_blocks[0]))
        measured.append(optimizer_state_bytes(optimizer))
        rho = max(0.125, 0.5 - 0.375 * (step - 1) / 8)
        assert len(windows[-1]) == math.floor(rho * 8 + 1e-9), step
    counts = [len(w) for w in windows]
    assert counts == [4, 3, 3, 2, 2, 2, 1, 1, 1, 1, 1]
    # a new window exactly where the count changes (T 100 never comes): descending order moves on
    changed = [i for i in range(1, len(windows)) if windows[i] != windows[i - 1]]
    assert changed == [i for i in range(1, len(counts)) if counts[i] != counts[i - 1]] == [1, 3, 6]
    assert peak == max(measured) == measured[0] == 4 * 2 * 12 * 4


@pytest.mark.parametrize("order", ["descending", "ascending"])
def test_a_scheduled_window_of_consecutive_tensors_is_bounded_by_the_largest_run_not_the_largest_tensors(order):
    # sizes alternate 4x4 / 8x8 (like attention and mlp matrices in a layer): any 3 consecutive
    # tensors hold at most 64 + 16 + 64 elements, while the 3 largest hold 3 x 64
    params = [torch.nn.Parameter(torch.randn(8, 8) if i % 2 else torch.randn(4, 4)) for i in range(6)]
    optimizer = FRUGAL(params, mode="blocks", density=0.5, density_end=1 / 6, density_steps=12, update_gap=2,
                       block_order=order, update_gap_growth=2.0, update_gap_max=8, loss_plateau=0.5)
    peak = optimizer.peak_state_bytes()
    assert peak == 2 * 4 * (64 + 16 + 64)  # two fp32 moments
    measured = []
    for step in range(1, 25):
        _set_grads(params, step)
        optimizer.step()
        optimizer.report_loss(1.0)  # a plateau: T grows, the windows move off the fixed cycle
        measured.append(optimizer_state_bytes(optimizer))
    assert max(measured) <= peak < 2 * 4 * 3 * 64  # a bound, below the 3 largest tensors'
    if order == "descending":  # its first window is the last three tensors: 8x8, 4x4, 8x8, the bound itself
        assert measured[0] == peak


@pytest.mark.parametrize("mode", ["svd", "random", "columns", "randk"])
def test_projection_and_coordinate_modes_replan_their_size_at_each_reselection(mode):
    weight = torch.nn.Parameter(torch.randn(16, 8))
    optimizer = FRUGAL([weight], mode=mode, density=0.5, density_end=0.25, density_steps=4, update_gap=2)
    peak = optimizer.peak_state_bytes()
    sizes, measured = [], []
    for step in range(1, 8):
        _set_grads([weight], step)
        optimizer.step()
        sizes.append(optimizer.state[weight]["exp_avg"].shape)
        measured.append(optimizer_state_bytes(optimizer))
    # rho at steps 1, 3, 5, 7: 0.5, 0.375, 0.25, 0.25; held within each period of T 2
    if mode in ("svd", "random"):  # right projection, r = round(rho * 8)
        expected = [(16, 4)] * 2 + [(16, 3)] * 2 + [(16, 2)] * 3
    elif mode == "columns":  # floor(rho * 8) columns
        expected = [(16, 4)] * 2 + [(16, 3)] * 2 + [(16, 2)] * 3
    else:  # floor(rho * 128) entries
        expected = [(64,)] * 2 + [(48,)] * 2 + [(32,)] * 3
    assert [tuple(size) for size in sizes] == expected
    assert peak == max(measured) == measured[0]


def test_report_loss_grows_t_on_a_plateau_up_to_the_cap_from_the_next_reselection():
    weight, fixed = torch.nn.Parameter(torch.randn(6, 4)), torch.nn.Parameter(torch.randn(6, 4))
    optimizer = FRUGAL(
        [{"params": [weight]}, {"params": [fixed], "update_gap_growth": 1.0}], mode="random", density=0.5,
        update_gap=2, update_gap_growth=2.0, update_gap_max=5, loss_plateau=0.01,
    )
    reselected = []
    losses = {3: 1.0, 4: 0.999, 9: 0.5, 10: 0.4999, 15: 0.4998}  # reported after these steps
    for step in range(1, 21):
        _set_grads([weight, fixed], step)
        before = int(optimizer.state[weight]["period"]) if weight in optimizer.state else -1
        optimizer.step()
        if int(optimizer.state[weight]["period"]) != before:
            reselected.append(step)
        if step in losses:
            optimizer.report_loss(losses[step])
    # T 2: 1, 3, 5; after step 4 (change 1e-3 < 0.01) T 4 from the period starting at 5: 5, 9;
    # after step 10 T min(5, 8) = 5: next at 13, then 18; a third plateau keeps the cap
    assert reselected == [1, 3, 5, 9, 13, 18]
    assert optimizer.param_groups[0]["update_gap"] == 5 and optimizer.param_groups[1]["update_gap"] == 2
    optimizer.report_loss(float("nan"))  # ignored, and not the previous loss either
    assert optimizer._last_loss == 0.4998


@pytest.mark.parametrize("mode", ["blocks", "svd", "rows"])
def test_resume_keeps_the_schedules_state(mode):
    settings = {
        "mode": mode, "density": 0.5, "density_end": 0.2, "density_steps": 6, "update_gap": 2,
        "update_gap_growth": 1.5, "update_gap_max": 6, "loss_plateau": 0.5, "block_order": "random",
    }
    losses = {2: 1.0, 3: 0.9, 5: 0.8}

    def run(params, optimizer, steps):
        for step in steps:
            _set_grads(params, step)
            optimizer.step()
            if step in losses:
                optimizer.report_loss(losses[step])

    def fresh():
        torch.manual_seed(1)
        params = [torch.nn.Parameter(torch.randn(8, 6)) for _ in range(5)]
        return params, FRUGAL(params, **settings)

    straight, straight_optimizer = fresh()
    run(straight, straight_optimizer, range(1, 11))
    params, optimizer = fresh()
    run(params, optimizer, range(1, 6))
    buffer = io.BytesIO()
    torch.save(optimizer.state_dict(), buffer)
    buffer.seek(0)
    copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
    resumed = FRUGAL(copies, **settings)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    run(copies, resumed, range(6, 11))
    assert resumed.param_groups[0]["update_gap"] == straight_optimizer.param_groups[0]["update_gap"] > 2
    for expected, actual in zip(straight, copies, strict=True):
        assert torch.equal(actual, expected)


def test_a_schedule_must_decay_and_needs_density():
    weight = torch.nn.Parameter(torch.randn(4, 4))
    with pytest.raises(ValueError, match=r"density_end=0.5: allowed at most density=0.25"):
        FRUGAL([weight], density=0.25, density_end=0.5)
    with pytest.raises(ValueError, match=r"density_end=0.1: allowed None with a rank"):
        FRUGAL([weight], mode="svd", rank=2, density_end=0.1)
    with pytest.raises(ValueError, match=r"update_gap_growth=0.5"):
        FRUGAL([weight], update_gap_growth=0.5)
