"""The optimizers a user would install instead of a split, as proxy-run methods with exact state.

A :class:`CompetitorSpec` goes where a partition goes in ``run_proxy``: ``build_optimizer(model)``
gives the competitor's real optimizer (from its authors' package), ``state_bytes(model)`` plans
its state from shapes alone (the model may live on ``meta``), and ``measure_state_bytes(optimizer)``
counts what that optimizer holds after a step; the two agree to the byte (tests/proxy/test_competitors.py).

The competitors (:data:`COMPETITORS`, one frozen :class:`Competitor` record each):

- ``apollo`` / ``apollo-mini`` (``apollo-torch``, extra ``apollo``): APOLLO's channel-wise and
  APOLLO-Mini's tensor-wise gradient scaling, estimated from Adam moments of a random projection
  of each gradient, on the 2-D attention and MLP weights; plain Adam on the rest, as the authors'
  ``main_pretrain.py`` groups them.
- ``adam-mini`` (``adam-mini``, extra ``adam-mini``): Adam with one second moment per head, per
  output neuron or per token (Adam-mini's own partition by parameter name).
- ``muon`` (``torch.optim.Muon``, no extra): Muon on the 2-D weights inside the blocks, AdamW on
  embeddings, norms, head and biases, as its authors use it (:class:`MuonWithAdamW`).
- ``adamw-8bit`` (``bitsandbytes``, extra ``bitsandbytes``): AdamW with block-wise 8-bit moments.
  bitsandbytes is used rather than torchao's ``AdamW8bit``: on the CPU (torch 2.13, torchao 0.18)
  torchao's compiled step moved embedding rows by up to 1.66 in 3 steps where fp32 AdamW moves
  them by 0.003 (rows whose token was in one batch and not in the next), and it compiles for
  6-60 s before its first step; bitsandbytes follows fp32 AdamW (tested: updates within 4%) and
  needs no compiler.

What "state" counts, for every competitor: each tensor the optimizer keeps per parameter (the
inner tensors of a tensor subclass, tensors inside helper objects such as APOLLO's projector),
every storage once (bitsandbytes' code tables are shared by all parameters), except the ``step``
counters (bookkeeping of constant size, as :func:`~frugal_search.optimizer.optimizer_state_bytes`
leaves them out, so AdamW is ``8 N`` both ways).

A package that is not installed is one ``ValueError`` line naming its extra, raised when such a
spec is planned or run (:meth:`Competitor.check_available`); the other competitors still work.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import os
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from frugal_search.optimizer import check_known_keys
from frugal_search.partition import TrainingMemory
from frugal_search.proxy._competitor_optimizers import (
    MuonWithAdamW,
    Settings,
    build_adam_mini,
    build_adamw_8bit,
    build_apollo,
    build_muon,
    plan_adam_mini,
    plan_adamw_8bit,
    plan_apollo,
    plan_muon,
    tensor_bytes,
)

__all__ = [
    "COMPETITORS",
    "COMPETITOR_NAMES",
    "Competitor",
    "CompetitorSpec",
    "MuonWithAdamW",
    "competitor_available",
    "competitor_spec",
    "competitor_state_bytes",
    "find_competitor",
]

STEP_KEY = "step"  # the per-parameter step counter: left out of every state figure


# The string settings and what each accepts (the packages' own choices).
_CHOICES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "scale_type": ("channel", "tensor"),
        "proj": ("random", "svd"),
        "proj_type": ("std", "reverse_std", "left", "right"),
        "adjust_lr_fn": ("original", "match_rms_adamw"),
    }
)
_POSITIVE = frozenset({"scale", "adamw_lr_ratio"})  # float settings where 0 means nothing


# ---- the registry -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Competitor:
    """One competitor optimizer: where it comes from, its authors' settings, how to build and count it.

    ``build(module, model, lr, settings)`` returns the optimizer over ``model``'s trainable
    parameters (``module``: the imported package); ``plan(module, model, settings)`` returns the
    bytes of its state after the first step, from shapes and dtypes only (``module`` is None
    unless ``needs_package_to_plan``).
    """

    name: str
    words: str
    """One line for reports and help texts."""
    module: str
    """The module imported to build it (``apollo_torch``, ``torch.optim``)."""
    distribution: str | None
    """Its PyPI package, or None when torch has it."""
    extra: str | None
    """The optional extra of this project that installs it, or None when torch has it."""
    default_lr: float
    """The authors' peak learning rate for LLaMA pre-training (a grid is centred on it)."""
    defaults: Mapping[str, Any]
    """Every setting it takes, at the authors' values."""
    source: str
    """Where ``defaults`` and ``default_lr`` come from."""
    build: Callable[[types.ModuleType, nn.Module, float, Settings], torch.optim.Optimizer] = field(repr=False)
    plan: Callable[[types.ModuleType | None, nn.Module, Settings], int] = field(repr=False)
    needs_package_to_plan: bool = False
    """Whether ``plan`` reads the package (Adam-mini's own name rules) rather than shapes alone."""

    def available(self) -> bool:
        """Whether its package imports here."""
        try:
            self.import_module()
        except ValueError:
            return False
        return True

    def check_available(self) -> None:
        """Raise the one-line ``ValueError`` naming the extra when its package is not installed."""
        self.import_module()

    def import_module(self) -> types.ModuleType:
        """Its module, or a ``ValueError`` naming the extra that installs it."""
        # bitsandbytes' import asks the Hugging Face hub for a CPU kernel when the `kernels` package is
        # installed; nothing here downloads at run time, so the hub is told to stay offline (the
        # package then uses its own kernels).
        # Its import then warns, once per process, that the hub's kernel did not load: words about a
        # download that was never wanted, so only its errors are shown.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            with _errors_only(*_NOISY_IMPORT_LOGGERS):
                return importlib.import_module(self.module)
        except ImportError as error:
            raise ValueError(
                f"the {self.name!r} competitor needs the {self.distribution} package: "
                f'pip install -e ".[{self.extra}]" (or pip install {self.distribution})'
            ) from error


