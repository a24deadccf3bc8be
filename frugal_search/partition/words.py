"""A partition in one line of words, for reports and logs."""

from __future__ import annotations

from collections.abc import Sequence

from frugal_search.partition.rules import Rule
from frugal_search.partition.settings import FrugalSettings

_STATE_FREE_WORDS = {"signsgd": "signSGD", "sgd": "SGD", "none": "none"}


def _number(value: float) -> str:
    return f"{value:.3g}"  # words for people: three significant digits are enough


def _stateful_rule_words(rule: Rule, partition_settings: FrugalSettings) -> str:
    """"" for AdamW (the default), else the state-full rule: ``" with Lion"``, ``" with SGD-momentum 0.9"``."""
    name = rule.stateful_rule or partition_settings.stateful_rule
    if name == "lion":
        return " with Lion"
    if name == "sgdm":
        nesterov = " Nesterov" if partition_settings.nesterov else ""
        return f" with{nesterov} SGD-momentum {_number(partition_settings.momentum)}"
    return ""


def _frugal_words(rule: Rule, partition_settings: FrugalSettings) -> str:
    """Describe the FRUGAL settings in force for a ``frugal`` rule (its overrides applied)."""
    settings = partition_settings.to_kwargs()
    settings.update(rule.overrides())
    mode = settings["mode"]
    size = (
        f"rank {settings['rank']}"
        if settings["rank"] is not None and mode != "blocks"
        else f"rho {_number(settings['density'])}"
    )
    if settings["density_end"] is not None and settings["rank"] is None:  # partition-wide (not a rule's)
        size += f" -> {_number(settings['density_end'])} over {settings['density_steps']} steps"
    words = f"frugal {mode} {size} every {settings['update_gap']} steps"
    if settings["update_gap_growth"] != 1.0:
        words += (
            f" (x{_number(settings['update_gap_growth'])} up to {settings['update_gap_max']} when the loss changes"
            f" under {_number(settings['loss_plateau'])})"
        )
    if mode == "blocks":
        words += f" ({settings['block_order']})"
    words += _stateful_rule_words(rule, partition_settings)
    words += f", state-free {_STATE_FREE_WORDS[settings['state_free']]}"
    if settings["state_free"] != "none" and settings["state_free_lr_scale"] != 1.0:
        words += f" at lr x{_number(settings['state_free_lr_scale'])}"
    if settings["split_lr_scale"] != 1.0:
        words += f", split lr x{_number(settings['split_lr_scale'])}"
    if not settings["reset_state"] and mode != "blocks":
        words += ", no state reset"
    return words


def rule_settings_words(rule: Rule, settings: FrugalSettings) -> str:
    """Describe the role and settings ``rule`` gives under the partition's ``settings``
    (``"frugal blocks rho 0.25 every 200 steps ..."``)."""
    if rule.role == "frugal":
        words = _frugal_words(rule, settings)
    elif rule.role == "state_free":
        state_free = rule.state_free or settings.state_free
        words = f"state-free {_STATE_FREE_WORDS[state_free]}"
    elif rule.role == "stateful":
        words = "stateful" + _stateful_rule_words(rule, settings)
    else:
        words = rule.role
    if rule.lr_scale != 1.0:
        words += f" (lr x{_number(rule.lr_scale)})"
    if rule.weight_decay is not None:
        words += f" (weight decay {_number(rule.weight_decay)})"
    return words


def selection_words(rules: Sequence[Rule], index: int) -> str:
    """What ``rules[index]`` selects; one that selects everything is "all" when first, else "rest"."""
    return rules[index].selection_words() or ("all" if index == 0 else "rest")


def storage_words(settings: FrugalSettings) -> str:
    """How the moments are stored, in words (``"state int8, factored second moment"``); "" for
    today's full-precision moments."""
    words = [] if settings.state_dtype == "fp32" else [f"state {settings.state_dtype}"]
    if settings.second_moment == "factored":
        words.append("factored second moment")
    return ", ".join(words)


def summarize(rules: Sequence[Rule], settings: FrugalSettings) -> str:
    """Return a partition's ``rules`` and ``settings`` in one line: each rule's selection and role,
    the moments' storage unless full precision, then the lr."""
    parts = [f"{selection_words(rules, index)} {rule_settings_words(rule, settings)}" for index, rule in enumerate(rules)]
    storage = storage_words(settings)
    if storage:
        parts.append(storage)
    parts.append(f"lr {_number(settings.lr)}")
    return "; ".join(parts)
