"""The FRUGAL optimizer, the schema of its settings, the paper's param groups, and optimizer-state accounting."""

from frugal_search.optimizer._settings import (
    BLOCK_ORDERS,
    DEFAULTS,
    FRUGAL_SETTINGS,
    MODES,
    PROJECTION_MODES,
    RANKED_MODES,
    ROLE,
    ROLES,
    SECOND_MOMENTS,
    SETTINGS,
    STATEFUL_RULES,
    STATE_DTYPES,
    STATE_FREE_RULES,
    STORAGE_SETTINGS,
    Setting,
    check_combination,
    check_known_keys,
    check_rank_applies,
    resolved_betas,
)
from frugal_search.optimizer.frugal import FRUGAL
from frugal_search.optimizer.memory import optimizer_state_bytes
from frugal_search.optimizer.param_groups import (
    find_transformer_blocks,
    paper_param_groups,
)

__all__ = [
    "BLOCK_ORDERS",
    "DEFAULTS",
    "FRUGAL",
    "FRUGAL_SETTINGS",
    "MODES",
    "PROJECTION_MODES",
    "RANKED_MODES",
    "ROLE",
    "ROLES",
    "SECOND_MOMENTS",
    "SETTINGS",
    "STATEFUL_RULES",
    "STATE_DTYPES",
    "STATE_FREE_RULES",
    "STORAGE_SETTINGS",
    "Setting",
    "check_combination",
    "check_known_keys",
    "check_rank_applies",
    "find_transformer_blocks",
    "optimizer_state_bytes",
    "paper_param_groups",
    "resolved_betas",
]
