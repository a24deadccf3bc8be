"""frugal-search: find memory-efficient FRUGAL optimizer partitions with a multi-objective search.

Public names are re-exported here and imported lazily (PEP 562), so ``import frugal_search`` stays
cheap and pulls in optuna / transformers only when a name that needs them is used.
"""

from __future__ import annotations

from frugal_search._lazy import lazy_exports

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # optimizer stage
    "FRUGAL": "frugal_search.optimizer",
    "paper_param_groups": "frugal_search.optimizer",
    "optimizer_state_bytes": "frugal_search.optimizer",
    # partition stage
    "Partition": "frugal_search.partition",
    "Rule": "frugal_search.partition",
    # proxy stage
    "run_proxy": "frugal_search.proxy",
    "ProxyResult": "frugal_search.proxy",
    "ProxyBudget": "frugal_search.proxy",
    # search stage
    "load_study_config": "frugal_search.search",
    "run_search": "frugal_search.search",
    # report stage
    "write_report": "frugal_search.report",
    "export_split": "frugal_search.report",
}

__all__ = sorted(_EXPORTS) + ["__version__"]

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
