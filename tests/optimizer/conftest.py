"""Shared helpers for the optimizer tests: a tiny LLaMA from a config and a deterministic loop."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

VOCAB = 64


def build_llama(layers: int = 2, hidden: int = 32, ffn: int = 64, dtype: torch.dtype = torch.float32, seed: int = 0):
    """A tiny LLaMA built from a config (no download), with weights from a fixed seed."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        hidden_size=hidden,
        intermediate_size=ffn,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        vocab_size=VOCAB,
        max_position_embeddings=32,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).to(dtype)


def batch(step: int) -> torch.Tensor:
    """The token batch of a given step (depends only on the step)."""
    generator = torch.Generator().manual_seed(1000 + step)
    return torch.randint(0, VOCAB, (2, 8), generator=generator)


def train(model, optimizer, steps: range, after_step: Callable[[int], None] | None = None) -> None:
    """Forward/backward/step on the fixed batches of ``steps``."""
    for step in steps:
        tokens = batch(step)
        optimizer.zero_grad(set_to_none=True)
        model(tokens, labels=tokens).loss.backward()
        optimizer.step()
        if after_step is not None:
            after_step(step)


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny tensors: one thread is faster than two contending ones on a shared 2-core machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def llama_factory():
    return build_llama


@pytest.fixture
def trainer():
    return train
