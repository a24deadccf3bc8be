"""The FRUGAL optimizer, the paper's param groups, and optimizer-state accounting."""

from frugal_search.optimizer._settings import (
    BLOCK_ORDERS,
    FRUGAL_SETTINGS,
    MODES,
    ROLES,
    STATE_FREE_RULES,
)
from frugal_search.optimizer.frugal import FRUGAL
from frugal_search.optimizer.memory import optimizer_state_bytes
from frugal_search.optimizer.param_groups import (
    find_transformer_blocks,
    paper_param_groups,
)

__all__ = [
    "BLOCK_ORDERS",
    "FRUGAL",
    "FRUGAL_SETTINGS",
    "MODES",
    "ROLES",
    "STATE_FREE_RULES",
    "find_transformer_blocks",
    "optimizer_state_bytes",
    "paper_param_groups",
]
