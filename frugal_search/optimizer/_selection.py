"""When a FRUGAL group re-selects (its rho and T schedules) and what it selects: a blocks window,
or each tensor's subspace with its fresh or carried moments (step 1 of ``FRUGAL``'s algorithm).

Plain functions over a group, its schedule record (``{"period", "next", "density"}``), the
optimizer's per-tensor ``state`` and its generator, which ``FRUGAL.step`` calls before the update.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, MutableMapping
from typing import Any

import torch

from frugal_search.optimizer._settings import MOMENT_KEYS, blocks_count, scheduled_density
from frugal_search.optimizer._sharding import Shard0, local_part
from frugal_search.optimizer._storage import storage_of, zero_moments
from frugal_search.optimizer._subspace import SubspacePlan, block_window, draw_subspace, group_plan

logger = logging.getLogger("frugal_search.optimizer.frugal")  # the class's logger: one name to filter


def advance_schedule(group: dict[str, Any], schedule: dict[str, Any], step: int) -> bool:
    """Whether ``step`` re-selects a frugal group's subspace; if so, start its next period.

    Due every ``update_gap`` steps from step 1 (T may grow between periods, see
    ``FRUGAL.report_loss``) and, in blocks mode under a rho schedule, also when the active count
    ``floor(rho_t n)`` changes. The period's density is rho at its first step."""
    density = scheduled_density(group, step)
    due = step >= schedule["next"]
    if not due and group["mode"] == "blocks" and group["density_end"] is not None:
        due = blocks_count(group, density) != blocks_count(group, schedule["density"])
    if due:
        schedule.update(period=schedule["period"] + 1, next=step + group["update_gap"], density=density)
    return due


def reselect_blocks(
    group: dict[str, Any], schedule: dict[str, Any], state: MutableMapping[torch.Tensor, Any], generator: torch.Generator
) -> list[int]:
    """Draw a blocks group's window for the period just started, free every moment (blocks always
    resets) and give the window's tensors zero moments; return the window (positions in the group)."""
    params = group["params"]
    k = blocks_count(group, schedule["density"])
    window = block_window(group["block_order"], len(params), k, schedule["period"], generator)
    for param in params:
        state.pop(param, None)
    for i in window:
        state[params[i]] = fresh_moments(group, local_part(params[i]))
    return window


def reselect_subspaces(
    group: dict[str, Any],
    schedule: dict[str, Any],
    state: MutableMapping[torch.Tensor, Any],
    shards: Mapping[torch.Tensor, Shard0],
    generator: torch.Generator,
) -> None:
    """Choose a tensor's subspace at its first step with a grad in each period, its rank
    from the period's density.

    A sharded tensor's subspace is drawn on its global shape (the same on every rank: the
    generators agree); svd gathers the whole gradient once for it."""
    period, density = schedule["period"], schedule["density"]
    for param in group["params"]:
        if param.grad is None:
            continue
        param_state = state[param]
        if "period" in param_state and int(param_state["period"]) == period:
            continue
        plan = group_plan(group, param, density)
        param_state["period"] = torch.tensor(period, dtype=torch.int64)
        if plan.kind == "none":  # no state this period: every moment (in any storage), the step, the subspace
            for key in [key for key in param_state if key != "period"]:
                del param_state[key]
            continue
        shard = shards.get(param)
        if shard is not None and shard.sharded:
            _reselect_sharded(group, plan, param, param_state, shard, generator)
            continue
        grad_matrix = local_part(param.grad).reshape(plan.rows, plan.cols)
        param_state["selection"] = draw_subspace(
            group["mode"], plan, grad_matrix, generator, exact=not group["reset_state"]
        )
        if group["reset_state"] or "step" not in param_state:
            param_state.update(fresh_moments(group, local_part(param), plan.moment_shape))


def _reselect_sharded(
    group: dict[str, Any],
    plan: SubspacePlan,
    param: torch.Tensor,
    state: dict[str, Any],
    shard: Shard0,
    generator: torch.Generator,
) -> None:
    local, grad = local_part(param), param.grad
    if group["mode"] == "svd":
        drawn_from = grad.full_tensor().reshape(plan.rows, plan.cols)  # the one gather per period
    else:  # only the device and dtype are read
        drawn_from = local_part(grad).reshape(-1, plan.cols)
    selection = draw_subspace(group["mode"], plan, drawn_from, generator, exact=not group["reset_state"])
    keys = MOMENT_KEYS[group["stateful_rule"]]
    carried = None
    if not group["reset_state"] and "step" in state and plan.kind in ("rows", "flat"):
        # the carried moments' rows move between ranks with the new selection
        _, _, offset = shard.localize(plan, state["selection"])
        carried = [shard.assemble(state[key], offset, plan.moment_shape) for key in keys]
    if plan.kind == "left":
        selection = selection[shard.start : shard.stop].contiguous()  # A's local rows
    state["selection"] = selection
    local_plan, _, offset = shard.localize(plan, selection)
    if carried is not None:
        state.update({key: m.narrow(0, offset, local_plan.count).clone() for key, m in zip(keys, carried, strict=True)})
    elif group["reset_state"] or "step" not in state:
        shape = list(local_plan.moment_shape)
        if plan.kind == "left":  # the moments of A^T G by columns
            start, stop = shard.bounds(plan.cols)
            shape = [plan.count, stop - start]
        state.update(fresh_moments(group, local, tuple(shape)))


def fresh_moments(
    group: dict[str, Any], local: torch.Tensor, shape: tuple[int, ...] | None = None
) -> dict[str, torch.Tensor]:
    """Zero moments of the group's state-full rule in its storage (``shape``: a low-rank one;
    None: like ``local``) and a zero step counter: what a selection or a reset starts from."""
    moments = zero_moments(storage_of(group), local, shape)
    return {**moments, "step": torch.zeros((), dtype=torch.float32, device=local.device)}


def grow_update_gaps(param_groups: list[dict[str, Any]], *, change: float) -> None:
    """The loss-aware T (``FRUGAL.report_loss``): each frugal group whose ``loss_plateau`` is above
    the relative loss ``change`` gets ``update_gap = min(update_gap_max, floor(update_gap *
    update_gap_growth))``, never lower; groups with growth 1 never change."""
    for group in param_groups:
        if group["role"] != "frugal" or group["update_gap_growth"] == 1.0 or change >= group["loss_plateau"]:
            continue
        grown = min(group["update_gap_max"], math.floor(group["update_gap"] * group["update_gap_growth"]))
        if grown > group["update_gap"]:
            logger.debug("loss change %.3g under %g: T %d -> %d", change, group["loss_plateau"], group["update_gap"], grown)
            group["update_gap"] = grown
