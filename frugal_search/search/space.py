"""The search space over partitions: which dimensions exist, how ``[space]`` sets them, how a
trial samples them, and how the sampled values become a :class:`~frugal_search.partition.Partition`.

Dimensions (Optuna parameter names; "fixed" is the value used when ``[space]`` does not list it):

===============================  ===========  ================================  ==============
name                             type         allowed                           fixed
===============================  ===========  ================================  ==============
``lr``                           float, log   >= 0                              ``1e-3``
``embedding_norm_head_lr_scale`` float, log   >= 0                              ``1.0``
``head_role``                    choice       stateful|frugal|state_free|frozen ``stateful``
``embedding_role``               choice       stateful|frugal|state_free|frozen ``stateful``
``norm_role``                    choice       stateful|frugal|state_free|frozen ``stateful``
``attention_role``               choice       stateful|frugal|state_free|frozen ``frugal``
``mlp_role``                     choice       stateful|frugal|state_free|frozen ``frugal``
``stateful_first_layers``        float        0..1 (fraction of depth)          ``0.0``
``stateful_last_layers``         float        0..1 (fraction of depth)          ``0.0``
``stateful_rule``                choice       adamw|lion|sgdm                   ``adamw``
``mode``                         choice       blocks|svd|random|randperm|       ``blocks``
                                              columns|rows|randk
``density``                      float        0..1                              ``0.25``
``rank``                         int, log     >= 0 (only svd/random/randperm)   unset
``update_gap``                   int, log     >= 1                              ``200``
``block_order``                  choice       random|ascending|descending|      ``descending``
                                              mirror (only for ``blocks``)
``state_free``                   choice       signsgd|sgd|none                  ``signsgd``
``state_free_lr_scale``          float, log   >= 0 (not for ``none``)           ``1.0``
``split_lr_scale``               float, log   >= 0                              ``1.0``
``reset_state``                  choice       true|false                        ``true``
``state_dtype``                  choice       fp32|bf16|int8                    ``fp32``
``second_moment``                choice       full|factored (AdamW only)        ``full``
``density_end_share``            float        0..1 (of ``density``)             ``1.0``
``update_gap_growth``            float        >= 1                              ``1.0``
``loss_plateau``                 float        >= 0                              ``0.005``
===============================  ===========  ================================  ==============

The FRUGAL settings' dimensions (``stateful_rule`` to ``second_moment``, and ``lr``) allow exactly what the
optimizer's schema allows (:data:`frugal_search.optimizer.SETTINGS`: finite numbers, no bools as
numbers, 0 valid for lr and the scales); a range sampled on a log scale is stricter, it needs
``low > 0`` (write ``log = false`` to start a range at 0).

How a dimension is written in ``[space]``:

- a single value fixes it: ``mode = "blocks"``, ``density = 0.25``;
- a list of two numbers is a range ``[low, high]`` for numeric dimensions (sampled on a log scale
  where the table says "log"): ``lr = [1e-4, 1e-2]``;
- a list is the choices for choice dimensions: ``head_role = ["stateful", "state_free"]``;
- a table gives everything explicitly: ``density = { low = 0.05, high = 0.5, log = true }``,
  ``update_gap = { choices = [10, 50, 200] }``.

Conditional dimensions are sampled only where they apply, so Optuna never sees a value that does
nothing: ``mode``, ``density``, ``rank``, ``update_gap``, ``block_order`` (blocks only) and
``reset_state`` only when some kind has the ``frugal`` role; ``stateful_rule`` (partition-wide:
the always-stateful tensors take it too) when some kind is ``frugal`` or ``stateful``; so does
``state_dtype``, and ``second_moment`` when the state-full rule is also AdamW; ``state_free`` and
``split_lr_scale`` when some kind is ``frugal`` or ``state_free``; ``state_free_lr_scale`` unless
the state-free rule is ``none``; the stateful layer fractions only when attention or MLP is not
already ``stateful``.

How the moments are stored is a pair of dimensions, off unless ``[space]`` lists them (fixed at
today's full-precision moments): ``state_dtype`` (bf16, or int8 block-wise quantized) and
``second_moment`` (factored: Adafactor's row and column statistics for matrices), partition-wide,
for every tensor with state. They combine with the split: the memory objective and the budget
count each option's bytes (codes and scales, row and column vectors), so a low-precision split can
fit a budget its fp32 twin misses, and wins a place on the front by its loss at that memory.

The schedules (AdaFRUGAL's, see :class:`~frugal_search.optimizer.FRUGAL`) are dimensions too, off
unless ``[space]`` lists them: ``density_end_share`` (where ``density`` applies) decays rho linearly
over the proxy run to that share of the sampled density (1: constant), and ``update_gap_growth``
(where ``frugal`` applies) grows T by that factor whenever the relative change of the evaluated
loss stays under ``loss_plateau`` (sampled only when the growth is above 1). The memory objective
is the schedule's peak, the start density's state, so a schedule wins a place on the front only by
its loss. An exported split carries the decay over the proxy's steps; set ``density_steps`` to
the length of the real run.

The partition a trial gets (first matching rule wins):

1. embedding, norm and head: their role, with ``lr_scale = embedding_norm_head_lr_scale`` (on a
   small model a higher lr for these moves the loss more than the split does, so the search must
   be able to move it to rank partitions fairly);
2. attention and MLP of the first / last ``stateful_*_layers`` share of depth: ``stateful``
   (layer ``i`` of ``L`` counts as in the first share ``s`` when ``(i + 0.5) / L < s``);
3. attention: ``attention_role``; MLP: ``mlp_role``;
4. biases and anything else: ``stateful`` (FRUGAL's always-stateful set).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

from frugal_search.optimizer import (
    DEFAULTS,
    FRUGAL_SETTINGS,
    PROJECTION_MODES,
    ROLES,
    SETTINGS,
    STORAGE_SETTINGS,
    Setting,
    check_known_keys,
)
from frugal_search.partition import LR_SCALE, Partition, Rule, find_baseline

ROLE_KINDS = ("head", "embedding", "norm", "attention", "mlp")


@dataclass(frozen=True)
class DimensionKind:
    """One dimension of the space: the :class:`~frugal_search.optimizer.Setting` that says its type,
    allowed values, default (its value when ``[space]`` does not list it) and check, and whether a
    range of it is sampled on a log scale unless the user says otherwise.

    The FRUGAL settings' dimensions are the optimizer schema's settings themselves, so a value the
    space accepts is one the optimizer accepts. A range may be stricter where sampling needs it:
    a log-scale range needs ``low > 0`` (the error says so and suggests ``log = false``).
    """

    setting: Setting
    log: bool = False

    @property
    def value_type(self) -> str:
        """``"float"``, ``"int"`` or ``"choice"`` (choices and bools)."""
        return "choice" if self.setting.kind in ("choice", "bool") else self.setting.kind

    @property
    def default(self) -> Any:
        """The value used when ``[space]`` does not list this dimension."""
        return self.setting.default

    @property
    def choices(self) -> tuple[Any, ...]:
        """The allowed values of a choice dimension (``(True, False)`` for a bool)."""
        return (True, False) if self.setting.kind == "bool" else self.setting.choices

    @property
    def help(self) -> str:
        """What the dimension is, in a few words."""
        return self.setting.help

    def allowed(self) -> str:
        """Words describing the allowed values, for error messages."""
        if self.value_type == "choice":
            return " | ".join(_format_value(choice) for choice in self.choices)
        return self.setting.allowed()


def _share(name: str, help_text: str) -> Setting:
    return Setting(name, "float", 0.0, low=0.0, high=1.0, help=help_text)


_LOG_SCALE = ("lr", "update_gap", "rank", "state_free_lr_scale", "split_lr_scale")

DIMENSIONS: dict[str, DimensionKind] = {
    "lr": DimensionKind(SETTINGS["lr"], log=True),
    "embedding_norm_head_lr_scale": DimensionKind(
        dataclasses.replace(
            LR_SCALE, name="embedding_norm_head_lr_scale", help="lr multiplier of embedding, norm and head"
        ),
        log=True,
    ),
    **{
        f"{kind}_role": DimensionKind(
            Setting(f"{kind}_role", "choice", default, choices=ROLES, help=f"role of the {kind} parameters")
        )
        for kind, default in (
            ("head", "stateful"),
            ("embedding", "stateful"),
            ("norm", "stateful"),
            ("attention", "frugal"),
            ("mlp", "frugal"),
        )
    },
    "stateful_first_layers": DimensionKind(
        _share("stateful_first_layers", "fraction of the first layers whose blocks stay stateful")
    ),
    "stateful_last_layers": DimensionKind(
        _share("stateful_last_layers", "fraction of the last layers whose blocks stay stateful")
    ),
    **{name: DimensionKind(SETTINGS[name], log=name in _LOG_SCALE) for name in FRUGAL_SETTINGS},
    **{name: DimensionKind(SETTINGS[name]) for name in STORAGE_SETTINGS},
    "density_end_share": DimensionKind(
        Setting(
            "density_end_share", "float", 1.0, low=0.0, high=1.0,
            help="rho at the end of the proxy run as a share of density (1: no rho schedule)",
        )
    ),
    "update_gap_growth": DimensionKind(SETTINGS["update_gap_growth"]),
    "loss_plateau": DimensionKind(SETTINGS["loss_plateau"]),
}


class SpaceError(ValueError):
    """A ``[space]`` entry that cannot be used; the loader adds the file name."""


@dataclass(frozen=True)
class Dimension:
    """One dimension as the study sets it: fixed, a choice among values, or a numeric range."""

    name: str
    fixed: Any = None  # used when ``choices`` and ``low`` are both unset
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None

    @property
    def varies(self) -> bool:
        """True when the search samples this dimension (more than one possible value)."""
        if self.choices is not None:
            return len(self.choices) > 1
        return self.low is not None and self.low != self.high

    def holds(self, value: Any) -> bool:
        """Whether ``value`` is one this dimension can give (a choice, inside the range, the fixed value)."""
        if self.choices is not None:
            return value in self.choices
        if self.low is None:
            return value == self.fixed
        return isinstance(value, (int, float)) and not isinstance(value, bool) and self.low <= value <= self.high

    def sample(self, trial: optuna.Trial) -> Any:
        """Return this dimension's value for ``trial`` (fixed values are not sent to Optuna)."""
        if self.choices is not None:
            if len(self.choices) == 1:
                return self.choices[0]
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.low is None:
            return self.fixed
        if self.low == self.high:
            return self.low
        if DIMENSIONS[self.name].value_type == "int":
            step = int(self.step or 1)
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=step, log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)


