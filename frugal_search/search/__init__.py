"""The partition search: study files, the search space, the Optuna objective, workers and resume.

Public names are imported lazily so that ``import frugal_search.search`` does not pull in optuna
or torch until a name that needs them is used.
"""

from __future__ import annotations

from frugal_search._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "StudyConfig": "frugal_search.search.config",
    "StudyConfigError": "frugal_search.search.config",
    "StudySection": "frugal_search.search.sections",
    "ProxySection": "frugal_search.search.sections",
    "SearchSection": "frugal_search.search.sections",
    "TransferSection": "frugal_search.search.sections",
    "TaskSection": "frugal_search.search.sections",
    "OBJECTIVE_DIRECTIONS": "frugal_search.search.sections",
    "load_study_config": "frugal_search.search.config",
    "SearchSpace": "frugal_search.search.space",
    "Dimension": "frugal_search.search.space",
    "DIMENSIONS": "frugal_search.search.space",
    "sample_partition": "frugal_search.search.space",
    "partition_from_settings": "frugal_search.search.space",
    "open_storage": "frugal_search.search.storage",
    "open_study": "frugal_search.search.storage",
    "open_existing_study": "frugal_search.search.storage",
    "open_transfer_study": "frugal_search.search.storage",
    "OpenedStudy": "frugal_search.search.storage",
    "TRANSFER_SUFFIX": "frugal_search.search.storage",
    "transfer_study_name": "frugal_search.search.storage",
    "count_finished_trials": "frugal_search.search.study",
    "searched_front": "frugal_search.search.study",
    "is_repeat": "frugal_search.search.study",
    "RUNG_ON_PROXY": "frugal_search.search.study",
    "RUNG_ON_TARGET": "frugal_search.search.study",
    "planned_rung_runs": "frugal_search.search.rungs",
    "journal_path": "frugal_search.search.storage",
    "sqlite_path": "frugal_search.search.storage",
    "normalize_storage": "frugal_search.search.config",
    "non_dominated_ranks": "frugal_search.search.pareto",
    "pareto_front_indices": "frugal_search.search.pareto",
    "printable_storage": "frugal_search.search.storage",
    "check_setup": "frugal_search.search.setup",
    "SetupError": "frugal_search.search.setup",
    "first_line": "frugal_search.search.setup",
    "WorkersFailedError": "frugal_search.search.workers",
    "run_search": "frugal_search.search.runner",
    "launch_workers": "frugal_search.search.cluster",
    "run_cluster_worker": "frugal_search.search.cluster",
    "serve_storage": "frugal_search.search.cluster",
    "wait_for_workers": "frugal_search.search.cluster",
    "with_storage": "frugal_search.search.cluster",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
