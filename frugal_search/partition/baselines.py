"""The partitions every study compares against (settings from docs/FRUGAL.md)."""

from __future__ import annotations

from typing import Any

from frugal_search.partition.partition import Partition
from frugal_search.partition.rules import Rule

BASELINE_NAMES: tuple[str, ...] = ("adamw", "frugal", "frugal-rho0", "galore", "badam")
"""Canonical baseline names; ``paper`` and ``paper-rho0`` are accepted as aliases."""
_ALIASES = {"paper": "frugal", "paper-rho0": "frugal-rho0"}

# The paper's split set: the Linear weights inside the blocks. Biases, norms, embeddings and
# the head stay stateful (FRUGAL.md, "Which parameters take part").
_SPLIT_KINDS = ("attention", "mlp")
PAPER_UPDATE_GAP = 200


def _split_rules() -> tuple[Rule, ...]:
    return (Rule("frugal", kinds=_SPLIT_KINDS), Rule("stateful"))


def adamw_partition(**settings: Any) -> Partition:
    """Every parameter stateful (plain AdamW)."""
    return Partition((Rule("stateful"),), **{"name": "adamw", **settings})


def paper_partition(density: float = 0.25, **settings: Any) -> Partition:
    """FRUGAL as pre-trained in the paper: blocks, descending, T 200, signSGD, rest stateful."""
    values: dict[str, Any] = dict(
        name="frugal-rho0" if density == 0 else "frugal",
        mode="blocks",
        density=density,
        update_gap=PAPER_UPDATE_GAP,
        block_order="descending",
        state_free="signsgd",
    )
    return Partition(_split_rules(), **{**values, **settings})


def galore_partition(density: float = 0.25, **settings: Any) -> Partition:
    """GaLore at equal memory: svd subspace, state-free none, reset off, lr 0.01 x split scale 0.25."""
    values: dict[str, Any] = dict(
        name="galore",
        mode="svd",
        density=density,
        update_gap=PAPER_UPDATE_GAP,
        state_free="none",
        reset_state=False,
        lr=0.01,
        split_lr_scale=0.25,
    )
    return Partition(_split_rules(), **{**values, **settings})


def badam_partition(density: float = 0.25, **settings: Any) -> Partition:
    """BAdam at equal memory: a descending window of whole tensors, state-free none.

    BAdam trains one whole layer at a time; our blocks are tensors, so a window of
    ``round(density * tensors)`` consecutive tensors in model order stands for it.
    """
    values: dict[str, Any] = dict(
        name="badam",
        mode="blocks",
        density=density,
        update_gap=PAPER_UPDATE_GAP,
        block_order="descending",
        state_free="none",
    )
    return Partition(_split_rules(), **{**values, **settings})


def baseline_partition(name: str, /, *, density: float = 0.25, **settings: Any) -> Partition:
    """Return the baseline called ``name`` (one of :data:`BASELINE_NAMES` or an alias).

    ``density`` applies to frugal, galore and badam; ``frugal-rho0`` always has density 0.
    """
    canonical = _ALIASES.get(name, name)
    if canonical == "adamw":
        return adamw_partition(**settings)
    if canonical == "frugal":
        return paper_partition(density, **settings)
    if canonical == "frugal-rho0":
        return paper_partition(0.0, **settings)
    if canonical == "galore":
        return galore_partition(density, **settings)
    if canonical == "badam":
        return badam_partition(density, **settings)
    allowed = ", ".join(list(BASELINE_NAMES) + list(_ALIASES))
    raise ValueError(f"unknown baseline {name!r}; allowed: {allowed}")
