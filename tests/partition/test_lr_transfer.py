"""The width lr transfer rule: identity on the proxy, documented per-tensor lrs on a wider model, split files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from frugal_search.partition import Partition, Rule, baseline_partition

LR = 2e-3


def _llama(*, hidden: int = 32, ffn: int = 64, layers: int = 2, heads: int = 4) -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=hidden,
        intermediate_size=ffn,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=32,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config)


def _searched() -> Partition:
    return Partition(
        [
            Rule("state_free", kinds=["embedding", "norm", "head"], lr_scale=4.0),
            Rule("frugal", kinds="attention", mode="svd", density=0.25),
            Rule("frugal", kinds="mlp", mode="blocks", density=0.5),
            Rule("stateful"),
        ],
        lr=LR,
    )


PARTITIONS = {
    "adamw": lambda: baseline_partition("adamw", lr=LR),
    "galore": lambda: baseline_partition("galore", lr=LR),
    "frugal": lambda: baseline_partition("frugal", lr=LR),
    "searched": _searched,
}


def _lr_of_each_tensor(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    return {name: group["lr"] for group in optimizer.param_groups for name in group["names"]}


def _with_rule(partition: Partition, proxy: nn.Module) -> Partition:
    return partition.with_base_widths(proxy).replace(lr_transfer="width")


@pytest.mark.parametrize("name", sorted(PARTITIONS))
def test_the_rule_is_the_identity_on_the_proxy_s_own_shapes(name: str) -> None:
    proxy = _llama()
    plain = PARTITIONS[name]()
    ruled = _with_rule(plain, proxy)
    without, with_rule = plain.param_groups(proxy), ruled.param_groups(proxy)
    assert [g["names"] for g in with_rule] == [g["names"] for g in without]
    assert [g.get("lr") for g in with_rule] == [g.get("lr") for g in without]


def test_a_wider_deeper_model_gets_base_fan_in_over_fan_in_on_matrices_only() -> None:
    proxy = _llama(hidden=32, ffn=64, layers=2)
    target = _llama(hidden=64, ffn=160, layers=3, heads=8)
    optimizer = _with_rule(baseline_partition("adamw", lr=LR), proxy).build_optimizer(target)
    lrs = _lr_of_each_tensor(optimizer)
    # by hand: q/k/v/o, gate/up and the head read the hidden size (32 -> 64); down_proj reads the ffn (64 -> 160)
    for name, lr in lrs.items():
        if name.endswith("down_proj.weight"):
            expected = LR * 64 / 160
        elif name.endswith(("_proj.weight",)) or name == "lm_head.weight":
            expected = LR * 32 / 64
        else:  # embedding and norms keep the split's lr
            expected = LR
        assert lr == pytest.approx(expected, rel=1e-12), name
    assert sum(name.endswith("down_proj.weight") for name in lrs) == 3  # the third layer found its base too
    # the state is the same with and without the rule: it does not depend on the lr
    assert _with_rule(baseline_partition("adamw"), proxy).state_bytes(target) == baseline_partition(
        "adamw"
    ).state_bytes(target)


def test_rule_lr_scale_and_the_width_multiplier_compose() -> None:
    proxy, target = _llama(hidden=32), _llama(hidden=64, ffn=64)
    lrs = _lr_of_each_tensor(_with_rule(_searched(), proxy).build_optimizer(target))
    assert lrs["model.embed_tokens.weight"] == pytest.approx(LR * 4.0)
    assert lrs["lm_head.weight"] == pytest.approx(LR * 4.0 * 32 / 64)
    assert lrs["model.layers.0.self_attn.q_proj.weight"] == pytest.approx(LR * 32 / 64)


def test_a_frugal_blocks_group_stays_one_group_with_its_smallest_multiplier() -> None:
    proxy, target = _llama(ffn=64), _llama(ffn=128)  # only down_proj is wider: x0.5, the rest x1
    partition = _with_rule(
        Partition([Rule("frugal", kinds="mlp", mode="blocks"), Rule("frugal", kinds="attention", mode="svd"),
                   Rule("stateful", kinds="head"), Rule("stateful")], lr=LR),
        proxy,
    )
    groups = partition.param_groups(target)
    mlp = [g for g in groups if any("mlp" in n for n in g["names"])]
    assert len(mlp) == 1 and len(mlp[0]["names"]) == 6 and mlp[0]["lr"] == pytest.approx(LR * 0.5)
    # elsewhere every multiplier is 1: no lr key, as without the rule
    assert all("lr" not in g for g in groups if g is not mlp[0])


def test_a_non_blocks_group_with_two_multipliers_is_split_in_model_order() -> None:
    proxy, target = _llama(ffn=64), _llama(ffn=128)
    partition = _with_rule(Partition([Rule("frugal", kinds="mlp", mode="svd"), Rule("stateful")], lr=LR), proxy)
    groups = [g for g in partition.param_groups(target) if g["role"] == "frugal"]
    assert [len(g["names"]) for g in groups] == [4, 2]
    assert [g.get("lr") for g in groups] == [None, pytest.approx(LR * 0.5)]
    assert all(n.endswith("down_proj.weight") for n in groups[1]["names"])
    assert groups[1]["names"] == sorted(groups[1]["names"])


def test_without_base_widths_or_with_rule_none_nothing_changes() -> None:
    proxy, target = _llama(), _llama(hidden=64)
    recorded = baseline_partition("adamw", lr=LR).with_base_widths(proxy)  # lr_transfer stays "none"
    assert set(_lr_of_each_tensor(recorded.build_optimizer(target)).values()) == {LR}
    unrecorded = baseline_partition("adamw", lr=LR).replace(lr_transfer="width")
    assert set(_lr_of_each_tensor(unrecorded.build_optimizer(target)).values()) == {LR}


def test_the_rule_and_base_widths_survive_the_split_file(tmp_path: Path) -> None:
    proxy, target = _llama(), _llama(hidden=64, ffn=128, layers=3)
    original = _with_rule(_searched(), proxy)
    path = original.to_json(tmp_path / "split.json")
    stored = json.loads(path.read_text())
    assert stored["lr_transfer"]["rule"] == "width"
    assert stored["lr_transfer"]["base_widths"]["model.layers.*.mlp.down_proj.weight"] == 64
    loaded = Partition.from_json(path)
    assert loaded == original
    assert _lr_of_each_tensor(loaded.build_optimizer(target)) == _lr_of_each_tensor(original.build_optimizer(target))


def test_an_old_split_file_without_the_key_means_no_rule(tmp_path: Path) -> None:
    data = baseline_partition("frugal").to_dict()
    assert "lr_transfer" not in data  # not written when unset, so old files and new ones read alike
    loaded = Partition.from_dict(data)
    assert (loaded.lr_transfer, loaded.base_widths) == ("none", None)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({"rule": "mup"}, "lr_transfer must be one of none, width"),
        ({"rule": "width", "base_widths": {"lm_head.weight": 0}}, "integer fan-in >= 1"),
        ({"rule": "width", "base_widths": {"lm_head.weight": True}}, "integer fan-in >= 1"),
        ({"rule": "width", "widths": {}}, "unknown key"),
        ("width", "must be an object"),
    ],
)
def test_a_bad_lr_transfer_entry_is_an_error_naming_the_file(value: object, fragment: str) -> None:
    data = {**baseline_partition("adamw").to_dict(), "lr_transfer": value}
    with pytest.raises(ValueError, match=fragment) as caught:
        Partition.from_dict(data, source="split.json")
    assert "split.json" in str(caught.value)


def test_a_bad_rule_name_on_the_partition_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="got 'muP'"):
        baseline_partition("adamw").replace(lr_transfer="muP")
