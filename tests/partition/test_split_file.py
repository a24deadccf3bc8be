"""Split config files: round trip, readable layout, and clear errors for bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from torch import nn

from frugal_search.partition import SPLIT_FORMAT, Partition, Rule


def _searched_partition() -> Partition:
    return Partition(
        [
            Rule("stateful", kinds=["head", "embedding"], lr_scale=0.5),
            Rule("frugal", kinds="attention", layers="last:0.5", mode="svd", rank=4, reset_state=False),
            Rule("frugal", kinds="mlp", layers="0-0.5", density=0.125, update_gap=50),
            Rule("state_free", names=["*norm*"], state_free="sgd", state_free_lr_scale=0.1),
            Rule("stateful"),
        ],
        lr=3e-3,
        betas=(0.9, 0.95),
        weight_decay=0.01,
        block_order="ascending",
        seed=7,
        name="trial-12",
        provenance={"source": {"study": "tiny", "trial": 12}, "metrics": {"eval_loss": 3.25, "state_bytes": 1024}},
    )


def _group_view(groups: list[dict]) -> list[dict]:
    """Every key of every group, with tensors replaced by their identity."""
    return [{k: ([id(p) for p in v] if k == "params" else v) for k, v in g.items()} for g in groups]


def test_round_trip_builds_an_optimizer_with_identical_groups(tmp_path: Path, llama: nn.Module) -> None:
    original = _searched_partition()
    path = original.to_json(tmp_path / "split.json")
    loaded = Partition.from_json(path)
    assert loaded == original
    assert _group_view(loaded.build_optimizer(llama).param_groups) == _group_view(
        original.build_optimizer(llama).param_groups
    )
    assert Partition.from_dict(original.to_dict()) == original


def test_file_is_readable_and_versioned(tmp_path: Path) -> None:
    path = Partition.paper().to_json(tmp_path / "split.json")
    text = path.read_text()
    data = json.loads(text)
    assert data["format"] == SPLIT_FORMAT == "frugal-split/1"
    assert list(data) == ["format", "name", "settings", "rules", "provenance"]
    assert data["rules"] == [{"role": "frugal", "kinds": ["attention", "mlp"]}, {"role": "stateful"}]
    assert '      "kinds": ["attention", "mlp"]\n' in text  # indent 2, short lists on one line
    assert '      "kinds": ["attention", "mlp"]\n' in text


def test_missing_settings_take_their_defaults() -> None:
    partition = Partition.from_dict({"format": SPLIT_FORMAT, "rules": [{"role": "stateful"}]})
    assert partition == Partition([Rule("stateful")])


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"format": "frugal-split/2", "rules": [{"role": "stateful"}]}, "'format'.*frugal-split/1"),
        ({"rules": [{"role": "stateful"}]}, "'format' is None"),
        ({"format": SPLIT_FORMAT, "rules": [{"role": "stateful"}], "extra": 1}, r"unknown key 'extra'; allowed: format, name"),
        ({"format": SPLIT_FORMAT, "rules": []}, "'rules' must be a non-empty list"),
        ({"format": SPLIT_FORMAT, "rules": [{"role": "adam"}]}, r"'rules\[0\]'.*'stateful', 'frugal'"),
        (
            {"format": SPLIT_FORMAT, "rules": [{"role": "frugal", "kind": "mlp"}]},
            r"'rules\[0\]'.*unknown rule key.*kinds",
        ),
        ({"format": SPLIT_FORMAT, "rules": [{"kinds": "mlp"}]}, r"'rules\[0\]'.*needs a 'role'"),
        ({"format": SPLIT_FORMAT, "rules": [{"role": "frugal", "layers": "top"}]}, r"'rules\[0\]'.*first:K"),
        (
            {"format": SPLIT_FORMAT, "rules": [{"role": "stateful"}], "settings": {"lr": "fast"}},
            r"'settings'.*lr='fast': allowed a finite number >= 0",
        ),
        (
            {"format": SPLIT_FORMAT, "rules": [{"role": "stateful"}], "settings": {"rho": 0.2}},
            r"'settings': unknown key 'rho'; allowed: lr, .*density",
        ),
        (
            {"format": SPLIT_FORMAT, "rules": [{"role": "stateful"}], "settings": {"mode": "lowrank"}},
            r"'settings'.*mode='lowrank': allowed one of 'blocks'",
        ),
        (
            {"format": SPLIT_FORMAT, "rules": [{"role": "stateful"}], "provenance": [1]},
            "'provenance' must be an object",
        ),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_bad_split_files_name_the_file_the_key_and_the_allowed_values(tmp_path: Path, data: object, match: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=match) as error:
        Partition.from_json(path)
    assert str(path) in str(error.value)


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read split config"):
        Partition.from_json(tmp_path / "missing.json")
    path = tmp_path / "broken.json"
    path.write_text('{"format": "frugal-split/1",')
    with pytest.raises(ValueError, match=r"broken.json: not valid JSON \(line 1"):
        Partition.from_json(path)
