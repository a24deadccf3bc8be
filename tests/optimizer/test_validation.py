"""Every bad setting raises ValueError at construction, naming the value and the allowed ones."""

from __future__ import annotations

import pytest
import torch

from frugal_search.optimizer import FRUGAL


def _params(n: int = 4) -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(torch.zeros(3, 3)) for _ in range(n)]


@pytest.mark.parametrize(
    ("kwargs", "fragments"),
    [
        ({"mode": "lowrank"}, ["'lowrank'", "'blocks'", "'randk'"]),
        ({"block_order": "zigzag"}, ["'zigzag'", "'mirror'"]),
        ({"state_free": "adam"}, ["'adam'", "'signsgd'", "'none'"]),
        ({"density": 1.5}, ["1.5", "[0, 1]"]),
        ({"density": -0.1}, ["-0.1", "[0, 1]"]),
        ({"update_gap": 0}, ["update_gap=0", ">= 1"]),
        ({"update_gap": 2.5}, ["2.5", "int"]),
        ({"lr": -1.0}, ["lr=-1.0", ">= 0"]),
        ({"eps": -1e-8}, ["eps", ">= 0"]),
        ({"betas": (1.2, 0.999)}, ["betas=(1.2, 0.999)", "[0, 1)"]),
        ({"betas": (0.9,)}, ["betas", "pair"]),
        ({"weight_decay": -0.1}, ["weight_decay", ">= 0"]),
        ({"state_free_lr_scale": -1}, ["state_free_lr_scale", ">= 0"]),
        ({"rank": -2, "mode": "svd"}, ["rank=-2", "int >= 0"]),
        ({"rank": 4, "mode": "blocks"}, ["rank=4", "blocks", "density"]),
        ({"reset_state": "yes"}, ["reset_state", "True or False"]),
        ({"block_order": "mirror", "density": 0.25}, ["mirror", "k=1", "even"]),  # round(.25 * 4) = 1
        ({"seed": "x"}, ["seed", "int"]),
    ],
)
def test_bad_settings_raise_value_error(kwargs, fragments):
    with pytest.raises(ValueError) as error:
        FRUGAL(_params(), **kwargs)
    for fragment in fragments:
        assert fragment in str(error.value)


def test_unknown_group_key_names_it_and_the_allowed_keys():
    with pytest.raises(ValueError) as error:
        FRUGAL([{"params": _params(), "densty": 0.5}])
    assert "unknown param group key 'densty'" in str(error.value) and ", density," in str(error.value)


def test_unknown_role_in_a_group():
    with pytest.raises(ValueError, match="role='adamw'.*'stateful'"):
        FRUGAL([{"params": _params(), "role": "adamw"}])


def test_group_override_is_validated_too():
    with pytest.raises(ValueError, match="density=2"):
        FRUGAL([{"params": _params(), "role": "frugal", "density": 2}])


def test_names_must_parallel_params():
    with pytest.raises(ValueError, match="names"):
        FRUGAL([{"params": _params(2), "names": ["only_one"]}])


def test_group_overrides_apply_per_group():
    first, second = _params(2), _params(2)
    optimizer = FRUGAL(
        [{"params": first, "mode": "svd", "density": 0.5}, {"params": second, "role": "stateful"}], mode="blocks"
    )
    assert optimizer.param_groups[0]["mode"] == "svd" and optimizer.param_groups[0]["density"] == 0.5
    assert optimizer.param_groups[1]["mode"] == "blocks" and optimizer.param_groups[1]["role"] == "stateful"
    assert optimizer.param_groups[0]["role"] == "frugal"  # the default role
