"""A search on many machines: workers that share only the storage, started by a cluster's scheduler.

A search across hosts needs nothing but one database every worker reaches: each host (or each job
of a SLURM array) runs one worker, ``frugal-search run STUDY.toml --storage
postgresql+psycopg2://USER@DBHOST/DB --workers 1``, in its own folder; the workers coordinate
through the study alone (the count before each trial, references enqueued once, dead workers'
trials failed after ``grace_period`` and their references run again).

This module adds the two pieces a cluster asks for, each on an existing engine:

- :func:`launch_workers`: K workers of one study as jobs of ``submitit`` (a SLURM job array, or
  ``cluster="local"`` for processes on this machine), each :func:`run_cluster_worker`;
  :func:`wait_for_workers` collects how each ended.
- :func:`serve_storage`: Optuna's gRPC storage proxy (``optuna.storages.run_grpc_proxy_server``) in
  front of the database, so thousands of workers hold one connection pool instead of one each.
  Workers reach it as the storage ``grpc://HOST:PORT``: from Python with
  :func:`with_storage` (``run_search(with_storage(config, "grpc://10.0.0.5:13000"))``) or
  ``frugal-search cluster worker STUDY.toml --storage grpc://HOST:PORT``. Over the proxy a trial's
  heartbeat is a trial attribute (as on journal files), since the proxy has no Optuna heartbeat.

``pip install -e ".[cluster]"`` installs submitit, grpcio and protobuf.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from frugal_search.search.config import StudyConfig, load_study_config
from frugal_search.search.storage import grpc_address, open_storage, printable_storage

if TYPE_CHECKING:
    import submitit

logger = logging.getLogger(__name__)

DEFAULT_PROXY_PORT = 13000  # optuna.storages.run_grpc_proxy_server's own default
EXECUTORS = ("auto", "slurm", "local")  # submitit.AutoExecutor's clusters: auto picks SLURM where sbatch exists


def with_storage(config: StudyConfig, storage: str) -> StudyConfig:
    """``config`` on another storage: a database URL or journal file as ``--storage`` takes it, or
    ``grpc://HOST:PORT`` (the gRPC storage proxy, which the study file's own checks do not know)."""
    if grpc_address(storage) is not None:
        return dataclasses.replace(config, study=dataclasses.replace(config.study, storage=storage))
    return config.with_overrides(storage=storage)


def run_cluster_worker(
    study_file: str | Path, *, storage: str | None = None, trials: int | None = None, device: str | None = None
) -> int:
    """One worker of a search on many machines: ``study_file``'s study on ``storage`` (None: the
    file's), one process, until the study holds its trials; returns the finished trials it counts.

    What a SLURM array task, a Kubernetes Job's pod or a host's shell runs; K of them on one
    database make one search. Raises what :func:`~frugal_search.search.runner.run_search` raises.
    """
    from frugal_search.search.runner import run_search
    from frugal_search.search.study import count_finished_trials

    config = load_study_config(study_file)
    if storage is not None:
        config = with_storage(config, storage)
    study = run_search(config, trials=trials, workers=1, device=device, progress=False)
    return count_finished_trials(study)


