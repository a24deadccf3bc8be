"""Export one trial's partition as a split config (JSON) with where it came from."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from frugal_search.report._decision import study_answer
from frugal_search.report._objective import study_objective
from frugal_search.report._seeds import best_baseline_runs
from frugal_search.report._table import feasible_rows, trials_table
from frugal_search.report._write import storage_url_of
from frugal_search.proxy import method_of
from frugal_search.search import RUNG_ON_TARGET
from frugal_search.units import MIB, format_bytes, parse_bytes

if TYPE_CHECKING:
    import optuna

logger = logging.getLogger(__name__)

# Trial attributes copied into the provenance of an exported split config.
_PROVENANCE_METRICS: tuple[str, ...] = (
    "eval_loss",
    "best_eval_loss",
    "accuracy",
    "macro_f1",
    "state_bytes",
    "training_bytes",
    "tokens_per_s",
    "wall_s",
    "steps",
    "peak_memory_bytes",
)

_OPTIONAL_METRICS = ("accuracy", "macro_f1", "training_bytes")

# Attributes of a transfer trial (``<study>-transfer``) copied into the source of its exported split.
_TRANSFER_SOURCE: tuple[str, ...] = ("source_trial", "lr_rule", "lr_multiplier", "target_model")


def select_trial(
    study: optuna.Study,
    *,
    trial: int | None = None,
    best: bool = False,
    max_memory: int | str | None = None,
    baseline: str | None = None,
) -> optuna.trial.FrozenTrial:
    """Return the trial to export: number ``trial``, with ``best`` the study's answer (the report's
    recommendation, taken at the confirmation rung when the study has one: ``_decision.study_answer``;
    taken on the target model, its first finished run there, whose split carries the width lr rule)
    under ``max_memory``, or baseline ``baseline``'s best run of its lr grid (the run the report compares with).

    ``max_memory`` (bytes or text such as ``"1.5 MiB"``) bounds the optimizer state of the answer;
    without it the study's own memory budget does. Raises ``ValueError`` naming the problem and a
    remedy: not exactly one of ``trial``/``best``/``baseline``, an unknown number or baseline, a
    trial without a split config, or no trial under the memory limit (naming the lowest memory available).
    """
    if sum((trial is not None, bool(best), baseline is not None)) != 1:
        raise ValueError(
            f"choose exactly one trial: got trial={trial!r}, best={best!r} and baseline={baseline!r}; pass a "
            "trial number (--trial N), best=True (--best, optionally with --max-memory) or a baseline's "
            "name (--baseline NAME)"
        )
    if max_memory is not None and not best:
        raise ValueError(f"max_memory={max_memory!r} only applies with best=True (--best); drop it or use --best")
    trials = {frozen.number: frozen for frozen in study.get_trials(deepcopy=False)}
    if baseline is not None:
        chosen = trials[_best_baseline_run(study, baseline)]
    elif trial is not None:
        if trial not in trials:
            span = f"0..{max(trials)}" if trials else "none: the study is empty"
            raise ValueError(f"study {study.study_name!r} has no trial {trial}; trial numbers: {span}")
        chosen = trials[trial]
    else:
        stored = study.user_attrs.get("memory_budget")
        budget = parse_bytes(max_memory) if max_memory is not None else (None if stored is None else int(stored))
        table = trials_table(study)
        objective = study_objective(study)
        answer, _ = study_answer(table, memory_budget_bytes=budget, objective=objective)
        if answer is None:
            feasible = feasible_rows(table, objective)
            if feasible.empty:
                raise ValueError(
                    f"study {study.study_name!r} has no trial that finished with a loss "
                    f"({len(table)} trials); run more trials or export one by number with --trial N"
                )
            smallest = feasible.sort_values(["state_bytes", "number"]).iloc[0]
            raise ValueError(
                f"no finished trial keeps its optimizer state under {format_bytes(budget or 0)} "
                f"(max_memory={max_memory!r}); the lowest memory available is "
                f"{format_bytes(smallest['state_bytes'])} ({int(smallest['state_bytes'])} bytes, "
                f"trial #{int(smallest['number'])}); raise --max-memory"
            )
        chosen = _target_run_of(trials.values(), answer.number) if answer.on_target else trials[answer.number]
    if not chosen.user_attrs.get("split"):
        raise ValueError(
            f"trial {chosen.number} of study {study.study_name!r} stored no split config "
            f"(state {chosen.state.name}, reason: {chosen.user_attrs.get('reason') or 'none recorded'}); "
            "export another trial"
        )
    method = method_of(chosen.user_attrs["split"])
    if method is not None:
        what = "a LoRA trial" if method == "lora" else f"a {method} trial (an optimizer of its own package)"
        raise ValueError(
            f"trial {chosen.number} of study {study.study_name!r} is {what} ({chosen.user_attrs.get('summary')}), "
            f"not a split: it has no partition to export; use {method} itself, or export a FRUGAL trial"
        )
    return chosen


def _target_run_of(trials: Any, number: int) -> optuna.trial.FrozenTrial:
    """The first finished run of trial ``number`` at the rung on the target model (the lowest seed)."""
    runs = [
        frozen for frozen in trials
        if frozen.user_attrs.get("rung_of") == number and frozen.user_attrs.get("rung_on") == RUNG_ON_TARGET
        and frozen.state.name == "COMPLETE"
    ]
    return min(runs, key=lambda frozen: (frozen.user_attrs.get("seed", 0), frozen.number))


def _best_baseline_run(study: optuna.Study, name: str) -> int:
    """The number of baseline ``name``'s lowest-loss run of its lr grid; ``ValueError`` when none finished."""
    objective = study_objective(study)
    best = best_baseline_runs(trials_table(study), objective).set_index("baseline")
    if name not in best.index:
        names = ", ".join(best.index) or "none: the study ran no baseline"
        raise ValueError(f"study {study.study_name!r} has no baseline {name!r}; its baselines: {names}")
    row = best.loc[name]
    if not math.isfinite(row[objective.name]):
        raise ValueError(
            f"no run of baseline {name!r} in study {study.study_name!r} finished with a loss ({row['grid']}); "
            "export it by trial number with --trial N"
        )
    return int(row["number"])


