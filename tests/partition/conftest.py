"""Tiny models shared by the partition tests."""

from __future__ import annotations

import pytest
import torch
from torch import nn


def tiny_llama(*, intermediate_size: int = 64, tie: bool = False, layers: int = 2) -> nn.Module:
    """A 2-layer LLaMA with hidden 32, built from a config (no download)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=intermediate_size,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=32,
        tie_word_embeddings=tie,
    )
    return LlamaForCausalLM(config)


@pytest.fixture
def llama() -> nn.Module:
    return tiny_llama()
