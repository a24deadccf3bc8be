"""``frugal-search run STUDY.toml``: run or resume a partition search."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``run`` and its options (each overrides the study file)."""
    parser = subparsers.add_parser(
        "run",
        help="run or resume a partition search",
        description=(
            "Run the study in STUDY.toml, or resume it: the search stops when the study holds the "
            "requested number of finished (complete or pruned) trials."
        ),
    )
    parser.add_argument("study_file", metavar="STUDY.toml", help="study file")
    parser.add_argument("--trials", type=int, help="finished trials to reach (default: [study] trials)")
    parser.add_argument("--steps", type=int, help="proxy steps per trial (default: [proxy] steps)")
    parser.add_argument("--storage", help="Optuna storage URL or journal file (default: [study] storage)")
    parser.add_argument("--name", help="study name (default: [study] name)")
    parser.add_argument(
        "--workers",
        type=int,
        help="worker processes on the same storage (default: picked for the machine and logged; on a "
        "CPU with a small model one single-threaded worker per core)",
    )
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: [proxy] device)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Load the study file, apply the overrides, run the search and print where the results are."""
    from frugal_search.search import StudyConfigError, load_study_config

    try:
        config = load_study_config(args.study_file).with_overrides(
            trials=args.trials, steps=args.steps, storage=args.storage, name=args.name, device=args.device
        )
        if args.workers is not None and args.workers < 1:
            raise StudyConfigError(f"--workers: expected an integer >= 1, got {args.workers}")
    except ValueError as error:  # StudyConfigError is one
        print(f"error: {error}", file=sys.stderr)
        return 2

    from frugal_search.search import (
        SetupError,
        WorkersFailedError,
        count_finished_trials,
        printable_storage,
        run_search,
        searched_front,
    )

    try:
        study = run_search(config, workers=args.workers, progress=not args.no_progress)
    except SetupError as error:  # checked before the storage is opened: nothing was written
        print(f"error: {error}", file=sys.stderr)
        return 2
    except WorkersFailedError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finished = count_finished_trials(study)
    front = len(searched_front(study))  # the proxy's front: rung runs train longer, seeds again
    print(
        f"study {config.study.name!r}: {finished} finished trials, {front} on the Pareto front; "
        f"storage {printable_storage(config.study.storage)}"
    )
    return 0 if finished >= config.study.trials else 1
