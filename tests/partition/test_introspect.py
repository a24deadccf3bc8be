"""Kind, stack and layer detection on every supported architecture, built tiny from configs."""

from __future__ import annotations

import collections
import functools

import pytest
import torch
import transformers
from torch import nn

from frugal_search.partition import KINDS, introspect

_COMMON = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)

# architecture -> (model class, config kwargs, {parameter name: expected kind}, number of layers)
ARCHITECTURES = {
    "llama": (
        "LlamaForCausalLM",
        dict(vocab_size=64, num_key_value_heads=2, **_COMMON),
        {
            "model.embed_tokens.weight": "embedding",
            "model.layers.0.self_attn.q_proj.weight": "attention",
            "model.layers.1.self_attn.o_proj.weight": "attention",
            "model.layers.0.mlp.gate_proj.weight": "mlp",
            "model.layers.1.mlp.down_proj.weight": "mlp",
            "model.layers.0.input_layernorm.weight": "norm",
            "model.norm.weight": "norm",
            "lm_head.weight": "head",
        },
    ),
    "mistral": (
        "MistralForCausalLM",
        dict(vocab_size=64, num_key_value_heads=2, **_COMMON),
        {
            "model.embed_tokens.weight": "embedding",
            "model.layers.0.self_attn.k_proj.weight": "attention",
            "model.layers.0.mlp.up_proj.weight": "mlp",
            "model.layers.1.post_attention_layernorm.weight": "norm",
            "lm_head.weight": "head",
        },
    ),
    "qwen2": (
        "Qwen2ForCausalLM",
        dict(vocab_size=64, num_key_value_heads=2, **_COMMON),
        {
            "model.layers.0.self_attn.q_proj.weight": "attention",
            "model.layers.0.self_attn.q_proj.bias": "bias",
            "model.layers.0.mlp.down_proj.weight": "mlp",
            "lm_head.weight": "head",
        },
    ),
    "gpt2": (
        "GPT2LMHeadModel",
        dict(vocab_size=64, n_embd=32, n_layer=2, n_head=4, n_positions=16, bos_token_id=0, eos_token_id=0),
        {
            "transformer.wte.weight": "embedding",
            "transformer.wpe.weight": "embedding",
            "transformer.h.0.attn.c_attn.weight": "attention",  # Conv1D
            "transformer.h.0.attn.c_proj.weight": "attention",
            "transformer.h.1.mlp.c_fc.weight": "mlp",
            "transformer.h.1.mlp.c_proj.weight": "mlp",
            "transformer.h.0.ln_1.weight": "norm",
            "transformer.h.0.ln_1.bias": "bias",
            "transformer.h.0.mlp.c_fc.bias": "bias",
            "transformer.ln_f.weight": "norm",
        },
    ),
    "gpt_neox": (
        "GPTNeoXForCausalLM",
        dict(vocab_size=64, **_COMMON),
        {
            "gpt_neox.embed_in.weight": "embedding",
            "gpt_neox.layers.0.attention.query_key_value.weight": "attention",
            "gpt_neox.layers.0.attention.dense.weight": "attention",
            "gpt_neox.layers.1.mlp.dense_h_to_4h.weight": "mlp",
            "gpt_neox.final_layer_norm.weight": "norm",
            "lm_head.weight": "head",
        },
    ),
    "opt": (
        "OPTForCausalLM",
        dict(
            vocab_size=64,
            hidden_size=32,
            ffn_dim=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            word_embed_proj_dim=32,
            max_position_embeddings=16,
        ),
        {
            "model.decoder.embed_tokens.weight": "embedding",
            "model.decoder.embed_positions.weight": "embedding",
            "model.decoder.layers.0.self_attn.out_proj.weight": "attention",
            "model.decoder.layers.0.fc1.weight": "mlp",
            "model.decoder.layers.1.fc2.weight": "mlp",
            "model.decoder.layers.0.self_attn_layer_norm.weight": "norm",
        },
    ),
    "bert": (
        "BertForSequenceClassification",
        dict(vocab_size=64, max_position_embeddings=16, **_COMMON),
        {
            "bert.embeddings.word_embeddings.weight": "embedding",
            "bert.embeddings.token_type_embeddings.weight": "embedding",
            "bert.embeddings.LayerNorm.weight": "norm",
            "bert.encoder.layer.0.attention.self.query.weight": "attention",
            "bert.encoder.layer.0.attention.output.dense.weight": "attention",
            "bert.encoder.layer.0.intermediate.dense.weight": "mlp",
            "bert.encoder.layer.1.output.dense.weight": "mlp",
            "bert.encoder.layer.1.output.LayerNorm.weight": "norm",
            "bert.pooler.dense.weight": "head",
            "classifier.weight": "head",
            "classifier.bias": "bias",
        },
    ),
    "roberta": (
        "RobertaForMaskedLM",
        dict(vocab_size=64, max_position_embeddings=16, **_COMMON),
        {
            "roberta.embeddings.word_embeddings.weight": "embedding",
            "roberta.encoder.layer.0.attention.self.value.weight": "attention",
            "roberta.encoder.layer.1.intermediate.dense.weight": "mlp",
            "lm_head.dense.weight": "head",
            "lm_head.layer_norm.weight": "norm",
            "lm_head.bias": "bias",
        },
    ),
    "t5": (
        "T5ForConditionalGeneration",
        dict(vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=3, num_heads=4),
        {
            "shared.weight": "embedding",
            "encoder.block.0.layer.0.SelfAttention.q.weight": "attention",
            "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight": "embedding",
            "encoder.block.1.layer.1.DenseReluDense.wi.weight": "mlp",
            "encoder.final_layer_norm.weight": "norm",
            "decoder.block.2.layer.1.EncDecAttention.k.weight": "attention",
            "decoder.block.2.layer.2.DenseReluDense.wo.weight": "mlp",
            "decoder.block.0.layer.0.layer_norm.weight": "norm",
        },
    ),
    "vit": (
        "ViTForImageClassification",
        dict(image_size=16, patch_size=8, num_labels=3, **_COMMON),
        {
            "vit.embeddings.cls_token": "embedding",
            "vit.embeddings.position_embeddings": "embedding",
            "vit.embeddings.patch_embeddings.projection.weight": "embedding",  # a Conv2d
            "vit.embeddings.patch_embeddings.projection.bias": "bias",
            "vit.layernorm.weight": "norm",
            "classifier.weight": "head",
        },
    ),
}


