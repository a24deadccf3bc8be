"""How each competitor optimizer is built over a model, and the state it holds, planned from shapes.

Each competitor of :mod:`frugal_search.proxy.competitors` has a ``build_*(module, model, lr,
settings)`` (``module``: its imported package) and a ``plan_*(module, model, settings)`` that
counts the bytes of its state after the first step from shapes and dtypes alone, so it works on a
``meta`` model; only Adam-mini's plan reads its package (its partition by parameter name).
Here too: :class:`MuonWithAdamW`, Muon and AdamW stepped as one optimizer.
"""

from __future__ import annotations

import logging
import math
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from frugal_search.partition import introspect

logger = logging.getLogger(__name__)

Settings = Mapping[str, Any]  # a CompetitorSpec's settings, every key present
Named = list[tuple[str, torch.Tensor]]

HIDDEN_KINDS = ("attention", "mlp")
"""Kinds (``frugal_search.partition.introspect``) whose 2-D weights APOLLO projects and Muon orthogonalises."""

# bitsandbytes' block size of its 8-bit moments (``Optimizer2State.init_state``: one float32
# absmax per 256 values) and the length of its two code tables (256 float32 values each).
BNB_BLOCK_SIZE = 256
BNB_QMAP_LENGTH = 256


# ---- Muon with AdamW, as one optimizer ----------------------------------------------------------


class MuonWithAdamW(torch.optim.Optimizer):
    """Muon on hidden matrices and AdamW on every other parameter, stepped as one optimizer.

    Muon (Keller Jordan, 2024; ``torch.optim.Muon``) keeps one momentum buffer ``B`` per matrix
    and updates ``W <- W (1 - lr wd) - lr_adj NS5(g + mu B)`` (Nesterov), where ``NS5`` is five
    Newton-Schulz iterations that push the update towards the nearest semi-orthogonal matrix and
    ``lr_adj = lr sqrt(max(1, rows / cols))`` (``adjust_lr_fn="original"``). It is meant for the
    hidden weights only: embeddings, the head, norms and biases take AdamW (``torch.optim.AdamW``,
    two moments each) at their own lr.

    The two inner optimizers share this optimizer's ``state`` and its ``param_groups`` (Muon's
    groups first), so an lr scheduler, ``zero_grad``, ``state_dict`` / ``load_state_dict`` and the
    state count see one optimizer. ``defaults["lr"]`` is Muon's lr: a new peak lr for the whole
    optimizer keeps AdamW's lr at the same ratio to it.
    """

    def __init__(
        self,
        muon_params: Iterable[torch.Tensor],
        adamw_params: Iterable[torch.Tensor],
        *,
        lr: float = 0.02,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        weight_decay: float = 0.01,
        adjust_lr_fn: str = "original",
        adamw_lr: float = 3e-4,
        adamw_betas: tuple[float, float] = (0.9, 0.95),
        adamw_eps: float = 1e-10,
        adamw_weight_decay: float = 0.01,
    ) -> None:
        muon_params, adamw_params = list(muon_params), list(adamw_params)
        if not muon_params and not adamw_params:
            raise ValueError("MuonWithAdamW got no parameters; give the model's trainable parameters")
        for param in muon_params:
            if param.dim() != 2:
                raise ValueError(
                    f"Muon updates 2-D matrices, got a parameter of shape {tuple(param.shape)}; give it to AdamW"
                )
        self._muon = (
            torch.optim.Muon(
                muon_params, lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps,
                weight_decay=weight_decay, adjust_lr_fn=adjust_lr_fn,
            )
            if muon_params
            else None
        )
        self._adamw = (
            torch.optim.AdamW(
                adamw_params, lr=adamw_lr, betas=adamw_betas, eps=adamw_eps, weight_decay=adamw_weight_decay
            )
            if adamw_params
            else None
        )
        super().__init__([*muon_params, *adamw_params], {"lr": lr})
        # one list of groups, Muon's first; the parts read slices of it and this optimizer's state
        self._group_counts = [len(part.param_groups) for part in self._parts]
        self.param_groups = [group for part in self._parts for group in part.param_groups]
        self._share_groups_and_state()

    @property
    def _parts(self) -> list[torch.optim.Optimizer]:
        return [part for part in (self._muon, self._adamw) if part is not None]

    def _share_groups_and_state(self) -> None:
        """Point the inner optimizers at this optimizer's groups and state (after init and every load)."""
        start = 0
        for part, count in zip(self._parts, self._group_counts):
            part.param_groups = self.param_groups[start : start + count]
            part.state = self.state
            start += count

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a ``state_dict()`` of a ``MuonWithAdamW`` over the same parameters."""
        super().load_state_dict(state_dict)  # new group dicts and a new state: share them again
        self._share_groups_and_state()

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One Muon step on the matrices and one AdamW step on the rest."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for part in self._parts:
            part.step()
        return loss


# ---- which parameters take which rule ---------------------------------------------------------


def split_hidden(model: nn.Module) -> tuple[Named, Named]:
    """The trainable 2-D attention / mlp weights of the blocks, and every other trainable parameter."""
    hidden, rest = [], []
    for info in introspect(model):
        if not info.param.requires_grad:
            continue
        is_hidden = info.kind in HIDDEN_KINDS and info.param.dim() == 2
        (hidden if is_hidden else rest).append((info.name, info.param))
    if not hidden:
        logger.warning(
            "%s has no 2-D attention or mlp weights inside blocks: the competitor treats every parameter "
            "as the rest (AdamW or Adam)",
            type(model).__name__,
        )
    return hidden, rest


def _params(named: Named) -> list[torch.Tensor]:
    return [param for _, param in named]


def _adam_arguments(settings: Settings) -> dict[str, Any]:
    """The Adam moment settings every Adam-based competitor takes by these names."""
    return {"betas": settings["betas"], "eps": settings["eps"], "weight_decay": settings["weight_decay"]}


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of ``tensors`` at their dtypes."""
    return sum(t.numel() * t.element_size() for t in tensors)


