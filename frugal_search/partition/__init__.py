"""Partitions: rules that give every parameter of any model a role, their exact memory, split files.

Public names: :class:`Partition`, :class:`Rule`, :class:`FrugalSettings`, :func:`baseline_partition`,
the baseline registry (:data:`BASELINES` of :class:`Baseline`, :data:`ADAMW_BASELINE`, :data:`BASELINE_NAMES`,
:data:`BASELINE_ALIASES`, :func:`find_baseline`, :func:`accepted_baseline_names`),
:func:`introspect` / :class:`ParamInfo` / :data:`KINDS`, :func:`selected_layers`,
:func:`build_meta_model`, :func:`paper_llama_config`, :class:`TrainingMemory`, :data:`SPLIT_FORMAT`,
:data:`UNMATCHED_RULE_LOGGER`, :data:`LR_SCALE` (a rule's ``lr_scale`` setting), the learning-rate
transfer rule (:data:`LR_TRANSFER_RULES`, :data:`WIDTH_KINDS`, :func:`record_base_widths`,
:func:`width_multiplier`, :func:`width_key`, :func:`fan_in`).

Modules, each importing only those above it: ``introspect``, ``layers``, ``meta``; ``lr_transfer``; ``rules``;
``settings``; ``words``; ``memory``; ``split_file``; ``baselines`` (recipes only); ``partition``
(the :class:`Partition`, which uses them all).
"""

from frugal_search.partition.baselines import (
    ADAMW_BASELINE,
    BASELINE_ALIASES,
    BASELINE_NAMES,
    BASELINES,
    Baseline,
    accepted_baseline_names,
    find_baseline,
)
from frugal_search.partition.introspect import KINDS, ParamInfo, introspect
from frugal_search.partition.layers import selected_layers
from frugal_search.partition.lr_transfer import (
    LR_TRANSFER_RULES,
    WIDTH_KINDS,
    fan_in,
    record_base_widths,
    width_key,
    width_multiplier,
)
from frugal_search.partition.memory import TrainingMemory
from frugal_search.partition.meta import PAPER_LLAMA_SHAPES, build_meta_model, load_config, paper_llama_config
from frugal_search.partition.partition import (
    UNMATCHED_RULE_LOGGER,
    Partition,
    adamw_state_bytes_of,
    baseline_partition,
    quiet_unmatched_rules,
)
from frugal_search.partition.rules import LR_SCALE, ROLES, Rule
from frugal_search.partition.settings import FrugalSettings
from frugal_search.partition.split_file import SPLIT_FORMAT

__all__ = [
    "ADAMW_BASELINE",
    "adamw_state_bytes_of",
    "BASELINES",
    "BASELINE_ALIASES",
    "BASELINE_NAMES",
    "KINDS",
    "LR_SCALE",
    "LR_TRANSFER_RULES",
    "PAPER_LLAMA_SHAPES",
    "ROLES",
    "SPLIT_FORMAT",
    "UNMATCHED_RULE_LOGGER",
    "WIDTH_KINDS",
    "Baseline",
    "FrugalSettings",
    "ParamInfo",
    "Partition",
    "Rule",
    "TrainingMemory",
    "accepted_baseline_names",
    "baseline_partition",
    "build_meta_model",
    "fan_in",
    "find_baseline",
    "introspect",
    "load_config",
    "paper_llama_config",
    "quiet_unmatched_rules",
    "record_base_widths",
    "selected_layers",
    "width_key",
    "width_multiplier",
]