def model_on_meta(spec: Any, *, seed: int = 0) -> Any:
    """Return the model of ``spec`` (a proxy ``ModelSpec``) built on ``meta`` (shapes only), or on the
    CPU when it cannot be built there (some factories and checkpoints)."""
    import torch

    from frugal_search.proxy import build_model, resolve_pretrained

    spec = resolve_pretrained(spec)  # the pretrained demo name is its cached directory
    try:
        with torch.device("meta"):
            return build_model(spec, seed=seed)
    except Exception as error:  # some factories or checkpoints cannot be built on meta
        logger.debug("building %s on the meta device failed (%s); using a CPU copy", spec, error)
        return build_model(spec, seed=seed)


def provenance_of(study: optuna.Study, frozen: optuna.trial.FrozenTrial, *, storage_url: str | None) -> dict[str, Any]:
    """Return where an exported split came from, in the split file's convention (JSON-safe).

    ``{"source": {study, storage, trial, state, outcome, baseline, summary}, "metrics": {...}}``; a
    confirmed run of ``frugal-search transfer`` adds ``source_trial``, ``lr_rule``, ``lr_multiplier``
    and ``target_model`` to ``source``.
    """
    metrics: dict[str, Any] = {}
    for key in _PROVENANCE_METRICS:
        value = frozen.user_attrs.get(key)
        if value is None and key in _OPTIONAL_METRICS:
            continue  # a causal-lm trial has no accuracy
        if isinstance(value, float) and not math.isfinite(value):
            value = None  # JSON has no NaN/inf
        metrics[key] = value
    state_bytes = metrics.get("state_bytes")
    metrics["state_mib"] = state_bytes / MIB if state_bytes is not None else None
    source = {
        "study": study.study_name,
        "storage": storage_url,
        "trial": frozen.number,
        "state": frozen.state.name,
        "outcome": frozen.user_attrs.get("outcome"),
        "baseline": frozen.user_attrs.get("baseline"),
        "summary": frozen.user_attrs.get("summary"),
    }
    # a confirmed run of ``frugal-search transfer``: which proxy trial, lr and model it confirms
    source.update({key: frozen.user_attrs[key] for key in _TRANSFER_SOURCE if key in frozen.user_attrs})
    return {"source": source, "metrics": metrics}


def export_split(
    study: optuna.Study,
    *,
    trial: int | None = None,
    best: bool = False,
    max_memory: int | str | None = None,
    baseline: str | None = None,
    path: str | Path,
    storage_url: str | None = None,
    base_model: Any = None,
) -> Path:
    """Write the split config of one trial to ``path`` (JSON) and return ``path``.

    The trial is chosen as in `select_trial`. The stored split dict goes through
    ``Partition.from_dict`` and ``Partition.to_json``, so the file is validated and
    ``Partition.from_json(path)`` rebuilds the same optimizer. Its provenance names the study, the
    storage (``storage_url``, by default the study's database URL), the trial and its metrics.
    With ``base_model`` (the study's proxy model; ``meta`` will do) a proxy trial's file records its fan-ins as the base of the lr transfer rule
    (``Partition.with_base_widths``) and ``lr_transfer = "width"``: on a wider model its matrix lrs
    scale by base fan-in / fan-in (set ``"none"`` in the file to keep them).
    """
    from frugal_search.partition import Partition

    chosen = select_trial(study, trial=trial, best=best, max_memory=max_memory, baseline=baseline)
    if chosen.state.name != "COMPLETE":
        logger.warning(
            "trial %d ended as %s (%s); exporting its split anyway",
            chosen.number,
            chosen.user_attrs.get("outcome", chosen.state.name),
            chosen.user_attrs.get("reason") or "no reason recorded",
        )
    split = dict(chosen.user_attrs["split"])
    # keep what the search already noted, and add where this file came from
    provenance = dict(split.get("provenance") or {})
    provenance.update(provenance_of(study, chosen, storage_url=storage_url or storage_url_of(study)))
    split["provenance"] = provenance
    partition = Partition.from_dict(split, source=f"trial {chosen.number} of study {study.study_name!r}")
    if base_model is not None and partition.base_widths is None and "lr_rule" not in chosen.user_attrs:
        # a split of the proxy study: record its widths and transfer by the width rule (measured to
        # rank and stabilise better on a 5.6x sibling, reports/tiny-2026-12-01/transfer.md); identity on the proxy.
        # A confirmed run of the transfer study keeps the rule it ran with.
        partition = partition.with_base_widths(base_model).replace(lr_transfer="width")
    out_path = Path(path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partition.to_json(out_path)
    logger.info("wrote split config of trial %d of %s to %s", chosen.number, study.study_name, out_path)
    return out_path
