"""Baselines that are no partition: LoRA and the optimizers users install instead, in one registry.

A partition baseline (AdamW, the paper's FRUGAL, GaLore-like, ...) lives in the partition stage
(``frugal_search.partition.BASELINES``). The others are methods of their own that a proxy run
takes where a partition goes: a ``LoraSpec`` (adapters through peft) or a ``CompetitorSpec``
(APOLLO, Adam-mini, Muon, 8-bit AdamW). Each entry here says how to build the spec from an lr, how
to read it back from what a trial stores (its ``"method"`` key), and whether its package is
installed. Adding such a baseline is one entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from frugal_search.proxy.competitors import COMPETITORS, CompetitorSpec, competitor_spec
from frugal_search.proxy.lora import LORA_METHOD, LoraSpec, peft_available

LORA_RANK = 8  # the lora baseline's rank: GaLore-like at rank 8's analogue


@dataclass(frozen=True)
class Method:
    """A baseline that is no partition: its name, words, and how to build, read back and check it."""

    name: str
    words: str
    build: Callable[[float | None], Any] = field(repr=False)
    """The spec at an lr (None: the method's own default)."""
    from_dict: Callable[[Mapping[str, Any]], Any] = field(repr=False)
    """The spec from its ``to_dict()``, as a trial stores it."""
    missing: Callable[[], str | None] = field(repr=False)
    """None when its package is installed, else one line that says how to install it."""


def _lora(lr: float | None) -> LoraSpec:
    return LoraSpec(rank=LORA_RANK, **({} if lr is None else {"lr": lr}))


def _lora_missing() -> str | None:
    return None if peft_available() else "'lora' needs the peft package: pip install -e \".[lora]\" (or pip install peft)"


def _competitor_missing(name: str) -> Callable[[], str | None]:
    def missing() -> str | None:
        try:
            COMPETITORS[name].check_available()
        except ValueError as error:
            return str(error)
        return None

    return missing


def _competitor_method(name: str) -> Method:
    return Method(
        name=name,
        words=COMPETITORS[name].words,
        build=lambda lr, name=name: competitor_spec(name, lr=lr),
        from_dict=CompetitorSpec.from_dict,
        missing=_competitor_missing(name),
    )


METHODS: Mapping[str, Method] = MappingProxyType(
    {
        LORA_METHOD: Method(
            name=LORA_METHOD,
            words=f"LoRA rank {LORA_RANK} adapters (peft) trained with AdamW, base weights frozen",
            build=_lora,
            from_dict=lambda data: LoraSpec.from_dict({"rank": LORA_RANK, **data}),
            missing=_lora_missing,
        ),
        **{name: _competitor_method(name) for name in COMPETITORS},
    }
)
"""Every baseline that is no partition, by name: ``lora`` and the competitors."""

METHOD_NAMES: tuple[str, ...] = tuple(METHODS)


def method_spec(name: str, *, lr: float | None = None) -> Any:
    """The spec of method baseline ``name`` at ``lr`` (None: its own default lr)."""
    if name not in METHODS:
        raise ValueError(f"{name!r} is not a method baseline; known: {', '.join(METHOD_NAMES)}")
    return METHODS[name].build(lr)


def method_of(stored: Mapping[str, Any]) -> str | None:
    """The method a trial's stored ``split`` dict names (``"lora"``, ``"muon"``, ...), None for a split."""
    method = stored.get("method")
    return method if isinstance(method, str) else None


def spec_from_stored(stored: Mapping[str, Any]) -> Any:
    """The spec a trial stored: a method's spec for a ``"method"`` dict, else the ``Partition``."""
    method = method_of(stored)
    if method is None:
        from frugal_search.partition import Partition

        return Partition.from_dict(dict(stored))
    if method not in METHODS:
        raise ValueError(f"stored method {method!r} is not known here; known: {', '.join(METHOD_NAMES)}")
    return METHODS[method].from_dict(stored)


__all__ = ["LORA_RANK", "METHODS", "METHOD_NAMES", "Method", "method_of", "method_spec", "spec_from_stored"]
