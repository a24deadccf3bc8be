"""The fidelity check: re-run chosen finished trials of a study with a longer budget and several seeds.

The proxy scores each partition with a short run. The check takes the ``top`` best partitions of the
study's front and ``top`` other finished trials spread over memory, trains each again with
``factor`` times the proxy's steps (warmup and evaluation interval scaled alike, so the schedule keeps
its shape) for every seed, and compares the rankings (see :mod:`frugal_search.validate.summary`).
Each long run is saved as soon as it ends (:class:`~frugal_search.validate.store.LongRunStore`), so
an interrupted check resumes where it stopped.
"""

from __future__ import annotations

import logging
import math
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from frugal_search.search import is_repeat
from frugal_search.validate._pool import run_each
from frugal_search.validate.selection import Candidate, select_for_fidelity
from frugal_search.validate.store import LongRunStore, run_key
from frugal_search.validate.summary import FidelityRow, FidelitySummary, format_fidelity_markdown, summarize_fidelity

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

RUNS_FILE = "fidelity_runs.json"
MARKDOWN_FILE = "fidelity.md"
PLOT_FILE = "fidelity.png"


@dataclass(frozen=True)
class FidelityCheck:
    """How much to re-run: partitions, budget factor, seeds."""

    top: int = 6  # partitions from the front, and as many others spread over memory
    factor: int = 4  # long runs take factor x the proxy's steps
    seeds: tuple[int, ...] = (0, 1)  # every partition is re-run once per seed
    bands: int = 3  # memory bands for the within-band correlations
    device: str | None = None  # None: the study's [proxy] device
    workers: int = 1  # long runs at once, each in its own process with one torch thread (CPU)

    def __post_init__(self) -> None:
        if not isinstance(self.top, int) or self.top < 1:
            raise ValueError(f"top must be an integer >= 1, got {self.top!r}")
        if not isinstance(self.factor, int) or self.factor < 1:
            raise ValueError(f"factor must be an integer >= 1 (times the proxy steps), got {self.factor!r}")
        if len(self.seeds) < 1 or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be one or more distinct integers, got {self.seeds!r}")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"workers must be an integer >= 1, got {self.workers!r}")
        if not isinstance(self.bands, int) or self.bands < 1:
            raise ValueError(f"bands must be an integer >= 1, got {self.bands!r}")


def candidates_of(study: Any) -> list[Candidate]:
    """Return the finished feasible (COMPLETE, finite loss) trials of ``study`` as candidates.

    Repeats of a trial (extra seeds, confirmation-rung runs) are left out: they are the same partition again.
    """
    import optuna

    candidates = []
    for frozen in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        if frozen.values is None or len(frozen.values) != 2 or is_repeat(frozen.user_attrs):
            continue
        loss, state_mib = float(frozen.values[0]), float(frozen.values[1])
        if math.isfinite(loss) and math.isfinite(state_mib) and "split" in frozen.user_attrs:
            candidates.append(Candidate(number=frozen.number, proxy_loss=loss, state_mib=state_mib))
    return candidates


def report_picks(study: Any, memory_budget: int | None) -> tuple[int | None, dict[int, str]]:
    """What the study's report compares: its recommended trial (the best under ``memory_budget``;
    None when none finished) and each baseline's best run of its lr grid (``{number: name}``,
    baselines with a finished run only)."""
    from frugal_search.report import best_baseline_runs, best_under_budget, study_objective, trials_table

    table, objective = trials_table(study), study_objective(study)
    row = best_under_budget(table, memory_budget_bytes=memory_budget, objective=objective)
    best_runs = best_baseline_runs(table, objective)
    baselines = {
        int(run["number"]): run["baseline"]
        for run in best_runs.to_dict("records") if math.isfinite(run[objective.name])
    }
    return (None if row is None else int(row["number"])), baselines