_NOISY_IMPORT_LOGGERS = ("bitsandbytes", "kernels")


@contextlib.contextmanager
def _errors_only(*names: str) -> Iterator[None]:
    """Within the block the loggers ``names`` pass errors only; their levels are put back after."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [item.level for item in loggers]
    for item in loggers:
        item.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for item, level in zip(loggers, levels):
            item.setLevel(level)


# ---- the spec a run takes ---------------------------------------------------------------------


@dataclass(frozen=True)
class CompetitorSpec:
    """A competitor optimizer at one lr, with its settings: what ``run_proxy`` runs instead of a partition.

    ``lr`` None is the competitor's ``default_lr``. ``settings`` override its ``defaults`` (an
    unknown key or a bad value is a ``ValueError``); after construction ``settings`` holds every
    setting, so ``to_dict()`` records exactly what ran. Build one by name with
    :func:`competitor_spec`.
    """

    name: str
    lr: float | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        competitor = find_competitor(self.name)
        lr = competitor.default_lr if self.lr is None else self.lr
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (math.isfinite(lr) and lr > 0):
            raise ValueError(
                f"{self.name} lr must be a positive number (or None: {competitor.default_lr:g}), got {lr!r}"
            )
        if not isinstance(self.settings, Mapping):
            raise TypeError(
                f"{self.name} settings must be a mapping of setting names, got {type(self.settings).__name__}"
            )
        check_known_keys(self.settings, sorted(competitor.defaults), what=f"{self.name} setting")
        resolved = dict(competitor.defaults)
        for key, value in self.settings.items():
            resolved[key] = _checked_setting(self.name, key, value, competitor.defaults[key])
        object.__setattr__(self, "lr", float(lr))
        object.__setattr__(self, "settings", resolved)

    def __hash__(self) -> int:  # settings is a mapping: hash its items
        return hash((self.name, self.lr, tuple(sorted(self.settings.items()))))

    @property
    def competitor(self) -> Competitor:
        """Its registry record."""
        return COMPETITORS[self.name]

    # ---- what a run does with it -----------------------------------------------------------

    def build_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """Return the competitor's optimizer over ``model``'s trainable parameters."""
        module = self.competitor.import_module()
        _check_one_process(model, self.name)
        return self.competitor.build(module, model, self.lr, self.settings)

    def state_bytes(self, model: nn.Module) -> int:
        """Bytes of the optimizer's state after its first step on ``model``, planned from shapes
        (``model`` may live on ``meta``); :meth:`measure_state_bytes` of a real run gives the same."""
        module = self.competitor.import_module() if self.competitor.needs_package_to_plan else None
        return self.competitor.plan(module, model, self.settings)

    def measure_state_bytes(self, optimizer: torch.optim.Optimizer, *, device_type: str | None = None) -> int:
        """Bytes the optimizer holds now (:func:`competitor_state_bytes`); the proxy loop counts with it."""
        return competitor_state_bytes(optimizer, device_type=device_type)

    def training_memory(self, model: nn.Module) -> TrainingMemory:
        """Weights, gradients and this optimizer's state of training ``model``, in bytes.

        Gradients are those of the trainable parameters; ``adamw_state_bytes`` is AdamW's two
        moments of the same parameters, as :class:`~frugal_search.partition.TrainingMemory` defines it.
        """
        trainable = tensor_bytes(p for p in model.parameters() if p.requires_grad)
        return TrainingMemory(
            weights_bytes=tensor_bytes(model.parameters()),
            gradient_bytes=trainable,
            state_bytes=self.state_bytes(model),
            adamw_state_bytes=2 * trainable,
        )

    # ---- words and storage -------------------------------------------------------------------

    def summary(self) -> str:
        """The competitor in words with its lr and any setting off its authors' values, e.g.
        ``"Muon on the attention and mlp matrices, AdamW on the rest; lr 0.02"``."""
        changed = [
            f"{key} {_words(value)}" for key, value in self.settings.items() if value != self.competitor.defaults[key]
        ]
        return "; ".join([self.competitor.words, f"lr {self.lr:g}", *changed])

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe record with ``"method": <name>``, the lr and every setting (what a trial stores)."""
        settings = {key: list(value) if isinstance(value, tuple) else value for key, value in self.settings.items()}
        return {"method": self.name, "lr": self.lr, "settings": settings}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CompetitorSpec:
        """Inverse of :meth:`to_dict` (settings may be partial); an unknown key is a ``ValueError`` naming it."""
        check_known_keys(data, ["method", "lr", "settings"], what="competitor key")
        if "method" not in data:
            raise ValueError(
                f"a competitor record needs its 'method' (one of {', '.join(COMPETITOR_NAMES)}); got {dict(data)!r}"
            )
        return cls(str(data["method"]), data.get("lr"), dict(data.get("settings") or {}))


