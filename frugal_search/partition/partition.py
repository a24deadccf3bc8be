"""The :class:`Partition`: ordered rules plus the FRUGAL settings, applied to any model."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from frugal_search.optimizer import FRUGAL, check_combination, check_known_keys
from frugal_search.partition.baselines import ADAMW_BASELINE, find_baseline
from frugal_search.partition.introspect import ParamInfo, introspect
from frugal_search.partition.lr_transfer import (
    check_base_widths,
    check_lr_transfer,
    record_base_widths,
    width_multiplier,
)
from frugal_search.partition.memory import TrainingMemory, describe_rules, peak_state_bytes, training_memory
from frugal_search.partition.rules import Rule
from frugal_search.partition.settings import SETTING_NAMES, FrugalSettings
from frugal_search.partition.split_file import SplitContent, read_split, split_from_dict, split_to_dict, write_split
from frugal_search.partition.words import summarize

if TYPE_CHECKING:
    import pandas as pd
    import torch

UNMATCHED_RULE_LOGGER = "frugal_search.partition.unmatched"
"""Name of the logger that warns of a rule matching no parameter: set its level to silence it."""
_unmatched_logger = logging.getLogger(UNMATCHED_RULE_LOGGER)


@contextlib.contextmanager
def quiet_unmatched_rules() -> Iterator[None]:
    """Within the block, the "rule matches no parameter" warning is not logged; its level is put
    back after. For callers that build sampled partitions, whose catch-all rules (biases, a head)
    often match nothing on a given proxy and would repeat that warning in every build."""
    level = _unmatched_logger.level
    _unmatched_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        _unmatched_logger.setLevel(level)


_MAX_LISTED_NAMES = 20  # unmatched-parameter errors list this many names, then a count


class Partition:
    """Ordered rules that give every trainable parameter of a model a role, plus FRUGAL settings.

    ``Partition(rules, *, lr=..., mode=..., density=..., name=None, provenance=None)``: the
    keyword settings are the fields of :class:`FrugalSettings`; an unknown one or a bad value is a
    ``ValueError``.
    The first rule that matches a parameter decides its role. Applying a partition to a model:

    * a trainable parameter that no rule matches is a ``ValueError`` listing the names (add a
      catch-all ``Rule("stateful")`` at the end);
    * a rule that matches no parameter is logged as a warning on the logger named
      :data:`UNMATCHED_RULE_LOGGER` (``strict=True`` makes it a ``ValueError``): it usually means a
      typo, or a proxy-only rule;
    * parameters with ``requires_grad=False`` are left out of every group (nothing to update).

    ``name`` is a label for reports (baselines use theirs); ``provenance`` is free-form JSON-safe
    metadata written into the split file (``source``: study/trial/command, ``metrics``:
    eval_loss, state_bytes, ...).

    ``lr_transfer`` (``"none"``, the default, or ``"width"``) and ``base_widths`` (the proxy's
    fan-ins, see :meth:`with_base_widths`) give the learning-rate transfer rule of
    :mod:`frugal_search.partition.lr_transfer`: with ``"width"`` and base widths, building the
    optimizer on a model of other widths multiplies the lr of each hidden or output matrix by base
    fan-in / fan-in. A group whose tensors get different multipliers is split into one group per
    multiplier, except a ``frugal`` blocks group (blocks schedules whole tensors within one group):
    it stays one group and takes the smallest multiplier of its tensors, so no tensor steps further
    than the rule allows.
    """

    def __init__(
        self,
        rules: list[Rule] | tuple[Rule, ...],
        *,
        name: str | None = None,
        provenance: dict[str, Any] | None = None,
        lr_transfer: str = "none",
        base_widths: dict[str, int] | None = None,
        **settings: Any,
    ) -> None:
        rules = tuple(rules)
        if not rules:
            raise ValueError("a Partition needs at least one rule; end with Rule('stateful') to catch the rest")
        for index, rule in enumerate(rules):
            if not isinstance(rule, Rule):
                raise ValueError(f"rules[{index}] must be a Rule, got {type(rule).__name__}: {rule!r}")
        check_known_keys(settings, SETTING_NAMES, what="Partition setting")
        if name is not None and not isinstance(name, str):
            raise ValueError(f"Partition name must be a string or None, got {name!r}")
        if provenance is not None and not isinstance(provenance, dict):
            raise ValueError(f"Partition provenance must be a dict or None, got {provenance!r}")
        self.rules: tuple[Rule, ...] = rules
        self.settings: FrugalSettings = FrugalSettings(**settings)
        for index, rule in enumerate(rules):
            try:
                check_combination(rule.role, {**self.settings.to_kwargs(), **rule.overrides()})
            except ValueError as error:
                raise ValueError(f"rules[{index}]: {error}") from None
        self.name: str | None = name
        self.provenance: dict[str, Any] = dict(provenance or {})
        self.lr_transfer: str = check_lr_transfer(lr_transfer)
        self.base_widths: dict[str, int] | None = None if base_widths is None else check_base_widths(base_widths)

    # ---- value semantics ---------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Partition):
            return NotImplemented
        return (self.rules, self.settings, self.name, self.provenance, self.lr_transfer, self.base_widths) == (
            other.rules,
            other.settings,
            other.name,
            other.provenance,
            other.lr_transfer,
            other.base_widths,
        )

    def __repr__(self) -> str:
        label = f"{self.name!r}, " if self.name else ""
        return f"Partition({label}{self.summary()!r})"

    def replace(self, *, rules: list[Rule] | tuple[Rule, ...] | None = None, **changes: Any) -> Partition:
        """Return a copy with other rules, settings, ``name``, ``provenance``, ``lr_transfer`` or ``base_widths``."""
        kwargs: dict[str, Any] = {
            "name": self.name,
            "provenance": self.provenance,
            "lr_transfer": self.lr_transfer,
            "base_widths": self.base_widths,
            **self.settings.to_kwargs(),
        }
        kwargs.update(changes)
        return Partition(self.rules if rules is None else rules, **kwargs)

    # ---- applying the rules ------------------------------------------------------------------
    def match(self, model: nn.Module, *, strict: bool = False) -> list[list[ParamInfo]]:
        """Return, for each rule in order, the trainable parameters it decides (model order)."""
        matched: list[list[ParamInfo]] = [[] for _ in self.rules]
        unmatched: list[str] = []
        for info in introspect(model):
            if not info.trainable:
                continue
            for index, rule in enumerate(self.rules):
                if rule.matches(info):
                    matched[index].append(info)
                    break
            else:
                unmatched.append(info.name)
        if unmatched:
            listed = ", ".join(unmatched[:_MAX_LISTED_NAMES])
            more = f" and {len(unmatched) - _MAX_LISTED_NAMES} more" if len(unmatched) > _MAX_LISTED_NAMES else ""
            raise ValueError(
                f"{len(unmatched)} trainable parameter(s) match no rule of partition {self.name or ''}: "
                f"{listed}{more}. Add a rule for them, e.g. a catch-all Rule('stateful') at the end."
            )
        empty = [i for i, params in enumerate(matched) if not params]
        for index in empty:
            message = f"rule {index} ({self.rules[index].to_dict()}) matches no parameter of {type(model).__name__}"
            if strict:
                raise ValueError(message + "; remove the rule or fix its kinds/layers/names")
            _unmatched_logger.warning("%s", message)
        return matched

    def param_groups(self, model: nn.Module, *, strict: bool = False) -> list[dict[str, Any]]:
        """Return the parameter groups for ``FRUGAL``: one group per rule that matched something.

        Each group holds its tensors in model order (blocks mode schedules whole tensors within
        one group), ``names``, ``role``, the rule's overrides, and ``lr`` when the rule has an
        ``lr_scale``.
        """
        return self.groups_from_matches(self.match(model, strict=strict))

    def groups_from_matches(self, matched: list[list[ParamInfo]], *, transfer: bool = True) -> list[dict[str, Any]]:
        """Return the param groups for the output of :meth:`match` (see :meth:`param_groups`).

        ``transfer=False`` leaves the lr transfer rule out (one group per rule, as the state
        accounting per rule needs; the state does not depend on the lr).
        """
        groups = []
        for rule, infos in zip(self.rules, matched):
            if not infos:
                continue
            for members, multiplier in self._lr_chunks(rule, infos, transfer=transfer):
                group: dict[str, Any] = {
                    "params": [info.param for info in members],
                    "names": [info.name for info in members],
                    "role": rule.role,
                }
                group.update(rule.overrides())
                if rule.lr_scale != 1.0 or multiplier != 1.0:
                    group["lr"] = self.settings.lr * rule.lr_scale * multiplier
                groups.append(group)
        return groups

    def _lr_chunks(
        self, rule: Rule, infos: list[ParamInfo], *, transfer: bool
    ) -> list[tuple[list[ParamInfo], float]]:
        """Split a rule's tensors by lr multiplier (model order kept); one chunk when the rule is off."""
        if not transfer or self.lr_transfer != "width" or self.base_widths is None:
            return [(infos, 1.0)]
        multipliers = [width_multiplier(info, self.base_widths) for info in infos]
        if rule.role == "frugal" and (rule.mode or self.settings.mode) == "blocks":
            return [(infos, min(multipliers))]
        chunks: dict[float, list[ParamInfo]] = {}
        for info, multiplier in zip(infos, multipliers):
            chunks.setdefault(multiplier, []).append(info)
        return [(members, multiplier) for multiplier, members in chunks.items()]

    def with_base_widths(self, model: nn.Module) -> Partition:
        """Return a copy that records ``model``'s fan-ins as the base of the lr transfer rule.

        Call it with the proxy the split was found on (a ``meta`` model will do); set
        ``lr_transfer="width"`` (here through :meth:`replace`) to apply the rule on other widths.
        """
        return self.replace(base_widths=record_base_widths(model))

    def freeze(self, model: nn.Module) -> list[str]:
        """Set ``requires_grad=False`` on the parameters of ``frozen`` rules; return their names.

        ``FRUGAL`` never updates a frozen group, but autograd still computes its gradients unless
        they are switched off: call this before training to save that memory (as
        :meth:`training_memory` assumes).
        """
        names = []
        for rule, infos in zip(self.rules, self.match(model)):
            if rule.role == "frozen":
                for info in infos:
                    info.param.requires_grad_(False)
                    names.append(info.name)
        return names

    def build_optimizer(self, model: nn.Module, *, strict: bool = False) -> FRUGAL:
        """Return a ``FRUGAL`` optimizer over ``model`` with this partition's groups and settings."""
        return FRUGAL(self.param_groups(model, strict=strict), **self.settings.to_kwargs())

    def trainer_optimizers(self, model: nn.Module) -> tuple[FRUGAL, None]:
        """Return ``(optimizer, None)`` for ``transformers.Trainer(..., optimizers=...)``.

        The Trainer then builds its learning-rate schedule (``lr_scheduler_type``) on top of this
        optimizer; the peak lr is this partition's, not ``TrainingArguments.learning_rate``. Move
        the model to its device before calling this.
        """
        return self.build_optimizer(model), None

    # ---- memory ------------------------------------------------------------------------------
    def state_bytes(self, model: nn.Module, *, param_dtype: torch.dtype | None = None) -> int:
        """Return the peak optimizer-state bytes over a full re-selection cycle, without training.

        Computed from shapes only, on ``meta`` stand-ins of the parameters, so ``model`` may live
        on the meta device and nothing is allocated. ``param_dtype`` (default: each parameter's
        own dtype) is the dtype the parameters, and so the moments, are held in.
        """
        return peak_state_bytes(self.param_groups(model), self.settings, param_dtype=param_dtype)

    def training_memory(
        self, model: nn.Module, *, param_dtype: torch.dtype | None = None, world_size: int = 1
    ) -> TrainingMemory:
        """Return the static training memory: weights, gradients and peak optimizer state (one
        GPU's share under FSDP2 on ``world_size`` ranks)."""
        return training_memory(
            model, self.param_groups(model), self.settings, param_dtype=param_dtype, world_size=world_size
        )

    def describe(self, model: nn.Module, *, param_dtype: torch.dtype | None = None) -> pd.DataFrame:
        """Return a table with one row per rule: what it matched and the state it costs.

        Columns: ``rule`` (index), ``role``, ``kinds`` (kinds of the matched tensors), ``selection``
        (the rule's words), ``settings`` (mode, density, ... for frugal rules), ``tensors``,
        ``parameters``, ``state_bytes`` (peak of that group alone). Rules that match nothing
        have a row with zeros.
        """
        matched = self.match(model)
        groups = self.groups_from_matches(matched, transfer=False)
        return describe_rules(self.rules, self.settings, matched, groups, param_dtype=param_dtype)

    # ---- words -------------------------------------------------------------------------------
    def summary(self) -> str:
        """Return the partition in one line of words, e.g. ``"attention, mlp frugal blocks rho
        0.25 every 200 steps (descending), state-free signSGD; rest stateful; lr 0.001"``."""
        return summarize(self.rules, self.settings)

    # ---- split files -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Return the split config as a JSON-safe dict (``"format": "frugal-split/1"``)."""
        content = SplitContent(
            rules=self.rules,
            settings=self.settings,
            name=self.name,
            provenance=self.provenance,
            lr_transfer=self.lr_transfer,
            base_widths=self.base_widths,
        )
        return split_to_dict(content)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "<dict>") -> Partition:
        """Build a partition from :meth:`to_dict` output; errors name ``source``, the key and the
        allowed values."""
        content = split_from_dict(data, source=source)
        try:
            return cls(
                content.rules,
                name=content.name,
                provenance=content.provenance,
                lr_transfer=content.lr_transfer,
                base_widths=content.base_widths,
                **content.settings.to_kwargs(),
            )
        except ValueError as error:  # what only the rules and settings together can break
            raise ValueError(f"{source}: key 'rules': {error}") from None

    def to_json(self, path: str | Path) -> Path:
        """Write the split config to ``path`` (indent 2, rules in order); return the path."""
        return write_split(self.to_dict(), path)

    @classmethod
    def from_json(cls, path: str | Path) -> Partition:
        """Read a split config written by :meth:`to_json`; a bad file is a ``ValueError`` naming it."""
        return cls.from_dict(read_split(path), source=str(path))

    # ---- baselines ---------------------------------------------------------------------------
    @classmethod
    def baseline(cls, name: str, /, *, density: float = 0.25, **settings: Any) -> Partition:
        """Return the baseline called ``name`` (see :data:`~frugal_search.partition.BASELINES`).

        ``density`` applies to frugal, galore and badam; ``frugal-rho0`` always has density 0;
        ``settings`` override the baseline's own.
        """
        recipe = find_baseline(name)
        return cls(recipe.rules, **recipe.partition_settings(density, settings))

    @classmethod
    def adamw(cls, **settings: Any) -> Partition:
        """AdamW: every parameter stateful."""
        return cls.baseline("adamw", **settings)

    @classmethod
    def paper(cls, density: float = 0.25, **settings: Any) -> Partition:
        """The paper's FRUGAL: attention and mlp weights frugal (blocks, descending, T 200,
        signSGD), everything else stateful. ``density=0.0`` is FRUGAL rho 0 (named ``frugal-rho0``)."""
        return cls.baseline("frugal-rho0" if density == 0 else "frugal", density=density, **settings)

    @classmethod
    def galore(cls, density: float = 0.25, **settings: Any) -> Partition:
        """GaLore-like: attention and mlp weights in an svd subspace, no state-free update, no reset,
        lr 0.01 with split lr scale 0.25."""
        return cls.baseline("galore", density=density, **settings)

    @classmethod
    def badam(cls, density: float = 0.25, **settings: Any) -> Partition:
        """BAdam-like: attention and mlp weights in blocks (descending), no state-free update."""
        return cls.baseline("badam", density=density, **settings)


def baseline_partition(name: str, /, *, density: float = 0.25, **settings: Any) -> Partition:
    """Return the baseline called ``name`` (one of :data:`BASELINE_NAMES` or an alias): ``Partition.baseline``."""
    return Partition.baseline(name, density=density, **settings)


def adamw_state_bytes_of(model: nn.Module) -> int:
    """Optimizer-state bytes of plain AdamW on ``model`` (a ``meta`` model will do): the reference
    every share of memory is taken of."""
    return int(Partition.baseline(ADAMW_BASELINE).state_bytes(model))
