"""``frugal-search validate``: does the proxy rank partitions as longer training does?"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from frugal_search.cli._output import ensure_output_dir, require_loss_objective


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``validate`` subcommand."""
    parser = subparsers.add_parser(
        "validate",
        help="re-run the best and other trials with a longer budget and compare rankings",
        description="Re-run the TOP best front partitions of a finished study and TOP other finished "
        "trials spread over memory, each with FACTOR times the proxy steps and several seeds, and the "
        "report's recommended trial and each baseline's best run of its lr grid; write "
        "fidelity.md and fidelity.png (rank correlations, seed-to-seed ceiling, front survival, the "
        "recommendation's verdict against each baseline after long training) to "
        "reports/<study name>/. Finished long runs are kept in fidelity_runs.json there, so running "
        "the same command again resumes.",
    )
    parser.add_argument("study_file", help="study TOML, e.g. studies/tiny.toml (model, data and budget come from it)")
    parser.add_argument("--storage", help="Optuna storage URL (overrides the file's)")
    parser.add_argument("--name", "--study", dest="name", help="study name (overrides the file's)")
    parser.add_argument("--top", type=int, default=6, help="front partitions to re-run, and as many others (default 6)")
    parser.add_argument("--factor", type=int, default=4, help="long runs take FACTOR x the proxy steps (default 4)")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per partition, 0..SEEDS-1 (default 2)")
    parser.add_argument("--bands", type=int, default=3, help="memory bands for within-band correlations (default 3)")
    parser.add_argument("--device", help="device of the long runs (default: the study's)")
    parser.add_argument(
        "--workers", type=int, default=1, help="long runs at once, one process and one torch thread each (default 1)"
    )
    parser.add_argument("-o", "--output", help="output folder (default: reports/<study name>/)")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the check, write the report and print the correlations. Returns 2 on bad input."""
    from frugal_search.search import load_study_config
    from frugal_search.validate import FidelityCheck, run_fidelity_check, write_fidelity_report

    try:
        if args.seeds < 1:
            raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
        check = FidelityCheck(
            top=args.top, factor=args.factor, seeds=tuple(range(args.seeds)), bands=args.bands, device=args.device,
            workers=args.workers,
        )
        if args.output:
            ensure_output_dir(args.output)
        config = load_study_config(args.study_file)  # the file is read here, once
        require_loss_objective(config, command="validate")
        name = args.name or config.study.name
        out_dir = ensure_output_dir(args.output or Path("reports") / name)

        def show(key: str, result: dict) -> None:
            print(f"  {key}: eval loss {result['eval_loss']:.4f} ({result['reason']}, {result['wall_s']:.0f} s)")

        summary = run_fidelity_check(
            config, check=check, report_dir=out_dir, storage=args.storage, name=args.name, on_run=show
        )
        paths = write_fidelity_report(summary, out_dir)
    except ValueError as error:
        print(f"frugal-search validate: {error}", file=sys.stderr)
        return 2
    print(
        f"proxy vs long run over {summary.overall.count} partitions: Spearman {summary.overall.spearman:.3f}, "
        f"Kendall {summary.overall.kendall:.3f}; seed-to-seed ceiling Spearman {summary.ceiling.spearman:.3f}"
    )
    for band in summary.bands:
        print(
            f"  memory {band.low_mib:.3f}-{band.high_mib:.3f} MiB ({band.correlation.count}): "
            f"Spearman {band.correlation.spearman:.3f}, Kendall {band.correlation.kendall:.3f}"
        )
    print(f"front after long training: kept {summary.survival.kept}, dropped {summary.survival.dropped}, "
          f"joined {summary.survival.joined}")
    print(f"wrote {', '.join(str(path) for path in paths)}")
    return 0
