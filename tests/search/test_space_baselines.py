"""Every baseline that fits the shipped study's memory budget is a point of its search space."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from frugal_search.partition import Partition
from frugal_search.proxy import METHODS, build_model
from frugal_search.search import load_study_config
from frugal_search.search.space import baseline_point, partition_from_settings

TINY_STUDY = Path(__file__).resolve().parents[2] / "studies" / "tiny.toml"


def _roles(partition: Partition, model: torch.nn.Module) -> dict[str, tuple]:
    """What the optimizer does to each parameter: its role, every resolved FRUGAL setting, and, for a
    frugal group, the other tensors of its group (blocks mode schedules one window per group).
    Stateful groups may be split differently: AdamW per tensor does not depend on the grouping."""
    optimizer = partition.build_optimizer(model)
    keys = sorted(key for key in optimizer.param_groups[0] if key not in ("params", "names"))
    out = {}
    for group in optimizer.param_groups:
        settings = tuple((key, group[key]) for key in keys)
        members = tuple(group["names"]) if group["role"] == "frugal" else ()
        out.update({name: (settings, members) for name in group["names"]})
    return out


@pytest.mark.parametrize("name", ["frugal", "frugal-rho0", "galore", "galore-8bit", "badam", "adamw"])
def test_a_baseline_point_rebuilds_the_baseline(name: str) -> None:
    with torch.device("meta"):
        model = build_model("tiny-llama")
    point = baseline_point(name)
    assert _roles(partition_from_settings(point, num_layers=4), model) == _roles(Partition.baseline(name), model)


def test_the_shipped_space_holds_every_baseline_within_its_budget() -> None:
    config = load_study_config(TINY_STUDY)
    with torch.device("meta"):
        model = build_model(config.model_spec())
    fitting = [
        name
        for name in config.study.baselines
        if name not in METHODS and Partition.baseline(name).state_bytes(model) <= config.study.memory_budget
    ]
    # AdamW is over the budget; the competitors (methods, not partitions) are no points of the space
    assert set(fitting) == {"frugal", "frugal-rho0", "galore", "galore-8bit", "badam"}
    for name in fitting:
        outside = {
            key: value for key, value in baseline_point(name).items() if not config.space[key].holds(value)
        }
        assert not outside, f"{name}: {outside} are outside the shipped space"


def test_a_baseline_point_takes_another_lr() -> None:
    assert baseline_point("galore", lr=0.03)["lr"] == 0.03
    assert baseline_point("galore")["split_lr_scale"] == 0.25
