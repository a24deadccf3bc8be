"""Partitions: rules that give every parameter of any model a role, their exact memory, split files.

Public names: :class:`Partition`, :class:`Rule`, :class:`FrugalSettings`, :func:`baseline_partition`,
:data:`BASELINE_NAMES`, :func:`introspect` / :class:`ParamInfo` / :data:`KINDS`,
:func:`selected_layers`, :func:`build_meta_model`, :func:`paper_llama_config`,
:class:`TrainingMemory`, :data:`SPLIT_FORMAT`.
"""

from frugal_search.partition.baselines import BASELINE_NAMES, baseline_partition
from frugal_search.partition.introspect import KINDS, ParamInfo, introspect
from frugal_search.partition.layers import selected_layers
from frugal_search.partition.memory import TrainingMemory
from frugal_search.partition.meta import PAPER_LLAMA_SHAPES, build_meta_model, load_config, paper_llama_config
from frugal_search.partition.partition import FrugalSettings, Partition
from frugal_search.partition.rules import ROLES, Rule
from frugal_search.partition.split_file import SPLIT_FORMAT

__all__ = [
    "BASELINE_NAMES",
    "KINDS",
    "PAPER_LLAMA_SHAPES",
    "ROLES",
    "SPLIT_FORMAT",
    "FrugalSettings",
    "ParamInfo",
    "Partition",
    "Rule",
    "TrainingMemory",
    "baseline_partition",
    "build_meta_model",
    "introspect",
    "load_config",
    "paper_llama_config",
    "selected_layers",
]
