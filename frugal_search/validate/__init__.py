"""Evidence that the search works: how well short proxy runs rank partitions against long runs.

``run_fidelity_check`` re-runs chosen finished trials of a study with a larger budget and several
seeds; ``summarize_fidelity`` turns the results into rank correlations, memory-band correlations
and front survival; ``write_fidelity_report`` writes ``fidelity.md`` and ``fidelity.png``. ``run_transfer`` re-runs the front, a spread of other trials
and the baselines on another (larger) model, with and without the lr transfer rule, and confirms the
top candidates with a short lr sweep, in the Optuna study ``<study>-transfer``;
``summarize_transfer`` and ``write_transfer_report`` give ``transfer.md`` and ``transfer.png``.
``rebuild_study_from_table`` rebuilds a study from its report's ``trials.csv`` (the storage is not in
git), and ``read_fed_runs`` / ``fed_runner`` / ``write_transfer_runs`` feed a transfer check the runs
its report keeps, so the report regenerates without training.
Successive halving for the search itself lives in ``frugal_search.search.fidelity``.
"""

from __future__ import annotations

from frugal_search._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "Candidate": "frugal_search.validate.selection",
    "select_for_fidelity": "frugal_search.validate.selection",
    "Correlation": "frugal_search.validate.stats",
    "FrontSurvival": "frugal_search.validate.stats",
    "correlate": "frugal_search.validate.stats",
    "kendall_tau_b": "frugal_search.validate.stats",
    "spearman": "frugal_search.validate.stats",
    "FidelityRow": "frugal_search.validate.summary",
    "FidelitySummary": "frugal_search.validate.summary",
    "summarize_fidelity": "frugal_search.validate.summary",
    "format_fidelity_markdown": "frugal_search.validate.summary",
    "plot_fidelity": "frugal_search.validate.plot",
    "LongRunStore": "frugal_search.validate.store",
    "FidelityCheck": "frugal_search.validate.check",
    "run_fidelity_check": "frugal_search.validate.check",
    "write_fidelity_report": "frugal_search.validate.check",
    "TransferPlan": "frugal_search.validate.transfer",
    "TransferResults": "frugal_search.validate.transfer",
    "TransferRun": "frugal_search.validate.transfer",
    "plan_runs": "frugal_search.validate.transfer",
    "plan_seed_runs": "frugal_search.validate.transfer",
    "run_transfer": "frugal_search.validate.transfer",
    "transfer_run_key": "frugal_search.validate.transfer",
    "target_run": "frugal_search.validate.transfer",
    "transfer_study_name": "frugal_search.validate.transfer",
    "run_partition": "frugal_search.validate.transfer",
    "rebuild_study_from_table": "frugal_search.validate.rebuild",
    "search_partition": "frugal_search.validate.rebuild",
    "table_settings": "frugal_search.validate.rebuild",
    "read_fed_runs": "frugal_search.validate.rebuild",
    "trained_fingerprint": "frugal_search.validate.rebuild",
    "fed_runner": "frugal_search.validate.rebuild",
    "write_transfer_runs": "frugal_search.validate.rebuild",
    "TransferSummary": "frugal_search.validate.transfer_report",
    "summarize_transfer": "frugal_search.validate.transfer_report",
    "format_transfer_markdown": "frugal_search.validate.transfer_report",
    "write_transfer_report": "frugal_search.validate.transfer_report",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
