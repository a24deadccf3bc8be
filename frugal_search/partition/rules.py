"""Partition rules: which parameters get which role and FRUGAL settings.

A :class:`Rule` selects parameters by kind, layer and name (all given criteria must hold) and
gives them a role plus optional per-rule FRUGAL settings. A partition's rules are tried in order;
the first rule that matches a parameter decides it.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from typing import Any

from frugal_search.optimizer import FRUGAL_SETTINGS, ROLE, ROLES, SETTINGS, Setting, check_known_keys

from frugal_search.partition.introspect import KINDS, ParamInfo
from frugal_search.partition.layers import parse_layer_selector, selects_layer

__all__ = ["LR_SCALE", "OVERRIDE_KEYS", "ROLES", "Rule"]

OVERRIDE_KEYS: tuple[str, ...] = (*FRUGAL_SETTINGS, "weight_decay")
"""FRUGAL settings a rule may set for its own parameters (None: the partition's setting)."""

LR_SCALE = Setting("lr_scale", "float", 1.0, low=0.0, help="multiplier of the partition's lr for a rule")
"""A rule's ``lr_scale``: a finite number >= 0, like the lr it multiplies (see the optimizer's schema)."""


def _as_tuple(value: str | list[str] | tuple[str, ...] | None, field: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError(f"Rule {field} must be a string or a list of strings, got {value!r}")


@dataclasses.dataclass(frozen=True)
class Rule:
    """One partition rule: a selection of parameters and the role and settings they get.

    Selection (every given criterion must hold; a rule with none of them matches everything):

    * ``kinds``: parameter kinds, any of ``embedding``, ``norm``, ``head``, ``attention``, ``mlp``,
      ``bias``, ``other`` (see :mod:`frugal_search.partition.introspect`).
    * ``layers``: a layer selector (see :mod:`frugal_search.partition.layers`), e.g. ``"last:2"``
      or ``"0.5-1.0"``; parameters outside the block stacks never match a rule that has one.
    * ``names``: ``fnmatch`` globs on the full parameter name, any of which may match, e.g.
      ``"*.q_proj.weight"``: the fallback for what kinds cannot say.

    Settings: ``role`` (``stateful``, ``frugal``, ``state_free``, ``frozen``); any of
    :data:`OVERRIDE_KEYS` to override the partition's FRUGAL setting for these parameters (None
    keeps it); ``lr_scale`` multiplies the partition's lr for them.
    """

    role: str
    kinds: tuple[str, ...] | None = None
    layers: int | str | None = None
    names: tuple[str, ...] | None = None
    lr_scale: float = 1.0
    stateful_rule: str | None = None
    mode: str | None = None
    density: float | None = None
    rank: int | None = None
    update_gap: int | None = None
    block_order: str | None = None
    state_free: str | None = None
    state_free_lr_scale: float | None = None
    split_lr_scale: float | None = None
    reset_state: bool | None = None
    weight_decay: float | None = None

    def __post_init__(self) -> None:
        ROLE.check(self.role)
        kinds = _as_tuple(self.kinds, "kinds")
        if kinds is not None:
            unknown = [k for k in kinds if k not in KINDS]
            if unknown or not kinds:
                raise ValueError(f"Rule kinds must be a non-empty list of {', '.join(KINDS)}; got {list(kinds)!r}")
        object.__setattr__(self, "kinds", kinds)
        names = _as_tuple(self.names, "names")
        if names is not None and not names:
            raise ValueError("Rule names must list at least one glob, or be left out")
        object.__setattr__(self, "names", names)
        if self.layers is not None:
            parse_layer_selector(self.layers)
        LR_SCALE.check(self.lr_scale)
        for key in OVERRIDE_KEYS:
            value = getattr(self, key)
            if value is not None:
                SETTINGS[key].check(value)

    def overrides(self) -> dict[str, Any]:
        """Return the FRUGAL settings this rule sets (the non-None overrides)."""
        return {key: getattr(self, key) for key in OVERRIDE_KEYS if getattr(self, key) is not None}

    def matches(self, info: ParamInfo) -> bool:
        """Return True when this rule selects the parameter described by ``info``."""
        if self.kinds is not None and info.kind not in self.kinds:
            return False
        if self.layers is not None:
            if info.layer is None or info.num_layers is None:
                return False
            if not selects_layer(self.layers, info.layer, info.num_layers):
                return False
        if self.names is not None and not any(fnmatch.fnmatchcase(info.name, glob) for glob in self.names):
            return False
        return True

    def selection_words(self) -> str:
        """Describe what this rule selects, in a few words (``"attention, mlp in layers last:2"``)."""
        words = ", ".join(self.kinds) if self.kinds else ""
        if self.layers is not None:
            words = f"{words or 'all'} in layers {self.layers}"
        if self.names is not None:
            words = f"{words + ' ' if words else ''}named {' or '.join(self.names)}"
        return words

    def to_dict(self) -> dict[str, Any]:
        """Return this rule as a JSON-safe dict holding only the fields that are set."""
        out: dict[str, Any] = {"role": self.role}
        if self.kinds is not None:
            out["kinds"] = list(self.kinds)
        if self.layers is not None:
            out["layers"] = self.layers
        if self.names is not None:
            out["names"] = list(self.names)
        if self.lr_scale != 1.0:
            out["lr_scale"] = self.lr_scale
        out.update(self.overrides())
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Rule:
        """Build a rule from :meth:`to_dict` output; unknown keys are a ``ValueError``."""
        if not isinstance(data, dict):
            raise ValueError(f"a rule must be a JSON object, got {data!r}")
        check_known_keys(data, [f.name for f in dataclasses.fields(cls)], what="rule key")
        if "role" not in data:
            raise ValueError(f"a rule needs a 'role' (one of {', '.join(ROLES)})")
        return cls(**data)
