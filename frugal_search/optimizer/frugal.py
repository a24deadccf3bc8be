"""The FRUGAL optimizer (Zmushko et al., arXiv 2411.07837) as a ``torch.optim.Optimizer``."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

import frugal_search.optimizer._math as _math
from frugal_search.optimizer._checkpoint import pack_state_dict, restore_state, split_state_dict
from frugal_search.optimizer._selection import advance_schedule, fresh_moments, grow_update_gaps
from frugal_search.optimizer._selection import reselect_blocks, reselect_subspaces
from frugal_search.optimizer._settings import (
    DEFAULTS,
    GROUP_SETTINGS,
    MOMENT_KEYS,
    SETTINGS,
    check_group_keys,
    resolved_betas,
    validate_group,
)
from frugal_search.optimizer._sharding import Shard0, checked_shards, local_part
from frugal_search.optimizer._storage import (
    keep_adam_bound_,
    rounding_seed,
    storage_of,
    store_moments_,
    working_moments,
)
from frugal_search.optimizer._subspace import group_plan
from frugal_search.optimizer.memory import planned_peak_state_bytes

logger = logging.getLogger(__name__)


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

    Storage of the moments (``state_dtype``, for every tensor with state: stateful ones, active
    blocks, low-rank moments; every state-full rule; see ``_storage``): ``fp32`` keeps them in the
    parameter's dtype and updates them in place (today's FRUGAL, bit for bit). ``bf16`` and
    ``int8`` read each moment into fp32, run the rule above there (the step uses these fp32
    moments) and store it back rounded at random, unbiased:

    - ``bf16``: each moment in bfloat16 (rounding to nearest would freeze AdamW's second moment,
      whose 0.1% steps are under bf16's resolution).
    - ``int8``: blocks of 256 values of the flattened moment, one fp32 scale per block (its
      largest magnitude, exact) and one byte per value: ``m = scale sign(q) (|q|/127)^4`` (int8),
      ``v = scale (q/255)^8`` (uint8: ``sqrt(v)`` on the same fourth-power map), a map relative
      over decades; a positive ``v`` never reads back as 0, and before AdamW's update ``v`` is
      raised to ``m^2 / C^2`` where quantization broke the bound ``m^2 <= C^2 v`` of true moments
      (``C^2 = (1-b1)^2 / ((1-b2)(1 - b1^2/b2))``), so an int8 step is never larger than the
      largest fp32 step; ``v`` rounds at random in its logarithm, the others in value.

    The random bits are drawn from the seed, the global step and the tensor's place, so runs and
    resumes are deterministic.

    ``second_moment="factored"`` (AdamW only; a ValueError for Lion and SGD-momentum) keeps the
    second moment of every 2-D moment (a matrix's whole-tensor or low-rank moments; tensors of more
    dimensions as their (m, n) view) as Adafactor's row and column statistics in fp32 (Shazeer and
    Stern 2018): ``r = b2 r + (1-b2) rowsum(g^2)``, ``c = b2 c + (1-b2) colsum(g^2)``, ``v = r c^T /
    sum(r)`` (raised to ``m^2 / C^2`` where below), then the AdamW step above: m + n values instead
    of m n. 1-D moments (norms, biases, randk's) keep the full ``v``; ``exp_avg`` takes
    ``state_dtype``. Under FSDP2 only ``fp32`` with ``full`` runs.

    State: moments in the parameter's dtype (like ``torch.optim.AdamW``) or their storage, a float32 scalar
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
        state_dtype: str = DEFAULTS["state_dtype"],
        second_moment: str = DEFAULTS["second_moment"],
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
            "state_dtype": state_dtype,
            "second_moment": second_moment,
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
        self._shards.update(checked_shards(group))
        super().add_param_group(group)
        self._active_blocks.append([])
        self._schedules.append({"period": -1, "next": 1, "density": float(group["density"])})

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

        Sharded (FSDP2) parameters count this rank's shard (see ``memory._local_plan_bytes``). For rows
        and randk, whose chosen rows / entries fall unevenly on the ranks, that is the even share
        of the count (a uniform draw's expectation), not a bound: on 2 ranks the tests saw one
        rank hold 2.6% more than it.
        ``world_size=N`` counts rank 0 (the largest shard) as if every parameter of two or more
        dimensions, and every 1-D one outside a per-tensor mode, were sharded by fully_shard on N
        ranks: the per-GPU figure before any process group exists.
        """
        return planned_peak_state_bytes(self.param_groups, self._shards, by_group=by_group, world_size=world_size)

    # ------------------------------------------------------------------ state_dict

    def state_dict(self) -> dict[str, Any]:
        """torch's layout, with every tensor's state in a shape fixed by the settings alone.

        So a fresh optimizer's state_dict is a template that ``torch.distributed.checkpoint``
        (``get_optimizer_state_dict`` / ``dcp.load`` / ``set_optimizer_state_dict``) loads into:
        every parameter has an entry (empty when it keeps no state); a per-tensor mode's state is
        there before the first selection (zeros, ``period`` -1); a blocks group's moments are in its
        ``param_groups`` entry under ``GROUP_STATE_KEY`` as one flat buffer per state tensor of the
        storage (two for AdamW's full-precision moments; codes, scales, row and column statistics
        otherwise) of the group's peak window (with the window and the Adam steps); the global step
        and the generator state (and, for storage other than fp32 with full, the seed of the random
        rounding) are in every group's entry. State of a sharded (DTensor) parameter is a DTensor sharded like
        it: the moments by rows (a left projection's by columns; rows/randk re-chunked evenly),
        bases and indices whole. Blocks buffers are per rank, so resume on the same world size.
        """
        return pack_state_dict(self, super().state_dict())

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state_dict from ``state_dict()`` (also after torch.load(weights_only=True), and
        what ``set_optimizer_state_dict`` passes after ``dcp.load``; earlier versions' too).

        Tensors are copied onto the parameter's device; the moments take their storage's dtype
        (the parameter's at fp32, bf16, int8 / uint8 codes, fp32 scales and statistics), other
        floating state the parameter's, index tensors keep int64, ``step`` is float32 and
        ``period`` stays on the CPU.
        """
        saved = split_state_dict(state_dict)
        super().load_state_dict(saved.torch_part)  # torch checks and restores the groups
        restore_state(self, saved)

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
        grow_update_gaps(self.param_groups, change=abs(value - previous) / abs(previous))

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
            schedule = self._schedules[index]
            due = role == "frugal" and advance_schedule(group, schedule, self._global_step)
            if role == "frugal" and group["mode"] == "blocks":
                if due:
                    window = reselect_blocks(group, schedule, self.state, self._generator)
                    self._active_blocks[index] = window
                    logger.debug("step %d: active blocks %s", self._global_step, _describe(group, window))
            elif role == "frugal":
                reselect_subspaces(group, schedule, self.state, self._shards, self._generator)
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
            state.update(fresh_moments(group, local))
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
            plan = group_plan(group, param, self._schedules[index]["density"])
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
        in_place_adamw = group["stateful_rule"] == "adamw" and storage_of(group).plain
        first_slot = self._first_slot(index)
        for i, param, grad, state, split, whole in self._routed(group, index):
            slot = first_slot + i
            if weight_decay:
                param.mul_(1 - lr * weight_decay)
            if whole and in_place_adamw:
                beta1, beta2 = resolved_betas(group)
                _math.adamw_single(
                    param, grad, state["exp_avg"], state["exp_avg_sq"], state["step"],
                    lr=lr_sf, beta1=beta1, beta2=beta2, eps=group["eps"], weight_decay=0.0,
                )
                continue
            if whole:
                param.add_(self._stateful_delta(group, grad, state, lr_sf, single=True, slot=slot))
                continue
            if split is None:
                _math.apply_state_free_single(param, grad, rule, lr_free)
                continue
            plan, param_matrix, grad_matrix, selection, reduce = split
            low = _math.project_down(plan, grad_matrix, selection)
            moment_input = low if reduce is None else reduce.piece(reduce.all_reduce(low), dim=1).contiguous()
            delta_low = self._stateful_delta(group, moment_input, state, lr_sf, single=True, slot=slot)
            if reduce is not None:
                delta_low = reduce.gather(delta_low, tuple(low.shape), dim=1)
            param_matrix.add_(_math.lift_up(plan, delta_low, selection))
            residual = grad_matrix - _math.lift_up(plan, low, selection)
            _math.apply_state_free_single(param_matrix, residual, rule, lr_free)

    def _first_slot(self, index: int) -> int:
        """Place of group ``index``'s first tensor among every group's tensors (a stable name for
        each tensor's rounding stream, see ``_storage.rounding_seed``)."""
        return sum(len(group["params"]) for group in self.param_groups[:index])

    def _stateful_delta(
        self, group: dict[str, Any], grad: torch.Tensor, state: dict[str, torch.Tensor], lr: float, *, single: bool,
        slot: int,
    ) -> torch.Tensor:
        """Advance one tensor's moments under the group's state-full rule; return its step.

        Moments stored at full precision (and factored statistics) are updated in place; others are
        read into fp32 (or the gradient's dtype if wider), updated there and stored back
        (``_storage``), with the rounding stream of tensor ``slot`` at this global step."""
        storage = storage_of(group)
        if storage.plain:
            return self._moment_delta(group, grad, state, state["step"], lr, single=single)
        # full precision keeps today's arithmetic in the parameter's dtype; lower precision updates in fp32
        work_dtype = grad.dtype if storage.state_dtype == "fp32" else torch.promote_types(grad.dtype, torch.float32)
        moments = working_moments(storage, state, work_dtype)
        if storage.state_dtype == "int8" and "exp_avg_sq" in moments:
            keep_adam_bound_(moments, *resolved_betas(group))
        delta = self._moment_delta(group, grad.to(work_dtype), moments, state["step"], lr, single=single)
        store_moments_(storage, state, moments, rounding_seed(self._seed, self._global_step, slot))
        return delta.to(grad.dtype)

    def _moment_delta(
        self, group: dict[str, Any], grad: torch.Tensor, moments: dict[str, torch.Tensor], step: torch.Tensor,
        lr: float, *, single: bool,
    ) -> torch.Tensor:
        """The state-full rule's step from ``moments`` (advanced in place, with the counter ``step``).

        ``single``: the reference formulas (AdamW as torch's for-loop); else torch's fused
        AdamW kernel on zeros. Lion and SGD-momentum take the same ops on either path."""
        beta1, beta2 = resolved_betas(group)
        if group["stateful_rule"] != "adamw":
            moment = moments[MOMENT_KEYS[group["stateful_rule"]][0]]
            return _math.one_moment_delta(
                group["stateful_rule"], grad, moment, step, lr=lr, beta1=beta1, beta2=beta2,
                momentum=group["momentum"], nesterov=group["nesterov"],
            )
        adam = {"beta1": beta1, "beta2": beta2, "eps": group["eps"], "lr": lr}
        if "exp_avg_sq_row" in moments:  # factored: the same arithmetic on either path
            return _math.factored_adam_delta(
                grad, moments["exp_avg"], moments["exp_avg_sq_row"], moments["exp_avg_sq_col"], step, **adam
            )
        exp_avg, exp_avg_sq = moments["exp_avg"], moments["exp_avg_sq"]
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
        plain = storage_of(group).plain
        first_slot = self._first_slot(index)
        adam = {"beta1": beta1, "beta2": beta2, "eps": eps, "fused": self._fused}
        decay = 1 - lr * weight_decay
        whole_tensors: tuple[list[torch.Tensor], ...] = tuple([] for _ in range(3 + len(keys)))  # p, g, moments, steps
        predecay: list[torch.Tensor] = []  # whole-Adam tensors the fused kernel cannot decay
        free_params: list[torch.Tensor] = []  # whole tensors taking the state-free rule
        free_grads: list[torch.Tensor] = []
        stored_whole: list[tuple[int, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]] = []  # not in place
        split_tensors: list[tuple[int, dict[str, torch.Tensor], tuple[Any, ...]]] = []
        for i, param, grad, state, split, whole in self._routed(group, index):
            if whole and not plain:
                stored_whole.append((first_slot + i, param, grad, state))
            elif whole:
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
                split_tensors.append((first_slot + i, state, split))

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
        for slot, param, grad, state in stored_whole:
            if weight_decay:
                param.mul_(decay)
            param.add_(self._stateful_delta(group, grad, state, lr_sf, single=False, slot=slot))
        _math.state_free_update_(free_params, free_grads, rule=rule, lr_free=lr_free, decay=decay)
        # One tensor at a time, so that its gradient and parameter are still in cache when the
        # state-free pass and the lift read them right after the projection.
        for slot, state, (plan, param_matrix, grad_matrix, selection, reduce) in split_tensors:
            low = _math.project_down(plan, grad_matrix, selection)
            moment_input = low if reduce is None else reduce.piece(reduce.all_reduce(low), dim=1).contiguous()
            delta = self._stateful_delta(group, moment_input, state, lr_sf, single=False, slot=slot)
            if reduce is not None:
                delta = reduce.gather(delta, tuple(low.shape), dim=1)
            _math.split_update_(
                plan, param_matrix, grad_matrix, low, delta, selection, rule=rule, lr_free=lr_free, decay=decay
            )


def _describe(group: dict[str, Any], window: list[int]) -> list[str] | list[int]:
    names = group.get("names")
    return [names[i] for i in window] if names else window
