"""The schema of the FRUGAL optimizer's settings: one place for names, types, ranges and checks.

Every setting is a :class:`Setting` in :data:`SETTINGS` (name, type, allowed choices or range,
default) with one :meth:`Setting.check` that raises ``ValueError`` naming the value and what is
allowed. The optimizer, the partition's rules and settings, split files, study files and the
search space all check through it, so one value gets one verdict everywhere.

Decision (following ``torch.optim.AdamW``): ``lr``, ``eps``, ``weight_decay``, ``split_lr_scale``
and ``state_free_lr_scale`` are finite numbers ``>= 0`` (0 is valid and meaningful: FRUGAL rho 0,
a frozen-by-lr group); NaN and inf are rejected; ``rank`` is None or an int ``>= 0`` (the paper's
fine-tuning uses rank 0); ``density`` is in ``[0, 1]``; ``update_gap`` is an int ``>= 1``; a bool
is never taken as a number. ``betas`` defaults to None, resolved per ``stateful_rule`` (AdamW's
(0.9, 0.999), Lion's (0.9, 0.99); SGD-momentum reads ``momentum`` instead), so a rule-dependent
default is one value in the schema, not one per rule. A search-space *range* may be stricter where sampling needs it (a
log-scale range needs ``low > 0``) and says so in its error.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

MODES: tuple[str, ...] = ("blocks", "svd", "random", "randperm", "columns", "rows", "randk")
ROLES: tuple[str, ...] = ("stateful", "frugal", "state_free", "frozen")
BLOCK_ORDERS: tuple[str, ...] = ("random", "ascending", "descending", "mirror")
STATE_FREE_RULES: tuple[str, ...] = ("signsgd", "sgd", "none")
STATEFUL_RULES: tuple[str, ...] = ("adamw", "lion", "sgdm")
# How the state-full moments are stored (see ``_storage``): "fp32" is full precision, the
# parameter's own dtype as torch.optim.AdamW keeps it; "bf16" and block-wise quantized "int8" store
# fewer bits and update in fp32.
STATE_DTYPES: tuple[str, ...] = ("fp32", "bf16", "int8")
# AdamW's second moment of a matrix: "full", or "factored" into row and column statistics (Adafactor).
SECOND_MOMENTS: tuple[str, ...] = ("full", "factored")

# The moments each state-full rule keeps per state-full coordinate, by state key: AdamW two, Lion
# and SGD with momentum one (torch's names). The memory model counts len() of these.
MOMENT_KEYS: dict[str, tuple[str, ...]] = {
    "adamw": ("exp_avg", "exp_avg_sq"),
    "lion": ("exp_avg",),
    "sgdm": ("momentum_buffer",),
}
# betas when a group gives None: each rule's own (Lion's paper and lion-pytorch use (0.9, 0.99)).
RULE_BETAS: dict[str, tuple[float, float]] = {"adamw": (0.9, 0.999), "lion": (0.9, 0.99), "sgdm": (0.9, 0.999)}

# Modes whose stateful subspace is a basis (dense for svd/random, a feature subset for randperm)
# chosen with the side rule; `rank` overrides `density` for these and for columns/rows.
PROJECTION_MODES: tuple[str, ...] = ("svd", "random", "randperm")
RANKED_MODES: tuple[str, ...] = ("svd", "random", "randperm", "columns", "rows")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Setting:
    """One setting: its name, type, allowed choices or range, and default.

    ``kind`` is ``"float"`` (a finite number in ``[low, high]``, ints accepted), ``"int"`` (an int
    in ``[low, high]``), ``"choice"`` (one of ``choices``), ``"bool"`` or ``"betas"`` (a pair of
    numbers in ``[0, 1)``). ``optional`` allows None as well. ``low``/``high`` None: unbounded.
    """

    name: str
    kind: str
    default: Any
    choices: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    optional: bool = False
    help: str = ""

    def allowed(self) -> str:
        """Words for the allowed values (``"a finite number >= 0"``, ``"one of 'blocks', ..."``)."""
        if self.kind == "choice":
            words = "one of " + ", ".join(repr(choice) for choice in self.choices)
        elif self.kind == "bool":
            words = "True or False"
        elif self.kind == "betas":
            words = "a pair (beta1, beta2) of numbers in [0, 1)"
        else:
            noun = "an int" if self.kind == "int" else "a finite number"
            if self.low is not None and self.high is not None:
                words = f"{noun} in [{self.low:g}, {self.high:g}]"
            elif self.low is not None:
                words = f"{noun} >= {self.low:g}"
            elif self.high is not None:
                words = f"{noun} <= {self.high:g}"
            else:
                words = noun
        return f"None or {words}" if self.optional else words

    def accepts(self, value: Any) -> bool:
        """Return True when ``value`` is allowed for this setting."""
        if value is None:
            return self.optional
        if self.kind == "choice":
            # True == 1 in Python: a bool matches only bool choices, a number only numbers
            return any(value == c and isinstance(value, bool) == isinstance(c, bool) for c in self.choices)
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "betas":
            return (
                isinstance(value, (tuple, list))
                and len(value) == 2
                and all(_is_number(beta) and 0.0 <= beta < 1.0 for beta in value)
            )
        if self.kind == "int" and not (isinstance(value, int) and not isinstance(value, bool)):
            return False
        if not _is_number(value) or not math.isfinite(value):
            return False
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def check(self, value: Any) -> None:
        """Raise ``ValueError`` naming ``value`` and what is allowed unless :meth:`accepts` it."""
        if not self.accepts(value):
            _fail(self.name, value, self.allowed())


SETTINGS: dict[str, Setting] = {
    setting.name: setting
    for setting in (
        Setting("lr", "float", 1e-3, low=0.0, help="base learning rate"),
        Setting(
            "betas",
            "betas",
            None,
            optional=True,
            help="moment decays of AdamW (b1, b2) or Lion (b1, b2); None: the rule's own, (0.9, 0.999) / (0.9, 0.99)",
        ),
        Setting("eps", "float", 1e-8, low=0.0, help="Adam's denominator term"),
        Setting("weight_decay", "float", 0.0, low=0.0, help="decoupled weight decay"),
        Setting("momentum", "float", 0.9, low=0.0, high=1.0, help="SGD-momentum's momentum (sgdm only)"),
        Setting("nesterov", "bool", False, help="Nesterov momentum (sgdm only; needs momentum > 0)"),
        Setting("stateful_rule", "choice", "adamw", choices=STATEFUL_RULES, help="rule of the state-full part"),
        Setting("mode", "choice", "blocks", choices=MODES, help="FRUGAL subspace mode"),
        Setting("density", "float", 0.25, low=0.0, high=1.0, help="rho: share of split coordinates with state"),
        Setting(
            "rank", "int", None, low=0, optional=True, help="subspace rank instead of density (ranked modes only)"
        ),
        Setting("update_gap", "int", 200, low=1, help="T: steps between subspace re-selections"),
        Setting(
            "density_end",
            "float",
            None,
            low=0.0,
            high=1.0,
            optional=True,
            help="end of a linear rho schedule from density (None: constant density)",
        ),
        Setting("density_steps", "int", 10_000, low=1, help="steps of the rho schedule from density to density_end"),
        Setting("update_gap_growth", "float", 1.0, low=1.0, help="factor on T when the reported loss plateaus (1: fixed T)"),
        Setting("update_gap_max", "int", 1000, low=1, help="cap of the grown T"),
        Setting("loss_plateau", "float", 0.005, low=0.0, help="relative loss change under which T grows"),
        Setting("block_order", "choice", "descending", choices=BLOCK_ORDERS, help="order of blocks"),
        Setting("state_free", "choice", "signsgd", choices=STATE_FREE_RULES, help="state-free update rule"),
        Setting("state_free_lr_scale", "float", 1.0, low=0.0, help="lr multiplier of the state-free part"),
        Setting("split_lr_scale", "float", 1.0, low=0.0, help="lr multiplier of the split parameters"),
        Setting("reset_state", "bool", True, help="zero moments at re-selection"),
        Setting(
            "state_dtype",
            "choice",
            "fp32",
            choices=STATE_DTYPES,
            help="storage of the state-full moments: full precision (the parameter's dtype), bf16, or block-wise int8",
        ),
        Setting(
            "second_moment",
            "choice",
            "full",
            choices=SECOND_MOMENTS,
            help="AdamW's second moment of a matrix: full, or factored into row and column statistics (Adafactor)",
        ),
        Setting("seed", "int", 0, low=0, help="seed of the optimizer's own generator"),
    )
}
"""Every keyword setting of :class:`~frugal_search.optimizer.FRUGAL` (``seed`` is optimizer-wide)."""
DEFAULTS: dict[str, Any] = {name: setting.default for name, setting in SETTINGS.items()}
ROLE = Setting("role", "choice", "frugal", choices=ROLES, help="what the optimizer does with a group")

# The settings that shape FRUGAL's split (as opposed to AdamW's own hyperparameters).
FRUGAL_SETTINGS: tuple[str, ...] = (
    "stateful_rule",
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
# The schedules of rho and T (AdaFRUGAL): partition-wide or per param group, not per rule. The
# search samples the end of the rho schedule as a share of the density (search/space.py), since a
# sampled density_end above a sampled density would be no schedule at all.
SCHEDULE_SETTINGS: tuple[str, ...] = ("density_end", "density_steps", "update_gap_growth", "update_gap_max", "loss_plateau")
# How the moments are stored: partition-wide or per param group (not per rule), like the schedules;
# the search samples them as dimensions of their own (search/space.py).
STORAGE_SETTINGS: tuple[str, ...] = ("state_dtype", "second_moment")
# Settings a param group may override; `seed` is optimizer-wide (one generator).
GROUP_SETTINGS: tuple[str, ...] = (
    "lr", "betas", "eps", "weight_decay", "momentum", "nesterov", *SCHEDULE_SETTINGS, *FRUGAL_SETTINGS,
    *STORAGE_SETTINGS,
)
# `initial_lr` is written by torch LR schedulers and must survive a round trip.
GROUP_KEYS: tuple[str, ...] = ("params", "role", "names", "initial_lr", *GROUP_SETTINGS)


def _fail(name: str, value: Any, allowed: str, remedy: str = "") -> None:
    message = f"Invalid FRUGAL setting {name}={value!r}: allowed {allowed}."
    if remedy:
        message += f" {remedy}"
    raise ValueError(message)


def check_known_keys(
    keys: Iterable[Any],
    allowed: Iterable[Any],
    *,
    what: str = "key",
    where: str = "",
    error: type[ValueError] = ValueError,
) -> None:
    """Raise ``error`` (a ``ValueError`` type) when some of ``keys`` are not in ``allowed``.

    The message is ``"{where}unknown {what}(s) 'x', 'y'; allowed: a, b, c"``: ``where`` is a
    prefix such as ``"study.toml: [proxy] "``. Every stage's "unknown keys" check is this one.
    """
    allowed = list(allowed)
    unknown = sorted({str(key) for key in keys if key not in allowed})
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        raise error(
            f"{where}unknown {what}{plural} {', '.join(repr(key) for key in unknown)}; "
            f"allowed: {', '.join(str(key) for key in allowed)}"
        )


def check_rank_applies(role: str, mode: str, rank: int | None) -> None:
    """Raise ``ValueError`` when a ``frugal`` group sets ``rank`` for a mode that has no rank."""
    if rank is not None and role == "frugal" and mode not in RANKED_MODES:
        _fail(
            "rank",
            rank,
            f"None for mode {mode!r} (rank applies to {', '.join(RANKED_MODES)})",
            "Use density for blocks and randk.",
        )


def check_combination(role: str, settings: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` for settings that are each allowed but not together (for a group of
    ``role`` with every setting resolved): a rank in a mode without one, a rho schedule that does
    not decay or meets a fixed rank, Nesterov without momentum, a factored second moment for a
    rule that keeps none."""
    check_rank_applies(role, settings["mode"], settings["rank"])
    end = settings["density_end"]
    if end is not None and end > settings["density"]:
        _fail(
            "density_end", end, f"at most density={settings['density']} (the schedule decays)",
            "Lower density_end or raise density.",
        )
    if end is not None and settings["rank"] is not None:
        _fail("density_end", end, "None with a rank", "Use density instead of rank to schedule it.")
    if settings["stateful_rule"] == "sgdm" and settings["nesterov"] and settings["momentum"] == 0:
        _fail("nesterov", True, "False when momentum is 0", "Give momentum > 0 or nesterov=False.")
    rule = settings["stateful_rule"]
    if settings["second_moment"] == "factored" and "exp_avg_sq" not in MOMENT_KEYS[rule]:
        _fail(
            "second_moment", "factored", f"'full' with stateful_rule={rule!r} (only AdamW keeps a second moment)",
            "Use stateful_rule='adamw' or second_moment='full'.",
        )


