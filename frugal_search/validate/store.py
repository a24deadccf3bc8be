"""A JSON file of finished long runs, written after every run so that a crash loses nothing."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

STORE_FORMAT = "frugal-fidelity-runs/1"


def split_fingerprint(split: dict[str, Any]) -> str:
    """Return a short digest of a split config, so a stored run is never reused for another partition."""
    text = json.dumps(split, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def run_key(*, trial_number: int, seed: int, steps: int, split: dict[str, Any] | None = None) -> str:
    """Return the key of one long run.

    The step count is part of it, so checks with other factors never collide; so is the split's
    fingerprint, so a study that was run again (same trial numbers, other partitions) never reuses
    a stored result.
    """
    key = f"trial-{trial_number}/seed-{seed}/steps-{steps}"
    return key if split is None else f"{key}/split-{split_fingerprint(split)}"


class LongRunStore:
    """Results of long re-runs keyed by :func:`run_key`, kept in one JSON file.

    Every :meth:`put` rewrites the file through a temporary file and ``os.replace``, which is atomic,
    so a killed process leaves either the old or the new file, never half of one. A re-run of the
    same check reads the file and skips what is already there.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._runs: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            payload = json.loads(self.path.read_text())
            if payload.get("format") != STORE_FORMAT:
                raise ValueError(
                    f"{self.path}: unknown format {payload.get('format')!r}, expected {STORE_FORMAT!r}; "
                    "move the file away to start the long runs afresh"
                )
            self._runs = dict(payload.get("runs", {}))
            logger.info("resuming: %d long runs already in %s", len(self._runs), self.path)

    def __contains__(self, key: str) -> bool:
        return key in self._runs

    def __len__(self) -> int:
        return len(self._runs)

    def get(self, key: str) -> dict[str, Any] | None:
        """Return the stored result of ``key``, or None."""
        return self._runs.get(key)

    def put(self, key: str, result: dict[str, Any]) -> None:
        """Store ``result`` (JSON-safe) under ``key`` and write the file at once."""
        self._runs[key] = result
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(json.dumps({"format": STORE_FORMAT, "runs": self._runs}, indent=1, sort_keys=True))
        os.replace(temporary, self.path)
