"""Models on the ``meta`` device from a Hugging Face config: memory of a 7B model in a second.

A meta model has every parameter's shape and dtype but no storage, so partitions can be applied
to it and their memory computed (:meth:`Partition.state_bytes`) without allocating weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from transformers import PretrainedConfig

# The paper's LLaMA shapes (FRUGAL.md): name -> (hidden, ffn, layers, heads); vocab 32000, untied head.
PAPER_LLAMA_SHAPES: dict[str, tuple[int, int, int, int]] = {
    "llama-60m": (512, 1376, 8, 8),
    "llama-130m": (768, 2048, 12, 12),
    "llama-350m": (1024, 2736, 24, 16),
    "llama-1b": (2048, 5461, 24, 32),
    "llama-7b": (4096, 11008, 32, 32),
}


def paper_llama_config(name: str) -> dict[str, Any]:
    """Return the Hugging Face config dict of one of the paper's LLaMA models (``"llama-60m"``...)."""
    if name not in PAPER_LLAMA_SHAPES:
        raise ValueError(f"unknown paper model {name!r}; allowed: {', '.join(PAPER_LLAMA_SHAPES)}")
    hidden, ffn, layers, heads = PAPER_LLAMA_SHAPES[name]
    return {
        "model_type": "llama",
        "vocab_size": 32000,
        "hidden_size": hidden,
        "intermediate_size": ffn,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": heads,
        "max_position_embeddings": 1024,
        "tie_word_embeddings": False,
    }


def load_config(config: str | Path | dict[str, Any] | PretrainedConfig) -> PretrainedConfig:
    """Return a ``PretrainedConfig`` from a config JSON file, a folder holding ``config.json``, a
    dict with ``model_type``, a paper model name (``"llama-1b"``) or a config object. No download."""
    from transformers import AutoConfig, PretrainedConfig

    if isinstance(config, PretrainedConfig):
        return config
    if isinstance(config, str) and config in PAPER_LLAMA_SHAPES:
        config = paper_llama_config(config)
    if isinstance(config, (str, Path)):
        path = Path(config)
        if path.is_dir():
            path = path / "config.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as error:
            raise ValueError(
                f"cannot read model config {path}: {error.strerror or error}; pass a config.json path, "
                f"a folder holding one, or a paper model name ({', '.join(PAPER_LLAMA_SHAPES)})"
            ) from None
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error.msg}, line {error.lineno})") from None
        return load_config(data)
    if isinstance(config, dict):
        values = dict(config)
        model_type = values.pop("model_type", None)
        if not isinstance(model_type, str):
            raise ValueError(f"a model config needs a 'model_type' string (e.g. 'llama'), got {model_type!r}")
        try:
            return AutoConfig.for_model(model_type, **values)
        except (ValueError, KeyError) as error:
            raise ValueError(f"cannot build a config for model_type {model_type!r}: {error}") from None
    raise TypeError(f"model config must be a path, a dict or a PretrainedConfig, got {type(config).__name__}")


def build_meta_model(config: str | Path | dict[str, Any] | PretrainedConfig) -> nn.Module:
    """Return the model of ``config`` on the ``meta`` device (shapes only, no weights allocated).

    Encoder-decoder configs (T5) build a sequence-to-sequence LM; others a causal LM when
    transformers has one for the model type, else the bare model (BERT-like encoders get their
    causal-LM head when they have one; ViT gets ``ViTModel``).
    """
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    hf_config = load_config(config)
    if getattr(hf_config, "is_encoder_decoder", False):
        candidates = (AutoModelForSeq2SeqLM, AutoModel)
    else:
        candidates = (AutoModelForCausalLM, AutoModel)
    errors = []
    with torch.device("meta"):
        for auto_class in candidates:
            try:
                return auto_class.from_config(hf_config)
            except ValueError as error:  # this auto class has no model for the config's type
                errors.append(f"{auto_class.__name__}: {error}")
    raise ValueError(f"no model class for model_type {hf_config.model_type!r}: " + "; ".join(errors))
