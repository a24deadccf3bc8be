"""Proxy runs: short, seeded training runs that score a partition (loss, memory, speed).

``run_proxy(model, data, partition, budget)`` builds the model and data, trains with the
partition's optimizer and returns a ``ProxyResult``. Models come from presets (``tiny-llama``,
``llama-60m`` ... ``llama-1b``), Hugging Face configs or directories, or factories; data from the
built-in Python-stdlib corpus, text files or token files.
"""

from frugal_search.proxy.budget import DEFAULT_STEPS, ProxyBudget, lr_factor
from frugal_search.proxy.data import DataSpec, TokenData, build_data, check_data, is_validation_file
from frugal_search.proxy.loop import resolve_device, run_proxy
from frugal_search.proxy.models import PRESETS, ModelSpec, build_model, causal_lm_loss, model_vocab_size
from frugal_search.proxy.result import ProxyResult

__all__ = [
    "DEFAULT_STEPS",
    "PRESETS",
    "DataSpec",
    "ModelSpec",
    "ProxyBudget",
    "ProxyResult",
    "TokenData",
    "build_data",
    "build_model",
    "causal_lm_loss",
    "check_data",
    "is_validation_file",
    "lr_factor",
    "model_vocab_size",
    "resolve_device",
    "run_proxy",
]
