"""The FRUGAL optimizer (Zmushko et al., arXiv 2411.07837) as a ``torch.optim.Optimizer``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from itertools import chain
from typing import Any

import torch
from torch.optim import Optimizer

import frugal_search.optimizer._math as _math
from frugal_search.optimizer._settings import (
    DEFAULTS,
    GROUP_SETTINGS,
    SETTINGS,
    blocks_k,
    check_group_keys,
    validate_group,
)
from frugal_search.optimizer._subspace import (
    SubspacePlan,
    block_window,
    blocks_peak_bytes,
    blocks_window_bytes,
    draw_subspace,
    joint_peak_bytes,
    plan_subspace,
)

logger = logging.getLogger(__name__)

# Key of FRUGAL's optimizer-wide entries (global step, generator, active blocks) in state_dict().
STATE_DICT_KEY = "frugal"


class FRUGAL(Optimizer):
    r"""FRUGAL: AdamW in a small subspace of each split tensor, a state-free rule for the rest.

    Param groups have a ``role``:

    - ``stateful``: plain AdamW with full state (identical to ``torch.optim.AdamW``).
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
    3. State-full part: ``m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
       delta = -(lr_sf / (1-b1^t)) m / (sqrt(v) / sqrt(1-b2^t) + eps)``, lifted back with ``up``.
    4. State-free part of the residual ``G - up(down(G))``: ``signsgd`` ``-lr_free sign(r)``,
       ``sgd`` ``-lr_free r`` (plain, stateless: no momentum), ``none`` nothing.

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
    saved in ``state_dict()["frugal"]`` as tensors.

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
        betas: tuple[float, float] = DEFAULTS["betas"],
        eps: float = DEFAULTS["eps"],
        weight_decay: float = DEFAULTS["weight_decay"],
        mode: str = DEFAULTS["mode"],
        density: float = DEFAULTS["density"],
        rank: int | None = DEFAULTS["rank"],
        update_gap: int = DEFAULTS["update_gap"],
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
            "mode": mode,
            "density": density,
            "rank": rank,
            "update_gap": update_gap,
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
        super().add_param_group(group)
        self._active_blocks.append([])

    # ------------------------------------------------------------------ memory

    def peak_state_bytes(self, by_group: bool = False) -> int | list[int]:
        """Peak bytes of optimizer state over a full re-selection cycle, from shapes and settings.

        Counts what ``optimizer_state_bytes`` counts (moments, bases, index vectors; not the
        scalar step/period counters nor the generator state). Reads only shapes and dtypes, so it
        works for parameters on the ``meta`` device. blocks: the largest window of the cycle
        (random order: the k largest tensors, the worst draw). ``by_group`` gives each group's own
        peak; the total is the joint peak, which is lower when several blocks groups with fixed
        orders hold their largest windows at different steps (their schedules are enumerated up to
        ``_subspace.MAX_JOINT_SCHEDULE_POINTS`` re-selections; beyond that the sum of the peaks bounds it).
        """
        per_group: list[int] = []
        schedules: list[tuple[int, list[int]]] = []  # fixed-order blocks groups, combined below
        for group in self.param_groups:
            role = group["role"]
            params = group["params"]
            if role == "stateful":
                total = sum(2 * p.numel() * p.element_size() for p in params)
            elif role == "frugal" and group["mode"] == "blocks":
                sizes = [2 * p.numel() * p.element_size() for p in params]
                total = blocks_peak_bytes(group["block_order"], sizes, group["density"])
                if group["block_order"] != "random":
                    schedules.append(
                        (group["update_gap"], blocks_window_bytes(group["block_order"], sizes, group["density"]))
                    )
            elif role == "frugal":
                total = sum(self._plan(group, p).state_bytes(p.element_size()) for p in params)
            else:
                total = 0
            per_group.append(total)
        if by_group:
            return per_group
        joint = joint_peak_bytes(schedules) if len(schedules) > 1 else None
        if joint is None:
            return sum(per_group)
        return sum(per_group) - sum(max(window_bytes) for _, window_bytes in schedules) + joint

    # ------------------------------------------------------------------ state_dict

    def state_dict(self) -> dict[str, Any]:
        """torch's state_dict plus ``"frugal"``: global step, generator state, active blocks."""
        state = super().state_dict()
        state[STATE_DICT_KEY] = {
            "global_step": torch.tensor(self._global_step, dtype=torch.int64),
            "generator_state": self._generator.get_state(),
            "active_blocks": [torch.tensor(window, dtype=torch.int64) for window in self._active_blocks],
        }
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state_dict from ``state_dict()`` (also after torch.load(weights_only=True)).

        Tensors are copied; floating state takes the parameter's dtype and device, index tensors
        keep int64, ``step`` is float32 on the parameter's device and ``period`` stays on the CPU.
        """
        state_dict = dict(state_dict)
        extra = state_dict.pop(STATE_DICT_KEY, None)
        saved_state = state_dict.get("state", {})
        # torch checks and restores the groups; the per-tensor state is restored below with dtypes
        # kept (torch would cast integer index tensors to the parameter's float dtype).
        super().load_state_dict({**state_dict, "state": {}})
        saved_ids = chain.from_iterable(g["params"] for g in state_dict["param_groups"])
        params = chain.from_iterable(g["params"] for g in self.param_groups)
        for saved_id, param in zip(saved_ids, params, strict=True):
            if saved_id in saved_state:
                self.state[param] = {
                    key: _restore_state_value(key, value, param) for key, value in saved_state[saved_id].items()
                }
        if extra is not None:
            self._global_step = int(extra["global_step"])
            self._generator.set_state(extra["generator_state"].to(device="cpu", dtype=torch.uint8))
            self._active_blocks = [[int(i) for i in window.tolist()] for window in extra["active_blocks"]]
        else:
            logger.warning("state_dict has no %r entry: global step and generator restart", STATE_DICT_KEY)

    # ------------------------------------------------------------------ step

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One optimizer step (see the class docstring for the algorithm)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._global_step += 1
        for index, group in enumerate(self.param_groups):
            role = group["role"]
            if role == "frozen":
                continue
            if role == "frugal" and group["mode"] == "blocks":
                self._reselect_blocks(index, group)
            elif role == "frugal":
                self._reselect_subspaces(group)
            if self._foreach:
                self._step_group_multi(index, group)
            else:
                self._step_group_single(index, group)
        return loss

    def _period(self, group: dict[str, Any]) -> int:
        return (self._global_step - 1) // group["update_gap"]

    def _plan(self, group: dict[str, Any], param: torch.Tensor) -> SubspacePlan:
        return plan_subspace(group["mode"], tuple(param.shape), float(group["density"]), group["rank"])

    def _reselect_blocks(self, index: int, group: dict[str, Any]) -> None:
        if (self._global_step - 1) % group["update_gap"]:
            return
        params = group["params"]
        k = blocks_k(group["density"], len(params))
        window = block_window(group["block_order"], len(params), k, self._period(group), self._generator)
        for param in params:  # free every moment: blocks always resets
            self.state.pop(param, None)
        for i in window:
            param = params[i]
            self.state[param] = {
                "exp_avg": torch.zeros_like(param, memory_format=torch.preserve_format),
                "exp_avg_sq": torch.zeros_like(param, memory_format=torch.preserve_format),
                "step": torch.zeros((), dtype=torch.float32, device=param.device),
            }
        self._active_blocks[index] = window
        logger.debug("step %d: active blocks %s", self._global_step, _describe(group, window))

    def _reselect_subspaces(self, group: dict[str, Any]) -> None:
        """Choose a tensor's subspace at its first step with a grad in each period."""
        period = self._period(group)
        for param in group["params"]:
            if param.grad is None:
                continue
            state = self.state[param]
            if "period" in state and int(state["period"]) == period:
                continue
            plan = self._plan(group, param)
            state["period"] = torch.tensor(period, dtype=torch.int64)
            if plan.kind == "none":
                for key in ("exp_avg", "exp_avg_sq", "step", "selection"):
                    state.pop(key, None)
                continue
            grad_matrix = param.grad.reshape(plan.rows, plan.cols)
            state["selection"] = draw_subspace(group["mode"], plan, grad_matrix, self._generator)
            if group["reset_state"] or "exp_avg" not in state:
                state["exp_avg"] = param.new_zeros(plan.moment_shape)
                state["exp_avg_sq"] = param.new_zeros(plan.moment_shape)
                state["step"] = torch.zeros((), dtype=torch.float32, device=param.device)

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

    def _ensure_full_state(self, param: torch.Tensor) -> dict[str, torch.Tensor]:
        state = self.state[param]
        if "exp_avg" not in state:
            state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            state["step"] = torch.zeros((), dtype=torch.float32, device=param.device)
        return state

    def _step_group_single(self, index: int, group: dict[str, Any]) -> None:
        """Reference path: one tensor at a time, the formulas as written."""
        lr, lr_sf, lr_free = self._rates(group)
        beta1, beta2 = group["betas"]
        eps, weight_decay, role, rule = group["eps"], group["weight_decay"], group["role"], group["state_free"]
        adam = {"beta1": beta1, "beta2": beta2, "eps": eps}
        whole_adam = self._whole_adam_indices(group, index)
        for i, param in enumerate(group["params"]):
            grad = param.grad
            if grad is None:
                continue
            if i in whole_adam:
                state = self._ensure_full_state(param)
                if weight_decay:
                    param.mul_(1 - lr * weight_decay)
                _math.adamw_single(
                    param, grad, state["exp_avg"], state["exp_avg_sq"], state["step"], lr=lr_sf, weight_decay=0.0, **adam
                )
                continue
            if weight_decay:
                param.mul_(1 - lr * weight_decay)
            state = self.state.get(param, {})
            if role == "state_free" or "selection" not in state:
                _math.apply_state_free_single(param, grad, rule, lr_free)
                continue
            plan = self._plan(group, param)
            grad_matrix = grad.reshape(plan.rows, plan.cols)
            param_matrix = param.view(plan.rows, plan.cols)
            selection = state["selection"]
            low = _math.project_down(plan, grad_matrix, selection)
            denominator, step_size = _math.adam_moments_single(
                low, state["exp_avg"], state["exp_avg_sq"], state["step"], lr=lr_sf, **adam
            )
            delta_low = torch.zeros_like(low).addcdiv_(state["exp_avg"], denominator, value=-step_size)
            param_matrix.add_(_math.lift_up(plan, delta_low, selection))
            residual = grad_matrix - _math.lift_up(plan, low, selection)
            _math.apply_state_free_single(param_matrix, residual, rule, lr_free)

    def _step_group_multi(self, index: int, group: dict[str, Any]) -> None:
        """Fast path: torch's fused AdamW for whole tensors and for the low-rank moments; the
        state-free rule, weight decay and the lift folded into one pass per tensor."""
        lr, lr_sf, lr_free = self._rates(group)
        beta1, beta2 = group["betas"]
        eps, weight_decay, role, rule = group["eps"], group["weight_decay"], group["role"], group["state_free"]
        adam = {"beta1": beta1, "beta2": beta2, "eps": eps, "fused": self._fused}
        decay = 1 - lr * weight_decay
        whole_adam = self._whole_adam_indices(group, index)
        whole: tuple[list[torch.Tensor], ...] = ([], [], [], [], [])  # params, grads, m, v, steps
        predecay: list[torch.Tensor] = []  # whole-Adam tensors the fused kernel cannot decay
        free_params: list[torch.Tensor] = []  # whole tensors taking the state-free rule
        free_grads: list[torch.Tensor] = []
        split: list[tuple[torch.Tensor, SubspacePlan, dict[str, torch.Tensor], torch.Tensor]] = []
        for i, param in enumerate(group["params"]):
            grad = param.grad
            if grad is None:
                continue
            if i in whole_adam:
                state = self._ensure_full_state(param)
                for bucket, tensor in zip(
                    whole, (param, grad, state["exp_avg"], state["exp_avg_sq"], state["step"]), strict=True
                ):
                    bucket.append(tensor)
                if lr_sf != lr:
                    predecay.append(param)
                continue
            state = self.state.get(param, {})
            if role == "state_free" or "selection" not in state:
                free_params.append(param)
                free_grads.append(grad)
                continue
            plan = self._plan(group, param)
            grad_matrix = grad.reshape(plan.rows, plan.cols)
            split.append((param, plan, state, grad_matrix))

        # the fused kernel decays with its own lr, which is right only when that is the group's lr
        if weight_decay and predecay:
            torch._foreach_mul_(predecay, decay)
        _math.adamw_multi(*whole, lr=lr_sf, weight_decay=weight_decay if lr_sf == lr else 0.0, **adam)
        _math.state_free_update_(free_params, free_grads, rule=rule, lr_free=lr_free, decay=decay)
        # One tensor at a time, so that its gradient and parameter are still in cache when the
        # state-free pass and the lift read them right after the projection.
        for param, plan, state, grad_matrix in split:
            low = _math.project_down(plan, grad_matrix, state["selection"])
            delta = _math.adam_delta(
                low, state["exp_avg"], state["exp_avg_sq"], state["step"], lr=lr_sf, **adam
            )
            _math.split_update_(
                plan, param.view(plan.rows, plan.cols), grad_matrix, low, delta, state["selection"],
                rule=rule, lr_free=lr_free, decay=decay,
            )


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