def competitor_spec(name: str, *, lr: float | None = None, **settings: Any) -> CompetitorSpec:
    """The competitor ``name`` at ``lr`` (None: its ``default_lr``) with ``settings`` over its defaults."""
    return CompetitorSpec(name, lr, settings)


def find_competitor(name: str) -> Competitor:
    """The registry record of ``name``, or a ``ValueError`` listing the names."""
    if name not in COMPETITORS:
        raise ValueError(f"unknown competitor {name!r}; allowed: {', '.join(COMPETITOR_NAMES)}")
    return COMPETITORS[name]


def competitor_available(name: str) -> bool:
    """Whether the package of competitor ``name`` imports here (``muon``: always, it is torch's)."""
    return find_competitor(name).available()


# ---- counting what an optimizer holds ---------------------------------------------------------


def competitor_state_bytes(optimizer: torch.optim.Optimizer, *, device_type: str | None = None) -> int:
    """Bytes of every storage the optimizer's per-parameter state holds now, each storage once.

    It looks into tensor subclasses (their inner tensors, as ``__tensor_flatten__`` names them:
    an 8-bit state's codes and scales, not the float size it reports), containers and helper
    objects (APOLLO keeps its projection matrix in a projector object); ``step`` counters are
    left out. ``device_type`` (e.g. ``"cuda"``) counts only the tensors on that kind of device.
    """
    seen: set[tuple[torch.device, int]] = set()
    total = 0
    for state in optimizer.state.values():
        for key, value in state.items():
            if key == STEP_KEY:
                continue
            for tensor in _held_tensors(value, visited=set()):
                if device_type is not None and tensor.device.type != device_type:
                    continue
                storage = tensor.untyped_storage()
                identity = (tensor.device, storage.data_ptr())
                if storage.nbytes() == 0 or identity in seen:
                    continue
                seen.add(identity)
                total += storage.nbytes()
    return total


