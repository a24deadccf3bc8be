"""The partition-wide FRUGAL settings: the optimizer's keyword settings, defaults and checks from its schema."""

from __future__ import annotations

import dataclasses
from typing import Any

from frugal_search.optimizer import DEFAULTS, SETTINGS


@dataclasses.dataclass(frozen=True)
class FrugalSettings:
    """The partition-wide settings passed to :class:`~frugal_search.optimizer.FRUGAL`.

    One field per setting of the optimizer's schema (:data:`frugal_search.optimizer.SETTINGS`),
    with its default (the paper's LLaMA pre-training settings) and its check: a bad value is a
    ``ValueError`` naming it and what is allowed. A rule's overrides take precedence for its
    parameters.
    """

    lr: float = DEFAULTS["lr"]
    betas: tuple[float, float] | None = DEFAULTS["betas"]
    """Moment decays of AdamW or Lion; None: the state-full rule's own."""
    eps: float = DEFAULTS["eps"]
    weight_decay: float = DEFAULTS["weight_decay"]
    momentum: float = DEFAULTS["momentum"]
    """SGD-momentum's momentum (``stateful_rule="sgdm"`` only)."""
    nesterov: bool = DEFAULTS["nesterov"]
    stateful_rule: str = DEFAULTS["stateful_rule"]
    """Rule of the state-full part: adamw, lion (one moment) or sgdm (SGD with momentum, one moment)."""
    mode: str = DEFAULTS["mode"]
    """Subspace mode of ``frugal`` parameters: blocks, svd, random, randperm, columns, rows, randk."""
    density: float = DEFAULTS["density"]
    """rho: share of a frugal group's coordinates (or tensors, in blocks mode) that keep state."""
    rank: int | None = DEFAULTS["rank"]
    """Fixed rank for svd/random/randperm/columns/rows instead of ``density`` (None: use density)."""
    update_gap: int = DEFAULTS["update_gap"]
    """T: steps between re-selections of the state-full subspace."""
    density_end: float | None = DEFAULTS["density_end"]
    """End of a linear rho schedule from ``density`` over ``density_steps`` steps (None: constant)."""
    density_steps: int = DEFAULTS["density_steps"]
    update_gap_growth: float = DEFAULTS["update_gap_growth"]
    """Factor on T when the loss reported to the optimizer plateaus (1: fixed T)."""
    update_gap_max: int = DEFAULTS["update_gap_max"]
    loss_plateau: float = DEFAULTS["loss_plateau"]
    """Relative change of the reported loss under which T grows."""
    block_order: str = DEFAULTS["block_order"]
    state_free: str = DEFAULTS["state_free"]
    """Update of the state-free part: signsgd, sgd or none (none gives GaLore / BAdam)."""
    state_free_lr_scale: float = DEFAULTS["state_free_lr_scale"]
    split_lr_scale: float = DEFAULTS["split_lr_scale"]
    reset_state: bool = DEFAULTS["reset_state"]
    state_dtype: str = DEFAULTS["state_dtype"]
    """Storage of the state-full moments: fp32 (full precision, the parameter's dtype), bf16 or int8."""
    second_moment: str = DEFAULTS["second_moment"]
    """AdamW's second moment of a matrix: full, or factored (row and column statistics, Adafactor's)."""
    seed: int = DEFAULTS["seed"]
    """Seed of the optimizer's own generator (random subspaces)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(self.betas) if isinstance(self.betas, list) else self.betas)
        for field in dataclasses.fields(self):
            SETTINGS[field.name].check(getattr(self, field.name))

    def to_kwargs(self) -> dict[str, Any]:
        """Return the settings as keyword arguments of ``FRUGAL``."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}


SETTING_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(FrugalSettings))
"""The names of :class:`FrugalSettings`: every key of the optimizer's schema."""
