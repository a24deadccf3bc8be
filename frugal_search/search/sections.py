"""The sections of a study file as typed, frozen records, and the names each key allows.

``frugal_search.search.config`` reads a study file into these (``load_study_config``) and adds the
whole-file record ``StudyConfig``; they hold the proxy stage's own objects (``ProxyBudget``,
``ModelSpec``, ``TaskSpec``) rather than tables, so no later stage parses a table again.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from frugal_search.partition import accepted_baseline_names
from frugal_search.proxy import METHOD_NAMES, ModelSpec, ProxyBudget, TaskSpec
from frugal_search.proxy import TASK_KINDS as _PROXY_TASK_KINDS

SAMPLERS = ("tpe", "nsga2", "gp", "random")
# Task kinds of ``[task] kind`` and the figures each may optimise first: the proxy stage's TaskSpec's.
TASK_KINDS: tuple[str, ...] = _PROXY_TASK_KINDS
TASK_METRICS: dict[str, tuple[str, ...]] = {kind: TaskSpec(kind).metrics for kind in TASK_KINDS}
# The memory objective: optimizer state, or weights + gradients + state (frozen weights save gradients).
MEMORY_OBJECTIVES = ("state_mib", "training_mib")
# Which way each objective is better, as Optuna spells a direction (the proxy stage's METRIC_DIRECTIONS).
OBJECTIVE_DIRECTIONS: dict[str, str] = {
    "eval_loss": "minimize",
    "accuracy": "maximize",
    "macro_f1": "maximize",
    "state_mib": "minimize",
    "training_mib": "minimize",
}
DEFAULT_OBJECTIVES = ("eval_loss", "state_mib")
FIDELITIES = ("none", "successive-halving")
LR_RULES: tuple[str, ...] = ("none", "width")  # lr transfer rules (frugal_search.partition.lr_transfer)
BASELINE_NAMES = (*accepted_baseline_names(), *METHOD_NAMES)
"""Names ``[study] baselines`` accepts: the partition stage's baselines and their aliases, and the
proxy stage's method baselines (``lora`` and the competitors: ``frugal_search.proxy.METHODS``)."""


@dataclass(frozen=True)
class StudySection:
    """``[study]``: which Optuna study to run, where it is stored, and how it stops."""

    name: str  # Optuna study name (defaults to the file name without ``.toml``)
    storage: str  # Optuna storage URL, or ``journal:///path`` / ``*.log`` for a journal file
    trials: int = 40  # the search stops when the study holds this many finished trials
    sampler: str = "tpe"  # tpe | nsga2 | gp | random
    seed: int = 0  # sampler seed (each worker adds its index)
    memory_budget: int | None = None  # optimizer-state bytes a partition may use; None: no limit
    baselines: tuple[str, ...] = ()  # baseline partitions, each run on its lr grid (adamw, frugal, ...)
    baseline_lrs: tuple[float, ...] = ()  # the baselines' lr grid; empty: 4 points over the space's lr range
    # a competitor's own grid: its authors' default lr times these; empty: it runs on baseline_lrs
    competitor_lr_multipliers: tuple[float, ...] = ()
    front_seeds: int = 2  # extra seeds of the front's members and each baseline's best run, after the search
    objectives: tuple[str, str] = DEFAULT_OBJECTIVES  # (figure, memory): e.g. ("accuracy", "state_mib")
    heartbeat_interval: int = 10  # seconds between "still alive" marks of a running trial
    grace_period: int = 60  # seconds without a mark after which a running trial counts as dead


DEFAULT_PROXY_STEPS = 200  # [proxy] steps when the file gives none
# [proxy] keys that are the proxy stage's ProxyBudget fields: all of them but ``lr`` (the study's
# ``lr`` is the partitions' base lr, not the budget's override of it) and ``tokens`` (a study's
# length is in steps).
BUDGET_KEYS: tuple[str, ...] = tuple(
    item.name for item in dataclasses.fields(ProxyBudget) if item.name not in ("lr", "tokens")
)