@dataclass(frozen=True)
class SearchSpace:
    """Every dimension of the partition space, each fixed, a set of choices or a range."""

    dimensions: tuple[Dimension, ...]

    def __getitem__(self, name: str) -> Dimension:
        for dimension in self.dimensions:
            if dimension.name == name:
                return dimension
        raise KeyError(name)

    @property
    def varying(self) -> tuple[str, ...]:
        """Names of the dimensions the search samples."""
        return tuple(dimension.name for dimension in self.dimensions if dimension.varies)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe description (stored in the study so a report can show the space)."""
        out: dict[str, Any] = {}
        for dimension in self.dimensions:
            if dimension.choices is not None:
                out[dimension.name] = {"choices": list(dimension.choices)}
            elif dimension.low is not None:
                out[dimension.name] = {"low": dimension.low, "high": dimension.high, "log": dimension.log}
            else:
                out[dimension.name] = dimension.fixed
        return out


def parse_space(table: dict[str, Any], *, default_lr: float | None = None) -> SearchSpace:
    """Read a ``[space]`` table into a :class:`SearchSpace`; unlisted dimensions are fixed.

    ``default_lr`` (the ``[proxy]`` lr) replaces the built-in fixed lr when ``lr`` is not listed.
    Raises :class:`SpaceError` naming the key and the allowed values.
    """
    check_known_keys(table, DIMENSIONS, error=SpaceError)
    dimensions = []
    for name, kind in DIMENSIONS.items():
        if name in table:
            dimensions.append(_parse_dimension(name, kind, table[name]))
        elif name == "lr" and default_lr is not None:
            dimensions.append(Dimension(name, fixed=_check_number(name, kind, default_lr)))
        else:
            dimensions.append(Dimension(name, fixed=kind.default))
    return SearchSpace(tuple(dimensions))


def _parse_dimension(name: str, kind: DimensionKind, raw: Any) -> Dimension:
    if isinstance(raw, dict):
        return _parse_table(name, kind, raw)
    if isinstance(raw, list):
        if kind.value_type != "choice" and len(raw) == 2 and all(_is_number(value) for value in raw):
            return _make_range(name, kind, low=raw[0], high=raw[1], log=kind.log, step=None)
        return _make_choices(name, kind, raw)
    if kind.value_type == "choice":
        return Dimension(name, fixed=_check_choice(name, kind, raw))
    return Dimension(name, fixed=_check_number(name, kind, raw))


def _parse_table(name: str, kind: DimensionKind, raw: dict[str, Any]) -> Dimension:
    allowed_keys = ("choices",) if kind.value_type == "choice" else ("choices", "high", "log", "low", "step")
    check_known_keys(raw, allowed_keys, where=f"{name}: ", error=SpaceError)
    if "choices" in raw:
        if len(raw) > 1:
            raise SpaceError(f"{name}: give either 'choices' or 'low'/'high', not both")
        if not isinstance(raw["choices"], list):
            raise SpaceError(f"{name}.choices: expected a list, got {raw['choices']!r}")
        return _make_choices(name, kind, raw["choices"])
    if "low" not in raw or "high" not in raw:
        raise SpaceError(f"{name}: a range needs both 'low' and 'high' (or give 'choices')")
    log = raw.get("log", kind.log)
    if not isinstance(log, bool):
        raise SpaceError(f"{name}.log: expected true or false, got {log!r}")
    step = raw.get("step")
    if step is not None and (not _is_number(step) or step <= 0):
        raise SpaceError(f"{name}.step: expected a number > 0, got {step!r}")
    if step is not None and log:
        raise SpaceError(
            f"{name}: 'step' and 'log = true' cannot be combined (Optuna samples one or the other)"
        )
    return _make_range(name, kind, low=raw["low"], high=raw["high"], log=log, step=step)


def _make_choices(name: str, kind: DimensionKind, raw: list[Any]) -> Dimension:
    if not raw:
        raise SpaceError(f"{name}: empty list of choices; allowed: {kind.allowed()}")
    check = _check_choice if kind.value_type == "choice" else _check_number
    values = tuple(check(name, kind, value) for value in raw)
    if len(set(values)) != len(values):
        raise SpaceError(f"{name}: repeated choice in {raw!r}")
    return Dimension(name, choices=values)


def _make_range(
    name: str, kind: DimensionKind, *, low: Any, high: Any, log: bool, step: float | None
) -> Dimension:
    low = _check_number(name, kind, low)
    high = _check_number(name, kind, high)
    if low > high:
        raise SpaceError(f"{name}: range low {low!r} is above high {high!r}; write [low, high]")
    if log and low <= 0:
        raise SpaceError(f"{name}: a log-scale range needs low > 0, got {low!r}; use log = false")
    return Dimension(name, low=low, high=high, log=log, step=step)


def _check_choice(name: str, kind: DimensionKind, value: Any) -> Any:
    if not kind.setting.accepts(value):
        raise SpaceError(f"{name}: {value!r} is not allowed; allowed: {kind.allowed()}")
    return value


def _check_number(name: str, kind: DimensionKind, value: Any) -> float | int:
    if not kind.setting.accepts(value):
        wrong_type = not _is_number(value) or (kind.value_type == "int" and not isinstance(value, int))
        if wrong_type:
            raise SpaceError(f"{name}: expected {kind.allowed()}, got {value!r}")
        raise SpaceError(f"{name}: {value!r} is out of range; allowed: {kind.allowed()}")
    return value if kind.value_type == "int" else float(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def sample_settings(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    """Sample every dimension that applies to this trial; return ``{name: value}``.

    Dimensions that do not apply (see the module docstring) are left out of the result and are
    never suggested to Optuna, so the samplers see a proper conditional space.
    """
    return choose_settings(lambda name: space[name].sample(trial))


def choose_settings(value_of: Callable[[str], Any]) -> dict[str, Any]:
    """The conditional structure of the space: ask ``value_of(name)`` for each dimension that applies.

    Sampling asks the trial (:func:`sample_settings`); a baseline's point asks its settings
    (:func:`baseline_point`), so both follow the same rules of which dimension applies when.
    """
    values: dict[str, Any] = {"lr": value_of("lr")}
    values["embedding_norm_head_lr_scale"] = value_of("embedding_norm_head_lr_scale")
    for kind in ROLE_KINDS:
        values[f"{kind}_role"] = value_of(f"{kind}_role")
    roles = {values[f"{kind}_role"] for kind in ROLE_KINDS}
    if values["attention_role"] != "stateful" or values["mlp_role"] != "stateful":
        values["stateful_first_layers"] = value_of("stateful_first_layers")
        values["stateful_last_layers"] = value_of("stateful_last_layers")
    if roles & {"frugal", "stateful"}:
        values["stateful_rule"] = value_of("stateful_rule")
        values["state_dtype"] = value_of("state_dtype")
        if values["stateful_rule"] == "adamw":  # only AdamW keeps a second moment
            values["second_moment"] = value_of("second_moment")
    if "frugal" in roles:
        values["mode"] = mode = value_of("mode")
        rank = value_of("rank") if mode in PROJECTION_MODES else None
        if rank is not None:
            values["rank"] = rank
        else:
            values["density"] = value_of("density")
            values["density_end_share"] = value_of("density_end_share")
        values["update_gap"] = value_of("update_gap")
        values["update_gap_growth"] = value_of("update_gap_growth")
        if values["update_gap_growth"] != 1.0:
            values["loss_plateau"] = value_of("loss_plateau")
        if mode == "blocks":
            values["block_order"] = value_of("block_order")
        values["reset_state"] = value_of("reset_state")
    if roles & {"frugal", "state_free"}:
        values["state_free"] = value_of("state_free")
        if values["state_free"] != "none":
            values["state_free_lr_scale"] = value_of("state_free_lr_scale")
        values["split_lr_scale"] = value_of("split_lr_scale")
    return values


def baseline_point(name: str, *, density: float = 0.25, lr: float | None = None) -> dict[str, Any]:
    """The space's values that rebuild baseline ``name`` (``partition_from_settings`` of them is it).

    The baselines' rules are whole kinds (the paper's split set, or everything stateful), so each
    is a point of the space: enqueued with these values, a baseline is an observation the sampler
    learns from, and the search can refine it. ``lr`` replaces the baseline's own lr (an lr grid).
    Raises ``ValueError`` for a baseline whose rules are not whole kinds.
    """
    baseline = find_baseline(name)
    settings = {**DEFAULTS, **baseline.partition_settings(density, {} if lr is None else {"lr": lr})}
    roles = {}
    for kind in ROLE_KINDS:
        rule = next((rule for rule in baseline.rules if rule.kinds is None or kind in rule.kinds), None)
        if rule is None or rule.layers is not None or rule.names is not None or rule.lr_scale != 1.0:
            raise ValueError(f"baseline {name!r} gives {kind} no whole-kind rule; it is not a point of the space")
        roles[f"{kind}_role"] = rule.role
    fixed = {
        **roles, "embedding_norm_head_lr_scale": 1.0, "stateful_first_layers": 0.0, "stateful_last_layers": 0.0,
        "density_end_share": 1.0,
    }
    return choose_settings(lambda key: fixed[key] if key in fixed else settings.get(key))


def partition_from_settings(
    values: dict[str, Any],
    *,
    name: str | None = None,
    provenance: Any = None,
    num_layers: int | None = None,
    schedule_steps: int | None = None,
) -> Partition:
    """Build the :class:`Partition` that the sampled ``values`` describe (rules in the docstring order).

    ``num_layers`` (the proxy model's depth) snaps the stateful shares of first and last layers to
    whole layers of the proxy: a share s becomes ``k = round(s * num_layers)`` layers, written as
    the share ``k / num_layers`` (so it transfers as the same share of a deeper model), and no rule
    at all when k is 0. Without it the raw share is used. ``schedule_steps`` (the proxy run's
    steps) is the length of a rho schedule; values with ``density_end_share`` below 1 need it.
    """
    outer_scale = values.get("embedding_norm_head_lr_scale", 1.0)
    rules = []
    for kind in ("embedding", "norm", "head"):
        scale = {} if outer_scale == 1.0 else {"lr_scale": outer_scale}
        rules.append(Rule(values[f"{kind}_role"], kinds=(kind,), **scale))
    # Shares of depth as "lo-hi" ranges: layer i is selected when (i + 0.5) / L lies in [lo, hi),
    # so a small share selects no layer rather than rounding up to one.
    first = _snap_share(values.get("stateful_first_layers", 0.0), num_layers)
    if first > 0:
        rules.append(Rule("stateful", kinds=("attention", "mlp"), layers=f"0-{first:.4g}"))
    last = _snap_share(values.get("stateful_last_layers", 0.0), num_layers)
    if last > 0:
        rules.append(Rule("stateful", kinds=("attention", "mlp"), layers=f"{1.0 - last:.4g}-1"))
    if values["attention_role"] == values["mlp_role"]:
        # one group, as the paper's split set: blocks mode schedules one window over a group
        rules.append(Rule(values["attention_role"], kinds=("attention", "mlp")))
    else:
        rules.append(Rule(values["attention_role"], kinds=("attention",)))
        rules.append(Rule(values["mlp_role"], kinds=("mlp",)))
    rules.append(Rule("stateful"))  # biases and anything else
    settings = {key: values[key] for key in (*FRUGAL_SETTINGS, *STORAGE_SETTINGS) if key in values}
    settings.update(_schedule_settings(values, schedule_steps))
    return Partition(rules, lr=values["lr"], **settings, name=name, provenance=provenance)


def _schedule_settings(values: dict[str, Any], schedule_steps: int | None) -> dict[str, Any]:
    """The FRUGAL schedule settings of the sampled ``values`` (none for constant rho and T)."""
    settings: dict[str, Any] = {}
    share = values.get("density_end_share", 1.0)
    if share != 1.0 and "density" in values:
        if schedule_steps is None:
            raise ValueError("density_end_share below 1 needs schedule_steps, the steps the rho schedule spans")
        settings["density_end"] = values["density"] * share
        settings["density_steps"] = schedule_steps
    if values.get("update_gap_growth", 1.0) != 1.0:
        settings["update_gap_growth"] = values["update_gap_growth"]
        settings["loss_plateau"] = values["loss_plateau"]
    return settings


def _snap_share(share: float, num_layers: int | None) -> float:
    """Return ``share`` of depth as a whole number of ``num_layers`` layers (see partition_from_settings)."""
    if num_layers is None or share <= 0:
        return share
    return round(share * num_layers) / num_layers


def sample_partition(
    trial: optuna.Trial,
    space: SearchSpace,
    *,
    name: str | None = None,
    provenance: Any = None,
    num_layers: int | None = None,
    schedule_steps: int | None = None,
) -> Partition:
    """Sample this trial's point of ``space`` and return it as a :class:`Partition`."""
    values = sample_settings(trial, space)
    return partition_from_settings(
        values, name=name, provenance=provenance, num_layers=num_layers, schedule_steps=schedule_steps
    )
