"""The partitions every study compares against, in one registry (settings from docs/FRUGAL.md).

Each :class:`Baseline` holds its name, aliases, a one-line description for reports and help
texts, its rules and the settings it fixes. :class:`~frugal_search.partition.Partition` builds
them (``Partition.baseline(name)``, ``Partition.adamw()``, ``Partition.paper(density)``, ...);
this module holds only the recipes, so it does not import the partition it describes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from frugal_search.partition.rules import Rule

PAPER_UPDATE_GAP = 200
FINETUNE_UPDATE_GAP = 500  # T of the paper's fine-tuning runs (RoBERTa on GLUE)
FINETUNE_STATE_FREE_LR_SCALE = 0.1  # the state-free lr of those runs, as a share of the lr

# The paper's split set: the Linear weights inside the blocks. Biases, norms, embeddings and
# the head stay stateful (FRUGAL.md, "Which parameters take part").
_SPLIT_RULES = (Rule("frugal", kinds=("attention", "mlp")), Rule("stateful"))


@dataclasses.dataclass(frozen=True)
class Baseline:
    """One baseline partition: what it is called, what it is, and how to build it.

    ``density`` is the density it always has (``frugal-rho0``: 0), or None when the caller's
    ``density`` applies (``adamw`` has no density at all: ``uses_density`` False).
    """

    name: str
    aliases: tuple[str, ...]
    words: str
    """One line for reports and help texts."""
    rules: tuple[Rule, ...]
    settings: Mapping[str, Any]
    """The FRUGAL settings it fixes; the caller's settings take precedence."""
    uses_density: bool = True
    density: float | None = None

    def partition_settings(self, density: float, settings: Mapping[str, Any]) -> dict[str, Any]:
        """The keyword settings of its ``Partition``: ``name``, its own settings, ``density``, then ``settings``."""
        values: dict[str, Any] = {"name": self.name, **self.settings}
        if self.uses_density:
            values["density"] = density if self.density is None else self.density
        return {**values, **settings}


def _baseline(name: str, aliases: tuple[str, ...], words: str, rules: tuple[Rule, ...], **values: Any) -> Baseline:
    fields = {key: values.pop(key) for key in ("uses_density", "density") if key in values}
    return Baseline(name, aliases, words, rules, MappingProxyType(values), **fields)


ADAMW_BASELINE = "adamw"
"""The name of the all-stateful baseline, the reference every memory figure is a share of."""

_PAPER = {"mode": "blocks", "update_gap": PAPER_UPDATE_GAP, "block_order": "descending", "state_free": "signsgd"}
# GaLore as the partition baseline runs it (FRUGAL.md): an svd subspace, no state-free update, no
# reset, and the authors' lr 0.01 with scale 0.25 on the projected update.
_GALORE = {
    "mode": "svd", "update_gap": PAPER_UPDATE_GAP, "state_free": "none", "reset_state": False, "lr": 0.01, "split_lr_scale": 0.25
}

BASELINES: Mapping[str, Baseline] = MappingProxyType(
    {
        baseline.name: baseline
        for baseline in (
            _baseline(ADAMW_BASELINE, (), "AdamW: every parameter stateful", (Rule("stateful"),), uses_density=False),
            _baseline(
                "frugal",
                ("paper",),
                "FRUGAL as pre-trained in the paper: attention and mlp weights in blocks (descending, "
                "T 200), state-free signSGD, the rest stateful",
                _SPLIT_RULES,
                **_PAPER,
            ),
            _baseline(
                "frugal-rho0",
                ("paper-rho0",),
                "FRUGAL rho 0: attention and mlp weights state-free signSGD, the rest stateful",
                _SPLIT_RULES,
                **_PAPER,
                density=0.0,
            ),
            _baseline(
                "galore",
                (),
                "GaLore-like at equal memory: attention and mlp weights in an svd subspace, no state-free "
                "update, no reset, lr 0.01 x split lr scale 0.25",
                _SPLIT_RULES,
                **_GALORE,
            ),
            # BAdam trains one whole layer at a time; our blocks are tensors, so a window of
            # round(density * tensors) consecutive tensors in model order stands for it.
            _baseline(
                "badam",
                (),
                "BAdam-like at equal memory: a descending window of attention and mlp weight tensors, "
                "no state-free update",
                _SPLIT_RULES,
                mode="blocks",
                update_gap=PAPER_UPDATE_GAP,
                block_order="descending",
                state_free="none",
            ),
            # The paper's GLUE fine-tuning setting (the authors' scripts): columns, rho 0, T 500,
            # state-free lr x 0.1. At rho 0 nothing is in a subspace, so mode and T only name the setting.
            _baseline(
                "frugal-finetune",
                ("paper-finetune",),
                "FRUGAL rho 0 as fine-tuned in the paper: attention and mlp weights state-free signSGD at "
                "lr x 0.1 (columns, T 500), the rest stateful",
                _SPLIT_RULES,
                mode="columns",
                update_gap=FINETUNE_UPDATE_GAP,
                state_free="signsgd",
                state_free_lr_scale=FINETUNE_STATE_FREE_LR_SCALE,
                density=0.0,
            ),
            # GaLore as fine-tuned at rank 8 (LoRA rank 8's analogue): the galore baseline with a rank
            # instead of a density.
            _baseline(
                "galore-rank8",
                (),
                "GaLore-like at rank 8: attention and mlp weights in a rank-8 svd subspace, no state-free "
                "update, no reset, lr 0.01 x split lr scale 0.25",
                _SPLIT_RULES,
                **_GALORE,
                rank=8,
                uses_density=False,
            ),
            # GaLore as its authors ship it for memory (galore-torch's GaLoreAdamW8bit): the galore
            # baseline with both moments in 8-bit block-wise codes.
            _baseline(
                "galore-8bit",
                (),
                "GaLore-like with 8-bit moments: the galore baseline with its moments in int8 block-wise "
                "codes (as GaLoreAdamW8bit keeps them)",
                _SPLIT_RULES,
                **_GALORE,
                state_dtype="int8",
            ),
        )
    }
)
"""Every baseline by its canonical name, in the order studies list them."""

BASELINE_NAMES: tuple[str, ...] = tuple(BASELINES)
"""Canonical baseline names; see :data:`BASELINE_ALIASES` for the other accepted names."""
BASELINE_ALIASES: Mapping[str, str] = MappingProxyType(
    {alias: baseline.name for baseline in BASELINES.values() for alias in baseline.aliases}
)
"""Other accepted names of baselines (``paper`` -> ``frugal``, ``paper-rho0`` -> ``frugal-rho0``)."""


def find_baseline(name: str) -> Baseline:
    """Return the baseline called ``name`` or one of its aliases; ``ValueError`` listing the names otherwise."""
    canonical = BASELINE_ALIASES.get(name, name)
    if canonical not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; allowed: {', '.join(accepted_baseline_names())}")
    return BASELINES[canonical]


def accepted_baseline_names() -> tuple[str, ...]:
    """Every name :func:`find_baseline` accepts: the canonical names, then the aliases."""
    return (*BASELINE_NAMES, *BASELINE_ALIASES)
