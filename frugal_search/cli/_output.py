"""Checks a command makes before it does any work (output paths, what the study ranks by), so a bad input costs nothing."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any


def ensure_output_dir(path: str | Path, *, option: str = "-o") -> Path:
    """Check that folder ``path`` exists or can be created, and that files can be written in it.

    Nothing is created: the deepest existing folder on the way must be a folder that takes a new
    file (probed with a temporary file that is removed at once). Raises ``ValueError`` naming the
    option, the path and the reason, so the command fails in one line before it opens a study.
    """
    return _check_writable(Path(path), shown=Path(path), option=option)


def _check_writable(folder: Path, *, shown: Path, option: str) -> Path:
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{option} {str(shown)!r}: {str(existing)!r} is not a folder; choose another path")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise ValueError(f"{option} {str(shown)!r}: cannot write into {str(existing)!r} ({_reason(error)})") from None
    return folder


def ensure_output_file(path: str | Path, *, option: str = "-o") -> Path:
    """Check that file ``path`` can be written (in an existing folder or one that can be created)."""
    file = Path(path)
    if file.is_dir():
        raise ValueError(f"{option} {str(file)!r}: is a folder; give a file name such as {str(file / 'split.json')!r}")
    _check_writable(file.parent, shown=file, option=option)
    return file


def _reason(error: OSError) -> str:
    return error.strerror or type(error).__name__


def require_loss_objective(config: Any, *, command: str) -> None:
    """Raise ``ValueError`` unless the study of ``config`` (a loaded ``StudyConfig``) ranks by eval loss
    (what ``validate`` and ``transfer`` compare); a fine-tuning study (accuracy first) is not checked by
    them yet."""
    objectives = config.study.objectives
    if objectives[0] != "eval_loss":
        raise ValueError(
            f"{config.path}: frugal-search {command} compares eval losses; this study's objectives are "
            f"{list(objectives)} (a fine-tuning study), which it does not check yet"
        )
