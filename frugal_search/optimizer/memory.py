"""How many bytes an optimizer's state holds: measured now (any optimizer), and FRUGAL's peak
planned from shapes and settings alone (what ``FRUGAL.peak_state_bytes`` returns)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from frugal_search.optimizer._settings import blocks_count, moment_count
from frugal_search.optimizer._sharding import Shard0, chunk_bounds, local_part
from frugal_search.optimizer._storage import layout_bytes, state_layout, storage_of
from frugal_search.optimizer._subspace import (
    INDEX_BYTES,
    blocks_peak_bytes,
    blocks_window_bytes,
    group_plan,
    joint_peak_bytes,
)


def optimizer_state_bytes(optimizer: torch.optim.Optimizer, *, device_type: str | None = None) -> int:
    """Bytes of every non-scalar tensor in ``optimizer.state`` now: moments, bases, index vectors.

    0-dim tensors (the per-tensor ``step`` and ``period`` counters) and FRUGAL's generator state
    are bookkeeping of constant size, independent of the model, and are not counted, so AdamW on
    fp32 parameters gives exactly ``2 * 4 * N``. Works for any ``torch.optim.Optimizer``.
    ``device_type`` (e.g. ``"cuda"``) counts only the tensors on that kind of device. A sharded
    (DTensor) state tensor, as torch's optimizers keep under FSDP2, counts this rank's shard.
    """
    total = 0
    for state in optimizer.state.values():
        for value in state.values():
            value = local_part(value)
            if (
                isinstance(value, torch.Tensor)
                and value.dim() > 0
                and (device_type is None or value.device.type == device_type)
            ):
                total += value.numel() * value.element_size()
    return total


def planned_peak_state_bytes(
    param_groups: list[dict[str, Any]],
    shards: Mapping[torch.Tensor, Shard0],
    *,
    by_group: bool = False,
    world_size: int | None = None,
) -> int | list[int]:
    """FRUGAL's peak state over a re-selection cycle, of ``param_groups`` whose DTensor
    parameters lie as ``shards`` says (``FRUGAL.peak_state_bytes`` documents the figure)."""
    if world_size is None:
        return _peak_state_bytes(param_groups, shards, by_group)
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size={world_size!r}: allowed an int >= 1 (the number of ranks sharding the model).")
    stored = [g for g in param_groups if g["role"] in ("stateful", "frugal") and not storage_of(g).plain]
    if world_size > 1 and stored:
        raise ValueError(
            f"world_size={world_size}: state_dtype={stored[0]['state_dtype']!r}, second_moment="
            f"{stored[0]['second_moment']!r} is not sharded by FSDP2 in this version (only 'fp32' with 'full' "
            "is); plan it with world_size=1, or use state_dtype='fp32' and second_moment='full'."
        )
    planned = {
        param: shards.get(param) or _sharded_on(group, param, world_size)
        for group in param_groups
        for param in group["params"]
    }
    return _peak_state_bytes(param_groups, planned, by_group)


def _sharded_on(group: dict[str, Any], param: torch.Tensor, world_size: int) -> Shard0:
    """Rank 0's layout of ``param`` if fully_shard put it on ``world_size`` ranks (whole where it cannot be)."""
    rows = int(param.shape[0]) if param.dim() else 1
    per_tensor = group["role"] == "frugal" and group["mode"] != "blocks" and group_plan(group, param).kind != "none"
    shardable = param.dim() >= 2 or (param.dim() == 1 and not per_tensor)
    world = world_size if shardable else 1
    return Shard0(None, 0, world, *chunk_bounds(rows, world, 0), sharded=world > 1)