def _held_tensors(value: Any, *, visited: set[int]) -> Iterator[torch.Tensor]:
    """The plain tensors reachable from one state value (a tensor subclass yields its inner tensors)."""
    if id(value) in visited:
        return
    visited.add(id(value))
    if isinstance(value, torch.Tensor):
        flatten = getattr(value, "__tensor_flatten__", None)
        if flatten is None or type(value) in (torch.Tensor, nn.Parameter):
            yield value
            return
        for name in flatten()[0]:
            yield from _held_tensors(getattr(value, name), visited=visited)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _held_tensors(item, visited=visited)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from _held_tensors(item, visited=visited)
    elif hasattr(value, "__dict__") and not isinstance(value, (type, types.ModuleType, types.FunctionType, nn.Module)):
        for item in vars(value).values():
            yield from _held_tensors(item, visited=visited)


def _check_one_process(model: nn.Module, name: str) -> None:
    if any(hasattr(p, "device_mesh") for p in model.parameters()):
        raise ValueError(
            f"the {name!r} competitor runs in one process; its parameters here are sharded: use [proxy] nproc = 1"
        )


# ---- settings ---------------------------------------------------------------------------------


def _checked_setting(competitor: str, key: str, value: Any, default: Any) -> Any:
    """``value`` for setting ``key`` (typed as its default), or a ``ValueError`` naming it and what is allowed."""
    where = f"{competitor} setting {key}={value!r}"
    if key in _CHOICES:
        if value not in _CHOICES[key]:
            raise ValueError(f"{where}: allowed {', '.join(map(repr, _CHOICES[key]))}")
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{where}: allowed true or false")
        return value
    if isinstance(default, tuple):  # betas
        pair = isinstance(value, (list, tuple)) and len(value) == 2
        if not pair or not all(_is_number(v) and 0 <= v < 1 for v in value):
            raise ValueError(f"{where}: allowed two numbers in [0, 1), e.g. (0.9, 0.999)")
        return tuple(float(v) for v in value)
    if isinstance(default, int) or (default is None and key in ("rank", "dim", "n_heads", "n_kv_heads")):
        if value is None and default is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            allowed = "an integer >= 1" + (" or None (from the model)" if default is None else "")
            raise ValueError(f"{where}: allowed {allowed}")
        return value
    if not _is_number(value) or value < 0 or (key in _POSITIVE and value == 0):
        raise ValueError(f"{where}: allowed a finite number {'> 0' if key in _POSITIVE else '>= 0'}")
    return float(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _words(value: Any) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(f"{v:g}" for v in value) + ")"
    return f"{value:g}" if isinstance(value, float) else str(value)


_ADAM_DEFAULTS = {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0}  # the project's AdamW baseline
_APOLLO_COMMON = {
    "proj": "random",
    "proj_type": "std",
    "update_proj_gap": 200,
    "disable_nl": False,
    "betas": (0.9, 0.999),
    "eps": 1e-6,  # APOLLOAdamW's default
    "weight_decay": 0.0,
}
_APOLLO_SOURCE = (
    "apollo-torch 1.0.3 README and the authors' scripts/pretrain_c4/llama_60m_apollo{,_mini}.sh "
    "(lr 0.01, weight decay 0, projection renewed every 200 steps)"
)

COMPETITORS: Mapping[str, Competitor] = MappingProxyType(
    {
        competitor.name: competitor
        for competitor in (
            Competitor(
                name="apollo",
                words="APOLLO (channel-wise scaling from rank-r random projections) on the attention and mlp "
                "matrices, Adam on the rest",
                module="apollo_torch",
                distribution="apollo-torch",
                extra="apollo",
                default_lr=0.01,
                defaults=MappingProxyType(
                    {"rank": None, "scale_type": "channel", "scale": 1.0, "scale_front": False, **_APOLLO_COMMON}
                ),
                source=_APOLLO_SOURCE + "; rank None: a quarter of the width",
                build=build_apollo,
                plan=plan_apollo,
            ),
            Competitor(
                name="apollo-mini",
                words="APOLLO-Mini (tensor-wise scaling from a rank-1 random projection) on the attention and "
                "mlp matrices, Adam on the rest",
                module="apollo_torch",
                distribution="apollo-torch",
                extra="apollo",
                default_lr=0.01,
                defaults=MappingProxyType(
                    {"rank": 1, "scale_type": "tensor", "scale": 128.0, "scale_front": True, **_APOLLO_COMMON}
                ),
                source=_APOLLO_SOURCE + "; scale_front as the 60M script (short warm-up)",
                build=build_apollo,
                plan=plan_apollo,
            ),
            Competitor(
                name="adam-mini",
                words="Adam-mini (one second moment per head, neuron or token)",
                module="adam_mini",
                distribution="adam-mini",
                extra="adam-mini",
                default_lr=1e-3,
                defaults=MappingProxyType({**_ADAM_DEFAULTS, "dim": None, "n_heads": None, "n_kv_heads": None}),
                source="adam-mini 1.1.1 README: lr, betas, eps and weight decay as for AdamW (the project's "
                "AdamW baseline); dim and heads None: from the model's config",
                build=build_adam_mini,
                plan=plan_adam_mini,
                needs_package_to_plan=True,
            ),
            Competitor(
                name="muon",
                words="Muon on the attention and mlp matrices, AdamW on the rest",
                module="torch.optim",
                distribution=None,
                extra=None,
                default_lr=0.02,
                defaults=MappingProxyType(
                    {
                        "momentum": 0.95,
                        "nesterov": True,
                        "ns_steps": 5,
                        "weight_decay": 0.01,
                        "adjust_lr_fn": "original",
                        "adamw_lr_ratio": 0.015,  # AdamW lr 3e-4 against Muon's 0.02
                        "adamw_betas": (0.9, 0.95),
                        "adamw_eps": 1e-10,
                        "adamw_weight_decay": 0.01,
                    }
                ),
                source="Keller Jordan's Muon README (MuonWithAuxAdam: Muon lr 0.02, weight decay 0.01; AdamW lr "
                "3e-4, betas (0.9, 0.95), weight decay 0.01; momentum 0.95, Nesterov, 5 Newton-Schulz steps)",
                build=build_muon,
                plan=plan_muon,
            ),
            Competitor(
                name="adamw-8bit",
                words="8-bit AdamW (bitsandbytes, block-wise quantized moments)",
                module="bitsandbytes",
                distribution="bitsandbytes",
                extra="bitsandbytes",
                default_lr=1e-3,
                defaults=MappingProxyType({**_ADAM_DEFAULTS, "min_8bit_size": 4096}),
                source="the project's AdamW baseline settings; min_8bit_size: bitsandbytes' default",
                build=build_adamw_8bit,
                plan=plan_adamw_8bit,
            ),
        )
    }
)
"""Every competitor by name."""

COMPETITOR_NAMES: tuple[str, ...] = tuple(COMPETITORS)
"""The competitor names, in registry order."""
