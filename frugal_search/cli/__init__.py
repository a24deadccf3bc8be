"""The ``frugal-search`` command line: a thin layer that parses arguments and calls the library.

Each subcommand lives in its own module ``frugal_search.cli.<name>`` exposing
``add_parser(subparsers)`` (registers its arguments) and ``run(args) -> int`` (does the work).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# subcommand name -> module, in the order the data flows
_COMMANDS: dict[str, str] = {
    "proxy": "frugal_search.cli.proxy_cmd",
    "run": "frugal_search.cli.run_cmd",
    "report": "frugal_search.cli.report_cmd",
    "export": "frugal_search.cli.export_cmd",
    "memory": "frugal_search.cli.memory_cmd",
    "validate": "frugal_search.cli.validate_cmd",
    "transfer": "frugal_search.cli.transfer_cmd",
    "cluster": "frugal_search.cli.cluster_cmd",
}


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="frugal-search",
        description="Search, report and export memory-efficient FRUGAL optimizer partitions.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in _COMMANDS.items():
        module = importlib.import_module(module_name)
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as error:  # a file or folder of the user's that cannot be read or written
        if args.verbose:
            raise
        print(f"frugal-search {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
