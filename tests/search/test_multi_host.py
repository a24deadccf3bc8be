"""A search across hosts: workers that share only the PostgreSQL URL.

Each worker is its own ``frugal-search`` process in its own temporary folder with its own copy of
the study file; nothing is shared but the database (no files, no parent process that coordinates).
One worker is killed (SIGKILL) in the middle of a trial and replaced; the study must end with its
searched trials exactly at the target and every reference run (baselines, proxy seeds,
confirmation rung) finished exactly once: 0 duplicated, 0 lost.

The second test starts workers the way a cluster would: two jobs of ``submitit``'s local executor
(``launch_workers(..., cluster="local")``, SLURM's stand-in), talking to the database through
Optuna's gRPC storage proxy (``frugal-search cluster serve``, a separate process on 127.0.0.1).
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from frugal_search.search import load_study_config
from frugal_search.search.objective import SURPLUS_REASON
from frugal_search.search.rungs import planned_rung_runs
from frugal_search.search.storage import WORKER_LOST_REASON
from frugal_search.search.study import planned_baseline_runs, planned_seed_runs, reference_key

logger = logging.getLogger(__name__)

WORKER_TIMEOUT_S = 300
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)

STUDY = """
[study]
name = "{name}"
trials = {trials}
sampler = "random"
baselines = {baselines}
front_seeds = {front_seeds}
heartbeat_interval = 1
grace_period = 4

[model]
source = "tiny-llama"
overrides = {{ num_hidden_layers = 2, hidden_size = 32, intermediate_size = 64, num_attention_heads = 4 }}

[data]
source = "stdlib"
max_bytes = 1048576

[proxy]
steps = {steps}
batch_size = 4
seq_len = 16
eval_every = 10
eval_batches = 1
threads = 1

[space]
density = [0.1, 0.5]

