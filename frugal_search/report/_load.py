"""Open the Optuna study a report or an export reads: from a study file or a storage URL and name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna


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
    nor both storage and name are given, or when the storage holds no study of that name (naming
    the studies it does hold).
    """
    import optuna

    config = None
    if study_file is not None:
        from frugal_search.search import load_study_config

        config = load_study_config(study_file)
        storage = storage or config.study.storage
        name = name or config.study.name
    if storage is None or name is None:
        raise ValueError(
            f"cannot find the study: study file={study_file!r}, storage={storage!r}, name={name!r}; "
            "give a study TOML (studies/<name>.toml) or both --storage URL and --name NAME"
        )
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        held = [summary.study_name for summary in optuna.get_all_study_summaries(storage)]
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
