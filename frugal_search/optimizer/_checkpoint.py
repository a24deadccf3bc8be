"""FRUGAL's checkpoints: its state packed into torch's ``state_dict()`` layout with shapes fixed by
the settings alone, and unpacked again (``FRUGAL.state_dict`` / ``FRUGAL.load_state_dict``).

A fixed layout is what lets ``torch.distributed.checkpoint`` load into a fresh optimizer's
``state_dict()`` as a template. FRUGAL's own entries (the global step, the generator, the
schedules and a blocks group's window and moments) go in each param group's entry under
``GROUP_STATE_KEY``, because DCP keeps only ``"state"`` and ``"param_groups"`` and copies every
key of a group through. These functions read and write the optimizer's private state; they are
the class's checkpoint half, kept apart so that ``frugal.py`` holds the algorithm.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from itertools import chain
from typing import TYPE_CHECKING, Any

import torch
from torch.optim import Optimizer

from frugal_search.optimizer._settings import DEFAULTS, GROUP_SETTINGS, MOMENT_KEYS, blocks_count
from frugal_search.optimizer._sharding import Shard0, chunk_bounds, is_dtensor, local_part
from frugal_search.optimizer._storage import MomentStorage, state_layout, stored_dtype, storage_of, zero_moments
from frugal_search.optimizer._subspace import SubspacePlan, group_plan
from frugal_search.optimizer.memory import blocks_peak

logger = logging.getLogger("frugal_search.optimizer.frugal")  # the class's logger: one name to filter

# Key of FRUGAL's own entries in each ``state_dict()["param_groups"]`` entry: the global step and
# the generator (optimizer-wide, repeated in every group) and a blocks group's window and moments.
GROUP_STATE_KEY = "frugal_state"
# Key of the optimizer-wide entries in state_dict()s of earlier versions (still loaded).
STATE_DICT_KEY = "frugal"


def pack_state_dict(optimizer: Optimizer, packed: dict[str, Any]) -> dict[str, Any]:
    """``packed`` (torch's ``Optimizer.state_dict()`` of ``optimizer``) with FRUGAL's state put in
    the fixed layout ``FRUGAL.state_dict`` describes."""
    optimizer_wide = {
        "global_step": torch.tensor(optimizer._global_step, dtype=torch.int64),
        "generator_state": optimizer._generator.get_state(),
        "last_loss": torch.tensor(
            math.nan if optimizer._last_loss is None else optimizer._last_loss, dtype=torch.float64
        ),
    }
    if any(not storage_of(group).plain for group in optimizer.param_groups):
        # the random rounding's streams follow the seed (``_storage.rounding_seed``); saved only
        # then, so that the layout of full-precision state, and DCP templates of it, stay as they were
        optimizer_wide["rounding_seed"] = torch.tensor(optimizer._seed, dtype=torch.int64)
    state: dict[int, dict[str, torch.Tensor]] = {}
    ids = chain.from_iterable(g["params"] for g in packed["param_groups"])
    for index, (group, packed_group) in enumerate(zip(optimizer.param_groups, packed["param_groups"], strict=True)):
        blocks = group["role"] == "frugal" and group["mode"] == "blocks"
        for param in group["params"]:
            state[next(ids)] = {} if blocks else _packed_param_state(optimizer, group, param)
        schedule = optimizer._schedules[index]
        packed_group[GROUP_STATE_KEY] = {
            **optimizer_wide,
            "schedule": torch.tensor([schedule["period"], schedule["next"]], dtype=torch.int64),
            "schedule_density": torch.tensor(schedule["density"], dtype=torch.float64),
            **(_packed_blocks(optimizer, index, group) if blocks else {}),
        }
    packed["state"] = state
    return packed


def _packed_param_state(optimizer: Optimizer, group: dict[str, Any], param: torch.Tensor) -> dict[str, torch.Tensor]:
    role, state = group["role"], optimizer.state.get(param, {})
    shard = optimizer._shards.get(param)
    sharded = shard is not None and shard.sharded
    keys = MOMENT_KEYS[group["stateful_rule"]]
    storage = storage_of(group)
    if role == "stateful":
        local = local_part(param)
        packed = dict(zero_moments(storage, local)) if "step" not in state else {
            key: state[key] for key in state_layout(storage, tuple(local.shape), local.dtype)
        }
        packed["step"] = state.get("step", torch.zeros((), dtype=torch.float32, device=local.device))
        if sharded:
            for key in keys:
                packed[key] = shard.to_dtensor(packed[key], tuple(param.shape))
        return packed
    if role != "frugal":
        return {}
    plan = group_plan(group, param)
    if plan.kind == "none":
        return {}
    if "selection" not in state:
        return _zero_split_state(plan, param, storage, shard)
    packed = {"step": state["step"], "period": state["period"]}
    if not sharded:
        layout = state_layout(storage, tuple(state[keys[0]].shape), param.dtype)
        return {**packed, "selection": state["selection"], **{key: state[key] for key in layout}}
    selection, values = state["selection"], [state[key] for key in keys]
    if plan.kind == "left":  # A by rows, moments (r, n) by columns
        packed["selection"] = shard.to_dtensor(selection, plan.basis_shape)
        moments = [shard.to_dtensor(m, plan.moment_shape, dim=1) for m in values]
    elif plan.kind in ("right", "columns"):  # moments by rows like the parameter
        packed["selection"] = selection
        moments = [shard.to_dtensor(m, plan.moment_shape) for m in values]
    else:  # rows / randk: uneven pieces, gathered and re-chunked evenly
        packed["selection"] = selection
        _, _, offset = shard.localize(plan, selection)
        moments = [
            shard.to_dtensor(shard.piece(shard.assemble(m, offset, plan.moment_shape)).clone(), plan.moment_shape)
            for m in values
        ]
    return {**packed, **dict(zip(keys, moments, strict=True))}


def _zero_split_state(
    plan: SubspacePlan, param: torch.Tensor, storage: MomentStorage, shard: Shard0 | None
) -> dict[str, torch.Tensor]:
    """The packed layout of a tensor not selected yet: zeros, ``period`` -1."""
    keys = storage.moment_keys
    local = local_part(param)
    sharded = shard is not None and shard.sharded
    basis = plan.basis_shape
    if basis is None:
        selection = torch.zeros(plan.count, dtype=torch.int64, device=local.device)
    else:
        rows = (shard.stop - shard.start) if sharded and plan.kind == "left" else basis[0]
        selection = local.new_zeros((rows, basis[1]))
    moment_dim = 1 if plan.kind == "left" else 0
    moment_shape = list(plan.moment_shape)
    if sharded:
        start, stop = shard.bounds(moment_shape[moment_dim])
        moment_shape[moment_dim] = stop - start
    packed = {
        "step": torch.zeros((), dtype=torch.float32, device=local.device),
        "period": torch.tensor(-1, dtype=torch.int64),
        "selection": selection,
        **zero_moments(storage, local, tuple(moment_shape)),
    }
    if sharded:
        if plan.kind == "left":
            packed["selection"] = shard.to_dtensor(selection, basis)
        for key in keys:
            packed[key] = shard.to_dtensor(packed[key], plan.moment_shape, dim=moment_dim)
    return packed


def _blocks_capacity(optimizer: Optimizer, group: dict[str, Any]) -> tuple[int, Shard0 | None]:
    """Elements of a blocks group's flat moment buffer on each rank (its peak window, the
    largest over ranks) and a sharded layout of the group, if any."""
    params = group["params"]
    shards = optimizer._shards
    shard = next((s for p in params if (s := shards.get(p)) is not None and s.sharded), None)
    world = shard.world if shard is not None else 1
    capacity = 0
    for rank in range(world):
        sizes = [
            _rows_on(param, shards.get(param), rank) * (param.numel() // max(1, param.shape[0] if param.dim() else 1))
            for param in params
        ]
        capacity = max(capacity, blocks_peak(group, sizes))
    return capacity, shard


def _rows_on(param: torch.Tensor, shard: Shard0 | None, rank: int) -> int:
    """Rows of dim 0 of ``param`` that ``rank`` holds (all when it is not sharded)."""
    rows = int(param.shape[0]) if param.dim() else 1
    if shard is None or not shard.sharded:
        return rows
    start, stop = chunk_bounds(rows, shard.world, rank)
    return stop - start


def _blocks_buffers(optimizer: Optimizer, group: dict[str, Any]) -> tuple[dict[str, tuple[int, torch.dtype]], Shard0 | None]:
    """Each state key of a blocks group's flat buffers with its capacity (elements: the peak
    window's) and dtype, and a sharded layout of the group, if any. Full-precision moments all
    have the parameters' shapes; other storage sizes each key by the tensors' own layouts."""
    params = group["params"]
    storage = storage_of(group)
    if storage.plain:
        capacity, shard = _blocks_capacity(optimizer, group)
        dtype = local_part(params[0]).dtype
        return {key: (capacity, dtype) for key in storage.moment_keys}, shard
    layouts = [state_layout(storage, tuple(p.shape), p.dtype) for p in params]
    buffers: dict[str, tuple[int, torch.dtype]] = {}
    for key in dict.fromkeys(key for layout in layouts for key in layout):  # every key, in order
        sizes = [math.prod(layout[key][0]) if key in layout else 0 for layout in layouts]
        dtype = next(layout[key][1] for layout in layouts if key in layout)
        buffers[key] = (blocks_peak(group, sizes), dtype)
    return buffers, None


def _param_layout(storage: MomentStorage, local: torch.Tensor) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """The state tensors of one whole tensor of a blocks group (its local rows, when sharded)."""
    return state_layout(storage, tuple(local.shape), local.dtype)


def _packed_blocks(optimizer: Optimizer, index: int, group: dict[str, Any]) -> dict[str, torch.Tensor]:
    """A blocks group's window, Adam steps and moments, the moments as flat buffers."""
    params = group["params"]
    k = blocks_count(group, group["density"])  # the most a decaying schedule holds
    layout, shard = _blocks_buffers(optimizer, group)
    storage = storage_of(group)
    first = local_part(params[0])
    active = torch.full((k,), -1, dtype=torch.int64)
    steps = torch.zeros(k, dtype=torch.float32, device=first.device)
    buffers = {key: torch.zeros(capacity, dtype=dtype, device=first.device) for key, (capacity, dtype) in layout.items()}
    offsets = dict.fromkeys(buffers, 0)
    for slot, i in enumerate(optimizer._active_blocks[index]):
        state = optimizer.state[params[i]]
        for key in _param_layout(storage, local_part(params[i])):
            size = state[key].numel()
            buffers[key][offsets[key] : offsets[key] + size].copy_(state[key].reshape(-1))
            offsets[key] += size
        steps[slot], active[slot] = state["step"], i
    if shard is not None:
        buffers = {key: shard.to_dtensor(t, (shard.world * layout[key][0],)) for key, t in buffers.items()}
    return {
        "active_blocks": active,
        "block_steps": steps,
        **{f"block_{key}": buffer for key, buffer in buffers.items()},
    }


