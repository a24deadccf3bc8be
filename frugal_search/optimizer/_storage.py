"""How a param group stores its state-full moments (``state_dtype``): the tensors each moment
keeps, their zeros, and the round trip between what is stored and what a step updates.

- ``fp32``: full precision, today's FRUGAL. Each moment is one tensor in the parameter's dtype
  (as ``torch.optim.AdamW`` keeps it: fp32 for fp32 parameters), updated in place by the rule's
  own arithmetic.
- ``bf16``: each moment is one bfloat16 tensor. A step reads it into fp32 (the parameter's dtype
  if wider), updates it there and writes it back with stochastic rounding (below).
- ``int8``: each moment is one byte per value plus one fp32 scale per block of ``QUANT_BLOCK``
  (256) values of the flattened moment, the block's largest magnitude (as the 8-bit optimizers
  keep it: bitsandbytes, torchao). A step dequantizes into fp32, updates there and quantizes back.

The int8 maps. A code ``q`` of a signed moment (``exp_avg``, ``momentum_buffer``; int8 in
[-127, 127]) stands for ``scale * sign(q) * (|q| / 127)^4``; a code of AdamW's second moment
(``exp_avg_sq``; uint8 in [0, 255]) for ``scale * (q / 255)^8``: ``sqrt(v)``, which has the
gradient's units like the first moment, is stored on the same fourth-power map. Why these and not
a linear map: Adam's step on a coordinate is ``m / sqrt(v)``, both of the gradient's magnitude,
and within a block of 256 values that magnitude spans decades. On a linear map rounded to nearest,
the ``v`` of a coordinate whose gradient stopped (an embedding row not in the batch) reads back as
0 while its ``m`` does not, and its step becomes ``m / eps`` (4e9 lr in a probe here): the failure
of linear 8-bit Adam. The fourth-power map is relative over decades, which is what the step
needs: neighbouring codes are 3% apart at the top of a block, 10% at a hundredth of its largest
``|m|``, 18% at a thousandth (a linear map: 100% and nothing). On gradients spread over 1, 2 and
6 decades per block, its step was 5%, 7% and 36% (RMS, relative) from fp32 AdamW's; a quadratic
map's 4%, 9% and 96%. Two guards make a step never larger than fp32 AdamW's largest: a positive
``v`` never reads back as 0 (it takes the first code), and :func:`keep_adam_bound_` restores the
bound ``m^2 <= C^2 v`` the true moments always satisfy.

Why stochastic rounding: bf16 keeps 8 significant bits, so a relative change under 2^-9 rounds
away to the nearest value, and int8 codes are coarser still. AdamW's second moment moves by
``1 - beta2`` = 0.1% a step, so with rounding to nearest ``v`` never decays and only grows on a
large gradient; a first moment's decay stalls at its smallest codes. Rounding up with probability
(distance to the lower neighbour) / (gap between the neighbours) is unbiased, so a moment follows
its EMA in expectation. bf16 moments and the int8 first moment round so in value; the int8 second
moment in ``log(v)``: its codes are far apart at the bottom (code 2 to 3 is 25x), and a value
re-rounded at every step for a thousand steps (``beta2``) is a random walk that, unbiased in value,
drifts down in its typical size (it was 1000x under fp32's in a probe here); unbiased in the
logarithm it does not. The random bits come from a generator seeded by the optimizer's seed, the
global step and the tensor's place (:func:`rounding_seed`), so a run is deterministic and a
resumed run draws what the uninterrupted one draws (the seed is saved with the state).

``step`` (the float32 counter) is outside these layouts: every stateful tensor keeps one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

import torch

from frugal_search.optimizer._math import adam_inverse_bound
from frugal_search.optimizer._settings import MOMENT_KEYS
from frugal_search.optimizer._subspace import matrix_shape

# bf16 is the upper half of an fp32: rounding drops the low 16 bits of its bit pattern.
BF16_DROPPED_BITS = 16
# Values per fp32 scale of an int8 moment: the block size of bitsandbytes' and torchao's 8-bit AdamW.
QUANT_BLOCK = 256
# The int8 maps (see the module docstring): codes per sign and the power of the map, for the signed
# moments and for AdamW's second moment (unsigned, uint8).
SIGNED_LEVELS, SIGNED_POWER = 127, 4
UNSIGNED_LEVELS, UNSIGNED_POWER = 255, 8
UNSIGNED_MOMENTS: tuple[str, ...] = ("exp_avg_sq",)
SCALE_SUFFIX = "_scale"  # state key of a moment's block scales: "exp_avg_scale"
# state keys of a factored second moment's row and column statistics: "exp_avg_sq_row", "exp_avg_sq_col"
ROW_SUFFIX, COLUMN_SUFFIX = "_row", "_col"

Layout = dict[str, tuple[tuple[int, ...], torch.dtype]]


@dataclass(frozen=True)
class MomentStorage:
    """How one param group stores the moments of its state-full rule.

    ``moment_keys``: the rule's moments (``exp_avg``, ``exp_avg_sq`` for AdamW; one for Lion and
    SGD-momentum); ``state_dtype``: ``"fp32"``, ``"bf16"`` or ``"int8"``; ``second_moment``:
    ``"full"`` or ``"factored"`` (AdamW only; see the module docstring).
    """

    moment_keys: tuple[str, ...]
    state_dtype: str
    second_moment: str = "full"

    @property
    def plain(self) -> bool:
        """Whether the moments are today's FRUGAL's: full tensors in the parameter's dtype, updated in place."""
        return self.state_dtype == "fp32" and self.second_moment == "full"

    def factors(self, key: str, shape: tuple[int, ...]) -> bool:
        """Whether moment ``key`` of a ``shape`` moment is kept as row and column statistics."""
        return self.second_moment == "factored" and key == "exp_avg_sq" and len(shape) >= 2