def check_group_keys(group: Mapping[str, Any]) -> None:
    """Raise ValueError when a param group carries a key FRUGAL does not know."""
    check_known_keys(group, GROUP_KEYS, what="param group key")


def validate_group(group: Mapping[str, Any]) -> None:
    """Check every setting of a fully resolved param group; raise ValueError on the first bad one."""
    ROLE.check(group["role"])
    lr = group["lr"]
    if hasattr(lr, "item"):  # a tensor lr (torch allows it) is checked by its value
        lr = float(lr)
    SETTINGS["lr"].check(lr)
    for name in GROUP_SETTINGS:
        if name != "lr":
            SETTINGS[name].check(group[name])
    check_combination(group["role"], group)
    names = group.get("names")
    if names is not None and (len(names) != len(group["params"]) or not all(isinstance(n, str) for n in names)):
        raise ValueError(
            f"Param group 'names' must be a list of {len(group['params'])} strings parallel to "
            f"'params'; got {len(names)} entries."
        )
    if group["role"] == "frugal" and group["mode"] == "blocks" and group["block_order"] == "mirror":
        density = group["density"]
        k = blocks_k(density, len(group["params"]))
        if k % 2:
            _fail(
                "block_order",
                "mirror",
                "an even number of active blocks with 'mirror'",
                f"density {density} of {len(group['params'])} tensors gives k={k}; "
                "choose a density giving an even k or another order.",
            )