# ---- APOLLO and APOLLO-Mini -------------------------------------------------------------------


def _apollo_rank(hidden: Named, settings: Settings) -> int:
    """The projection rank: the setting, or a quarter of the smallest matrix side (the authors'
    "1/4 of the original dim": rank 128 on LLaMA-60M's width 512)."""
    if settings["rank"] is not None:
        return settings["rank"]
    return max(1, min((min(p.shape) for _, p in hidden), default=4) // 4)


def build_apollo(
    apollo_torch: types.ModuleType, model: nn.Module, lr: float, settings: Settings
) -> torch.optim.Optimizer:
    """``APOLLOAdamW`` with the authors' two groups: the hidden matrices (projected), the rest (Adam)."""
    hidden, rest = split_hidden(model)
    rank = _apollo_rank(hidden, settings)
    groups = []
    if rest:
        groups.append({"params": _params(rest)})
    if hidden:
        groups.append(
            {
                "params": _params(hidden),
                "rank": rank,
                "proj": settings["proj"],
                "proj_type": settings["proj_type"],
                "scale_type": settings["scale_type"],
                "scale": settings["scale"],
                "update_proj_gap": settings["update_proj_gap"],
            }
        )
    logger.debug(
        "APOLLO (%s-wise scaling) on %d matrices at rank %d; Adam on %d other tensors",
        settings["scale_type"], len(hidden), rank, len(rest),
    )
    return apollo_torch.APOLLOAdamW(
        groups,
        lr=lr,
        **_adam_arguments(settings),
        scale_front=settings["scale_front"],
        disable_nl=settings["disable_nl"],
    )


def plan_apollo(module: types.ModuleType | None, model: nn.Module, settings: Settings) -> int:
    """Adam's moments of each projected gradient, the projection matrix and the norm-growth
    limiter's last norm per matrix; Adam's two moments of every other parameter."""
    hidden, rest = split_hidden(model)
    rank = _apollo_rank(hidden, settings)
    total = sum(2 * p.numel() * p.element_size() for _, p in rest)
    for _, param in hidden:
        rows, cols = param.shape
        size = param.element_size()
        # "std": a tall matrix is projected on the right (moments rows x r, projection r x cols),
        # a wide one on the left (moments r x cols, projection rows x r); the other types fix the side
        sides = {"std": rows >= cols, "reverse_std": rows < cols, "right": True, "left": False}
        right = sides[settings["proj_type"]]
        moments = rows * rank if right else rank * cols
        projection = rank * cols if right else rows * rank
        limiter = 0 if settings["disable_nl"] else 1
        total += (2 * moments + projection + limiter) * size
    return total


# ---- Adam-mini --------------------------------------------------------------------------------


def _attention_shape(model: nn.Module, settings: Settings) -> tuple[int, int, int]:
    """Adam-mini's ``dim``, ``n_heads``, ``n_kv_heads``: the settings, else the model's config."""
    config = getattr(model, "config", None)
    dim = settings["dim"] if settings["dim"] is not None else getattr(config, "hidden_size", None)
    heads = settings["n_heads"] if settings["n_heads"] is not None else getattr(config, "num_attention_heads", None)
    if dim is None or heads is None:
        raise ValueError(
            f"adam-mini needs the model's width and head count; {type(model).__name__} has no config with "
            "hidden_size and num_attention_heads: give the settings dim and n_heads"
        )
    kv_heads = settings["n_kv_heads"]
    if kv_heads is None:
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
    return int(dim), int(heads), int(kv_heads)


def build_adam_mini(
    adam_mini: types.ModuleType, model: nn.Module, lr: float, settings: Settings
) -> torch.optim.Optimizer:
    """``Adam_mini`` over the trainable named parameters, told the model's width and heads."""
    dim, heads, kv_heads = _attention_shape(model, settings)
    optimizer = adam_mini.Adam_mini(
        named_parameters=[(n, p) for n, p in model.named_parameters() if p.requires_grad],
        lr=lr,
        **_adam_arguments(settings),
        dim=dim,
        n_heads=heads,
        n_kv_heads=kv_heads,
        verbose=False,
    )
    # Adam-mini takes its world size from the number of visible GPUs, and with more than one it
    # all-gathers without asking whether a process group exists; a proxy run is one process.
    optimizer.world_size = 1
    return optimizer


def _adam_mini_second_moment(optimizer: torch.optim.Optimizer, name: str, param: torch.Tensor) -> int:
    """Elements of Adam-mini's second moment of one parameter, by its own name rules in its step's order."""

    def named(keys: Iterable[str]) -> bool:
        return any(key in name for key in keys)

    if named(optimizer.adam_block_names):  # biases: Adam's full second moment
        return param.numel()
    if named(optimizer.wqk_names):  # queries and keys: one per head
        return param.numel() // optimizer.head_numel
    neuron_names = (
        *optimizer.embd_names, *optimizer.output_names, *optimizer.wv_names, *optimizer.mlp_names,
        *optimizer.attn_proj_names,
    )
    if named(neuron_names):  # one per output neuron (per token for embeddings and the head)
        return param.shape[0]
    return 1  # norms and anything else: one for the whole tensor


def plan_adam_mini(adam_mini: types.ModuleType | None, model: nn.Module, settings: Settings) -> int:
    """A full first moment of every parameter; the second moment as Adam-mini's partition gives it."""
    dim, heads, kv_heads = _attention_shape(model, settings)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    # built only to read its name rules and head size (no state is created before a step)
    rules = adam_mini.Adam_mini(named_parameters=named, dim=dim, n_heads=heads, n_kv_heads=kv_heads, verbose=False)
    total = 0
    for group in rules.param_groups:
        for param in group["params"]:
            second = _adam_mini_second_moment(rules, group["name"], param)
            total += (param.numel() + second) * param.element_size()
    return total


# ---- Muon -------------------------------------------------------------------------------------


def build_muon(
    module: types.ModuleType, model: nn.Module, lr: float, settings: Settings
) -> torch.optim.Optimizer:
    """:class:`MuonWithAdamW` (``module`` is ``torch.optim``); AdamW's lr is ``lr * adamw_lr_ratio``."""
    hidden, rest = split_hidden(model)
    logger.debug("Muon on %d matrices; AdamW on %d other tensors", len(hidden), len(rest))
    return MuonWithAdamW(
        _params(hidden),
        _params(rest),
        lr=lr,
        momentum=settings["momentum"],
        nesterov=settings["nesterov"],
        ns_steps=settings["ns_steps"],
        weight_decay=settings["weight_decay"],
        adjust_lr_fn=settings["adjust_lr_fn"],
        adamw_lr=lr * settings["adamw_lr_ratio"],
        adamw_betas=settings["adamw_betas"],
        adamw_eps=settings["adamw_eps"],
        adamw_weight_decay=settings["adamw_weight_decay"],
    )


def plan_muon(module: types.ModuleType | None, model: nn.Module, settings: Settings) -> int:
    """One momentum buffer per matrix; AdamW's two moments of every other parameter."""
    hidden, rest = split_hidden(model)
    return tensor_bytes(_params(hidden)) + 2 * tensor_bytes(_params(rest))


# ---- 8-bit AdamW (bitsandbytes) ---------------------------------------------------------------


def build_adamw_8bit(
    bitsandbytes: types.ModuleType, model: nn.Module, lr: float, settings: Settings
) -> torch.optim.Optimizer:
    """bitsandbytes' ``AdamW8bit`` (block-wise 8-bit moments) over the trainable parameters."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    return bitsandbytes.optim.AdamW8bit(
        trainable,
        lr=lr,
        **_adam_arguments(settings),
        min_8bit_size=settings["min_8bit_size"],
    )


def plan_adamw_8bit(module: types.ModuleType | None, model: nn.Module, settings: Settings) -> int:
    """Two uint8 moments and two float32 absmax per block of 256 for a tensor of ``min_8bit_size``
    elements or more (float32 moments below), plus the two code tables, shared by all tensors."""
    total, quantized = 0, False
    for param in (p for p in model.parameters() if p.requires_grad):
        n = param.numel()
        if n < settings["min_8bit_size"]:
            total += 2 * n * 4
        else:
            quantized = True
            total += 2 * n + 2 * math.ceil(n / BNB_BLOCK_SIZE) * 4
    return total + (2 * BNB_QMAP_LENGTH * 4 if quantized else 0)