def storage_of(group: Mapping[str, Any]) -> MomentStorage:
    """The moment storage of a resolved param group."""
    return MomentStorage(MOMENT_KEYS[group["stateful_rule"]], group["state_dtype"], group["second_moment"])


def state_layout(storage: MomentStorage, shape: tuple[int, ...], dtype: torch.dtype) -> Layout:
    """``{key: (shape, dtype)}`` of every tensor the moments of a ``shape`` tensor keep, for
    parameters of ``dtype`` (the step counter aside). The one description that the zeros, the
    memory plan and the checkpoint template are built from."""
    shape = tuple(shape)
    layout: Layout = {}
    for key in storage.moment_keys:
        if storage.factors(key, shape):
            rows, cols = matrix_shape(shape)
            layout[key + ROW_SUFFIX] = ((rows,), torch.float32)
            layout[key + COLUMN_SUFFIX] = ((cols,), torch.float32)
        elif storage.state_dtype == "int8":
            layout[key] = (shape, torch.uint8 if key in UNSIGNED_MOMENTS else torch.int8)
            layout[key + SCALE_SUFFIX] = ((block_count(math.prod(shape)),), torch.float32)
        else:
            layout[key] = (shape, dtype if storage.state_dtype == "fp32" else torch.bfloat16)
    return layout


