"""peak_state_bytes (shapes only, meta device) equals the state measured over a full cycle."""

from __future__ import annotations

import pytest
import torch

from frugal_search.optimizer import FRUGAL, optimizer_state_bytes, paper_param_groups

CASES = [
    {"mode": "blocks", "block_order": "descending"},
    {"mode": "blocks", "block_order": "ascending"},
    {"mode": "blocks", "block_order": "mirror", "density": 0.3},
    {"mode": "svd"},
    {"mode": "svd", "rank": 5},
    {"mode": "random"},
    {"mode": "randperm"},
    {"mode": "columns"},
    {"mode": "rows", "rank": 3},
    {"mode": "randk"},
]


def _groups(model) -> list[dict]:
    stateful, frugal = paper_param_groups(model)
    # every role present: the head state-free, the norms frozen
    head = [i for i, n in enumerate(stateful["names"]) if n.startswith("lm_head")]
    norms = [i for i, n in enumerate(stateful["names"]) if "norm" in n]
    rest = [i for i in range(len(stateful["params"])) if i not in head + norms]

    def pick(indices: list[int]) -> dict:
        return {"params": [stateful["params"][i] for i in indices], "names": [stateful["names"][i] for i in indices]}

    return [
        {**pick(rest), "role": "stateful"},
        frugal,
        {**pick(head), "role": "state_free"},
        {**pick(norms), "role": "frozen"},
    ]


@pytest.mark.parametrize("settings", CASES, ids=lambda s: "-".join(str(v) for v in s.values()))
def test_peak_state_bytes_equals_measured_max_over_a_cycle(settings, llama_factory):
    model = llama_factory()
    optimizer = FRUGAL(_groups(model), update_gap=1, **{"density": 0.25, **settings})
    measured = []
    for _ in range(len(optimizer.param_groups[1]["params"])):  # n periods cover every window
        for p in model.parameters():
            p.grad = torch.ones_like(p)
        optimizer.step()
        measured.append(optimizer_state_bytes(optimizer))
    assert max(measured) == optimizer.peak_state_bytes()
    by_group = optimizer.peak_state_bytes(by_group=True)
    assert len(by_group) == 4 and by_group[2] == by_group[3] == 0 and sum(by_group) == max(measured)

    with torch.device("meta"):
        meta_model = llama_factory()
    meta_optimizer = FRUGAL(_groups(meta_model), update_gap=1, **{"density": 0.25, **settings})
    assert meta_optimizer.peak_state_bytes() == max(measured)


def test_random_block_order_peak_is_the_largest_window(llama_factory):
    model = llama_factory()
    optimizer = FRUGAL(paper_param_groups(model), density=0.25, update_gap=1, block_order="random")
    frugal_bytes = sorted((8 * p.numel() for p in optimizer.param_groups[1]["params"]), reverse=True)
    stateful_bytes = sum(8 * p.numel() for p in optimizer.param_groups[0]["params"])
    k = round(0.25 * 14)
    assert optimizer.peak_state_bytes() == stateful_bytes + sum(frugal_bytes[:k])
    for _ in range(10):
        for p in model.parameters():
            p.grad = torch.ones_like(p)
        optimizer.step()
        assert optimizer_state_bytes(optimizer) <= optimizer.peak_state_bytes()


def test_blocks_groups_on_different_schedules_count_their_joint_peak():
    # Two groups whose largest windows (the 100-element tensor) come at different steps: the
    # state never holds both, so the peak is below the sum of the groups' own peaks.
    def tensors() -> list[torch.nn.Parameter]:
        return [torch.nn.Parameter(torch.zeros(numel)) for numel in (100, 10, 10, 10)]

    groups = [
        {"params": tensors(), "role": "frugal", "block_order": "descending", "update_gap": 2},
        {"params": tensors(), "role": "frugal", "block_order": "ascending", "update_gap": 4},
    ]
    optimizer = FRUGAL(groups, mode="blocks", density=0.25)
    measured = []
    for _ in range(2 * 16):  # the schedules repeat every lcm(2 * 4, 4 * 4) = 16 steps
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.grad = torch.ones_like(p)
        optimizer.step()
        measured.append(optimizer_state_bytes(optimizer))
    assert optimizer.peak_state_bytes(by_group=True) == [800, 800]
    assert optimizer.peak_state_bytes() == max(measured) == 880 < 1600


def test_joint_schedule_too_long_to_enumerate_falls_back_to_the_sum_of_peaks():
    from frugal_search.optimizer._subspace import joint_peak_bytes

    assert joint_peak_bytes([(2, [10, 10, 10, 100]), (4, [100, 10, 10, 10])]) == 110
    assert joint_peak_bytes([(3, [10, 10, 10, 100]), (2, [100, 10, 10, 10])]) == 200  # steps 10-11
    assert joint_peak_bytes([(199, [1, 2]), (211, [3, 4]), (223, [5, 6, 7])]) is None
