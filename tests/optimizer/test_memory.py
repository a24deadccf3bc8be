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