@dataclass(frozen=True)
class ProxySection:
    """``[proxy]``: the proxy runs' budget, the partitions' base lr and where the runs train.

    The budget keys (:data:`BUDGET_KEYS`: ``steps``, ``batch_size``, ``seq_len``, ...) are the proxy
    stage's ``ProxyBudget`` fields, read once into :attr:`run_budget` (a key not given keeps
    ``ProxyBudget``'s default; ``steps`` 200); they read as attributes too (``config.proxy.steps``).
    """

    run_budget: ProxyBudget = field(default_factory=lambda: ProxyBudget(steps=DEFAULT_PROXY_STEPS))
    lr: float | None = None  # the fixed base lr when ``[space]`` does not vary ``lr``; baselines use it too
    # where proxy runs train, parsed once (proxy.parse_device); the set-up checks this machine has it.
    # With several workers "cuda" (no index) spreads them over the GPUs.
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    threads: int | None = None  # torch CPU threads per worker; None: torch's default (cores / workers with several)
    nproc: int = 1  # ranks of each proxy run: > 1 runs it under torchrun with FSDP2 (N CPU processes, or N GPUs)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names that are not fields: a budget key reads the budget's value.
        if name in BUDGET_KEYS:
            return getattr(self.run_budget, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def budget(self, *, lr: float | None = None) -> ProxyBudget:
        """The proxy runs' ``ProxyBudget`` (:attr:`run_budget`; ``lr`` None keeps the partition's lr)."""
        return self.run_budget if lr is None else dataclasses.replace(self.run_budget, lr=lr)


@dataclass(frozen=True)
class SearchSection:
    """``[search]``: fidelity schedule (successive halving lives in ``search.fidelity``), the
    confirmation rung above the proxy, where the recommendation is taken, and the optional rung on
    the target model after it, which then takes it (``search.rungs``)."""

    fidelity: str = "none"  # none | successive-halving
    min_fraction: float = 0.25  # share of the proxy steps every trial runs before it can be stopped
    reduction_factor: float = 3  # keep the best 1/reduction_factor at each rung
    confirm_factor: int = 4  # the confirmation rung trains this many times the proxy steps
    confirm_top: int = 5  # candidates promoted to it (front members and baselines, by non-dominated rank)
    confirm_seeds: int = 3  # runs (seeds) of each promoted candidate there; 0: no rung, pick at the proxy
    # the last rung: the confirmation rung's candidates within the budget trained on [transfer] model
    # (width lr rule) for target_factor x the proxy steps, confirm_seeds each; the answer is taken there
    target_rung: bool = False
    target_factor: int = 1

    @property
    def confirms(self) -> bool:
        """Whether the search ends with the confirmation rung."""
        return self.confirm_seeds > 0

    @property
    def confirms_on_target(self) -> bool:
        """Whether the confirmation rung is followed by the rung on the ``[transfer]`` model."""
        return self.confirms and self.target_rung


TaskSection = TaskSpec
"""``[task]``: what a proxy run trains, the proxy stage's ``TaskSpec`` (``kind``: causal-lm |
sequence-classification; ``metrics``: the figures its runs report, any of which may be the first
objective). ``sequence-classification`` reads ``[data]`` as labelled data (the proxy stage's
``LabelledDataSpec``: ``source``, ``text_column``, ``text_pair_column``, ``label_column``,
``validation_fraction``) and puts a new head on ``[model]`` (a pretrained start:
``source = "tiny-llama-stdlib"`` or a local model directory)."""


@dataclass(frozen=True)
class TransferSection:
    """``[transfer]``: the model the study's splits are confirmed on (``frugal-search transfer``).

    ``model`` is the target, the proxy stage's ``ModelSpec`` of a ``[model]``-like table (``source``,
    ``overrides``); ``top`` front partitions and as many others are checked under every rule of
    ``lr_rules``; ``top_k`` front partitions and the baselines are swept over ``lr_multipliers`` under
    every rule of ``confirm_rules``; each one's best point then runs with ``seeds`` more seeds. The
    values are checked when it is built (``ValueError`` naming the field); the transfer command's
    plan (``frugal_search.validate.TransferPlan``) is this section plus the command line's settings.
    """

    model: ModelSpec
    top: int = 6  # check: front partitions, and as many others spread over memory (plus every baseline)
    top_k: int = 3  # confirmation: best searched front partitions swept (plus every baseline)
    lr_rules: tuple[str, ...] = LR_RULES  # check: every partition once per rule, as found
    lr_multipliers: tuple[float, ...] = (0.5, 1.0, 2.0)  # confirmation sweep around the lr
    confirm_rules: tuple[str, ...] = ("width",)  # lr rules the sweep is around (measured: tiny's report)
    seeds: int = 2  # extra seeds of each confirmed run, so the verdict is over seeds

    def __post_init__(self) -> None:
        if not isinstance(self.model, ModelSpec):
            raise TypeError(f"model must be a ModelSpec, got {self.model!r}")
        for name, least, meaning in (
            ("top", 1, ""),
            ("top_k", 0, " (0: no confirmation sweep)"),
            ("seeds", 0, " (extra seeds of each confirmed run)"),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ValueError(f"{name} must be an integer >= {least}{meaning}, got {value!r}")
        for name in ("lr_rules", "confirm_rules"):
            rules = tuple(getattr(self, name))
            if not rules or any(rule not in LR_RULES for rule in rules) or len(set(rules)) != len(rules):
                raise ValueError(f"{name} must be distinct names among {', '.join(LR_RULES)}, got {getattr(self, name)!r}")
            object.__setattr__(self, name, rules)
        multipliers = tuple(self.lr_multipliers)
        if not multipliers or len(set(multipliers)) != len(multipliers) or not all(_is_number(m) and m > 0 for m in multipliers):
            raise ValueError(
                f"lr_multipliers must be distinct finite numbers > 0 (e.g. 0.5, 1, 2), got {self.lr_multipliers!r}"
            )
        object.__setattr__(self, "lr_multipliers", tuple(float(m) for m in multipliers))

    def model_spec(self) -> ModelSpec:
        """The proxy stage's ``ModelSpec`` of the target model (:attr:`model`)."""
        return self.model




def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
