"""Resume after ``kill -9`` of the workers while the baselines run: the baselines come back.

Two worker processes, killed while both baselines are RUNNING; then the command again. The
resumed run fails the dead trials (once their heartbeat is older than ``grace_period``), enqueues
the baselines that have no finished copy, and ends with exactly the target, each baseline once.
On a SQLite file, a journal file and PostgreSQL (skipped, saying why, when no server answers).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import optuna
import psutil
import pytest
from optuna.trial import TrialState

from frugal_search.search import load_study_config
from frugal_search.search.storage import WORKER_LOST_REASON, open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)
TRIALS = 3
BASELINES = ("adamw", "frugal")


def study_file(folder: Path, *, name: str, storage: str) -> Path:
    path = folder / "resume.toml"
    path.write_text(
        "\n".join(
            [
                "[study]",
                f'name = "{name}"',
                f"trials = {TRIALS}",
                'sampler = "random"',
                f"baselines = {list(BASELINES)}",
                "front_seeds = 0",
                f'storage = "{storage}"',
                "heartbeat_interval = 1",
                "grace_period = 3",
                "[search]",
                "confirm_seeds = 0",
                "[model]",
                'source = "tiny-llama"',
                "overrides = { num_hidden_layers = 2, hidden_size = 32, intermediate_size = 64, num_attention_heads = 2 }",
                "[data]",
                'source = "stdlib"',
                "[proxy]",
                "steps = 600",  # long enough to be caught running on an idle machine (80 ended unseen), killed before it ends
                "batch_size = 2",
                "seq_len = 16",
                "eval_every = 30",
                "eval_batches = 1",
                "[space]",
                "density = [0.05, 0.5]",
            ]
        )
        + "\n"
    )
    return path


def trials_of(path: Path) -> list[optuna.trial.FrozenTrial]:
    config = load_study_config(path)
    storage = open_storage(config.study.storage, heartbeat_interval=10, grace_period=60)
    return optuna.load_study(study_name=config.study.name, storage=storage).get_trials()


def kill_workers_while_baselines_run(path: Path) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Start two workers, kill them (not their parent) once a baseline runs; the run and the
    baselines that were running."""
    command = [sys.executable, "-m", "frugal_search", "run", str(path), "--no-progress", "--workers", "2"]
    # Files, not pipes: the workers inherit them, and a full pipe nobody reads would block their logging.
    out_file, err_file = (tempfile.TemporaryFile("w+") for _ in range(2))
    parent = subprocess.Popen(command, stdout=out_file, stderr=err_file, text=True)
    try:
        deadline = time.monotonic() + 240
        running: list[str] = []
        while time.monotonic() < deadline and not running:
            time.sleep(0.2)
            if parent.poll() is not None:  # the run ended before a baseline was seen running: say why
                raise AssertionError(f"the run ended (exit {parent.returncode}) before a baseline was seen running; "
                                     f"its stderr: {_read(err_file)[-2000:]}")
            try:
                trials = trials_of(path)
            except Exception:  # the study is being created right now
                continue
            running = [t.user_attrs["baseline"] for t in trials if t.state == TrialState.RUNNING and t.user_attrs.get("baseline")]
            if running and len(running) < len(BASELINES):
                time.sleep(0.5)  # give the second worker a moment to start the other baseline
                trials = trials_of(path)
                running = [t.user_attrs["baseline"] for t in trials if t.state == TrialState.RUNNING and t.user_attrs.get("baseline")]
        assert running, "no baseline was running within 240 s"
        workers = psutil.Process(parent.pid).children()
        assert len(workers) >= 2
        for worker in workers:
            os.kill(worker.pid, signal.SIGKILL)
        parent.wait(timeout=60)
        out, err = _read(out_file), _read(err_file)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        out_file.close()
        err_file.close()
    return subprocess.CompletedProcess(command, parent.returncode, out, err), running


def _read(file) -> str:
    file.flush()
    file.seek(0)
    return file.read()


@pytest.fixture(params=["sqlite", "journal", pytest.param("postgresql", marks=pytest.mark.services)])
def storage(request, tmp_path: Path):
    if request.param == "sqlite":
        yield "kill-sqlite", f"sqlite:///{tmp_path / 'kill.db'}"
    elif request.param == "journal":
        yield "kill-journal", str(tmp_path / "kill.log")
    else:
        url = request.getfixturevalue("postgres_url")
        name = f"frugal-search-kill-{uuid.uuid4().hex[:12]}"
        yield name, url
        optuna.delete_study(study_name=name, storage=url)


def test_baselines_killed_while_running_are_run_again_in_the_resumed_run(tmp_path: Path, storage) -> None:
    name, url = storage
    path = study_file(tmp_path, name=name, storage=url)
    killed, running = kill_workers_while_baselines_run(path)
    # the target was not reached: exit 1, one line naming each killed worker and the signal
    assert killed.returncode == 1, killed.stderr[-2000:]
    assert "frugal-search-worker-0: killed by signal SIGKILL" in killed.stderr
    assert "Traceback" not in killed.stderr

    rerun = subprocess.run(  # one worker: what is tested is the resume, not the spawning again
        [sys.executable, "-m", "frugal_search", "run", str(path), "--no-progress", "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    trials = trials_of(path)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(finished) == TRIALS + len(BASELINES)  # the baselines are references besides the target
    assert sorted(t.user_attrs["baseline"] for t in finished if t.user_attrs["baseline"]) == sorted(BASELINES)
    lost = [t for t in failed if t.user_attrs["reason"] == WORKER_LOST_REASON]
    # the killed copies were running (a baseline seen running may still have finished just before
    # the kill, and a worker may have been killed in a searched trial it had started)
    assert lost and {t.user_attrs["baseline"] for t in lost if t.user_attrs.get("baseline")} <= set(running)
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    print(f"{name}: killed while running {running}; {len(finished)} finished, {len(failed)} failed, {len(trials)} in all")
