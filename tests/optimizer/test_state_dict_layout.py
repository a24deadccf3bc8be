"""state_dict's settings-fixed layout (what DCP templates need), torch's state initialisation,
earlier versions' state_dicts, and peak_state_bytes(world_size=N) on one process."""

from __future__ import annotations

import pytest
import torch
from torch.optim import Optimizer

from frugal_search.optimizer import FRUGAL, MODES, paper_param_groups


def _optimizer(model, mode: str, seed: int = 0, rule: str = "adamw") -> FRUGAL:
    return FRUGAL(
        paper_param_groups(model), mode=mode, density=0.25, update_gap=2, block_order="random", seed=seed,
        stateful_rule=rule,
    )


def _layout(state_dict: dict) -> list:
    """Keys, shapes and dtypes of every tensor (the template DCP loads into must match them)."""
    def describe(value):
        if isinstance(value, torch.Tensor):
            return (tuple(value.shape), value.dtype)
        if isinstance(value, dict):
            return sorted((key, describe(item)) for key, item in value.items())
        return None

    groups = [describe({k: v for k, v in g.items() if k == "frugal_state"}) for g in state_dict["param_groups"]]
    return [describe(state_dict["state"]), groups]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("rule", ["adamw", "lion", "sgdm"])
def test_the_layout_is_the_same_before_the_first_step_and_after_a_reselection(mode, rule, llama_factory, trainer):
    model = llama_factory()
    optimizer = _optimizer(model, mode, rule=rule)
    before = _layout(optimizer.state_dict())
    trainer(model, optimizer, range(3))  # steps 1..3: re-selected at 1 and 3
    assert _layout(optimizer.state_dict()) == before
    assert optimizer.state_dict()["param_groups"][0]["frugal_state"]["global_step"] == 3


@pytest.mark.parametrize("mode", ["blocks", "random"])
def test_torchs_state_initialisation_takes_no_step(mode, llama_factory, trainer):
    from torch.distributed.checkpoint.state_dict import _init_optim_state

    straight_model, model = llama_factory(), llama_factory()
    straight, optimizer = _optimizer(straight_model, mode), _optimizer(model, mode)
    _init_optim_state(optimizer)  # what get_optimizer_state_dict / set_optimizer_state_dict run first
    assert not optimizer.state and optimizer.state_dict()["param_groups"][0]["frugal_state"]["global_step"] == 0
    trainer(straight_model, straight, range(3))
    trainer(model, optimizer, range(3))
    for expected, actual in zip(straight_model.parameters(), model.parameters(), strict=True):
        assert torch.equal(actual, expected)


@pytest.mark.parametrize("mode", ["blocks", "random", "randk"])
def test_a_state_dict_of_the_earlier_layout_still_loads(mode, llama_factory, trainer):
    straight_model = llama_factory()
    trainer(straight_model, _optimizer(straight_model, mode), range(5))
    model = llama_factory()
    optimizer = _optimizer(model, mode)
    trainer(model, optimizer, range(3))
    legacy = Optimizer.state_dict(optimizer)  # torch's own layout plus the earlier top-level entry
    legacy["frugal"] = {
        "global_step": torch.tensor(optimizer._global_step),
        "generator_state": optimizer._generator.get_state(),
        "active_blocks": [torch.tensor(window, dtype=torch.int64) for window in optimizer._active_blocks],
    }
    resumed = _optimizer(model, mode, seed=7)
    resumed.load_state_dict(legacy)
    trainer(model, resumed, range(3, 5))
    for expected, actual in zip(straight_model.parameters(), model.parameters(), strict=True):
        assert torch.equal(actual, expected)


def test_peak_state_bytes_for_a_world_size(llama_factory):
    model = llama_factory()  # hidden 32, ffn 64, vocabulary 64: every dim 0 even
    optimizer = FRUGAL(paper_param_groups(model), mode="columns", density=0.25)
    assert optimizer.peak_state_bytes(world_size=1) == optimizer.peak_state_bytes()
    # columns: moments by rows halve, the int64 column indices stay whole on each rank
    indices = sum(8 * int(0.25 * p.shape[1]) for g in paper_param_groups(model) if g["role"] == "frugal" for p in g["params"])
    assert optimizer.peak_state_bytes(world_size=2) == (optimizer.peak_state_bytes() - indices) // 2 + indices
    for bad in (0, True, 2.0):
        with pytest.raises(ValueError, match="world_size"):
            optimizer.peak_state_bytes(world_size=bad)
