"""Evidence that the search works: how well short proxy runs rank partitions against long runs.

``run_fidelity_check`` re-runs chosen finished trials of a study with a larger budget and several
seeds; ``summarize_fidelity`` turns the results into rank correlations, memory-band correlations
and front survival; ``write_fidelity_report`` writes ``fidelity.md`` and ``fidelity.png``.
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
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
