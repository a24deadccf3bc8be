"""Open the Optuna study a report or an export reads: from a study file or a storage URL and name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

# Heartbeat settings handed to the storage when no study file gives them; a reader runs no trial,
# so they only have to be valid.
_DEFAULT_HEARTBEAT_INTERVAL = 10
_DEFAULT_GRACE_PERIOD = 60


@dataclass(frozen=True)
class OpenedStudy:
    """A loaded study with what was used to find it."""

    study: optuna.Study
    storage_url: str
    config: Any = None  # the StudyConfig when opened from a study file
    study_file: Path | None = None


def open_study(
    study_file: str | Path | None = None,
    *,
    storage: str | None = None,
    name: str | None = None,
) -> OpenedStudy:
    """Load an existing study from ``study_file`` (a study TOML) or from ``storage`` + ``name``.

    ``storage`` and ``name`` override the file's values. Raises ``ValueError`` when neither a file
    nor both storage and name are given, when a SQLite or journal file does not exist (nothing is
    created), or when the storage holds no study of that name (naming the studies it holds).
    """
    import optuna

    from frugal_search.search import journal_path, load_study_config, normalize_storage, open_storage, sqlite_path

    config = None
    heartbeat_interval, grace_period = _DEFAULT_HEARTBEAT_INTERVAL, _DEFAULT_GRACE_PERIOD
    if study_file is not None:
        config = load_study_config(study_file).with_overrides(storage=storage, name=name)
        storage, name = config.study.storage, config.study.name
        heartbeat_interval, grace_period = config.study.heartbeat_interval, config.study.grace_period
    elif storage is not None:
        storage = normalize_storage(storage, base_dir=Path.cwd(), where="--storage")
    if storage is None or name is None:
        raise ValueError(
            f"cannot find the study: study file={study_file!r}, storage={storage!r}, name={name!r}; "
            "give a study TOML (studies/<name>.toml) or both --storage URL and --name NAME"
        )
    storage_file = sqlite_path(storage) or journal_path(storage)
    if storage_file is not None and not storage_file.exists():
        raise ValueError(
            f"the storage file {storage_file} of study {name!r} does not exist; run the search first "
            f"(frugal-search run {study_file or '<study.toml>'}) or check --storage"
        )
    backend = open_storage(storage, heartbeat_interval=heartbeat_interval, grace_period=grace_period)
    try:
        study = optuna.load_study(study_name=name, storage=backend)
    except KeyError:
        held = [summary.study_name for summary in optuna.get_all_study_summaries(backend)]
        raise ValueError(
            f"storage {storage!r} holds no study named {name!r} (it holds: {', '.join(held) or 'none'}); "
            "run the search first (frugal-search run <study.toml>) or check --name"
        ) from None
    return OpenedStudy(
        study=study,
        storage_url=storage,
        config=config,
        study_file=Path(study_file) if study_file is not None else None,
    )
