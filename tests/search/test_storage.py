"""Storages: SQLite under concurrent workers, storage URLs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from frugal_search.search.storage import (
    WORKER_LOST_REASON,
    fail_stale_trials,
    journal_path,
    open_storage,
    sqlite_path,
)

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


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def rdb_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'stale.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used:UserWarning")  # ask() on purpose
def test_dead_workers_trials_fail_with_or_without_a_heartbeat(rdb_url: str) -> None:
    name = f"stale-{uuid.uuid4().hex[:12]}"
    storage = open_storage(rdb_url, heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(study_name=name, storage=storage)
    try:
        # killed between ``ask`` and its first heartbeat: no heartbeat row, and no words yet
        silent = study.ask()
        # killed after it had started beating
        beating = study.ask()
        storage.record_heartbeat(beating._trial_id)
        assert fail_stale_trials(study, grace_period=1000) == []  # both younger than the grace period
        time.sleep(2.2)  # SQLite's clock has whole seconds
        alive = study.ask()
        storage.record_heartbeat(alive._trial_id)  # a live worker: started now, beating now

        assert fail_stale_trials(study, grace_period=1) == [silent.number, beating.number]
        trials = study.get_trials()
        for number in (silent.number, beating.number):
            assert trials[number].state == TrialState.FAIL
            assert trials[number].user_attrs == {"outcome": "error", "reason": WORKER_LOST_REASON}
        assert trials[alive.number].state == TrialState.RUNNING
        assert fail_stale_trials(study, grace_period=1) == []  # nothing is failed twice
    finally:
        optuna.delete_study(study_name=name, storage=storage)


def test_a_trial_killed_after_writing_its_outcome_is_failed_as_lost(tmp_path) -> None:
    """The worker wrote ``outcome = ok`` and died before telling the storage: the FAIL says why."""
    import optuna
    from optuna.trial import TrialState

    from frugal_search.search.storage import WORKER_LOST_REASON, fail_stale_trials

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'lost.db'}", directions=["minimize", "minimize"])
    trial = study.ask()
    trial.set_user_attr("outcome", "ok")  # the run finished; the kill came before study.tell
    trial.set_user_attr("reason", None)
    trial.set_user_attr("eval_loss", 2.0)
    assert fail_stale_trials(study, grace_period=-1.0) == [trial.number]
    failed = study.trials[trial.number]
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs["outcome"] == "error" and failed.user_attrs["reason"] == WORKER_LOST_REASON
    assert failed.user_attrs["eval_loss"] == 2.0  # what the run measured stays