def run_fidelity_check(
    study_file: Any,
    *,
    check: FidelityCheck,
    report_dir: str | Path,
    storage: str | None = None,
    name: str | None = None,
    on_run: Callable[[str, dict[str, Any]], None] | None = None,
) -> FidelitySummary:
    """Re-run the chosen trials of the study in ``study_file`` (a study TOML, or its loaded
    ``StudyConfig``; ``storage`` and ``name`` override its values) and return the summary.

    Long runs already in ``report_dir/fidelity_runs.json`` are reused; every new one is written there
    when it ends. ``on_run(key, result)`` is called after each run (the CLI prints progress with it).
    Raises ``ValueError`` when the study has fewer than two finished feasible trials.
    """
    from frugal_search.proxy import resolve_device
    from frugal_search.search import open_existing_study

    opened = open_existing_study(study_file, storage=storage, name=name)
    config = opened.config
    device = resolve_device(check.device or config.proxy.device)  # one this machine lacks fails before any plan
    study = opened.study
    candidates = candidates_of(study)
    if len(candidates) < 2:
        raise ValueError(
            f"study {study.study_name!r} has {len(candidates)} finished feasible trials; the fidelity check "
            "needs at least 2 (run the search first: frugal-search run <study.toml>)"
        )
    best, others = select_for_fidelity(candidates, top=check.top)
    # The report's verdict of the recommendation against each baseline at its best lr, at the long
    # budget too: on a short proxy they can tie and part once trained longer (issue 11).
    recommended, baselines = report_picks(study, config.study.memory_budget)
    references = [n for n in dict.fromkeys([recommended, *baselines]) if n is not None and n not in [*best, *others]]
    by_number = {c.number: c for c in candidates}
    proxy_budget = config.proxy.budget()
    long_budget = proxy_budget.scaled(check.factor)
    model = config.model
    data = config.data
    store = LongRunStore(Path(report_dir) / RUNS_FILE)
    logger.info(
        "fidelity check of %r: %d front + %d other trials + %d more for the baseline verdicts, %d -> %d steps, "
        "seeds %s", study.study_name, len(best), len(others), len(references), proxy_budget.total_steps,
        long_budget.total_steps, check.seeds,
    )
    chosen = [*best, *others, *references]
    splits = {number: study.trials[number].user_attrs["split"] for number in chosen}

    def key_of(number: int, seed: int) -> str:
        return run_key(trial_number=number, seed=seed, steps=long_budget.total_steps, split=splits[number])

    tasks = [(number, seed) for number in chosen for seed in check.seeds if key_of(number, seed) not in store]
    if tasks:
        logger.info("%d long runs to do (%d already stored)", len(tasks), len(store))

    def record(number: int, seed: int, result: dict[str, Any]) -> None:
        key = key_of(number, seed)
        store.put(key, _json_safe(result))
        if on_run is not None:
            on_run(key, result)

    jobs = [((number, seed), (model, data, splits[number], long_budget, device, seed)) for number, seed in tasks]
    run_each(_long_run, jobs, workers=check.workers, on_result=lambda key, result: record(*key, result))

    rows = []
    for group, numbers in (("best", best), ("other", others), ("reference", references)):
        for number in numbers:
            frozen = study.trials[number]
            losses = []
            for seed in check.seeds:
                result = store.get(key_of(number, seed))
                loss = result["eval_loss"]
                losses.append(math.inf if result["diverged"] or loss is None or not math.isfinite(loss) else float(loss))
            rows.append(
                FidelityRow(
                    number=number,
                    group=group,
                    state_mib=by_number[number].state_mib,
                    proxy_loss=by_number[number].proxy_loss,
                    long_losses=tuple(losses),
                    description=str(frozen.user_attrs.get("baseline") or frozen.user_attrs.get("summary", "")),
                )
            )
    command = (
        f"frugal-search validate {shlex.quote(str(study_file))} --top {check.top} --factor {check.factor} "
        f"--seeds {len(check.seeds)}"
        + (f" --storage {shlex.quote(storage)}" if storage else "")
        + (f" --name {shlex.quote(name)}" if name else "")
    )
    settings = {
        "study": study.study_name,
        "factor": check.factor,
        "proxy_steps": proxy_budget.total_steps,
        "long_steps": long_budget.total_steps,
        "seeds": list(check.seeds),
        "top": check.top,
        "command": command,
    }
    return summarize_fidelity(rows, bands=check.bands, settings=settings, recommended=recommended, baselines=baselines)


def _long_run(model: Any, data: Any, split: dict[str, Any], budget: Any, device: torch.device, seed: int) -> dict[str, Any]:
    """One long run of the partition in ``split``; the figures the report keeps."""
    from frugal_search.partition import Partition, quiet_unmatched_rules
    from frugal_search.proxy import run_proxy

    with quiet_unmatched_rules():  # sampled partitions carry rules (a catch-all, a tied head) a model may not need
        result = run_proxy(model, data, Partition.from_dict(split), budget, device=device, seed=seed)
    return {
        "eval_loss": result.eval_loss,
        "diverged": result.diverged,
        "reason": result.reason,
        "state_bytes": result.state_bytes,
        "steps": result.steps,
        "wall_s": result.wall_s,
        "tokens_per_s": result.tokens_per_s,
    }


def write_fidelity_report(summary: FidelitySummary, report_dir: str | Path) -> list[Path]:
    """Write ``fidelity.md`` and ``fidelity.png`` into ``report_dir``; return their paths."""
    from frugal_search.validate.plot import plot_fidelity

    return write_markdown_and_plot(report_dir, (MARKDOWN_FILE, format_fidelity_markdown(summary)),
                                   (PLOT_FILE, lambda path: plot_fidelity(summary, path)))


def write_markdown_and_plot(
    report_dir: str | Path, markdown: tuple[str, str], plot: tuple[str, Callable[[Path], None]]
) -> list[Path]:
    """Write ``markdown`` (file name, text) and draw ``plot`` (file name, drawer) into ``report_dir``."""
    directory = Path(report_dir)
    directory.mkdir(parents=True, exist_ok=True)
    markdown_path, plot_path = directory / markdown[0], directory / plot[0]
    markdown_path.write_text(markdown[1])
    plot[1](plot_path)
    return [markdown_path, plot_path]


def _json_safe(result: dict[str, Any]) -> dict[str, Any]:
    # JSON has no NaN/inf: a diverged loss is stored as None (the "diverged" flag says why).
    return {
        key: (None if isinstance(value, float) and not math.isfinite(value) else value)
        for key, value in result.items()
    }
