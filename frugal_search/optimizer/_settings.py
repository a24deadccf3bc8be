"""Names, defaults and validation of the FRUGAL optimizer's settings (one place for every check)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

MODES: tuple[str, ...] = ("blocks", "svd", "random", "randperm", "columns", "rows", "randk")
ROLES: tuple[str, ...] = ("stateful", "frugal", "state_free", "frozen")
BLOCK_ORDERS: tuple[str, ...] = ("random", "ascending", "descending", "mirror")
STATE_FREE_RULES: tuple[str, ...] = ("signsgd", "sgd", "none")

# Modes whose stateful subspace is a basis (dense for svd/random, a feature subset for randperm)
# chosen with the side rule; `rank` overrides `density` for these and for columns/rows.
PROJECTION_MODES: tuple[str, ...] = ("svd", "random", "randperm")
RANKED_MODES: tuple[str, ...] = ("svd", "random", "randperm", "columns", "rows")

# Settings a param group may override; `seed` is optimizer-wide (one generator).
# The settings that shape FRUGAL's split (as opposed to AdamW's own hyperparameters).
FRUGAL_SETTINGS: tuple[str, ...] = (
    "mode",
    "density",
    "rank",
    "update_gap",
    "block_order",
    "state_free",
    "state_free_lr_scale",
    "split_lr_scale",
    "reset_state",
)
GROUP_SETTINGS: tuple[str, ...] = ("lr", "betas", "eps", "weight_decay", *FRUGAL_SETTINGS)
# `initial_lr` is written by torch LR schedulers and must survive a round trip.
GROUP_KEYS: tuple[str, ...] = ("params", "role", "names", "initial_lr", *GROUP_SETTINGS)


def _fail(name: str, value: Any, allowed: str, remedy: str = "") -> None:
    message = f"Invalid FRUGAL setting {name}={value!r}: allowed {allowed}."
    if remedy:
        message += f" {remedy}"
    raise ValueError(message)


def _check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        _fail(name, value, "one of " + ", ".join(repr(a) for a in allowed))


def _check_nonnegative_float(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
        math.isfinite(float(value)) and float(value) >= 0.0
    ):
        _fail(name, value, "a finite number >= 0")


def check_group_keys(group: Mapping[str, Any]) -> None:
    """Raise ValueError when a param group carries a key FRUGAL does not know."""
    unknown = sorted(str(key) for key in group if key not in GROUP_KEYS)
    if unknown:
        raise ValueError(
            f"Unknown param group key(s) {unknown}: allowed keys are {list(GROUP_KEYS)}. "
            "Put FRUGAL settings under their own names (e.g. 'density', 'mode')."
        )


def validate_group(group: Mapping[str, Any]) -> None:
    """Check every setting of a fully resolved param group; raise ValueError on the first bad one."""
    _check_choice("role", group["role"], ROLES)
    lr = group["lr"]
    if not hasattr(lr, "item"):  # a tensor lr (torch allows it) is checked by its value
        _check_nonnegative_float("lr", lr)
    elif float(lr) < 0:
        _fail("lr", float(lr), "a number >= 0")
    betas = group["betas"]
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        _fail("betas", betas, "a pair (beta1, beta2) with 0 <= beta < 1")
    for index, beta in enumerate(betas):
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0.0 <= beta < 1.0:
            _fail(f"betas[{index}]", beta, "a number in [0, 1)")
    _check_nonnegative_float("eps", group["eps"])
    _check_nonnegative_float("weight_decay", group["weight_decay"])
    _check_nonnegative_float("state_free_lr_scale", group["state_free_lr_scale"])
    _check_nonnegative_float("split_lr_scale", group["split_lr_scale"])
    _check_choice("mode", group["mode"], MODES)
    _check_choice("block_order", group["block_order"], BLOCK_ORDERS)
    _check_choice("state_free", group["state_free"], STATE_FREE_RULES)
    density = group["density"]
    if isinstance(density, bool) or not isinstance(density, (int, float)) or not 0.0 <= density <= 1.0:
        _fail("density", density, "a number in [0, 1]")
    rank = group["rank"]
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 0):
        _fail("rank", rank, "None or an int >= 0")
    if rank is not None and group["role"] == "frugal" and group["mode"] not in RANKED_MODES:
        _fail(
            "rank",
            rank,
            f"None for mode {group['mode']!r} (rank applies to {', '.join(RANKED_MODES)})",
            "Use density for blocks and randk.",
        )
    gap = group["update_gap"]
    if isinstance(gap, bool) or not isinstance(gap, int) or gap < 1:
        _fail("update_gap", gap, "an int >= 1")
    if not isinstance(group["reset_state"], bool):
        _fail("reset_state", group["reset_state"], "True or False")
    names = group.get("names")
    if names is not None and (len(names) != len(group["params"]) or not all(isinstance(n, str) for n in names)):
        raise ValueError(
            f"Param group 'names' must be a list of {len(group['params'])} strings parallel to "
            f"'params'; got {len(names)} entries."
        )
    if group["role"] == "frugal" and group["mode"] == "blocks" and group["block_order"] == "mirror":
        k = blocks_k(group["density"], len(group["params"]))
        if k % 2:
            _fail(
                "block_order",
                "mirror",
                "an even number of active blocks with 'mirror'",
                f"density {density} of {len(group['params'])} tensors gives k={k}; "
                "choose a density giving an even k or another order.",
            )


def blocks_k(density: float, n_tensors: int) -> int:
    """Active tensors per period in blocks mode: round(rho * n) (Python rounding, as the paper's code)."""
    return round(density * n_tensors)


def floor_count(density: float, size: int) -> int:
    """floor(rho * size), tolerant to float error (0.29 * 100 is 28.999...)."""
    return min(size, math.floor(density * size + 1e-9))
