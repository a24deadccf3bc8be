"""The learning-rate transfer rule: a split found on a narrow proxy, trained on a wider model.

A proxy's best learning rates sit near its stability edge, and that edge moves with width: Adam-like
and sign-based updates change every coordinate of a matrix by about ``lr``, so a matrix's effect on
its output grows with its fan-in. The maximal-update rule (muP, Yang et al. 2022, Table 3 for Adam)
keeps that effect constant: on a model of other widths,

* the lr of every **hidden or output matrix** (kinds ``attention``, ``mlp``, ``head``) is multiplied
  by ``base fan-in / fan-in``, the base being the fan-in of the same tensor role on the proxy;
* **embeddings, norms, biases** and ``other`` parameters keep their lr (their update size does not
  grow with width).

A split records its proxy's fan-ins as ``base_widths`` (:func:`record_base_widths`), keyed by
:func:`width_key`: the parameter name with the block index replaced by ``*``
(``model.layers.*.self_attn.q_proj.weight``), so the same role in a deeper model finds its base.
A tensor whose key the proxy did not have keeps its lr (and is logged). The rule is the identity on
the proxy's own shapes. Depth is not part of the rule: a deeper model keeps each tensor's lr.

The fan-in of a weight is the product of its dimensions after the first (``nn.Linear`` stores
``[out, in]``), except transformers' ``Conv1D`` (GPT-2), which stores ``[in, out]``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from torch import nn

from frugal_search.partition.introspect import ParamInfo, introspect

logger = logging.getLogger(__name__)

LR_TRANSFER_RULES: tuple[str, ...] = ("none", "width")
"""``none``: every tensor keeps the split's lr; ``width``: the maximal-update width rule above."""
WIDTH_KINDS: tuple[str, ...] = ("attention", "mlp", "head")
"""The kinds whose lr the ``width`` rule scales by base fan-in / fan-in."""
_TRANSPOSED_CLASSES = frozenset({"Conv1D"})


def check_lr_transfer(rule: Any) -> str:
    """Return ``rule`` when it is one of :data:`LR_TRANSFER_RULES`; otherwise a ``ValueError``."""
    if not isinstance(rule, str) or rule not in LR_TRANSFER_RULES:
        raise ValueError(
            f"lr_transfer must be one of {', '.join(LR_TRANSFER_RULES)}, got {rule!r}; use 'width' to scale "
            "matrix lrs by base fan-in / fan-in on other widths, 'none' to keep the split's lrs"
        )
    return rule


def check_base_widths(widths: Any) -> dict[str, int]:
    """Return ``widths`` as ``{key: fan-in}`` when every value is an integer >= 1; else a ``ValueError``."""
    if not isinstance(widths, Mapping):
        raise ValueError(f"base_widths must be an object of tensor key -> fan-in, got {widths!r}")
    for key, value in widths.items():
        if not isinstance(key, str) or isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(
                f"base_widths[{key!r}] must be an integer fan-in >= 1, got {value!r}; record them from the "
                "proxy with Partition.with_base_widths(model)"
            )
    return dict(widths)


def width_key(info: ParamInfo) -> str:
    """Return the key of a parameter's role: its name with the block index replaced by ``*``."""
    if info.stack is None or info.layer is None:
        return info.name
    prefix = f"{info.stack}.{info.layer}." if info.stack else f"{info.layer}."
    return info.name.replace(prefix, f"{info.stack}.*." if info.stack else "*.", 1)


def fan_in(info: ParamInfo) -> int:
    """Return the fan-in of a weight: the dimensions after the first (``[in, out]`` for ``Conv1D``)."""
    if info.module_class in _TRANSPOSED_CLASSES and len(info.shape) == 2:
        return int(info.shape[0])
    return int(math.prod(info.shape[1:]))


def record_base_widths(model: nn.Module) -> dict[str, int]:
    """Return ``{width_key: fan-in}`` of every trainable hidden or output matrix of ``model`` (works on ``meta``)."""
    return {
        width_key(info): fan_in(info)
        for info in introspect(model)
        if info.trainable and info.kind in WIDTH_KINDS and len(info.shape) >= 2
    }


def width_multiplier(info: ParamInfo, base_widths: Mapping[str, int]) -> float:
    """Return the lr multiplier of one parameter under the ``width`` rule (1.0 outside :data:`WIDTH_KINDS`)."""
    if info.kind not in WIDTH_KINDS or len(info.shape) < 2:
        return 1.0
    base = base_widths.get(width_key(info))
    if base is None:
        logger.info("lr transfer: %s (%s) has no base width in the split; its lr is kept", info.name, width_key(info))
        return 1.0
    return base / fan_in(info)
