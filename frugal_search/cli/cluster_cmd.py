"""``frugal-search cluster``: a search on many machines (``frugal_search.search.cluster``).

    frugal-search cluster launch STUDY.toml --jobs 64 --storage postgresql+psycopg2://u@db/optuna --folder jobs
    frugal-search cluster serve --storage postgresql+psycopg2://u@db/optuna --host 10.0.0.5 --port 13000
    frugal-search cluster worker STUDY.toml --storage grpc://10.0.0.5:13000
"""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``cluster`` and its actions ``launch``, ``serve`` and ``worker``."""
    parser = subparsers.add_parser(
        "cluster",
        help="search on many machines: submit workers (SLURM via submitit), serve the storage over gRPC",
        description="Workers of one study that share only its storage: submit them as a SLURM job array "
        "(launch), put Optuna's gRPC storage proxy in front of the database (serve), or run one worker "
        "through that proxy (worker).",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    launch = actions.add_parser("launch", help="submit K workers of a study through submitit")
    launch.add_argument("study_file", metavar="STUDY.toml")
    launch.add_argument("--jobs", type=int, required=True, help="workers to submit (one SLURM array task each)")
    launch.add_argument("--storage", help="the storage every worker uses (a database URL or grpc://HOST:PORT)")
    launch.add_argument("--folder", default="submitit", help="submitit's folder for job logs (default: submitit)")
    launch.add_argument("--trials", type=int, help="finished trials to reach (default: [study] trials)")
    launch.add_argument("--executor", default="auto", help="auto (SLURM where sbatch exists), slurm or local")
    launch.add_argument("--timeout-min", type=int, default=24 * 60, help="each job's time limit in minutes")
    launch.add_argument(
        "--slurm", default="{}", help='more submitit parameters as JSON, e.g. \'{"slurm_partition": "cpu"}\''
    )
    launch.add_argument("--wait", action="store_true", help="wait for the jobs and say how each ended")
    launch.set_defaults(handler=run_launch)

    serve = actions.add_parser("serve", help="serve a database to workers as grpc://HOST:PORT (Optuna's proxy)")
    serve.add_argument("--storage", required=True, help="the database URL (postgresql+psycopg2://...)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=13000, help="port (default: 13000)")
    serve.set_defaults(handler=run_serve)

    worker = actions.add_parser("worker", help="one worker of a study, e.g. through a gRPC storage proxy")
    worker.add_argument("study_file", metavar="STUDY.toml")
    worker.add_argument("--storage", help="a database URL or grpc://HOST:PORT (default: [study] storage)")
    worker.add_argument("--trials", type=int, help="finished trials to reach (default: [study] trials)")
    worker.set_defaults(handler=run_worker)
    return parser


def run_launch(args: argparse.Namespace) -> int:
    """Submit the workers; print their job ids (and with --wait how each ended)."""
    from frugal_search.search import launch_workers, wait_for_workers

    try:
        slurm = json.loads(args.slurm)
        if not isinstance(slurm, dict):
            raise ValueError(f"--slurm {args.slurm!r}: expected a JSON object of submitit parameters")
        jobs = launch_workers(
            args.study_file, jobs=args.jobs, folder=args.folder, storage=args.storage, trials=args.trials,
            cluster=args.executor, timeout_min=args.timeout_min, slurm=slurm,
        )
    except ValueError as error:  # StudyConfigError and json.JSONDecodeError are ones
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("submitted: " + " ".join(str(job.job_id) for job in jobs))
    if not args.wait:
        return 0
    ends = wait_for_workers(jobs)
    for end in ends:
        print(f"job {end.job_id}: " + (f"error: {end.error}" if end.error else f"done, {end.finished} finished trials"))
    return 1 if any(end.error for end in ends) else 0


def run_serve(args: argparse.Namespace) -> int:
    """Serve the storage until interrupted."""
    from frugal_search.search import serve_storage

    try:
        serve_storage(args.storage, host=args.host, port=args.port)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def run_worker(args: argparse.Namespace) -> int:
    """Run one worker until the study holds its trials."""
    from frugal_search.search import WorkersFailedError, run_cluster_worker

    try:
        finished = run_cluster_worker(args.study_file, storage=args.storage, trials=args.trials)
    except ValueError as error:  # a study file or set-up mistake (StudyConfigError, SetupError)
        print(f"error: {error}", file=sys.stderr)
        return 2
    except WorkersFailedError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"done: the study holds {finished} finished trials")
    return 0