[search]
confirm_factor = 2
confirm_top = 2
confirm_seeds = {confirm_seeds}
"""


def study_text(name: str, *, trials: int, baselines: str, front_seeds: int, confirm_seeds: int, steps: int) -> str:
    return STUDY.format(
        name=name, trials=trials, baselines=baselines, front_seeds=front_seeds, confirm_seeds=confirm_seeds, steps=steps
    )


def host_folder(root: Path, index: int, text: str) -> Path:
    """A "host": a folder of its own holding its own copy of the study file."""
    folder = root / f"host{index}"
    folder.mkdir()
    (folder / "study.toml").write_text(text)
    return folder


def start_worker(folder: Path, command: list[str]) -> subprocess.Popen:
    """``python -m frugal_search <command>`` in ``folder``, its output in ``folder/worker.log``."""
    log = open(folder / "worker.log", "w")  # closed by stop_all
    return subprocess.Popen(
        [sys.executable, "-m", "frugal_search", *command],
        cwd=folder, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def stop_all(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


def wait_for(predicate, *, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout_s:g} s waiting for {what}"
        time.sleep(0.1)


def ledger(study: optuna.Study, config) -> dict:
    """The study's books: searched trials against the target, and each reference run's count."""
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state in FINISHED]
    searched = [t for t in finished if reference_key(t.user_attrs) is None]
    counts = collections.Counter(reference_key(t.user_attrs) for t in finished if reference_key(t.user_attrs))
    planned = {
        run.key
        for run in [*planned_baseline_runs(config, study), *planned_seed_runs(study, config), *planned_rung_runs(study, config)]
    }
    return {
        "trials": len(trials),
        "searched": len(searched),
        "references": sum(counts.values()),
        "duplicated": sum(n - 1 for n in counts.values()) + max(0, len(searched) - config.study.trials),
        "lost": len(planned - set(counts)) + max(0, config.study.trials - len(searched)),
        # finished references the finished study would not plan (a rung promoted on partial seed means)
        "stray": sorted(set(counts) - planned, key=str),
        "unfinished": [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)],
        "kinds": collections.Counter(key[0] for key in counts),
    }


@pytest.mark.services
@pytest.mark.slow
def test_workers_sharing_only_the_database_reach_the_target_with_one_killed_and_replaced(tmp_path, postgres_url):
    name = f"frugal-search-multihost-{uuid.uuid4().hex[:12]}"
    text = study_text(name, trials=4, baselines='["adamw", "frugal"]', front_seeds=1, confirm_seeds=1, steps=40)
    command = ["run", "study.toml", "--storage", postgres_url, "--workers", "1", "--no-progress"]
    workers: list[subprocess.Popen] = []
    try:
        first = start_worker(host_folder(tmp_path, 0, text), command)
        workers.append(first)

        def running() -> list[int]:
            assert first.poll() is None, (tmp_path / "host0" / "worker.log").read_text()[-3000:]
            try:
                study = optuna.load_study(study_name=name, storage=postgres_url)
            except KeyError:  # not created yet
                return []
            return [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]

        wait_for(lambda: bool(running()), timeout_s=120, what="the first worker's first trial")
        killed_number = running()[0]
        os.kill(first.pid, signal.SIGKILL)  # mid-trial: its trial stays RUNNING in the database
        first.wait()
        study = optuna.load_study(study_name=name, storage=postgres_url)
        assert study.get_trials(deepcopy=False)[killed_number].state == TrialState.RUNNING
        # the other hosts, and one that replaces the killed worker
        workers += [start_worker(host_folder(tmp_path, index, text), command) for index in (1, 2, 3)]
        for index, worker in enumerate(workers[1:], start=1):
            code = worker.wait(timeout=WORKER_TIMEOUT_S)
            assert code == 0, (tmp_path / f"host{index}" / "worker.log").read_text()[-3000:]

        config = load_study_config(tmp_path / "host1" / "study.toml").with_overrides(storage=postgres_url)
        study = optuna.load_study(study_name=name, storage=postgres_url)
        books = ledger(study, config)
        logger.info("multi-host figures: %d workers (1 killed mid-trial %d, replaced), %s", len(workers), killed_number, books)
        assert books["unfinished"] == []
        assert books["searched"] == 4 and books["duplicated"] == 0 and books["lost"] == 0 and books["stray"] == [], books
        assert books["kinds"]["baseline"] == 2 and books["kinds"]["seed"] >= 2 and books["kinds"]["rung"] >= 1
        killed = study.get_trials(deepcopy=False)[killed_number]
        assert killed.state == TrialState.FAIL and killed.user_attrs["reason"] == WORKER_LOST_REASON
        # the other failures are records of runs that were never trained: a searched trial past the
        # target, or a second copy of a reference that another worker had started first
        failed = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.FAIL and t.number != killed_number]
        reasons = [t.user_attrs.get("reason", "") for t in failed]
        assert all(reason == SURPLUS_REASON or reason.endswith("this copy is dropped") for reason in reasons), reasons
        assert all(t.user_attrs.get("steps") in (None, 0) for t in failed), [t.user_attrs for t in failed]
        for index in range(4):  # nothing but its study file and its log in each host's folder
            assert sorted(p.name for p in (tmp_path / f"host{index}").iterdir()) == ["study.toml", "worker.log"]
    finally:
        stop_all(workers)
        try:
            optuna.delete_study(study_name=name, storage=postgres_url)
        except KeyError:
            pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.services
@pytest.mark.slow
def test_submitit_jobs_through_the_grpc_storage_proxy_reach_the_target(tmp_path, postgres_url):
    pytest.importorskip("submitit")
    pytest.importorskip("grpc")
    from frugal_search.search import launch_workers, wait_for_workers

    name = f"frugal-search-grpc-{uuid.uuid4().hex[:12]}"
    port = free_port()
    proxy_url = f"grpc://127.0.0.1:{port}"
    server_folder = tmp_path / "server"
    server_folder.mkdir()
    server = start_worker(server_folder, ["cluster", "serve", "--storage", postgres_url, "--port", str(port)])
    try:
        text = study_text(name, trials=3, baselines='["frugal"]', front_seeds=1, confirm_seeds=0, steps=8)
        study_file = host_folder(tmp_path, 0, text) / "study.toml"
        wait_for(lambda: "Server started" in (server_folder / "worker.log").read_text(), timeout_s=120, what="the proxy")
        jobs = launch_workers(study_file, jobs=2, folder=tmp_path / "submitit", storage=proxy_url, cluster="local")
        ends = wait_for_workers(jobs)
        assert [end.error for end in ends] == [None, None], [job.stderr() for job in jobs]
        config = load_study_config(study_file).with_overrides(storage=postgres_url)
        study = optuna.load_study(study_name=name, storage=postgres_url)  # the database itself, not the proxy
        books = ledger(study, config)
        logger.info("gRPC + submitit figures: 2 jobs, %s", books)
        assert books["unfinished"] == [] and books["searched"] == 3
        assert books["duplicated"] == 0 and books["lost"] == 0 and books["stray"] == [], books
        assert books["kinds"]["baseline"] == 1 and books["kinds"]["seed"] >= 2
        assert all(end.finished >= 3 for end in ends)
        # over the proxy the heartbeat is a trial attribute, stamped while each trial ran
        from frugal_search.search.storage import HEARTBEAT_ATTR

        assert all(HEARTBEAT_ATTR in t.system_attrs for t in study.get_trials(deepcopy=False, states=FINISHED))
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        stop_all([server])
        try:
            optuna.delete_study(study_name=name, storage=postgres_url)
        except KeyError:
            pass


def test_the_launcher_refuses_storages_other_machines_cannot_share(tmp_path):
    from frugal_search.search import launch_workers

    text = study_text("x", trials=1, baselines="[]", front_seeds=0, confirm_seeds=0, steps=2)
    study_file = host_folder(tmp_path, 0, text) / "study.toml"
    with pytest.raises(ValueError, match=r"jobs on other machines cannot share"):
        launch_workers(study_file, jobs=2, folder=tmp_path / "jobs", cluster="local")  # the default SQLite file
    with pytest.raises(ValueError, match=r"jobs=0: allowed an integer >= 1"):
        launch_workers(study_file, jobs=0, folder=tmp_path / "jobs", storage="postgresql+psycopg2://u@h/db")
    with pytest.raises(ValueError, match=r"cluster='k8s': allowed auto, slurm, local"):
        launch_workers(study_file, jobs=1, folder=tmp_path / "jobs", storage="postgresql+psycopg2://u@h/db", cluster="k8s")


def test_a_grpc_storage_url_names_host_and_port():
    from frugal_search.search.storage import grpc_address, printable_storage

    assert grpc_address("grpc://127.0.0.1:13000") == ("127.0.0.1", 13000)
    assert grpc_address("postgresql+psycopg2://u@h/db") is None
    assert printable_storage("grpc://127.0.0.1:13000") == "grpc://127.0.0.1:13000"
    with pytest.raises(ValueError, match=r"'grpc://db-proxy': write a gRPC storage proxy as grpc://HOST:PORT"):
        grpc_address("grpc://db-proxy")
