"""write_report: every file of reports/<study>/ from one Optuna study."""

from __future__ import annotations

import logging
import math
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from frugal_search.report._analysis import (
    compare_with_baselines,
    eval_curves,
    objective_importances,
    outcome_counts,
)
from frugal_search.report._decision import proxy_summary, rung_summary, study_answer
from frugal_search.report._front import hypervolume_history, hypervolume_reference_point, pareto_front
from frugal_search.report._markdown import ReportContent, flatten_settings, render_markdown
from frugal_search.report._objective import study_objective
from frugal_search.report._plots import draw_curves, draw_hypervolume, draw_importance, draw_pareto
from frugal_search.report._seeds import best_baseline_runs, seed_summary
from frugal_search.report._table import adamw_state_bytes, trials_table
from frugal_search.search import RUNG_ON_PROXY, RUNG_ON_TARGET, printable_storage
from frugal_search.units import MIB, parse_bytes

if TYPE_CHECKING:
    import optuna

logger = logging.getLogger(__name__)

# The command that shows a split's cost on a full-size model (the partition stage's `memory`).
MEMORY_COMMAND = "frugal-search memory split.json --model-config big.json"

REPORT_FILES: tuple[str, ...] = (
    "trials.csv",
    "pareto.csv",
    "pareto.png",
    "curves.png",
    "importance.png",
    "hypervolume.png",
    "report.md",
)


def memory_budget_of(config: Any) -> int | None:
    """Return the memory budget in bytes named by a study config, None when it sets none.

    Reads ``config.study.memory_budget`` (or ``config.memory_budget``): bytes or a text such as
    ``"2 MiB"``.
    """
    for owner in (getattr(config, "study", None), config):
        budget = getattr(owner, "memory_budget", None) if owner is not None else None
        if budget is not None:
            return parse_bytes(budget)
    return None


def storage_url_of(study: optuna.Study) -> str | None:
    """Return the database URL of an RDB-backed study, None for in-memory or other storages."""
    storage: Any = getattr(study, "_storage", None)
    # Optuna wraps RDBStorage in a cache layer that keeps the real storage as `_backend`
    storage = getattr(storage, "_backend", storage)
    url = getattr(storage, "url", None)
    return str(url) if url else None


def export_command_prefix(study_name: str, *, study_file: str | Path | None, storage_url: str | None) -> str:
    """Return ``frugal-search export <how to find the study>`` for the commands the report prints."""
    if study_file is not None:
        return f"frugal-search export {shlex.quote(str(study_file))}"
    if storage_url is not None:
        return f"frugal-search export --storage {shlex.quote(storage_url)} --name {shlex.quote(study_name)}"
    return f"frugal-search export studies/{shlex.quote(study_name)}.toml"