def block_count(numel: int) -> int:
    """Blocks of ``QUANT_BLOCK`` values (the last one partial) of a moment with ``numel`` values."""
    return -(-numel // QUANT_BLOCK)


def layout_bytes(layout: Layout) -> int:
    """Bytes of the tensors of ``layout``."""
    return sum(math.prod(shape) * dtype.itemsize for shape, dtype in layout.values())


def zero_moments(storage: MomentStorage, like: torch.Tensor, shape: tuple[int, ...] | None = None) -> dict[str, torch.Tensor]:
    """Zero moments on ``like``'s device: of ``shape`` (a low-rank one), or like ``like`` (None)."""
    if shape is None and storage.plain:
        return {key: torch.zeros_like(like, memory_format=torch.preserve_format) for key in storage.moment_keys}
    layout = state_layout(storage, tuple(like.shape) if shape is None else shape, like.dtype)
    return {key: torch.zeros(size, dtype=dtype, device=like.device) for key, (size, dtype) in layout.items()}


def working_moments(
    storage: MomentStorage, state: Mapping[str, torch.Tensor], dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """The moments a step updates in place: the stored tensors themselves in full precision (and
    a factored moment's fp32 row and column statistics), else copies in ``dtype`` (fp32 or wider),
    to be written back by :func:`store_moments_`."""
    working = {}
    for key in storage.moment_keys:
        if key + ROW_SUFFIX in state:
            working[key + ROW_SUFFIX], working[key + COLUMN_SUFFIX] = state[key + ROW_SUFFIX], state[key + COLUMN_SUFFIX]
        elif storage.state_dtype == "fp32":
            working[key] = state[key]
        elif storage.state_dtype == "bf16":
            working[key] = state[key].to(dtype)
        else:
            working[key] = dequantize(state[key], state[key + SCALE_SUFFIX], signed=key not in UNSIGNED_MOMENTS).to(dtype)
    return working


def keep_adam_bound_(moments: Mapping[str, torch.Tensor], beta1: float, beta2: float) -> None:
    """Raise AdamW's dequantized ``exp_avg_sq`` to ``exp_avg^2 / C^2`` where it is below.

    The true moments always satisfy ``m^2 <= C^2 v`` (``_math.adam_inverse_bound``), and a step
    keeps it; it is what bounds Adam's step. Quantization can break it for a coordinate far below its block's largest (its ``m`` read up,
    its ``v`` read down), so it is restored here: an int8 step is then never larger than the
    largest step fp32 AdamW can take. Nothing to do when ``b1^2 >= b2`` (no such bound).
    """
    inverse_bound = adam_inverse_bound(beta1, beta2)
    if inverse_bound is None:
        return
    exp_avg, exp_avg_sq = moments["exp_avg"], moments["exp_avg_sq"]
    torch.maximum(exp_avg_sq, exp_avg.square().mul_(inverse_bound), out=exp_avg_sq)


def store_moments_(
    storage: MomentStorage, state: MutableMapping[str, torch.Tensor], working: Mapping[str, torch.Tensor], seed: int
) -> None:
    """Write the updated ``working`` moments back into ``state``'s storage; ``seed`` (from
    :func:`rounding_seed`) seeds the random rounding, one stream per moment. Full-precision
    moments and factored statistics were updated in place: nothing to write."""
    if storage.state_dtype == "fp32":
        return
    for index, key in enumerate(storage.moment_keys):
        if key not in working:  # factored
            continue
        generator = rounding_generator(rounding_seed(seed, index), working[key].device)
        if storage.state_dtype == "bf16":
            stochastic_round_bf16_(working[key], state[key], generator)
        else:
            quantize_(working[key], state[key], state[key + SCALE_SUFFIX], generator, signed=key not in UNSIGNED_MOMENTS)


def stochastic_round_bf16_(value: torch.Tensor, out: torch.Tensor, generator: torch.Generator) -> None:
    """``out = value`` in bf16, rounded up or down at random, unbiased (see the module docstring).

    Adding 16 uniform random bits to the fp32 bit pattern and dropping them rounds the magnitude
    up exactly when the random bits exceed the dropped bits' complement: with probability
    (dropped bits) / 2^16, the distance to the lower bf16 neighbour over the gap. It works for
    both signs (the pattern is sign and magnitude) and leaves values already in bf16 unchanged.
    """
    bits = value.to(torch.float32).contiguous().view(torch.int32)
    noise = random_halfwords(bits.numel(), generator, bits.device).to(torch.int32).bitwise_and_((1 << BF16_DROPPED_BITS) - 1)
    kept = (bits + noise.view(bits.shape)).bitwise_and_(-(1 << BF16_DROPPED_BITS))
    out.copy_(kept.view(torch.float32))  # exact: the dropped bits are zero


def _map_of(signed: bool) -> tuple[int, int]:
    return (SIGNED_LEVELS, SIGNED_POWER) if signed else (UNSIGNED_LEVELS, UNSIGNED_POWER)


def _power_(values: torch.Tensor, power: int) -> torch.Tensor:
    """``values ** power`` in place for the maps' powers (4 and 8), by squaring (far cheaper than pow)."""
    for _ in range(power.bit_length() - 1):
        values.square_()
    return values


def _root(values: torch.Tensor, power: int) -> torch.Tensor:
    """``values ** (1 / power)`` for the maps' powers (4 and 8), by square roots (a new tensor)."""
    root = values.sqrt()
    for _ in range(power.bit_length() - 2):
        root.sqrt_()
    return root


def random_halfwords(numel: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """``numel`` int16 values of 16 uniform random bits each, four from every 64-bit draw (half
    the cost of ``torch.rand`` on the CPU, with 2^-16 resolution: ample for a rounding probability)."""
    words = torch.empty(-(-numel // 4), dtype=torch.int64, device=device)
    words.random_(-(1 << 63), None, generator=generator)  # the whole int64 range: every bit uniform
    return words.view(torch.int16)[:numel]


def _uniform(numel: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """``numel`` uniform fp32 values in [0, 1) on a grid of 2^-16."""
    return random_halfwords(numel, generator, device).to(torch.float32).add_(1 << 15).mul_(2.0**-16)


def _blocks(flat: torch.Tensor, blocks: int) -> torch.Tensor:
    """``flat`` as ``(blocks, QUANT_BLOCK)``, the last block padded with zeros (a view when it is whole)."""
    if flat.numel() == blocks * QUANT_BLOCK:
        return flat.view(blocks, QUANT_BLOCK)
    padded = flat.new_zeros(blocks * QUANT_BLOCK)
    padded[: flat.numel()] = flat
    return padded.view(blocks, QUANT_BLOCK)


def dequantize(codes: torch.Tensor, scales: torch.Tensor, *, signed: bool) -> torch.Tensor:
    """The fp32 values of int8 (signed) or uint8 ``codes`` with their block ``scales`` (the maps
    of the module docstring), in the codes' shape."""
    levels, power = _map_of(signed)
    flat = codes.reshape(-1).to(torch.float32)
    values = _blocks(_power_(flat.abs().div_(levels), power), scales.numel()).mul(scales[:, None])
    values = values.view(-1)[: flat.numel()]
    if signed:
        values.copysign_(flat)
    return values.view(codes.shape)


def quantize_(
    value: torch.Tensor, codes: torch.Tensor, scales: torch.Tensor, generator: torch.Generator, *, signed: bool
) -> None:
    """Write ``value`` (fp32, any sign when ``signed``, else >= 0) into ``codes`` and ``scales``.

    Each block's scale is its largest magnitude (kept exactly: it reads back as itself). Each
    value rounds at random to one of the two codes around it (see the module docstring): a signed
    moment unbiased in its value, the second moment unbiased in its logarithm; a positive second
    moment never takes the code 0."""
    levels, power = _map_of(signed)
    flat = value.reshape(-1).to(torch.float32)
    magnitude = _blocks(flat.abs(), scales.numel())  # (blocks, QUANT_BLOCK)
    largest = magnitude.amax(dim=1, keepdim=True)
    scales.copy_(largest.view(-1))
    share = magnitude.div_(largest.clamp_min(torch.finfo(torch.float32).tiny))  # in [0, 1]
    position = _root(share, power).mul_(levels)  # the code as a real number
    lower = position.floor().clamp_(max=levels - 1)  # the code below
    uniform = _uniform(share.numel(), generator, share.device).view(share.shape)
    if signed:  # up with probability (value - lower code's value) / (the gap between the codes' values)
        low = _power_(lower.div(levels), power)
        gap = _power_((lower + 1).div_(levels), power).sub_(low)
        code = lower.add_(uniform.mul_(gap).lt_(share.sub_(low)))
    else:  # the same for log(v), where the codes' values are power * log(code) apart (lower >= 1)
        up = uniform.mul_(torch.log1p(lower.reciprocal())).lt_(position.div_(lower).log_())
        code = torch.where(lower > 0, lower + up, (share > 0).to(share.dtype))  # below code 1: 1 if positive
    code = code.view(-1)[: flat.numel()]
    if signed:
        code.copysign_(flat)  # a code 0 stays 0 whatever its sign
    codes.copy_(code.view(codes.shape))  # whole numbers: exact in int8 / uint8


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