def scheduled_density(group: Mapping[str, Any], step: int) -> float:
    """rho at 1-indexed optimizer ``step``: ``max(end, start - (start - end) * (step - 1) / steps)``
    (AdaFRUGAL's linear decay; ``density`` itself without a ``density_end``)."""
    start, end = group["density"], group["density_end"]
    if end is None:
        return start
    return max(end, start - (start - end) * max(0, step - 1) / group["density_steps"])


def blocks_count(group: Mapping[str, Any], density: float) -> int:
    """Active tensors of a blocks group at ``density``: ``round(rho n)`` (the paper's code), or
    ``floor(rho_t n)`` under a rho schedule (AdaFRUGAL's, which may reach 0)."""
    n = len(group["params"])
    return blocks_k(density, n) if group["density_end"] is None else floor_count(density, n)


def resolved_betas(group: Mapping[str, Any]) -> tuple[float, float]:
    """The group's betas, or its state-full rule's own when it gives None (see ``RULE_BETAS``)."""
    betas = group["betas"]
    return RULE_BETAS[group["stateful_rule"]] if betas is None else betas


def moment_count(rule: str) -> int:
    """Moments per state-full coordinate under ``rule``: 2 for AdamW, 1 for Lion and SGD-momentum."""
    return len(MOMENT_KEYS[rule])


def blocks_k(density: float, n_tensors: int) -> int:
    """Active tensors per period in blocks mode: round(rho * n) (Python rounding, as the paper's code)."""
    return round(density * n_tensors)


def floor_count(density: float, size: int) -> int:
    """floor(rho * size), tolerant to float error (0.29 * 100 is 28.999...)."""
    return min(size, math.floor(density * size + 1e-9))
