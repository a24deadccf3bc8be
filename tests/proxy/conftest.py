"""Fixtures of the proxy tests: a very small LLaMA and short budgets, so the folder stays fast."""

from __future__ import annotations

import pytest

from frugal_search.proxy import ModelSpec, ProxyBudget

# tiny-llama's byte vocabulary with a much narrower, shallower body
SMALL_LLAMA = ModelSpec(
    "tiny-llama",
    overrides={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2},
)


@pytest.fixture
def small_model() -> ModelSpec:
    return SMALL_LLAMA


@pytest.fixture
def short_budget() -> ProxyBudget:
    return ProxyBudget(steps=12, batch_size=4, seq_len=32, eval_every=4, eval_batches=2, log_every=2)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Run the proxy tests on one thread, restoring the count afterwards.

    Their matrices are tiny, so a second thread gains little, and on a shared 2-core machine
    two threads per process oversubscribe the cores and make steps several times slower.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
