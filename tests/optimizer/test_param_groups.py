"""paper_param_groups: Linear weights inside the blocks are frugal, everything else stateful."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from frugal_search.optimizer import FRUGAL, paper_param_groups


def _check_partition(model: nn.Module, groups: list[dict]) -> None:
    stateful, frugal = groups
    assert stateful["role"] == "stateful" and frugal["role"] == "frugal"
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))  # tied weights appear once
    assert set(ids) == {id(p) for p in model.parameters()}
    assert all(len(g["names"]) == len(g["params"]) for g in groups)


def test_llama(llama_factory):
    model = llama_factory(layers=2)
    groups = paper_param_groups(model)
    _check_partition(model, groups)
    expected = [
        f"model.layers.{layer}.{part}.weight"
        for layer in range(2)
        for part in [
            "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
            "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
        ]
    ]
    assert groups[1]["names"] == expected  # module order, layer 0 first
    assert "lm_head.weight" in groups[0]["names"] and "model.embed_tokens.weight" in groups[0]["names"]


def test_gpt2_conv1d_weights_are_split_and_tied_head_appears_once():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=64, n_positions=16))
    groups = paper_param_groups(model)
    _check_partition(model, groups)
    assert groups[1]["names"] == [
        f"transformer.h.{layer}.{part}.weight"
        for layer in range(2)
        for part in ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"]
    ]
    assert all(not n.endswith(".bias") for n in groups[1]["names"])
    assert "transformer.wte.weight" in groups[0]["names"]


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_encoders(family):
    from transformers import BertConfig, BertModel, RobertaConfig, RobertaModel

    config_class, model_class = (BertConfig, BertModel) if family == "bert" else (RobertaConfig, RobertaModel)
    model = model_class(config_class(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=64))
    groups = paper_param_groups(model)
    _check_partition(model, groups)
    parts = ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense", "intermediate.dense", "output.dense"]
    assert groups[1]["names"] == [f"encoder.layer.{layer}.{part}.weight" for layer in range(2) for part in parts]
    assert "pooler.dense.weight" in groups[0]["names"]  # outside the blocks


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(8)
        self.mix = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mix(self.norm(x))


class _Custom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(4, 8)
        self.heads = nn.ModuleList([nn.Linear(8, 8), nn.ReLU()])  # mixed classes: not the blocks
        self.blocks = nn.ModuleList([_Block() for _ in range(3)])
        self.out = nn.Linear(8, 2)


def test_custom_module_with_blocks_in_a_module_list():
    model = _Custom()
    groups = paper_param_groups(model)
    _check_partition(model, groups)
    assert groups[1]["names"] == [f"blocks.{i}.mix.weight" for i in range(3)]
    assert "stem.weight" in groups[0]["names"] and "out.weight" in groups[0]["names"]
    FRUGAL(groups, density=2 / 3, block_order="ascending")  # one group of 3 tensors: k = 2


def test_model_without_blocks_is_a_clear_error():
    with pytest.raises(ValueError, match="ModuleList"):
        paper_param_groups(nn.Sequential(nn.Linear(2, 2)))
