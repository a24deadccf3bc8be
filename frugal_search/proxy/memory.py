"""Training memory of a proxy-run method (a FRUGAL partition or LoRA) on a model, without training.

The figures equal what ``run_proxy`` holds and reports in ``ProxyResult.training_memory``: every
weight; gradients of the parameters that are updated (a partition's ``frozen`` parameters and
LoRA's base weights have none); the optimizer state (for a partition its peak over a re-selection
cycle, :meth:`Partition.state_bytes`; for LoRA AdamW's moments of the adapters and the head).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from frugal_search.partition import Partition, TrainingMemory, baseline_partition


def training_memory(method: Any, model: nn.Module) -> TrainingMemory:
    """Return the weights, gradients and optimizer state of training ``model`` with ``method``.

    ``method`` is a ``Partition``, a baseline name (``"adamw"``, ``"frugal-rho0"``, ...) or a
    ``LoraSpec`` (anything with ``training_memory(model)``). ``model`` is built as the run builds
    it (``build_model(spec, num_labels=...)`` for a classifier); it may live on the meta device
    for a partition. Activations are not included.
    """
    if isinstance(method, str):
        method = baseline_partition(method)
    if isinstance(method, Partition) or callable(getattr(method, "training_memory", None)):
        return method.training_memory(model)
    raise TypeError(f"method must be a Partition, a baseline name or a LoraSpec; got {type(method).__name__}")