@dataclass(frozen=True)
class SavedState:
    """A state_dict to load, parted: what torch's ``Optimizer.load_state_dict`` restores (the
    groups, with no per-tensor state) and FRUGAL's own entries, restored by :func:`restore_state`."""

    torch_part: dict[str, Any]
    group_entries: list[dict[str, Any] | None]  # each group's GROUP_STATE_KEY entry, if saved
    tensor_state: dict[Any, dict[str, Any]]  # saved parameter id -> its packed state
    legacy: dict[str, Any] | None  # the STATE_DICT_KEY entry of earlier versions


def split_state_dict(state_dict: dict[str, Any]) -> SavedState:
    """Part a state_dict from ``FRUGAL.state_dict()`` (or an earlier version's) without changing it.

    A group saved by a version that had not some setting yet (``state_dtype``, ...) ran as that
    setting's default does (each came with the old behaviour as its default), so it gets the
    default: torch's ``load_state_dict`` replaces each group by the saved one, keys and all."""
    state_dict = dict(state_dict)
    legacy = state_dict.pop(STATE_DICT_KEY, None)
    saved_groups = [{**{key: DEFAULTS[key] for key in GROUP_SETTINGS}, **g} for g in state_dict["param_groups"]]
    group_entries = [g.pop(GROUP_STATE_KEY, None) for g in saved_groups]
    tensor_state = state_dict.get("state", {})
    # the per-tensor state is left out of torch's part: torch would cast integer index tensors to
    # the parameter's float dtype; restore_state keeps each dtype
    torch_part = {**state_dict, "param_groups": saved_groups, "state": {}}
    return SavedState(torch_part, group_entries, tensor_state, legacy)