def launch_workers(
    study_file: str | Path,
    *,
    jobs: int,
    folder: str | Path,
    storage: str | None = None,
    trials: int | None = None,
    cluster: str = "auto",
    timeout_min: int = 24 * 60,
    slurm: dict[str, Any] | None = None,
) -> list[submitit.Job]:
    """Submit ``jobs`` workers of one study (:func:`run_cluster_worker`) through ``submitit``.

    Args:
        study_file: the study; every job reads it (a path all nodes see, or copy it to each).
        jobs: workers, >= 1; on SLURM one job array of that many tasks.
        folder: submitit's folder for the jobs' scripts, logs and results (a shared file system on
            SLURM; nothing of the study goes there).
        storage: the storage every worker uses (a PostgreSQL URL, or ``grpc://HOST:PORT`` for the
            gRPC proxy); None: the study file's. SQLite and journal files are refused: jobs on other
            machines cannot share them.
        trials: finished trials to reach (default ``[study] trials``).
        cluster: ``"auto"`` (SLURM where ``sbatch`` exists, else local), ``"slurm"`` or ``"local"``
            (processes on this machine: a test or a workstation).
        timeout_min: each job's time limit, minutes.
        slurm: more executor parameters, e.g. ``{"slurm_partition": "cpu", "cpus_per_task": 4}``
            (``submitit.AutoExecutor.update_parameters``).

    Returns:
        The submitted jobs (``job.job_id``, ``job.result()``); see :func:`wait_for_workers`.
    """
    import submitit

    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ValueError(f"jobs={jobs!r}: allowed an integer >= 1 (workers to start)")
    if cluster not in EXECUTORS:
        raise ValueError(f"cluster={cluster!r}: allowed {', '.join(EXECUTORS)}")
    config = load_study_config(study_file)
    url = storage or config.study.storage
    if url.startswith(("sqlite", "journal://")) or "://" not in url:
        raise ValueError(
            f"storage {printable_storage(url)!r} is a file that jobs on other machines cannot share; give a "
            "database URL (postgresql+psycopg2://USER@HOST/DB) or a gRPC proxy (grpc://HOST:PORT) as storage"
        )
    executor = submitit.AutoExecutor(folder=str(folder), cluster=None if cluster == "auto" else cluster)
    executor.update_parameters(timeout_min=timeout_min, name=f"frugal-search-{config.study.name}", **(slurm or {}))
    study_path = str(Path(study_file).resolve())
    with executor.batch():  # one SLURM job array
        submitted = [executor.submit(run_cluster_worker, study_path, storage=url, trials=trials) for _ in range(jobs)]
    logger.info(
        "submitted %d worker(s) of study %r on %s (%s): %s",
        jobs,
        config.study.name,
        printable_storage(url),
        executor.cluster,
        ", ".join(str(job.job_id) for job in submitted),
    )
    return submitted


@dataclass(frozen=True)
class WorkerJobEnd:
    """How one submitted worker ended: its job id, the finished trials it counted, or its error."""

    job_id: str
    finished: int | None
    error: str | None = None


def wait_for_workers(jobs: list[submitit.Job]) -> list[WorkerJobEnd]:
    """Wait for every job of :func:`launch_workers`; a job that failed is named with its error's
    first line (its full log: ``job.stderr()``), the others with the count they saw at the end."""
    ends = []
    for job in jobs:
        try:
            ends.append(WorkerJobEnd(str(job.job_id), int(job.result())))
        except Exception as error:  # submitit raises the job's own error, or a FailedJobError
            lines = str(error).strip().splitlines()
            ends.append(WorkerJobEnd(str(job.job_id), None, lines[-1] if lines else type(error).__name__))
    return ends


def serve_storage(
    storage: str, *, host: str = "127.0.0.1", port: int = DEFAULT_PROXY_PORT, heartbeat_interval: int = 10,
    grace_period: int = 60,
) -> None:
    """Serve ``storage`` (a database URL) to workers as ``grpc://HOST:PORT`` until interrupted.

    Optuna's gRPC storage proxy: the workers' reads and writes go through this one process and its
    one connection pool (its cache also spares the database the workers' repeated reads of every
    trial). ``host`` is the address the proxy listens on: the loopback address by default; this
    node's address for workers on other machines.
    """
    import optuna

    if grpc_address(storage) is not None:
        raise ValueError(f"storage {storage!r}: serve the database itself (a postgresql+psycopg2:// URL), not a proxy")
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"port={port!r}: allowed an integer 1..65535")
    backend = open_storage(storage, heartbeat_interval=heartbeat_interval, grace_period=grace_period)
    logger.info("gRPC storage proxy for %s on grpc://%s:%d", printable_storage(storage), host, port)
    optuna.storages.run_grpc_proxy_server(backend, host=host, port=port)


__all__ = [
    "DEFAULT_PROXY_PORT",
    "EXECUTORS",
    "WorkerJobEnd",
    "launch_workers",
    "run_cluster_worker",
    "serve_storage",
    "wait_for_workers",
    "with_storage",
]
