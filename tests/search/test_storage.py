"""Storages: SQLite under concurrent workers, storage URLs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna

from frugal_search.search.storage import journal_path, open_storage, sqlite_path

_POP_WAITING = """
import json, sys
import optuna
from frugal_search.search.storage import open_storage
optuna.logging.set_verbosity(optuna.logging.ERROR)
storage = open_storage(sys.argv[1], heartbeat_interval=10, grace_period=60)
study = optuna.load_study(study_name="race", storage=storage)
print(json.dumps([study.ask().number for _ in range(10)]))
"""


def test_concurrent_workers_never_start_the_same_enqueued_trial(tmp_path: Path) -> None:
    # Plain Optuna on SQLite lets two processes pop one WAITING trial (no SELECT ... FOR UPDATE);
    # run with Optuna's own RDBStorage, this check sees about half the pops duplicated.
    url = f"sqlite:///{tmp_path / 'race.db'}"
    study = optuna.create_study(study_name="race", storage=open_storage(url, heartbeat_interval=10, grace_period=60))
    for index in range(40):
        study.enqueue_trial({}, user_attrs={"index": index})
    workers = [
        subprocess.Popen([sys.executable, "-c", _POP_WAITING, url], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    numbers = []
    for worker in workers:
        out, _ = worker.communicate(timeout=120)
        assert worker.returncode == 0
        numbers += json.loads(out.strip().splitlines()[-1])
    assert len(numbers) == 40 and sorted(numbers) == list(range(40))  # each enqueued trial popped once


def test_storage_paths() -> None:
    assert sqlite_path("sqlite:////tmp/a/b.db") == Path("/tmp/a/b.db")
    assert sqlite_path("sqlite:///:memory:") is None and sqlite_path("postgresql://x/y") is None
    assert journal_path("journal:///tmp/x.log") == Path("/tmp/x.log") and journal_path("sqlite:///x.db") is None