def restore_state(optimizer: Optimizer, saved: SavedState) -> None:
    """Restore the per-tensor state, the blocks windows and the optimizer-wide entries of
    ``saved`` into ``optimizer``, whose groups torch has just restored from ``saved.torch_part``."""
    extras = saved.group_entries
    for group, saved_group in zip(optimizer.param_groups, saved.torch_part["param_groups"], strict=True):
        for saved_id, param in zip(saved_group["params"], group["params"], strict=True):
            restored = _unpacked_param_state(optimizer, group, param, saved.tensor_state.get(saved_id) or {})
            if restored:
                optimizer.state[param] = restored
    for index, (group, extra) in enumerate(zip(optimizer.param_groups, extras, strict=True)):
        if extra is not None and "active_blocks" in extra:
            _load_blocks(optimizer, index, group, extra)
    legacy = saved.legacy
    wide = next((extra for extra in extras if extra is not None), legacy)
    if wide is None:
        logger.warning(
            "state_dict has no %r entries: global step, generator and blocks moments restart (through "
            "torch.distributed.checkpoint, keep flatten_optimizer_state_dict=False: the flattened layout drops them)",
            GROUP_STATE_KEY,
        )
        return
    optimizer._global_step = int(wide["global_step"])
    if "rounding_seed" in wide:
        optimizer._seed = int(wide["rounding_seed"])
    optimizer._generator.set_state(wide["generator_state"].to(device="cpu", dtype=torch.uint8))
    last_loss = float(wide["last_loss"]) if "last_loss" in wide else math.nan
    optimizer._last_loss = None if math.isnan(last_loss) else last_loss
    for index, (group, extra) in enumerate(zip(optimizer.param_groups, extras, strict=True)):
        optimizer._schedules[index] = _loaded_schedule(group, extra, optimizer._global_step)
    if wide is legacy:
        optimizer._active_blocks = [[int(i) for i in window.tolist()] for window in legacy["active_blocks"]]