def write_report(
    study: optuna.Study,
    out_dir: str | Path,
    *,
    memory_budget: int | str | None = None,
    config: Any = None,
    study_file: str | Path | None = None,
    storage_url: str | None = None,
) -> Path:
    """Write the report of ``study`` into ``out_dir`` and return the path of its report.md.

    Files: trials.csv (every trial), pareto.csv (the front by memory), pareto.png, curves.png,
    importance.png, hypervolume.png and report.md. ``memory_budget`` (bytes or text like
    ``"2 MiB"``) defaults to the budget of ``config`` (a study config from
    ``frugal_search.search.load_study_config``), then to the study's ``memory_budget_bytes`` user
    attribute. ``config`` also fills the settings table; ``study_file`` (default: the config's
    path, then the study file the search noted when no ``storage_url`` is given) makes the printed
    export command name the TOML file; ``storage_url`` (default: the study's database URL) is
    shown and, without a study file, used in that command. An empty study, or one where no trial finished with a loss,
    still gets every file, and report.md says so in words.
    """
    out_path = Path(out_dir)
    out_path.mkdir(parents=True, exist_ok=True)
    if memory_budget is not None:
        budget_bytes: int | None = parse_bytes(memory_budget)
    elif config is not None and memory_budget_of(config) is not None:
        budget_bytes = memory_budget_of(config)
    else:
        stored = study.user_attrs.get("memory_budget")  # bytes, written by the search stage
        budget_bytes = int(stored) if stored is not None else None

    adamw_bytes = adamw_state_bytes(study)
    table = trials_table(study, adamw_bytes=adamw_bytes)
    objective = study_objective(study)  # e.g. accuracy (maximized) against optimizer state
    front = pareto_front(table, objective)
    table.to_csv(out_path / "trials.csv", index=False)
    front.to_csv(out_path / "pareto.csv", index=False)

    reference = hypervolume_reference_point(table, objective)
    history = hypervolume_history(table, reference_point=reference, objective=objective)
    importances = objective_importances(study)
    seeds = seed_summary(table, objective)
    best_baselines = best_baseline_runs(table, objective)
    best_baseline_numbers = {int(n) for n in best_baselines["number"] if math.isfinite(n)}
    answer, decision = study_answer(table, memory_budget_bytes=budget_bytes, objective=objective)
    # the plot's diamonds are on the proxy: the confirmation rung, also when the answer was taken on the target
    confirmation = rung_summary(table, objective, on=RUNG_ON_PROXY) if answer is not None and answer.on_target else None
    best = None if answer is None else table.set_index("number", drop=False).loc[answer.number]
    draw_pareto(
        table,
        front,
        out_path / "pareto.png",
        # the budget is on optimizer state: drawn only on that axis
        memory_budget_mib=budget_bytes / MIB if budget_bytes is not None and objective.memory == "state_mib" else None,
        adamw_state_mib=adamw_bytes / MIB if adamw_bytes else None,
        seeds=seeds,
        best_baseline_numbers=best_baseline_numbers,
        objective=objective,
        rung=confirmation if confirmation is not None else decision if answer is not None and answer.factor > 1 else None,
        answer=None if answer is None else answer.number,
    )
    draw_curves(
        eval_curves(study, front, baseline_runs=best_baseline_numbers, objective=objective),
        out_path / "curves.png",
        objective=objective,
    )
    draw_importance(importances, out_path / "importance.png")
    draw_hypervolume(history, out_path / "hypervolume.png", reference_point=reference, objective=objective)

    if study_file is None:
        study_file = getattr(config, "path", None)
    if study_file is None and storage_url is None:
        # the search stage notes the study file it ran from; a caller who found the study by its
        # storage URL gets a command with that URL instead, which works from any folder
        study_file = study.user_attrs.get("study_file")
    storage_url = storage_url or storage_url_of(study)
    if storage_url is not None:
        storage_url = _relative_to_cwd(printable_storage(storage_url))  # as Optuna's tools and frugal-search take it
    settings = {
        "study name": study.study_name,
        "storage": storage_url or "(in memory)",
        "objectives": ", ".join(
            f"{name} ({direction.name.lower()})"
            for name, direction in zip(study.metric_names or ["value 0", "value 1"], study.directions)
        ),
        "memory budget": f"{budget_bytes} bytes ({budget_bytes / MIB:.4g} MiB)" if budget_bytes is not None else "none",
        "AdamW optimizer state": f"{adamw_bytes / MIB:.4g} MiB" if adamw_bytes else "unknown (no AdamW baseline trial)",
    }
    if config is not None:
        # the rows above already say the name, storage and budget
        shown = {"study.name", "study.storage", "study.memory_budget"}
        settings.update({k: v for k, v in flatten_settings(config).items() if k not in shown})
    content = ReportContent(
        study_name=study.study_name,
        settings=settings,
        table=table,
        front=front,
        outcome_counts=outcome_counts(table),
        memory_budget_bytes=budget_bytes,
        best=best,
        baseline_comparison=compare_with_baselines(table, best, objective) if best is not None else None,
        importances=importances,
        reference_point=reference,
        final_hypervolume=float(history["hypervolume"].iloc[-1]) if not history.empty else None,
        export_command_prefix=export_command_prefix(
            study.study_name, study_file=study_file, storage_url=None if study_file else storage_url
        ),
        memory_command=MEMORY_COMMAND,
        objective=objective,
        answer=answer,
        decision=decision,
        proxy_standing=proxy_summary(table, objective) if answer is not None and answer.at_a_rung else None,
        proxy_steps=getattr(getattr(config, "proxy", None), "steps", None),
        confirmation=confirmation,
        target_words=_target_words(study),
    )
    report_path = out_path / "report.md"
    report_path.write_text(render_markdown(content), encoding="utf-8")
    logger.info(
        "wrote report of %s (%d trials, %d on the front) to %s", study.study_name, len(table), len(front), out_path
    )
    return report_path


def _target_words(study: optuna.Study) -> str:
    """The model the rung on the target trained, as its runs stored it: ``tiny-llama (hidden_size 256, ...)``."""
    for frozen in study.get_trials(deepcopy=False):
        model = frozen.user_attrs.get("target_model") if frozen.user_attrs.get("rung_on") == RUNG_ON_TARGET else None
        if model:
            overrides = ", ".join(f"{key} {value}" for key, value in model.get("overrides", {}).items())
            return f"the target model `{model['source']}`" + (f" ({overrides})" if overrides else "")
    return "the target model"


def _relative_to_cwd(url: str) -> str:
    """A SQLite URL or journal path under the working folder, written relative to it, so a report
    shipped in a repository names its storage the way commands run from the repository's root do."""
    prefix = "sqlite:///" if url.startswith("sqlite:///") else ""
    path = Path(url[len(prefix):])
    if path.is_absolute():
        try:
            return prefix + str(path.relative_to(Path.cwd()))
        except ValueError:  # outside the working folder: kept absolute
            return url
    return url