@functools.cache  # meta models are only read, so the tests can share them
def _build(arch: str) -> nn.Module:
    class_name, kwargs, _ = ARCHITECTURES[arch]
    model_class = getattr(transformers, class_name)
    model_type = model_class.config_class.model_type
    config = transformers.AutoConfig.for_model(model_type, **kwargs)
    with torch.device("meta"):  # shapes are all introspection needs
        return model_class(config)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_kinds_of_known_parameters(arch: str) -> None:
    infos = {info.name: info for info in introspect(_build(arch))}
    expected = ARCHITECTURES[arch][2]
    got = {name: infos[name].kind for name in expected}
    assert got == expected
    assert {info.kind for info in infos.values()} <= set(KINDS)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_every_block_matrix_is_attention_or_mlp_and_every_bias_is_bias(arch: str) -> None:
    for info in introspect(_build(arch)):
        if info.name.endswith(".bias") or info.name == "lm_head.bias":
            assert info.kind == "bias", info.name
        elif info.layer is not None and len(info.shape) == 2 and info.module_class in ("Linear", "Conv1D"):
            assert info.kind in ("attention", "mlp"), info.name


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_layers_are_numbered_within_their_stack(arch: str) -> None:
    infos = introspect(_build(arch))
    layers_per_stack = collections.defaultdict(set)
    for info in infos:
        if info.stack is not None:
            layers_per_stack[info.stack].add(info.layer)
            assert 0 <= info.layer < info.num_layers
            assert info.name.startswith(f"{info.stack}.{info.layer}.")
    expected_stacks = {"t5": {"encoder.block": 2, "decoder.block": 3}}.get(arch)
    if expected_stacks is None:
        assert len(layers_per_stack) == 1
        assert list(layers_per_stack.values())[0] == {0, 1}
    else:
        assert {stack: len(layers) for stack, layers in layers_per_stack.items()} == expected_stacks


def test_llama_kind_counts() -> None:
    counts = collections.Counter(info.kind for info in introspect(_build("llama")))
    # 2 layers x (4 attention + 3 mlp + 2 norms) + final norm + embedding + head
    assert counts == {"attention": 8, "mlp": 6, "norm": 5, "embedding": 1, "head": 1}


def test_tied_head_is_listed_once_under_the_embedding_name() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=64, tie_word_embeddings=True, **_COMMON)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    infos = introspect(model)
    shared = [info for info in infos if info.param is model.lm_head.weight]
    assert [(i.name, i.kind) for i in shared] == [("model.embed_tokens.weight", "embedding")]
    assert sum(i.numel for i in infos) == sum(p.numel() for p in model.parameters())


class _Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, 2)
        self.ffn = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))
        self.scale = nn.Parameter(torch.ones(width))


class _CustomModel(nn.Module):
    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.tokens = nn.Embedding(10, width)
        self.blocks = nn.ModuleList(_Block(width) for _ in range(3))
        self.final_norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, 10, bias=False)


def test_custom_module_with_blocks_in_a_module_list() -> None:
    kinds = {info.name: (info.kind, info.layer, info.stack) for info in introspect(_CustomModel())}
    assert kinds["tokens.weight"] == ("embedding", None, None)
    assert kinds["blocks.2.attn.in_proj_weight"] == ("attention", 2, "blocks")
    assert kinds["blocks.0.attn.out_proj.weight"] == ("attention", 0, "blocks")
    assert kinds["blocks.0.attn.in_proj_bias"] == ("bias", 0, "blocks")
    assert kinds["blocks.1.ffn.0.weight"] == ("mlp", 1, "blocks")
    assert kinds["blocks.1.ffn.2.bias"] == ("bias", 1, "blocks")
    assert kinds["blocks.0.norm.weight"] == ("norm", 0, "blocks")
    assert kinds["blocks.0.scale"] == ("other", 0, "blocks")  # 1-D, neither norm nor bias
    assert kinds["final_norm.weight"] == ("norm", None, None)
    assert kinds["out.weight"] == ("head", None, None)  # a matrix after the last block


@pytest.mark.parametrize(
    "model",
    [nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)), nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 2)])],
)
def test_model_without_blocks_has_no_layers_and_other_matrices(model: nn.Module) -> None:
    infos = introspect(model)
    assert [(i.kind, i.layer) for i in infos] == [("other", None), ("bias", None), ("other", None), ("bias", None)]


def test_introspect_rejects_non_modules() -> None:
    with pytest.raises(TypeError, match="nn.Module"):
        introspect("model")  # type: ignore[arg-type]