def _loaded_schedule(group: dict[str, Any], extra: dict[str, Any] | None, global_step: int) -> dict[str, Any]:
    """A group's schedule from its saved entries; earlier versions (fixed T and density) had
    none, and their schedule follows from the global step."""
    if extra is not None and "schedule" in extra:
        period, upcoming = (int(value) for value in extra["schedule"].tolist())
        return {"period": period, "next": upcoming, "density": float(extra["schedule_density"])}
    gap = group["update_gap"]
    period = (global_step - 1) // gap if global_step > 0 else -1
    return {"period": period, "next": (period + 1) * gap + 1, "density": float(group["density"])}


def _unpacked_param_state(
    optimizer: Optimizer, group: dict[str, Any], param: torch.Tensor, saved: dict[str, Any]
) -> dict[str, Any]:
    if "period" in saved and int(saved["period"]) < 0:
        return {}  # packed before its first selection
    if group["role"] == "stateful" and "step" in saved and float(saved["step"]) == 0:
        return {}  # packed before its first step
    shard = optimizer._shards.get(param)
    if shard is None or not shard.sharded or not saved:
        local = local_part(param)
        storage = storage_of(group)
        return {
            key: _restore_state_value(key, local_part(value), local, stored_dtype(storage, key, local.dtype))
            for key, value in saved.items()
        }
    local = local_part(param)
    pieces = dict(saved)
    keys = MOMENT_KEYS[group["stateful_rule"]]
    if group["role"] == "stateful" or "selection" not in saved:
        pieces.update({key: shard.piece(saved[key]) for key in keys if key in saved})
    else:
        plan = group_plan(group, param)
        if plan.kind == "left":
            pieces["selection"] = shard.piece(saved["selection"])
            pieces.update({key: shard.piece(saved[key], dim=1) for key in keys})
        elif plan.kind in ("right", "columns"):
            pieces.update({key: shard.piece(saved[key]) for key in keys})
        else:
            local_plan, _, offset = shard.localize(plan, saved["selection"])
            for key in keys:
                whole = saved[key].full_tensor() if is_dtensor(saved[key]) else saved[key]
                pieces[key] = whole.narrow(0, offset, local_plan.count)
    return {key: _restore_state_value(key, value, local) for key, value in pieces.items()}


def _load_blocks(optimizer: Optimizer, index: int, group: dict[str, Any], extra: dict[str, Any]) -> None:
    params = group["params"]
    storage = storage_of(group)
    window = [int(i) for i in extra["active_blocks"].tolist() if int(i) >= 0]
    offsets: dict[str, int] = {}
    for slot, i in enumerate(window):
        local = local_part(params[i])
        restored = {}
        for key, (shape, dtype) in _param_layout(storage, local).items():
            start, size = offsets.get(key, 0), math.prod(shape)
            piece = local_part(extra[f"block_{key}"])[start : start + size].view(shape)
            restored[key] = _restore_state_value(key, piece, local, dtype)
            offsets[key] = start + size
        restored["step"] = _restore_state_value("step", extra["block_steps"][slot], local)
        optimizer.state[params[i]] = restored
    optimizer._active_blocks[index] = window


def _restore_state_value(key: str, value: Any, param: torch.Tensor, dtype: torch.dtype | None = None) -> Any:
    """A saved value copied onto ``param``'s device: in ``dtype`` when given (a moment's stored
    dtype), else floating state in the parameter's dtype, ``step`` float32, ``period`` int64 on
    the CPU, index tensors as they are; non-tensors unchanged."""
    if not isinstance(value, torch.Tensor):
        return value
    if dtype is not None:
        return value.to(device=param.device, dtype=dtype, copy=True)
    if key == "step":
        return value.to(device=param.device, dtype=torch.float32, copy=True)
    if key == "period":
        return value.to(device="cpu", dtype=torch.int64, copy=True)
    if value.is_floating_point():
        return value.to(device=param.device, dtype=param.dtype, copy=True)
    return value.to(device=param.device, copy=True)