def _peak_state_bytes(
    param_groups: list[dict[str, Any]], shards: Mapping[torch.Tensor, Shard0], by_group: bool
) -> int | list[int]:
    per_group: list[int] = []
    schedules: list[tuple[int, list[int]]] = []  # fixed-order blocks groups, combined below
    for group in param_groups:
        role = group["role"]
        params = group["params"]
        if role == "stateful":
            total = sum(_whole_moment_bytes(group, p, shards) for p in params)
        elif role == "frugal" and group["mode"] == "blocks":
            sizes = [_whole_moment_bytes(group, p, shards) for p in params]
            total = blocks_peak(group, sizes)
            if group["block_order"] != "random" and _fixed_schedule(group):
                schedules.append(
                    (group["update_gap"], blocks_window_bytes(group["block_order"], sizes, group["density"]))
                )
        elif role == "frugal":
            total = sum(_local_plan_bytes(group, p, shards.get(p)) for p in params)
        else:
            total = 0
        per_group.append(total)
    if by_group:
        return per_group
    joint = joint_peak_bytes(schedules) if len(schedules) > 1 else None
    if joint is None:
        return sum(per_group)
    return sum(per_group) - sum(max(window_bytes) for _, window_bytes in schedules) + joint


def _local_shape(param: torch.Tensor, shards: Mapping[torch.Tensor, Shard0]) -> tuple[int, ...]:
    """Shape of this rank's shard of ``param`` (the whole shape when it is not sharded)."""
    shard = shards.get(param)
    if shard is None or not shard.sharded:
        return tuple(param.shape)
    return (shard.stop - shard.start, *param.shape[1:])


def _whole_moment_bytes(group: dict[str, Any], param: torch.Tensor, shards: Mapping[torch.Tensor, Shard0]) -> int:
    """Bytes of the moments of ``param`` taken whole (stateful, a blocks window) on this rank."""
    return layout_bytes(state_layout(storage_of(group), _local_shape(param, shards), param.dtype))


def _local_plan_bytes(group: dict[str, Any], param: torch.Tensor, shard: Shard0 | None) -> int:
    """Bytes of one per-tensor-mode tensor's state on this rank (see ``_sharding``): moments
    of the local rows, in the group's storage; a right basis and the indices whole; a left basis
    by rows and its moments by columns; rows/randk the chosen ones among the local rows, counted
    as an even share of the count (what a uniform draw gives on average)."""
    plan = group_plan(group, param)
    itemsize = param.element_size()
    moments = moment_count(group["stateful_rule"])
    if plan.kind == "none":
        return 0
    if shard is None or not shard.sharded:
        return layout_bytes(state_layout(storage_of(group), plan.moment_shape, param.dtype)) + plan.selection_bytes(itemsize)
    rows = shard.stop - shard.start
    if plan.kind == "right":
        return (moments * rows * plan.count + plan.count * plan.cols) * itemsize
    if plan.kind == "columns":
        return moments * rows * plan.count * itemsize + plan.count * INDEX_BYTES
    if plan.kind == "left":
        start, stop = shard.bounds(plan.cols)
        return (moments * plan.count * (stop - start) + rows * plan.count) * itemsize
    start, stop = shard.bounds(plan.count)
    per_entry = plan.cols if plan.kind == "rows" else 1
    return moments * (stop - start) * per_entry * itemsize + plan.count * INDEX_BYTES


def blocks_peak(group: dict[str, Any], sizes: list[int]) -> int:
    """A blocks group's largest window over its schedule: every window of a cycle at a fixed
    density. Under a rho schedule the windows shrink from the start's count k and may start
    anywhere, so: for ascending / descending order (windows of consecutive tensors, wrapping) the
    largest run of k consecutive tensors, which holds every smaller window; for random and mirror
    order the k largest tensors. Both bound every window whatever T does, and equal the fixed
    density's peak when the tensor sizes repeat with the layer (as in a transformer)."""
    if group["density_end"] is None:
        return blocks_peak_bytes(group["block_order"], sizes, group["density"])
    k, n = blocks_count(group, group["density"]), len(sizes)
    if group["block_order"] in ("ascending", "descending") and 0 < k <= n:
        return max(sum(sizes[(start + j) % n] for j in range(k)) for start in range(n))
    return sum(sorted(sizes, reverse=True)[:k])


def _fixed_schedule(group: dict[str, Any]) -> bool:
    """Whether a group's re-selection steps and window sizes are fixed by its settings (no rho
    schedule, no T growth), so that its windows can be enumerated against other groups'."""
    return group["density_end"] is None and group["update_gap_growth"] == 1.0
