"""``frugal-search export``: write the split config (JSON) of one trial of a study."""

from __future__ import annotations

import argparse
import sys

from frugal_search.cli._output import ensure_output_file
from frugal_search.cli.report_cmd import add_study_arguments


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``export`` subcommand."""
    parser = subparsers.add_parser(
        "export",
        help="write the split config of a trial (by number, the best under a memory limit, or a baseline's best run)",
        description="Write the split config of one trial, with its provenance, as JSON that "
        "Partition.from_json reads back.",
    )
    add_study_arguments(parser)
    choice = parser.add_mutually_exclusive_group(required=True)
    choice.add_argument("--trial", type=int, help="trial number to export")
    choice.add_argument("--best", action="store_true", help="export the lowest-loss finished trial")
    choice.add_argument(
        "--baseline", metavar="NAME", help="export a baseline's best run of its lr grid (e.g. galore), as the report compares it"
    )
    parser.add_argument("--max-memory", help='with --best: the most optimizer state allowed, e.g. "1.5 MiB"')
    parser.add_argument("-o", "--output", default="split.json", help="output file (default: split.json)")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Export the split; print where it went. Returns 2 on bad input."""
    from frugal_search.report import export_split, model_on_meta
    from frugal_search.search import open_existing_study

    try:
        ensure_output_file(args.output)
        opened = open_existing_study(args.study_file, storage=args.storage, name=args.name)
        path = export_split(
            opened.study,
            trial=args.trial,
            best=args.best,
            max_memory=args.max_memory,
            baseline=args.baseline,
            path=args.output,
            storage_url=opened.storage_url,
            # the study file's model is the proxy: its widths are the base of the lr transfer rule
            base_model=None if opened.config is None else model_on_meta(opened.config.model),
        )
    except ValueError as error:
        print(f"frugal-search export: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0

