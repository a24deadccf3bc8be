"""Exact memory of a partition on a model, computed from shapes only (no training, no weights).

The optimizer-state figure is ``FRUGAL.peak_state_bytes()`` of an optimizer built over ``meta``
stand-ins of the parameters (same shapes, the chosen dtype), so it costs no memory even for a
model whose real weights sit on a GPU, and it counts exactly what ``optimizer_state_bytes``
measures while training: moments, bases and index vectors, at their largest over a re-selection
cycle. Several ``frugal`` blocks groups with fixed orders count their joint peak (their schedules
enumerated together); random order counts its worst draw.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from frugal_search.optimizer import FRUGAL
from frugal_search.partition.introspect import KINDS, ParamInfo
from frugal_search.partition.rules import Rule
from frugal_search.partition.settings import FrugalSettings
from frugal_search.partition.words import rule_settings_words, selection_words
from frugal_search.units import GIB, MIB

if TYPE_CHECKING:
    import pandas as pd


@dataclasses.dataclass(frozen=True)
class TrainingMemory:
    """Static memory of training a model with a partition (activations not included)."""

    weights_bytes: int
    """Every parameter, at ``param_dtype``."""
    gradient_bytes: int
    """Gradients of the parameters that are updated (trainable, not in a ``frozen`` group: this
    assumes frozen parameters have ``requires_grad=False``, see :meth:`Partition.freeze`)."""
    state_bytes: int
    """Peak optimizer state over a re-selection cycle."""
    adamw_state_bytes: int
    """What AdamW's state would be on the same trainable parameters, for comparison."""

    @property
    def total_bytes(self) -> int:
        """Weights + gradients + optimizer state."""
        return self.weights_bytes + self.gradient_bytes + self.state_bytes

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of the figures, in bytes, plus ``total_bytes``."""
        return {**dataclasses.asdict(self), "total_bytes": self.total_bytes}

    def lines(self) -> list[str]:
        """The figures as lines of text in MiB and GiB."""

        def both(value: int) -> str:
            return f"{value / MIB:12.1f} MiB {value / GIB:9.3f} GiB"

        return [
            f"weights          {both(self.weights_bytes)}",
            f"gradients        {both(self.gradient_bytes)}",
            f"optimizer state  {both(self.state_bytes)}",
            f"total            {both(self.total_bytes)}",
            f"AdamW state      {both(self.adamw_state_bytes)}",
        ]


def _meta_groups(groups: list[dict[str, Any]], param_dtype: torch.dtype | None) -> list[dict[str, Any]]:
    """The same groups over meta tensors of the same shapes (and ``param_dtype`` if given)."""
    meta_groups = []
    for group in groups:
        params = [
            nn.Parameter(torch.empty(p.shape, dtype=param_dtype or p.dtype, device="meta")) for p in group["params"]
        ]
        meta_groups.append({**group, "params": params})
    return meta_groups


def _meta_optimizer(groups: list[dict[str, Any]], settings: FrugalSettings, param_dtype: torch.dtype | None) -> FRUGAL:
    return FRUGAL(_meta_groups(groups, param_dtype), **settings.to_kwargs())


def peak_state_bytes(
    groups: list[dict[str, Any]], settings: FrugalSettings, *, param_dtype: torch.dtype | None = None
) -> int:
    """Peak optimizer-state bytes of a partition's param ``groups`` and ``settings`` (see the module docstring)."""
    return int(_meta_optimizer(groups, settings, param_dtype).peak_state_bytes())


def _rank0_bytes(param: torch.Tensor, param_dtype: torch.dtype | None, world_size: int) -> int:
    """Bytes of rank 0's shard of ``param`` under fully_shard on ``world_size`` ranks (dim 0, torch.chunk)."""
    whole = _dtype_bytes(param, param_dtype)
    if world_size == 1 or param.dim() == 0:
        return whole
    rows = int(param.shape[0])
    return whole // rows * min(rows, -(-rows // world_size))


def _dtype_bytes(param: torch.Tensor, param_dtype: torch.dtype | None) -> int:
    itemsize = torch.empty((), dtype=param_dtype).element_size() if param_dtype is not None else param.element_size()
    return param.numel() * itemsize


def training_memory(
    model: nn.Module,
    groups: list[dict[str, Any]],
    settings: FrugalSettings,
    *,
    param_dtype: torch.dtype | None = None,
    world_size: int = 1,
) -> TrainingMemory:
    """Weights, gradients and peak state of training ``model`` with a partition's ``groups`` and ``settings``.

    ``param_dtype`` (default: each parameter's dtype) is the dtype of weights, gradients and
    moments alike (pure fp32 or pure bf16 training), except that moments stored as the settings'
    ``state_dtype`` bf16 or int8, or factored by ``second_moment``, count that storage's bytes. Activations, temporary buffers and
    mixed-precision master copies are not included. ``world_size=N`` gives one GPU's share under
    FSDP2 on N ranks (rank 0, the largest shard; ``FRUGAL.peak_state_bytes(world_size=N)``).
    """
    weights = sum(_rank0_bytes(p, param_dtype, world_size) for p in model.parameters())
    gradients = sum(
        _rank0_bytes(p, param_dtype, world_size) for g in groups if g["role"] != "frozen" for p in g["params"]
    )
    state = int(_meta_optimizer(groups, settings, param_dtype).peak_state_bytes(world_size=world_size))
    adamw = sum(2 * _rank0_bytes(p, param_dtype, world_size) for g in groups for p in g["params"])
    return TrainingMemory(weights_bytes=weights, gradient_bytes=gradients, state_bytes=state, adamw_state_bytes=adamw)


def describe_rules(
    rules: Sequence[Rule],
    settings: FrugalSettings,
    matched: list[list[ParamInfo]],
    groups: list[dict[str, Any]],
    *,
    param_dtype: torch.dtype | None = None,
) -> pd.DataFrame:
    """One row per rule: role, kinds matched, selection, settings, tensors, parameters, state bytes.

    ``matched`` is what each rule decides (``Partition.match``) and ``groups`` the param groups
    built from it. ``state_bytes`` is each rule's own peak. blocks rules on different schedules may
    hold their largest windows at different steps, so the partition's peak
    (:func:`peak_state_bytes`) can be below the column's sum.
    """
    import pandas as pd

    per_group = iter(_meta_optimizer(groups, settings, param_dtype).peak_state_bytes(by_group=True))
    rows = []
    for index, (rule, infos) in enumerate(zip(rules, matched)):
        kinds = sorted({info.kind for info in infos}, key=lambda k: KINDS.index(k))
        rows.append(
            {
                "rule": index,
                "role": rule.role,
                "kinds": ", ".join(kinds),
                "selection": selection_words(rules, index),
                "settings": rule_settings_words(rule, settings),
                "tensors": len(infos),
                "parameters": sum(info.numel for info in infos),
                "state_bytes": int(next(per_group)) if infos else 0,
            }
        )
    return pd.DataFrame(rows)
