"""Meta-device models from Hugging Face configs: no weights, the right model class."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import transformers

from frugal_search.partition import Partition, build_meta_model, load_config, paper_llama_config

_TINY_LLAMA = {
    "model_type": "llama",
    "vocab_size": 64,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
}


def test_dict_path_folder_and_config_object_give_the_same_model(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(_TINY_LLAMA))
    config = transformers.LlamaConfig(**{k: v for k, v in _TINY_LLAMA.items() if k != "model_type"})
    shapes = []
    for source in (_TINY_LLAMA, tmp_path / "config.json", tmp_path, str(tmp_path / "config.json"), config):
        model = build_meta_model(source)
        assert isinstance(model, transformers.LlamaForCausalLM)
        assert {p.device.type for p in model.parameters()} == {"meta"}
        shapes.append([(n, tuple(p.shape)) for n, p in model.named_parameters()])
    assert all(s == shapes[0] for s in shapes)


def test_encoder_decoder_and_encoder_only_configs() -> None:
    t5 = build_meta_model({"model_type": "t5", "vocab_size": 64, "d_model": 32, "d_ff": 64, "num_layers": 2})
    assert isinstance(t5, transformers.T5ForConditionalGeneration)
    vit = build_meta_model({"model_type": "vit", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4})
    assert isinstance(vit, transformers.ViTModel)  # no causal LM for ViT: the bare model
    assert Partition.paper().state_bytes(vit) > 0


def test_paper_llama_config_has_the_papers_parameter_count() -> None:
    config = load_config("llama-60m")
    assert (config.hidden_size, config.intermediate_size, config.num_hidden_layers, config.vocab_size) == (
        512,
        1376,
        8,
        32000,
    )
    assert config.tie_word_embeddings is False
    model = build_meta_model(paper_llama_config("llama-60m"))
    assert sum(p.numel() for p in model.parameters()) == 58_073_600  # 25.3M blocks + 2 x 16.4M embed/head


@pytest.mark.parametrize(
    ("config", "error", "match"),
    [
        ({"vocab_size": 3}, ValueError, "model_type"),
        ({"model_type": "no-such-model"}, ValueError, "no-such-model"),
        ("llama-3b", ValueError, "cannot read model config.*llama-60m"),
        (42, TypeError, "path, a dict or a PretrainedConfig"),
    ],
)
def test_bad_model_configs(config: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        build_meta_model(config)  # type: ignore[arg-type]
