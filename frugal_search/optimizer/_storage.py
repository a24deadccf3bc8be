"""How a param group stores its state-full moments (``state_dtype``): the tensors each moment
keeps, their zeros, and the round trip between what is stored and what a step updates.

- ``fp32``: full precision, today's FRUGAL. Each moment is one tensor in the parameter's dtype
  (as ``torch.optim.AdamW`` keeps it: fp32 for fp32 parameters), updated in place by the rule's
  own arithmetic.
- ``bf16``: each moment is one bfloat16 tensor. A step reads it into fp32 (the parameter's dtype
  if wider), updates it there and writes it back with stochastic rounding (below).

Why stochastic rounding: bf16 keeps 8 significant bits, so a relative change under 2^-9 rounds
away to the nearest value. AdamW's second moment moves by ``1 - beta2`` = 0.1% a step, so with
rounding to nearest ``v`` never decays and only grows on a large gradient; with beta1 = 0.9 the
first moment's 10% steps survive, but its decay stalls at small values. Rounding up with
probability (distance to the lower neighbour) / (gap) is unbiased, so the moments follow their
EMA in expectation. The random bits come from a generator seeded by the optimizer's seed, the
global step and the tensor's place (:func:`rounding_seed`), so a run is deterministic and a
resumed run draws what the uninterrupted one draws, with nothing more in the state_dict.

``step`` (the float32 counter) is outside these layouts: every stateful tensor keeps one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

import torch

from frugal_search.optimizer._settings import MOMENT_KEYS

# bf16 is the upper half of an fp32: rounding drops the low 16 bits of its bit pattern.
BF16_DROPPED_BITS = 16

Layout = dict[str, tuple[tuple[int, ...], torch.dtype]]


@dataclass(frozen=True)
class MomentStorage:
    """How one param group stores the moments of its state-full rule.

    ``moment_keys``: the rule's moments (``exp_avg``, ``exp_avg_sq`` for AdamW; one for Lion and
    SGD-momentum); ``state_dtype``: ``"fp32"`` or ``"bf16"`` (see the module docstring).
    """

    moment_keys: tuple[str, ...]
    state_dtype: str

    @property
    def full_precision(self) -> bool:
        """Whether the moments are today's FRUGAL's: tensors in the parameter's dtype, updated in place."""
        return self.state_dtype == "fp32"


def storage_of(group: Mapping[str, Any]) -> MomentStorage:
    """The moment storage of a resolved param group."""
    return MomentStorage(MOMENT_KEYS[group["stateful_rule"]], group["state_dtype"])


def state_layout(storage: MomentStorage, shape: tuple[int, ...], dtype: torch.dtype) -> Layout:
    """``{key: (shape, dtype)}`` of every tensor the moments of a ``shape`` tensor keep, for
    parameters of ``dtype`` (the step counter aside). The one description that the zeros, the
    memory plan and the checkpoint template are built from."""
    stored = dtype if storage.full_precision else torch.bfloat16
    return {key: (tuple(shape), stored) for key in storage.moment_keys}


def layout_bytes(layout: Layout) -> int:
    """Bytes of the tensors of ``layout``."""
    return sum(math.prod(shape) * dtype.itemsize for shape, dtype in layout.values())


def zero_moments(storage: MomentStorage, like: torch.Tensor, shape: tuple[int, ...] | None = None) -> dict[str, torch.Tensor]:
    """Zero moments on ``like``'s device: of ``shape`` (a low-rank one), or like ``like`` (None)."""
    if shape is None and storage.full_precision:
        return {key: torch.zeros_like(like, memory_format=torch.preserve_format) for key in storage.moment_keys}
    layout = state_layout(storage, tuple(like.shape) if shape is None else shape, like.dtype)
    return {key: torch.zeros(size, dtype=dtype, device=like.device) for key, (size, dtype) in layout.items()}


def working_moments(
    storage: MomentStorage, state: Mapping[str, torch.Tensor], dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """The moments a step updates in place: the stored tensors themselves at full precision,
    else copies in ``dtype`` (fp32 or wider), to be written back by :func:`store_moments_`."""
    if storage.full_precision:
        return {key: state[key] for key in storage.moment_keys}
    return {key: state[key].to(dtype) for key in storage.moment_keys}


def store_moments_(
    storage: MomentStorage, state: MutableMapping[str, torch.Tensor], working: Mapping[str, torch.Tensor], seed: int
) -> None:
    """Write the updated ``working`` moments back into ``state``'s storage; ``seed`` (from
    :func:`rounding_seed`) seeds the random rounding, one stream per moment."""
    if storage.full_precision:
        return
    for index, key in enumerate(storage.moment_keys):
        generator = rounding_generator(rounding_seed(seed, index), working[key].device)
        stochastic_round_bf16_(working[key], state[key], generator)


def stochastic_round_bf16_(value: torch.Tensor, out: torch.Tensor, generator: torch.Generator) -> None:
    """``out = value`` in bf16, rounded up or down at random, unbiased (see the module docstring).

    Adding 16 uniform random bits to the fp32 bit pattern and dropping them rounds the magnitude
    up exactly when the random bits exceed the dropped bits' complement: with probability
    (dropped bits) / 2^16, the distance to the lower bf16 neighbour over the gap. It works for
    both signs (the pattern is sign and magnitude) and leaves values already in bf16 unchanged.
    """
    bits = value.to(torch.float32).contiguous().view(torch.int32)
    noise = torch.randint(
        0, 1 << BF16_DROPPED_BITS, bits.shape, dtype=torch.int32, generator=generator, device=bits.device
    )
    kept = (bits + noise).bitwise_and_(-(1 << BF16_DROPPED_BITS))
    out.copy_(kept.view(torch.float32))  # exact: the dropped bits are zero


_MASK64 = (1 << 64) - 1


def _splitmix64(value: int) -> int:
    """One round of SplitMix64 (Steele, Lea and Flood 2014), a bijective 64-bit mixer."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def rounding_seed(*parts: int) -> int:
    """A 63-bit seed mixed from ``parts`` (the optimizer's seed, the global step, the tensor's
    place, the moment): different parts give unrelated streams, the same parts the same one."""
    mixed = 0
    for part in parts:
        mixed = _splitmix64(mixed ^ (part & _MASK64))
    return mixed >> 1


def rounding_generator(seed: int, device: torch.device) -> torch.Generator:
    """A fresh generator on ``device`` seeded with ``seed`` (stateless across steps: nothing to save)."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


def stored_dtype(storage: MomentStorage, key: str, dtype: torch.dtype) -> torch.dtype | None:
    """The dtype state ``key`` is kept in for parameters of ``dtype``; None for a key that is not
    the moments' (``step``, ``period``, ``selection``)."""
    for shape in ((1,), (1, 1)):  # a vector's and a matrix's layouts hold every key there is
        entry = state_layout(storage, shape, dtype).get(key)
        if entry is not None:
            return entry[1]
    return None
