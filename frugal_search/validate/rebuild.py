"""A study rebuilt from the files its report keeps in git, and target runs made elsewhere fed back in.

A study's storage (``studies/<name>.db``) is not committed; its report's ``trials.csv`` (the report
stage's ``trials_table``) is. :func:`rebuild_study_from_table` is that table's inverse: every row
becomes a trial of the same number, state, values and user attributes, with the ``split`` the
search trained (rebuilt from the row's ``param_`` columns, or the baseline's partition), so that
``frugal-search transfer``, ``validate`` and ``report`` run on a report's study without its storage.
The sampled parameters are not restored as Optuna params (the table has no distributions): a
rebuilt study is for reading and re-running, not for sampling more trials.

A transfer check's runs are kept as ``transfer_runs.json`` (:func:`write_transfer_runs`);
:func:`read_fed_runs` and :func:`fed_runner` give them back to ``run_transfer``, matched by what
the split a run trains does (:func:`trained_fingerprint`, so a file written before the split format
grew still matches), and the report regenerates without training anything.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from frugal_search.units import MIB
from frugal_search.validate.store import split_fingerprint
from frugal_search.validate.transfer import target_run

if TYPE_CHECKING:
    import optuna
    import torch

    from frugal_search.partition import Partition
    from frugal_search.search import SearchSpace, StudyConfig

logger = logging.getLogger(__name__)

# Columns of trials_table that are not a user attribute of the same name: derived from one
# (state_mib, training_mib, state_pct_of_adamw), or the trial itself (number, state).
_DERIVED_COLUMNS = frozenset({"number", "state", "state_mib", "state_pct_of_adamw", "training_mib"})
# Attributes the search stores as whole numbers; the table holds them as floats (NaN where absent).
_COUNT_ATTRS = frozenset(
    {"state_bytes", "training_bytes", "steps", "seed", "seed_of", "rung_of", "rung_factor", "peak_memory_bytes"}
)
# Table states of trials that had not finished: rebuilt as FAIL, as the search fails a dead worker's trial.
_UNFINISHED_STATES = ("RUNNING", "WAITING")
# The figures of a target run (target_run's keys) kept in a transfer runs file.
_RUN_FIGURES = ("outcome", "eval_loss", "reason", "steps", "wall_s", "tokens_per_s")

PartitionOf = Callable[[Mapping[str, Any]], "Partition | None"]


def table_settings(row: Mapping[str, Any]) -> dict[str, Any]:
    """The space's values a row of ``trials.csv`` lists in its ``param_`` columns (empty cells left
    out), typed as the search sampled them: ints for integer dimensions, bools for bool choices."""
    from frugal_search.search import DIMENSIONS

    values: dict[str, Any] = {}
    for column, value in row.items():
        if not column.startswith("param_") or _is_missing(value):
            continue
        name = column.removeprefix("param_")
        value = _plain(value)
        kind = DIMENSIONS.get(name)
        if kind is not None and kind.value_type == "int":
            value = int(value)
        elif kind is not None and kind.value_type == "float":
            value = float(value)
        elif kind is not None:  # a choice: the allowed value the cell spells (a CSV writes True as "True")
            value = next((choice for choice in kind.choices if str(choice) == str(value)), value)
        values[name] = value
    return values


def search_partition(
    row: Mapping[str, Any],
    *,
    space: SearchSpace,
    study_name: str,
    num_layers: int | None,
    schedule_steps: int | None,
) -> Partition | None:
    """The partition the search built for a row that is not a repeat, name and provenance included:
    a baseline's at its ``baseline_lr``, or the row's point of ``space`` replayed through
    ``sample_partition`` (the dimensions the space fixes take their fixed values, as when sampled).
    None for a method baseline (LoRA, a competitor: not a split) and for a row without a ``summary`` (the
    search records it with the split: such a trial ended before it had one).

    Raises ``ValueError`` when the row lacks a value the space samples (a table of another space).
    """
    import optuna

    from frugal_search.partition import baseline_partition
    from frugal_search.proxy import METHODS
    from frugal_search.search import sample_partition

    number = int(row["number"])
    provenance = {"source": {"study": study_name, "trial": number}}
    baseline = _cell(row, "baseline")
    if baseline in METHODS or _cell(row, "summary") is None:
        return None
    if baseline:
        lr = _cell(row, "baseline_lr")
        partition = baseline_partition(baseline, **({} if lr is None else {"lr": float(lr)}))
        return partition.replace(provenance=provenance)
    try:
        return sample_partition(
            optuna.trial.FixedTrial(table_settings(row)),
            space,
            name=f"{study_name}-trial-{number}",
            provenance=provenance,
            num_layers=num_layers,
            schedule_steps=schedule_steps,
        )
    except ValueError as error:
        raise ValueError(
            f"trial {number}: {error}; its row is not a point of this [space] (pass partition_of for a table "
            "of another space)"
        ) from None


def rebuild_study_from_table(
    csv_path: str | Path,
    storage_url: str,
    config: StudyConfig,
    *,
    name: str | None = None,
    partition_of: PartitionOf | None = None,
) -> optuna.Study:
    """Create the study of ``config`` (named ``name``, default its own) in ``storage_url`` with the
    trials of the report table ``csv_path`` and return it.

    Each row becomes trial ``number`` (the rows must number 0..N-1) in its state, RUNNING and
    WAITING as FAIL; a COMPLETE one takes the values of the config's metric columns (``eval_loss``
    and ``state_mib`` by default). Every other column that names a trial attribute is restored
    (empty cells left out), ``training_mib`` as ``training_bytes``. ``split`` is the original's for
    a repeat (``seed_of``, ``rung_of``), else ``partition_of(row)`` (default
    :func:`search_partition` on the config's space, model depth and proxy steps). The study attribute
    ``adamw_state_bytes`` is measured on the config's model, as the search records it.

    Raises ``ValueError`` when the study already holds trials, the rows skip a number or a
    COMPLETE row lacks a metric value.
    """
    import optuna
    import pandas as pd

    from frugal_search.partition import Partition, adamw_state_bytes_of, introspect
    from frugal_search.report import model_on_meta
    from frugal_search.search import open_study

    config = config.with_overrides(storage=storage_url, name=name)
    study_name = config.study.name
    table = pd.read_csv(csv_path).sort_values("number", kind="stable")
    numbers = [int(number) for number in table["number"]]
    if numbers != list(range(len(numbers))):
        raise ValueError(f"{csv_path}: trial numbers must run 0..{len(numbers) - 1} without a gap, got {numbers}")
    metrics = config.metric_names
    missing = [metric for metric in metrics if metric not in table.columns]
    if missing:
        raise ValueError(f"{csv_path}: no column {missing} for the study's objectives {metrics}")
    model = model_on_meta(config.model, seed=config.study.seed)
    if partition_of is None:
        depths = [info.num_layers for info in introspect(model) if info.num_layers]
        num_layers = max(depths) if depths else None

        def partition_of(row: Mapping[str, Any]) -> Partition | None:
            return search_partition(
                row, space=config.space, study_name=study_name, num_layers=num_layers,
                schedule_steps=config.proxy.steps,
            )

    study = open_study(config)
    if study.get_trials(deepcopy=False):
        raise ValueError(
            f"study {study_name!r} in {storage_url} already holds {len(study.trials)} trials; rebuild into a new "
            "storage or under another name"
        )
    if "adamw_state_bytes" not in study.user_attrs:
        study.set_user_attr("adamw_state_bytes", adamw_state_bytes_of(model))
    splits: dict[int, dict[str, Any]] = {}
    for row in table.to_dict("records"):
        number = int(row["number"])
        attrs = _trial_attrs(row)
        original = attrs.get("seed_of", attrs.get("rung_of"))
        if original is not None:
            split = splits.get(int(original))
            if split is not None and "rung_of" in attrs and split.get("settings", {}).get("density_end") is not None:
                # a rho schedule spans the proxy's steps: at a rung it spans the rung's (as the search trains it)
                partition = Partition.from_dict(split)
                split = partition.replace(
                    density_steps=partition.settings.density_steps * int(attrs["rung_factor"])
                ).to_dict()
        else:
            partition = partition_of(row)
            split = None if partition is None else partition.to_dict()
        if split is not None:
            splits[number] = attrs["split"] = split
        state = str(row["state"])
        if state == "COMPLETE":
            values = [row[metric] for metric in metrics]
            if any(_is_missing(value) for value in values):
                raise ValueError(f"{csv_path}: COMPLETE trial {number} has no {metrics} values")
            frozen = optuna.trial.create_trial(values=[float(value) for value in values], user_attrs=attrs)
        else:
            state = "FAIL" if state in _UNFINISHED_STATES else state
            frozen = optuna.trial.create_trial(state=optuna.trial.TrialState[state], user_attrs=attrs)
        study.add_trial(frozen)
    logger.info("rebuilt study %r from %s: %d trials", study_name, csv_path, len(numbers))
    return study


def trained_fingerprint(split: Mapping[str, Any]) -> str:
    """A fingerprint of what ``split`` trains, the same whichever version wrote it: the split read
    back by ``Partition.from_dict`` (settings added since take their defaults) with ``betas``
    resolved (earlier versions wrote AdamW's (0.9, 0.999) where None now means the rule's own)."""
    from frugal_search.optimizer import resolved_betas
    from frugal_search.partition import Partition

    canonical = Partition.from_dict(dict(split)).to_dict()
    settings = canonical["settings"]
    settings["betas"] = list(resolved_betas(settings))
    return split_fingerprint(canonical)


def read_fed_runs(paths: Iterable[str | Path]) -> dict[str, dict[str, Any]]:
    """``{trained_fingerprint: figures}`` of the runs in transfer runs files (:func:`write_transfer_runs`'s
    format: ``{key: {"split": <the split that ran>, "eval_loss": ..., ...}}``); a missing file is
    skipped with a warning. Each result's ``run_source`` says where it came from (``file:key``
    unless the file names one)."""
    fed: dict[str, dict[str, Any]] = {}
    for path in map(Path, paths):
        if not path.exists():
            logger.warning("no transfer runs in %s yet", path)
            continue
        for key, result in json.loads(path.read_text()).items():
            origin = result.get("run_source") or f"{path.name}:{key}"
            fed[trained_fingerprint(result["split"])] = {**_figures(result), "run_source": origin}
    return fed


def fed_runner(fed: Mapping[str, dict[str, Any]], *, new_runs: bool = True) -> Callable[..., dict[str, Any] | None]:
    """A ``runner`` for ``run_transfer``: a fed run whose split is the one to train, else a new
    target run (``new_runs``), else None (the run is left out of this report)."""

    def runner(model: Any, data: Any, partition: Any, budget: Any, device: torch.device, seed: int) -> dict[str, Any] | None:
        found = fed.get(trained_fingerprint(partition.to_dict()))
        if found is not None or not new_runs:
            return found
        return target_run(model, data, partition, budget, device, seed)

    return runner


def write_transfer_runs(storage_url: str, study_name: str, path: str | Path) -> Path:
    """Write every finished run of ``<study_name>-transfer`` to ``path`` as ``{run_key: {split,
    figures, run_source}}``, so the transfer report can be regenerated from git alone
    (:func:`read_fed_runs`)."""
    from frugal_search.search import open_existing_study, transfer_study_name

    transfer = open_existing_study(storage=storage_url, name=transfer_study_name(study_name)).study
    keep = ("split", *_RUN_FIGURES, "run_source")
    runs = {
        frozen.user_attrs["run_key"]: {key: frozen.user_attrs.get(key) for key in keep}
        for frozen in transfer.get_trials(deepcopy=False)
        if frozen.state.name in ("COMPLETE", "PRUNED")
    }
    path = Path(path)
    path.write_text(json.dumps(runs, indent=1, sort_keys=True) + "\n")
    return path


def _figures(result: Mapping[str, Any]) -> dict[str, Any]:
    """A fed result as ``target_run``'s figures; ``loss`` is the older files' name of ``eval_loss``."""
    loss = result.get("loss", result.get("eval_loss"))
    diverged = bool(result.get("diverged")) or result.get("outcome") == "diverged" or loss is None
    return {
        "outcome": "diverged" if diverged else "ok",
        "eval_loss": None if diverged else float(loss),
        **{key: result.get(key) for key in _RUN_FIGURES if key not in ("outcome", "eval_loss")},
    }


def _trial_attrs(row: Mapping[str, Any]) -> dict[str, Any]:
    """The user attributes a table row lists, as JSON-safe Python values (empty cells left out)."""
    attrs: dict[str, Any] = {}
    for column, value in row.items():
        if column in _DERIVED_COLUMNS or column.startswith("param_") or _is_missing(value):
            continue
        value = _plain(value)
        attrs[column] = int(value) if column in _COUNT_ATTRS else value
    if not _is_missing(row.get("training_mib")):
        attrs["training_bytes"] = round(float(row["training_mib"]) * MIB)
    return attrs


def _cell(row: Mapping[str, Any], column: str) -> Any:
    """The row's value in ``column``, None when the column is absent or the cell empty."""
    value = row.get(column)
    return None if _is_missing(value) else _plain(value)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and not value)


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value (Optuna stores attributes as JSON)."""
    return value.item() if hasattr(value, "item") else value
