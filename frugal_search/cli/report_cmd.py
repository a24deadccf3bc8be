"""``frugal-search report``: write reports/<study>/ (tables, plots, report.md) for a study."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from frugal_search.cli._output import ensure_output_dir


def add_study_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments that find a study: a study file, or --storage and --name."""
    parser.add_argument("study_file", nargs="?", help="study TOML, e.g. studies/tiny.toml")
    parser.add_argument("--storage", help="Optuna storage URL (overrides the file's), e.g. sqlite:///studies/tiny.db")
    parser.add_argument("--name", "--study", dest="name", help="study name (overrides the file's)")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``report`` subcommand."""
    parser = subparsers.add_parser(
        "report",
        help="write the Pareto front, plots and report.md of a study",
        description="Write trials.csv, pareto.csv, pareto.png, curves.png, importance.png, "
        "hypervolume.png and report.md for a study (default folder: reports/<study name>/).",
    )
    add_study_arguments(parser)
    parser.add_argument("-o", "--output", help="output folder (default: reports/<study name>/)")
    parser.add_argument("--memory-budget", help='memory budget to mark, e.g. "2 MiB" (default: the study\'s)')
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Write the report; print where it went. Returns 2 on bad input."""
    from frugal_search.report import write_report
    from frugal_search.search import open_existing_study

    try:
        if args.output:
            ensure_output_dir(args.output)
        opened = open_existing_study(args.study_file, storage=args.storage, name=args.name)
        out_dir = ensure_output_dir(args.output or Path("reports") / opened.study.study_name)
        report_path = write_report(
            opened.study,
            out_dir,
            memory_budget=args.memory_budget,
            config=opened.config,
            study_file=opened.study_file,
            storage_url=opened.storage_url,
        )
    except ValueError as error:
        print(f"frugal-search report: {error}", file=sys.stderr)
        return 2
    print(f"wrote {report_path.parent}/ (open {report_path})")
    return 0
