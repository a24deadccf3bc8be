"""Reports and export: the numbers behind the report (pure functions), the plots, report.md, and
the split config of a chosen trial.

Every function reads an Optuna study whose trials follow the contract in docs/ARCHITECTURE.md
("search -> report"): two objectives, a figure (``eval_loss`` minimized, or ``accuracy`` /
``macro_f1`` maximized: :class:`Objective`, read by ``study_objective``) and a memory
(``state_mib`` or ``training_mib``), and user
attributes ``outcome``, ``split``, ``summary``, ``baseline``, ``state_bytes``, ``eval_curve``, ...
"""

from frugal_search.report._analysis import (
    EvalCurve,
    ObjectiveImportance,
    best_under_budget,
    compare_with_baselines,
    eval_curves,
    objective_importances,
    outcome_counts,
)
from frugal_search.report._export import export_split, model_on_meta, select_trial
from frugal_search.report._front import (
    hypervolume_2d,
    hypervolume_history,
    hypervolume_reference_point,
    pareto_front,
)
from frugal_search.search import OpenedStudy
from frugal_search.search import open_existing_study as open_study  # the reader's name of the search stage's opener
from frugal_search.report._objective import LOSS_OBJECTIVE, Objective, study_objective
from frugal_search.report._seeds import best_baseline_runs, verdict
from frugal_search.report._plots import draw_curves, draw_hypervolume, draw_importance, draw_pareto
from frugal_search.report._table import TRIAL_COLUMNS, adamw_state_bytes, trials_table
from frugal_search.report._write import REPORT_FILES, write_report

__all__ = [
    "LOSS_OBJECTIVE",
    "Objective",
    "study_objective",
    "EvalCurve",
    "ObjectiveImportance",
    "OpenedStudy",
    "REPORT_FILES",
    "TRIAL_COLUMNS",
    "adamw_state_bytes",
    "best_baseline_runs",
    "best_under_budget",
    "compare_with_baselines",
    "draw_curves",
    "draw_hypervolume",
    "draw_importance",
    "draw_pareto",
    "eval_curves",
    "export_split",
    "hypervolume_2d",
    "hypervolume_history",
    "hypervolume_reference_point",
    "model_on_meta",
    "objective_importances",
    "open_study",
    "outcome_counts",
    "pareto_front",
    "select_trial",
    "trials_table",
    "verdict",
    "write_report",
]
