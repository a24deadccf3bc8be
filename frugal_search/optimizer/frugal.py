"""The FRUGAL optimizer (Zmushko et al., arXiv 2411.07837) as a ``torch.optim.Optimizer``."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from itertools import chain
from typing import Any

import torch
from torch.optim import Optimizer

import frugal_search.optimizer._math as _math
from frugal_search.optimizer._settings import (
    ALL_MOMENT_KEYS,
    DEFAULTS,
    GROUP_SETTINGS,
    MOMENT_KEYS,
    SETTINGS,
    blocks_count,
    check_group_keys,
    moment_count,
    resolved_betas,
    scheduled_density,
    validate_group,
)
from frugal_search.optimizer._sharding import Shard0, chunk_bounds, is_dtensor, local_part, shard_of
from frugal_search.optimizer._subspace import (
    INDEX_BYTES,
    SubspacePlan,
    block_window,
    blocks_peak_bytes,
    blocks_window_bytes,
    draw_subspace,
    joint_peak_bytes,
    plan_subspace,
)

logger = logging.getLogger(__name__)

# Key of FRUGAL's own entries in each ``state_dict()["param_groups"]`` entry: the global step and
# the generator (optimizer-wide, repeated in every group) and a blocks group's window and moments.
# They sit in the param groups because torch.distributed.checkpoint keeps only "state" and
# "param_groups" and copies every key of a group through.
GROUP_STATE_KEY = "frugal_state"
# Key of the optimizer-wide entries in state_dict()s of earlier versions (still loaded).
STATE_DICT_KEY = "frugal"


class FRUGAL(Optimizer):
    r"""FRUGAL: AdamW (or Lion, SGD-momentum) in a small subspace of each split tensor, a
    state-free rule for the rest.

    Param groups have a ``role``:

    - ``stateful``: the state-full rule on whole tensors (AdamW: identical to ``torch.optim.AdamW``).
    - ``frugal`` (the default; a plain iterable of parameters is one frugal group): the gradient is
      split by ``mode`` into a state-full part (AdamW with learning rate ``lr_sf = lr *
      split_lr_scale``) and a state-free part (``state_free`` rule with ``lr_free = lr *
      split_lr_scale * state_free_lr_scale``).
    - ``state_free``: only the state-free rule, never any state, with ``lr * state_free_lr_scale``
      (such a group has no split, so ``split_lr_scale`` does not apply).
    - ``frozen``: never updated.

    One step, per group (``lr`` from the group, so LR schedulers work):

    1. Re-selection at optimizer steps 1, T+1, 2T+1, ... (1-indexed, ``T = update_gap``).
       blocks: ``k = round(density * len(group))`` whole tensors are active; the window follows
       ``block_order`` over the group's params in list order (ascending, descending, mirror,
       random); moments of every tensor are freed and zeros allocated for the active ones (always
       a reset). Other modes choose a new subspace per tensor; with ``reset_state=True`` moments
       are zeroed and the Adam step counter restarts; with ``reset_state=False`` they carry on,
       not re-projected. A tensor whose grad is None at a re-selection step keeps no new subspace
       until its first step with a grad in that period, where it is selected (svd needs the grad).
    2. Decoupled weight decay on every tensor with a grad, state-free ones included (also with
       ``state_free="none"``): ``p *= 1 - lr * weight_decay`` (unscaled lr).
    3. State-full part, by ``stateful_rule``: ``adamw`` ``m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
       delta = -(lr_sf / (1-b1^t)) m / (sqrt(v) / sqrt(1-b2^t) + eps)``; ``lion`` (one moment,
       betas default (0.9, 0.99)) ``delta = -lr_sf sign(b1 m + (1-b1) g); m = b2 m + (1-b2) g``;
       ``sgdm`` (one moment, torch's convention: the buffer starts as the first gradient)
       ``buf = momentum buf + g; delta = -lr_sf buf`` (Nesterov ``-lr_sf (g + momentum buf)``);
       lifted back with ``up``. A reset zeroes the moment(s) and the step counter.
    4. State-free part of the residual ``G - up(down(G))``: ``signsgd`` ``-lr_free sign(r)``,
       ``sgd`` ``-lr_free r`` (plain, stateless: no momentum), ``none`` nothing.

    Schedules (AdaFRUGAL, arXiv 2601.11568): with ``density_end`` rho decays linearly,
    ``rho_t = max(density_end, density - (density - density_end) (t - 1) / density_steps)``; blocks
    keep ``floor(rho_t n)`` tensors active and re-select whenever that count changes; the other
    modes take each period's size from rho at its first step. :meth:`report_loss` grows T by
    ``update_gap_growth`` (up to ``update_gap_max``) when the reported loss changes by less than
    ``loss_plateau`` (relative); the re-selections follow the grown T from the next one on.
    ``peak_state_bytes`` is the start's (the schedule decays). The schedules' state is in the
    state_dict; a rho schedule in a per-tensor mode changes the state's shapes, so resume it with
    ``torch.save`` / ``load_state_dict`` (a DCP template is built at the start's shapes).
    With ``reset_state=False`` an svd basis is the plain ``torch.linalg.svd`` of the whole
    gradient (its signs meet the carried moments; GaLore's convention), else the faster QR route.

    Modes (a tensor is seen as an (m, n) matrix; see ``_subspace.plan_subspace``): ``blocks``,
    ``svd`` / ``random`` (dense basis by the side rule, ``r = round(rho * side)``), ``randperm``
    (r chosen input or output features, kept as int64 indices), ``columns`` / ``rows``
    (``floor(rho * n)`` / ``floor(rho * m)``), ``randk`` (``floor(rho * m * n)`` entries, kept as
    flat int64 indices: 8 bytes per entry). ``rank`` overrides density for svd, random, randperm,
    columns and rows.

    State: moments in the parameter's dtype (like ``torch.optim.AdamW``), a float32 scalar
    ``step`` per stateful tensor, the basis or indices of the current subspace, and a CPU int64
    scalar ``period`` (which period the subspace belongs to). All randomness comes from a CPU
    ``torch.Generator`` seeded by ``seed``; its state, the global step and the active blocks are
    saved as tensors in each ``state_dict()["param_groups"]`` entry under ``"frugal_state"``.
    ``state_dict()`` has a layout fixed by the settings alone, so ``torch.distributed.checkpoint``
    (``get_optimizer_state_dict`` / ``dcp.save`` / ``dcp.load`` / ``set_optimizer_state_dict``,
    default ``flatten_optimizer_state_dict=False``) resumes a fresh optimizer bit-identically;
    torch's state initialisation (a zero-lr step on zero grads of an optimizer without state) is
    recognised and takes no step.

    Data parallel: under DDP every rank holds whole tensors and the same (all-reduced) gradient,
    so it takes the one-process step; subspaces agree because every rank's generator does.
    Under FSDP2 (``fully_shard``: DTensor parameters ``Shard(0)`` on a 1-D mesh; ``Replicate()``
    is treated as whole) each rank updates its rows with state for those rows only; subspaces are
    drawn on the global shape with the shared generator, so they are the one-process ones. What
    each mode communicates, beyond FSDP's own gathers and reduce-scatters:

    - blocks, stateful, state_free, columns, rows, randk, random and randperm: nothing per step
      (element-wise rules, a right basis ``G B^T`` on local rows, chosen columns of local rows,
      chosen rows / entries that fall in the local rows; randperm is columns or rows).
    - svd: one all-gather of the whole gradient per tensor at each re-selection (every T steps).
    - svd / random from the left (m < n, e.g. LLaMA's down_proj): each step an all-reduce of
      ``A_local^T G_local`` (r, n) and an all-gather of the Adam step, whose moments are kept by
      columns (r, n / world); A is kept by rows.
    - checkpoints: rows / randk moments (uneven per rank) are gathered and re-chunked evenly in
      ``state_dict()``; reset_state=False rows / randk regather their moments at re-selection.
    Per rank the moments are about 1/world; right bases and index vectors are whole on every
    rank. 1-D tensors sharded in a per-tensor mode, ``Shard(1)`` and 2-D meshes are refused with
    a ValueError at construction. The update equals the one-process update up to rounding
    (the tests measure 2e-7..9e-5 after 6 steps at lr 1e-2, the same as DDP's). svd is the one
    exception to "up to rounding": its basis is the top-r singular vectors of the all-reduced
    gradient, and where the r-th and (r+1)-th singular values nearly tie, rounding differences
    of the reduction can pick another vector of that near-degenerate pair, so the subspace turns
    within it; the difference is then bounded by the step within that pair, not by rounding
    (measured 6e-6 in the tests' model, 2e-3 in a 2-layer LLaMA under DDP when issue 12 was filed).

    Paths: ``foreach=True`` (default) runs torch's fused AdamW kernel over all whole-tensor
    Adam updates of a group (stateful tensors, active blocks) and per tensor for the low-rank
    moments; on the CPU the state-free rule, the weight decay, the lift and the residual are done
    in cache-sized chunks while the gradient is still in cache.
    ``foreach=False`` is the single-tensor reference path, the formulas as written; tests check
    the two against each other.

    Args:
        params: parameters or param groups (dicts with ``params``, ``role``, optional ``names``
            parallel to ``params``, and any setting below except ``seed``).
        foreach: use the multi-tensor path (default True); False runs the single-tensor
            reference path.
        fused: use torch's fused AdamW kernel for whole-tensor and low-rank Adam updates; None
            (default) uses it where the device supports it.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = DEFAULTS["lr"],
        betas: tuple[float, float] | None = DEFAULTS["betas"],
        eps: float = DEFAULTS["eps"],
        weight_decay: float = DEFAULTS["weight_decay"],
        momentum: float = DEFAULTS["momentum"],
        nesterov: bool = DEFAULTS["nesterov"],
        stateful_rule: str = DEFAULTS["stateful_rule"],
        mode: str = DEFAULTS["mode"],
        density: float = DEFAULTS["density"],
        rank: int | None = DEFAULTS["rank"],
        update_gap: int = DEFAULTS["update_gap"],
        density_end: float | None = DEFAULTS["density_end"],
        density_steps: int = DEFAULTS["density_steps"],
        update_gap_growth: float = DEFAULTS["update_gap_growth"],
        update_gap_max: int = DEFAULTS["update_gap_max"],
        loss_plateau: float = DEFAULTS["loss_plateau"],
        block_order: str = DEFAULTS["block_order"],
        state_free: str = DEFAULTS["state_free"],
        state_free_lr_scale: float = DEFAULTS["state_free_lr_scale"],
        split_lr_scale: float = DEFAULTS["split_lr_scale"],
        reset_state: bool = DEFAULTS["reset_state"],
        seed: int = DEFAULTS["seed"],
        *,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        SETTINGS["seed"].check(seed)  # the group settings are checked per group, in add_param_group
        if fused and foreach is False:
            raise ValueError("fused=True needs the multi-tensor path; do not combine it with foreach=False.")
        defaults = {
            "lr": lr,
            "betas": tuple(betas) if isinstance(betas, (list, tuple)) else betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "nesterov": nesterov,
            "stateful_rule": stateful_rule,
            "mode": mode,
            "density": density,
            "rank": rank,
            "update_gap": update_gap,
            "density_end": density_end,
            "density_steps": density_steps,
            "update_gap_growth": update_gap_growth,
            "update_gap_max": update_gap_max,
            "loss_plateau": loss_plateau,
            "block_order": block_order,
            "state_free": state_free,
            "state_free_lr_scale": state_free_lr_scale,
            "split_lr_scale": split_lr_scale,
            "reset_state": reset_state,
        }
        self._foreach = True if foreach is None else bool(foreach)
        self._fused = fused
        self._seed = seed
        self._generator = torch.Generator()
        self._generator.manual_seed(seed)
        self._global_step = 0
        self._active_blocks: list[list[int]] = []  # per param group, indices into its params
        # per param group: the current period (-1 before the first), the step of the next
        # re-selection, and the density chosen at the last one (see _advance_schedule)
        self._schedules: list[dict[str, Any]] = []
        self._last_loss: float | None = None  # the last loss given to report_loss
        self._shards: dict[torch.Tensor, Shard0] = {}  # DTensor params (FSDP2) -> their local rows
        super().__init__(params, defaults)

    # ------------------------------------------------------------------ groups

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group after checking its keys and every setting (ValueError on a bad one)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"A param group must be a dict, got {type(param_group).__name__}.")
        check_group_keys(param_group)
        group = dict(param_group)
        params = group["params"]
        group["params"] = [params] if isinstance(params, torch.Tensor) else list(params)
        group.setdefault("role", "frugal")
        for key in GROUP_SETTINGS:
            group.setdefault(key, self.defaults[key])
        if isinstance(group["betas"], list):
            group["betas"] = tuple(group["betas"])
        if "names" in group:
            group["names"] = list(group["names"])
        validate_group(group)
        self._check_sharding(group)
        super().add_param_group(group)
        self._active_blocks.append([])
        self._schedules.append({"period": -1, "next": 1, "density": float(group["density"])})

    def _check_sharding(self, group: dict[str, Any]) -> None:
        """Record the shard layout of DTensor params; ValueError for one a mode cannot run on."""
        for position, param in enumerate(group["params"]):
            shard = shard_of(param)
            if shard is None:
                continue
            if (
                shard.sharded
                and param.dim() < 2
                and group["role"] == "frugal"
                and group["mode"] != "blocks"
                and self._plan(group, param).kind != "none"
            ):
                name = group["names"][position] if "names" in group else f"#{position}"
                raise ValueError(
                    f"FRUGAL mode {group['mode']!r} cannot run on parameter {name} of shape {tuple(param.shape)} "
                    "sharded on its only dimension (its subspace is a set of columns of one row); "
                    "put 1-D parameters in a stateful, state_free or blocks group (the paper's split has only "
                    "2-D Linear weights), or do not shard them."
                )
            self._shards[param] = shard

    # ------------------------------------------------------------------ memory

    def peak_state_bytes(self, by_group: bool = False, *, world_size: int | None = None) -> int | list[int]:
        """Peak bytes of optimizer state over a full re-selection cycle, from shapes and settings.

        Counts what ``optimizer_state_bytes`` counts (moments, bases, index vectors; not the
        scalar step/period counters nor the generator state). Reads only shapes and dtypes, so it
        works for parameters on the ``meta`` device. blocks: the largest window of the cycle
        (random order: the k largest tensors, the worst draw). ``by_group`` gives each group's own
        peak; the total is the joint peak, which is lower when several blocks groups with fixed
        orders hold their largest windows at different steps (their schedules are enumerated up to
        ``_subspace.MAX_JOINT_SCHEDULE_POINTS`` re-selections; beyond that the sum of the peaks bounds it).

        Sharded (FSDP2) parameters count this rank's shard (see ``_local_plan_bytes``). For rows
        and randk, whose chosen rows / entries fall unevenly on the ranks, that is the even share
        of the count (a uniform draw's expectation), not a bound: on 2 ranks the tests saw one
        rank hold 2.6% more than it.
        ``world_size=N`` counts rank 0 (the largest shard) as if every parameter of two or more
        dimensions, and every 1-D one outside a per-tensor mode, were sharded by fully_shard on N
        ranks: the per-GPU figure before any process group exists.
        """
        if world_size is None:
            return self._peak_state_bytes(by_group)
        if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
            raise ValueError(f"world_size={world_size!r}: allowed an int >= 1 (the number of ranks sharding the model).")
        actual = self._shards
        self._shards = {
            param: actual.get(param) or self._sharded_on(group, param, world_size)
            for group in self.param_groups
            for param in group["params"]
        }
        try:
            return self._peak_state_bytes(by_group)
        finally:
            self._shards = actual

    def _sharded_on(self, group: dict[str, Any], param: torch.Tensor, world_size: int) -> Shard0:
        """Rank 0's layout of ``param`` if fully_shard put it on ``world_size`` ranks (whole where it cannot be)."""
        rows = int(param.shape[0]) if param.dim() else 1
        per_tensor = group["role"] == "frugal" and group["mode"] != "blocks" and self._plan(group, param).kind != "none"
        shardable = param.dim() >= 2 or (param.dim() == 1 and not per_tensor)
        world = world_size if shardable else 1
        return Shard0(None, 0, world, *chunk_bounds(rows, world, 0), sharded=world > 1)

    def _peak_state_bytes(self, by_group: bool) -> int | list[int]:
        per_group: list[int] = []
        schedules: list[tuple[int, list[int]]] = []  # fixed-order blocks groups, combined below
        for group in self.param_groups:
            role = group["role"]
            params = group["params"]
            moments = moment_count(group["stateful_rule"])
            if role == "stateful":
                total = sum(moments * self._local_numel(p) * p.element_size() for p in params)
            elif role == "frugal" and group["mode"] == "blocks":
                sizes = [moments * self._local_numel(p) * p.element_size() for p in params]
                total = _blocks_peak(group, sizes)
                if group["block_order"] != "random" and _fixed_schedule(group):
                    schedules.append(
                        (group["update_gap"], blocks_window_bytes(group["block_order"], sizes, group["density"]))
                    )
            elif role == "frugal":
                total = sum(self._local_plan_bytes(group, p) for p in params)
            else:
                total = 0
            per_group.append(total)
        if by_group:
            return per_group
        joint = joint_peak_bytes(schedules) if len(schedules) > 1 else None
        if joint is None:
            return sum(per_group)
        return sum(per_group) - sum(max(window_bytes) for _, window_bytes in schedules) + joint

    def _local_numel(self, param: torch.Tensor) -> int:
        """Elements of this rank's shard of ``param`` (all of them when it is not sharded)."""
        shard = self._shards.get(param)
        if shard is None or not shard.sharded:
            return param.numel()
        return (shard.stop - shard.start) * (param.numel() // param.shape[0])

    def _local_plan_bytes(self, group: dict[str, Any], param: torch.Tensor) -> int:
        """Bytes of one per-tensor-mode tensor's state on this rank (see ``_sharding``): moments
        of the local rows; a right basis and the indices whole; a left basis by rows and its
        moments by columns; rows/randk the chosen ones among the local rows, counted as an even
        share of the count (what a uniform draw gives on average)."""
        plan = self._plan(group, param)
        itemsize = param.element_size()
        moments = moment_count(group["stateful_rule"])
        shard = self._shards.get(param)
        if shard is None or not shard.sharded or plan.kind == "none":
            return plan.state_bytes(itemsize, moments)
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

    # ------------------------------------------------------------------ state_dict

    def state_dict(self) -> dict[str, Any]:
        """torch's layout, with every tensor's state in a shape fixed by the settings alone.

        So a fresh optimizer's state_dict is a template that ``torch.distributed.checkpoint``
        (``get_optimizer_state_dict`` / ``dcp.load`` / ``set_optimizer_state_dict``) loads into:
        every parameter has an entry (empty when it keeps no state); a per-tensor mode's state is
        there before the first selection (zeros, ``period`` -1); a blocks group's moments are in its
        ``param_groups`` entry under ``GROUP_STATE_KEY`` as two flat buffers of the group's peak
        window (with the window and the Adam steps); the global step and the generator state are
        in every group's entry. State of a sharded (DTensor) parameter is a DTensor sharded like
        it: the moments by rows (a left projection's by columns; rows/randk re-chunked evenly),
        bases and indices whole. Blocks buffers are per rank, so resume on the same world size.
        """
        packed = super().state_dict()
        optimizer_wide = {
            "global_step": torch.tensor(self._global_step, dtype=torch.int64),
            "generator_state": self._generator.get_state(),
            "last_loss": torch.tensor(math.nan if self._last_loss is None else self._last_loss, dtype=torch.float64),
        }
        state: dict[int, dict[str, torch.Tensor]] = {}
        ids = chain.from_iterable(g["params"] for g in packed["param_groups"])
        for index, (group, packed_group) in enumerate(zip(self.param_groups, packed["param_groups"], strict=True)):
            blocks = group["role"] == "frugal" and group["mode"] == "blocks"
            for param in group["params"]:
                state[next(ids)] = {} if blocks else self._packed_param_state(group, param)
            schedule = self._schedules[index]
            packed_group[GROUP_STATE_KEY] = {
                **optimizer_wide,
                "schedule": torch.tensor([schedule["period"], schedule["next"]], dtype=torch.int64),
                "schedule_density": torch.tensor(schedule["density"], dtype=torch.float64),
                **(self._packed_blocks(index, group) if blocks else {}),
            }
        packed["state"] = state
        return packed

    def _packed_param_state(self, group: dict[str, Any], param: torch.Tensor) -> dict[str, torch.Tensor]:
        role, state = group["role"], self.state.get(param, {})
        shard = self._shards.get(param)
        sharded = shard is not None and shard.sharded
        keys = MOMENT_KEYS[group["stateful_rule"]]
        if role == "stateful":
            local = local_part(param)
            packed = {key: state.get(key, torch.zeros_like(local)) for key in keys}
            packed["step"] = state.get("step", torch.zeros((), dtype=torch.float32, device=local.device))
            if sharded:
                for key in keys:
                    packed[key] = shard.to_dtensor(packed[key], tuple(param.shape))
            return packed
        if role != "frugal":
            return {}
        plan = self._plan(group, param)
        if plan.kind == "none":
            return {}
        if "selection" not in state:
            return self._zero_split_state(plan, param, keys)
        packed = {"step": state["step"], "period": state["period"]}
        selection, values = state["selection"], [state[key] for key in keys]
        if not sharded:
            return {**packed, "selection": selection, **dict(zip(keys, values, strict=True))}
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
        self, plan: SubspacePlan, param: torch.Tensor, keys: tuple[str, ...]
    ) -> dict[str, torch.Tensor]:
        """The packed layout of a tensor not selected yet: zeros, ``period`` -1."""
        local = local_part(param)
        shard = self._shards.get(param)
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
            **{key: local.new_zeros(moment_shape) for key in keys},
        }
        if sharded:
            if plan.kind == "left":
                packed["selection"] = shard.to_dtensor(selection, basis)
            for key in keys:
                packed[key] = shard.to_dtensor(packed[key], plan.moment_shape, dim=moment_dim)
        return packed

    def _blocks_capacity(self, group: dict[str, Any]) -> tuple[int, Shard0 | None]:
        """Elements of a blocks group's flat moment buffer on each rank (its peak window, the
        largest over ranks) and a sharded layout of the group, if any."""
        params = group["params"]
        shard = next((s for p in params if (s := self._shards.get(p)) is not None and s.sharded), None)
        world = shard.world if shard is not None else 1
        capacity = 0
        for rank in range(world):
            sizes = [self._rows_on(param, rank) * (param.numel() // max(1, param.shape[0] if param.dim() else 1)) for param in params]
            capacity = max(capacity, _blocks_peak(group, sizes))
        return capacity, shard

    def _rows_on(self, param: torch.Tensor, rank: int) -> int:
        """Rows of dim 0 of ``param`` that ``rank`` holds (all when it is not sharded)."""
        shard = self._shards.get(param)
        rows = int(param.shape[0]) if param.dim() else 1
        if shard is None or not shard.sharded:
            return rows
        start, stop = chunk_bounds(rows, shard.world, rank)
        return stop - start

    def _packed_blocks(self, index: int, group: dict[str, Any]) -> dict[str, torch.Tensor]:
        """A blocks group's window, Adam steps and moments, the moments as flat buffers."""
        params = group["params"]
        k = blocks_count(group, group["density"])  # the most a decaying schedule holds
        capacity, shard = self._blocks_capacity(group)
        keys = MOMENT_KEYS[group["stateful_rule"]]
        first = local_part(params[0])
        active = torch.full((k,), -1, dtype=torch.int64)
        steps = torch.zeros(k, dtype=torch.float32, device=first.device)
        buffers = [torch.zeros(capacity, dtype=first.dtype, device=first.device) for _ in keys]
        offset = 0
        for slot, i in enumerate(self._active_blocks[index]):
            state = self.state[params[i]]
            size = state[keys[0]].numel()
            for key, buffer in zip(keys, buffers, strict=True):
                buffer[offset : offset + size].copy_(state[key].reshape(-1))
            steps[slot], active[slot] = state["step"], i
            offset += size
        if shard is not None:
            buffers = [shard.to_dtensor(t, (shard.world * capacity,)) for t in buffers]
        return {
            "active_blocks": active,
            "block_steps": steps,
            **{f"block_{key}": buffer for key, buffer in zip(keys, buffers, strict=True)},
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state_dict from ``state_dict()`` (also after torch.load(weights_only=True), and
        what ``set_optimizer_state_dict`` passes after ``dcp.load``; earlier versions' too).

        Tensors are copied; floating state takes the parameter's dtype and device, index tensors
        keep int64, ``step`` is float32 on the parameter's device and ``period`` stays on the CPU.
        """
        state_dict = dict(state_dict)
        legacy = state_dict.pop(STATE_DICT_KEY, None)
        saved_groups = [dict(g) for g in state_dict["param_groups"]]
        extras = [g.pop(GROUP_STATE_KEY, None) for g in saved_groups]
        saved_state = state_dict.get("state", {})
        # torch checks and restores the groups; the per-tensor state is restored below with dtypes
        # kept (torch would cast integer index tensors to the parameter's float dtype).
        super().load_state_dict({**state_dict, "param_groups": saved_groups, "state": {}})
        for group, saved_group in zip(self.param_groups, saved_groups, strict=True):
            for saved_id, param in zip(saved_group["params"], group["params"], strict=True):
                restored = self._unpacked_param_state(group, param, saved_state.get(saved_id) or {})
                if restored:
                    self.state[param] = restored
        for index, (group, extra) in enumerate(zip(self.param_groups, extras, strict=True)):
            if extra is not None and "active_blocks" in extra:
                self._load_blocks(index, group, extra)
        wide = next((extra for extra in extras if extra is not None), legacy)
        if wide is None:
            logger.warning(
                "state_dict has no %r entries: global step, generator and blocks moments restart (through "
                "torch.distributed.checkpoint, keep flatten_optimizer_state_dict=False: the flattened layout drops them)",
                GROUP_STATE_KEY,
            )
            return
        self._global_step = int(wide["global_step"])
        self._generator.set_state(wide["generator_state"].to(device="cpu", dtype=torch.uint8))
        last_loss = float(wide["last_loss"]) if "last_loss" in wide else math.nan
        self._last_loss = None if math.isnan(last_loss) else last_loss
        for index, (group, extra) in enumerate(zip(self.param_groups, extras, strict=True)):
            self._schedules[index] = self._loaded_schedule(group, extra)
        if wide is legacy:
            self._active_blocks = [[int(i) for i in window.tolist()] for window in legacy["active_blocks"]]

    def _loaded_schedule(self, group: dict[str, Any], extra: dict[str, Any] | None) -> dict[str, Any]:
        """A group's schedule from its saved entries; earlier versions (fixed T and density) had
        none, and their schedule follows from the global step."""
        if extra is not None and "schedule" in extra:
            period, upcoming = (int(value) for value in extra["schedule"].tolist())
            return {"period": period, "next": upcoming, "density": float(extra["schedule_density"])}
        gap, step = group["update_gap"], self._global_step
        period = (step - 1) // gap if step > 0 else -1
        return {"period": period, "next": (period + 1) * gap + 1, "density": float(group["density"])}

    def _unpacked_param_state(self, group: dict[str, Any], param: torch.Tensor, saved: dict[str, Any]) -> dict[str, Any]:
        if "period" in saved and int(saved["period"]) < 0:
            return {}  # packed before its first selection
        if group["role"] == "stateful" and "step" in saved and float(saved["step"]) == 0:
            return {}  # packed before its first step
        shard = self._shards.get(param)
        if shard is None or not shard.sharded or not saved:
            local = local_part(param)
            return {key: _restore_state_value(key, local_part(value), local) for key, value in saved.items()}
        local = local_part(param)
        pieces = dict(saved)
        keys = MOMENT_KEYS[group["stateful_rule"]]
        if group["role"] == "stateful" or "selection" not in saved:
            pieces.update({key: shard.piece(saved[key]) for key in keys if key in saved})
        else:
            plan = self._plan(group, param)
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

    def _load_blocks(self, index: int, group: dict[str, Any], extra: dict[str, Any]) -> None:
        params = group["params"]
        keys = MOMENT_KEYS[group["stateful_rule"]]
        window = [int(i) for i in extra["active_blocks"].tolist() if int(i) >= 0]
        buffers = [local_part(extra[f"block_{key}"]) for key in keys]
        offset = 0
        for slot, i in enumerate(window):
            local = local_part(params[i])
            size = local.numel()
            restored = {
                key: _restore_state_value(key, buffer[offset : offset + size].view(local.shape), local)
                for key, buffer in zip(keys, buffers, strict=True)
            }
            restored["step"] = _restore_state_value("step", extra["block_steps"][slot], local)
            self.state[params[i]] = restored
            offset += size
        self._active_blocks[index] = window

    # ------------------------------------------------------------------ loss-aware T

    def report_loss(self, loss: float | torch.Tensor) -> None:
        """Report a loss (e.g. each evaluation's): T grows where it plateaus.

        When the relative change ``|loss - previous| / |previous|`` from the previously reported
        loss is under a group's ``loss_plateau``, that frugal group's ``update_gap`` becomes
        ``min(update_gap_max, floor(update_gap * update_gap_growth))`` (never lower), from its
        next re-selection on. Groups with ``update_gap_growth`` 1 (the default) never change. The
        caller decides what a report is (AdaFRUGAL's validation loss); the optimizer counts its
        own steps, not reports. A loss that is not finite is ignored.
        """
        value = float(loss)
        if not math.isfinite(value):
            logger.debug("report_loss(%r) ignored: not finite", value)
            return
        previous, self._last_loss = self._last_loss, value
        if previous is None or previous == 0:
            return
        change = abs(value - previous) / abs(previous)
        for group in self.param_groups:
            if group["role"] != "frugal" or group["update_gap_growth"] == 1.0 or change >= group["loss_plateau"]:
                continue
            grown = min(group["update_gap_max"], math.floor(group["update_gap"] * group["update_gap_growth"]))
            if grown > group["update_gap"]:
                logger.debug("loss change %.3g under %g: T %d -> %d", change, group["loss_plateau"], group["update_gap"], grown)
                group["update_gap"] = grown

    # ------------------------------------------------------------------ step

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One optimizer step (see the class docstring for the algorithm)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if not self.state and self._is_state_initialisation():
            # torch.distributed.checkpoint (_init_optim_state) steps an optimizer that has no state
            # with zero grads and lr 0 to create it; FRUGAL's state_dict() needs no step, and taking
            # one would advance the schedule and the generator
            logger.debug("zero-lr step on zero grads with no state: state initialisation, nothing done")
            return loss
        self._global_step += 1
        for index, group in enumerate(self.param_groups):
            role = group["role"]
            if role == "frozen":
                continue
            due = role == "frugal" and self._advance_schedule(index, group)
            if role == "frugal" and group["mode"] == "blocks":
                if due:
                    self._reselect_blocks(index, group)
            elif role == "frugal":
                self._reselect_subspaces(index, group)
            if self._foreach:
                self._step_group_multi(index, group)
            else:
                self._step_group_single(index, group)
        return loss

    def _is_state_initialisation(self) -> bool:
        """Whether this step is torch's state initialisation: every lr 0, every grad None or 0."""
        groups = [group for group in self.param_groups if group["role"] != "frozen"]
        if any(float(group["lr"]) != 0.0 for group in groups):
            return False
        return all(p.grad is None or not local_part(p.grad).any() for group in groups for p in group["params"])

    def _advance_schedule(self, index: int, group: dict[str, Any]) -> bool:
        """Whether this step re-selects a frugal group's subspace; if so, start its next period.

        Due every ``update_gap`` steps from step 1 (T may grow between periods, see
        :meth:`report_loss`) and, in blocks mode under a rho schedule, also when the active count
        ``floor(rho_t n)`` changes. The period's density is rho at its first step."""
        schedule, step = self._schedules[index], self._global_step
        density = scheduled_density(group, step)
        due = step >= schedule["next"]
        if not due and group["mode"] == "blocks" and group["density_end"] is not None:
            due = blocks_count(group, density) != blocks_count(group, schedule["density"])
        if due:
            schedule.update(period=schedule["period"] + 1, next=step + group["update_gap"], density=density)
        return due

    def _plan(self, group: dict[str, Any], param: torch.Tensor, density: float | None = None) -> SubspacePlan:
        """The tensor's subspace at ``density`` (None: the group's, the start of a schedule and its peak)."""
        rho = float(group["density"] if density is None else density)
        return plan_subspace(group["mode"], tuple(param.shape), rho, group["rank"])

    def _reselect_blocks(self, index: int, group: dict[str, Any]) -> None:
        params = group["params"]
        schedule = self._schedules[index]
        k = blocks_count(group, schedule["density"])
        window = block_window(group["block_order"], len(params), k, schedule["period"], self._generator)
        for param in params:  # free every moment: blocks always resets
            self.state.pop(param, None)
        for i in window:
            self.state[params[i]] = _fresh_moments(group, local_part(params[i]))
        self._active_blocks[index] = window
        logger.debug("step %d: active blocks %s", self._global_step, _describe(group, window))

    def _reselect_subspaces(self, index: int, group: dict[str, Any]) -> None:
        """Choose a tensor's subspace at its first step with a grad in each period, its rank
        from the period's density.

        A sharded tensor's subspace is drawn on its global shape (the same on every rank: the
        generators agree); svd gathers the whole gradient once for it."""
        period, density = self._schedules[index]["period"], self._schedules[index]["density"]
        for param in group["params"]:
            if param.grad is None:
                continue
            state = self.state[param]
            if "period" in state and int(state["period"]) == period:
                continue
            plan = self._plan(group, param, density)
            state["period"] = torch.tensor(period, dtype=torch.int64)
            if plan.kind == "none":
                for key in (*ALL_MOMENT_KEYS, "step", "selection"):
                    state.pop(key, None)
                continue
            shard = self._shards.get(param)
            if shard is not None and shard.sharded:
                self._reselect_sharded(group, plan, param, state, shard)
                continue
            grad_matrix = local_part(param.grad).reshape(plan.rows, plan.cols)
            state["selection"] = draw_subspace(
                group["mode"], plan, grad_matrix, self._generator, exact=not group["reset_state"]
            )
            if group["reset_state"] or "step" not in state:
                state.update(_fresh_moments(group, local_part(param), plan.moment_shape))

    def _reselect_sharded(
        self, group: dict[str, Any], plan: SubspacePlan, param: torch.Tensor, state: dict[str, Any], shard: Shard0
    ) -> None:
        local, grad = local_part(param), param.grad
        if group["mode"] == "svd":
            drawn_from = grad.full_tensor().reshape(plan.rows, plan.cols)  # the one gather per period
        else:  # only the device and dtype are read
            drawn_from = local_part(grad).reshape(-1, plan.cols)
        selection = draw_subspace(group["mode"], plan, drawn_from, self._generator, exact=not group["reset_state"])
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
            state.update(_fresh_moments(group, local, tuple(shape)))

    def _whole_adam_indices(self, group: dict[str, Any], index: int) -> set[int]:
        """Positions in ``group`` that take plain AdamW on the whole tensor this step: every tensor
        of a stateful group, the active window of a blocks group, none otherwise."""
        if group["role"] == "stateful":
            return set(range(len(group["params"])))
        if group["role"] == "frugal" and group["mode"] == "blocks":
            return set(self._active_blocks[index])
        return set()

    def _rates(self, group: dict[str, Any]) -> tuple[float, float, float]:
        """(lr, lr of the state-full part, lr of the state-free part) for this group."""
        lr = float(group["lr"])
        if group["role"] == "state_free":
            return lr, lr, lr * group["state_free_lr_scale"]
        if group["role"] == "stateful":
            return lr, lr, 0.0
        lr_sf = lr * group["split_lr_scale"]
        return lr, lr_sf, lr_sf * group["state_free_lr_scale"]

    def _ensure_full_state(self, group: dict[str, Any], param: torch.Tensor, local: torch.Tensor) -> dict[str, torch.Tensor]:
        state = self.state[param]
        if "step" not in state:
            state.update(_fresh_moments(group, local))
        return state

    def _routed(self, group: dict[str, Any], index: int):
        """Per tensor with a grad: ``(position, local param, local grad, state, split)`` where
        ``split`` is None (whole tensor) or ``(plan, param matrix, grad matrix, selection,
        reduce)`` of its local rows; ``reduce`` is the shard layout when the low-rank gradient is
        a sum over ranks (a left projection of a sharded tensor), else None."""
        whole_adam = self._whole_adam_indices(group, index)
        shards = self._shards
        for i, param in enumerate(group["params"]):
            grad = param.grad
            if grad is None:
                continue
            shard = shards.get(param) if shards else None
            local = param
            if shard is not None:
                local, grad = local_part(param), local_part(grad)
            if i in whole_adam:
                yield i, local, grad, self._ensure_full_state(group, param, local), None, True
                continue
            state = self.state.get(param, {})
            if group["role"] == "state_free" or "selection" not in state:
                yield i, local, grad, state, None, False
                continue
            plan = self._plan(group, param, self._schedules[index]["density"])
            selection = state["selection"]
            reduce = None
            if shard is not None and shard.sharded:
                plan, selection, _ = shard.localize(plan, selection)
                reduce = shard if plan.kind == "left" else None
            split = (plan, local.view(plan.rows, plan.cols), grad.reshape(plan.rows, plan.cols), selection, reduce)
            yield i, local, grad, state, split, False

    def _step_group_single(self, index: int, group: dict[str, Any]) -> None:
        """Reference path: one tensor at a time, the formulas as written."""
        lr, lr_sf, lr_free = self._rates(group)
        weight_decay, rule = group["weight_decay"], group["state_free"]
        for _, param, grad, state, split, whole in self._routed(group, index):
            if weight_decay:
                param.mul_(1 - lr * weight_decay)
            if whole and group["stateful_rule"] == "adamw":
                beta1, beta2 = resolved_betas(group)
                _math.adamw_single(
                    param, grad, state["exp_avg"], state["exp_avg_sq"], state["step"],
                    lr=lr_sf, beta1=beta1, beta2=beta2, eps=group["eps"], weight_decay=0.0,
                )
                continue
            if whole:
                param.add_(self._stateful_delta(group, grad, state, lr_sf, single=True))
                continue
            if split is None:
                _math.apply_state_free_single(param, grad, rule, lr_free)
                continue
            plan, param_matrix, grad_matrix, selection, reduce = split
            low = _math.project_down(plan, grad_matrix, selection)
            moment_input = low if reduce is None else _columns_of(reduce.all_reduce(low), reduce)
            delta_low = self._stateful_delta(group, moment_input, state, lr_sf, single=True)
            if reduce is not None:
                delta_low = reduce.gather(delta_low, tuple(low.shape), dim=1)
            param_matrix.add_(_math.lift_up(plan, delta_low, selection))
            residual = grad_matrix - _math.lift_up(plan, low, selection)
            _math.apply_state_free_single(param_matrix, residual, rule, lr_free)

    def _stateful_delta(
        self, group: dict[str, Any], grad: torch.Tensor, state: dict[str, torch.Tensor], lr: float, *, single: bool
    ) -> torch.Tensor:
        """Advance one tensor's moments under the group's state-full rule; return its step.

        ``single``: the reference formulas (AdamW as torch's for-loop); else torch's fused
        AdamW kernel on zeros. Lion and SGD-momentum take the same ops on either path."""
        beta1, beta2 = resolved_betas(group)
        step = state["step"]
        if group["stateful_rule"] != "adamw":
            moment = state[MOMENT_KEYS[group["stateful_rule"]][0]]
            return _math.one_moment_delta(
                group["stateful_rule"], grad, moment, step, lr=lr, beta1=beta1, beta2=beta2,
                momentum=group["momentum"], nesterov=group["nesterov"],
            )
        adam = {"beta1": beta1, "beta2": beta2, "eps": group["eps"], "lr": lr}
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        if not single:
            return _math.adam_delta(grad, exp_avg, exp_avg_sq, step, fused=self._fused, **adam)
        denominator, step_size = _math.adam_moments_single(grad, exp_avg, exp_avg_sq, step, **adam)
        return torch.zeros_like(grad).addcdiv_(exp_avg, denominator, value=-step_size)

    def _step_group_multi(self, index: int, group: dict[str, Any]) -> None:
        """Fast path: torch's fused AdamW (foreach ops for Lion and SGD-momentum) for whole
        tensors, per tensor for the low-rank moments; the state-free rule, weight decay and the
        lift folded into one pass per tensor."""
        lr, lr_sf, lr_free = self._rates(group)
        beta1, beta2 = resolved_betas(group)
        eps, weight_decay, rule = group["eps"], group["weight_decay"], group["state_free"]
        stateful_rule = group["stateful_rule"]
        keys = MOMENT_KEYS[stateful_rule]
        adam = {"beta1": beta1, "beta2": beta2, "eps": eps, "fused": self._fused}
        decay = 1 - lr * weight_decay
        whole_tensors: tuple[list[torch.Tensor], ...] = tuple([] for _ in range(3 + len(keys)))  # p, g, moments, steps
        predecay: list[torch.Tensor] = []  # whole-Adam tensors the fused kernel cannot decay
        free_params: list[torch.Tensor] = []  # whole tensors taking the state-free rule
        free_grads: list[torch.Tensor] = []
        split_tensors: list[tuple[dict[str, torch.Tensor], tuple[Any, ...]]] = []
        for _, param, grad, state, split, whole in self._routed(group, index):
            if whole:
                for bucket, tensor in zip(
                    whole_tensors, (param, grad, *(state[key] for key in keys), state["step"]), strict=True
                ):
                    bucket.append(tensor)
                if lr_sf != lr or stateful_rule != "adamw":
                    predecay.append(param)
            elif split is None:
                free_params.append(param)
                free_grads.append(grad)
            else:
                split_tensors.append((state, split))

        # the fused kernel decays with its own lr, which is right only when that is the group's lr
        if weight_decay and predecay:
            torch._foreach_mul_(predecay, decay)
        if stateful_rule == "adamw":
            _math.adamw_multi(*whole_tensors, lr=lr_sf, weight_decay=weight_decay if lr_sf == lr else 0.0, **adam)
        else:
            _math.one_moment_multi_(
                stateful_rule, *whole_tensors, lr=lr_sf, beta1=beta1, beta2=beta2,
                momentum=group["momentum"], nesterov=group["nesterov"],
            )
        _math.state_free_update_(free_params, free_grads, rule=rule, lr_free=lr_free, decay=decay)
        # One tensor at a time, so that its gradient and parameter are still in cache when the
        # state-free pass and the lift read them right after the projection.
        for state, (plan, param_matrix, grad_matrix, selection, reduce) in split_tensors:
            low = _math.project_down(plan, grad_matrix, selection)
            moment_input = low if reduce is None else _columns_of(reduce.all_reduce(low), reduce)
            delta = self._stateful_delta(group, moment_input, state, lr_sf, single=False)
            if reduce is not None:
                delta = reduce.gather(delta, tuple(low.shape), dim=1)
            _math.split_update_(
                plan, param_matrix, grad_matrix, low, delta, selection, rule=rule, lr_free=lr_free, decay=decay
            )


def _fresh_moments(
    group: dict[str, Any], local: torch.Tensor, shape: tuple[int, ...] | None = None
) -> dict[str, torch.Tensor]:
    """Zero moments of the group's state-full rule (``shape``: a low-rank one; None: like ``local``)
    and a zero step counter: what a selection or a reset starts from."""
    if shape is None:
        moments = {key: torch.zeros_like(local, memory_format=torch.preserve_format) for key in MOMENT_KEYS[group["stateful_rule"]]}
    else:
        moments = {key: local.new_zeros(shape) for key in MOMENT_KEYS[group["stateful_rule"]]}
    return {**moments, "step": torch.zeros((), dtype=torch.float32, device=local.device)}


def _blocks_peak(group: dict[str, Any], sizes: list[int]) -> int:
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


def _columns_of(low: torch.Tensor, shard: Shard0) -> torch.Tensor:
    """This rank's columns of a left projection's low-rank gradient (its moments are by columns)."""
    start, stop = shard.bounds(low.shape[1])
    return low[:, start:stop].contiguous()


def _restore_state_value(key: str, value: Any, param: torch.Tensor) -> Any:
    if not isinstance(value, torch.Tensor):
        return value
    if key == "step":
        return value.to(device=param.device, dtype=torch.float32, copy=True)
    if key == "period":
        return value.to(device="cpu", dtype=torch.int64, copy=True)
    if value.is_floating_point():
        return value.to(device=param.device, dtype=param.dtype, copy=True)
    return value.to(device=param.device, copy=True)


def _describe(group: dict[str, Any], window: list[int]) -> list[str] | list[int]:
    names = group.get("names")
    return [names[i] for i in window] if names else window
