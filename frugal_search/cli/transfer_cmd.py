"""``frugal-search transfer``: do the proxy's splits hold on a larger model? Check, confirm, report."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from frugal_search.cli._output import ensure_output_dir, require_loss_objective


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``transfer`` subcommand."""
    parser = subparsers.add_parser(
        "transfer",
        help="re-run the front, other trials and the baselines on a larger model; confirm the best with an lr sweep",
        description="Re-run the TOP best front partitions of a finished study, TOP others spread over memory and "
        "the baselines on a target model (--model, or the study's [transfer] model) at the proxy's token budget, "
        "with and without the width lr transfer rule, and sweep the lr (x0.5, x1, x2 by default) of the TOP-K "
        "best searched front partitions and the baselines, then run each one's best point with --seeds more seeds. Every run is a trial of the study <name>-transfer in "
        "the study's storage, saved as it ends, so running the same command again resumes; export a confirmed "
        "run with frugal-search export --name <name>-transfer --best. Writes transfer.md and transfer.png to "
        "reports/<study name>/.",
    )
    parser.add_argument("study_file", help="study TOML, e.g. studies/tiny.toml (data and budget come from it)")
    parser.add_argument("--model", help="target model source (a preset, config.json, directory or factory); "
                        "default: the study's [transfer] model")
    parser.add_argument("--model-override", action="append", default=[], metavar="KEY=VALUE",
                        help="target config field, e.g. hidden_size=256 (repeat; replaces [transfer] overrides)")
    parser.add_argument("--storage", help="Optuna storage URL (overrides the file's)")
    parser.add_argument("--name", "--study", dest="name", help="study name (overrides the file's)")
    parser.add_argument("--top", type=int, help="front partitions to check, and as many others (default 6)")
    parser.add_argument("--top-k", type=int, help="searched front partitions to confirm with the sweep (default 3)")
    parser.add_argument("--trials", help="check these trial numbers (comma-separated) instead of the selection")
    parser.add_argument("--lr-rules", help="lr transfer rules the check compares (default none,width)")
    parser.add_argument("--lr-multipliers", help="lr sweep of the confirmation (default 0.5,1,2)")
    parser.add_argument("--confirm-rules", help="lr rules the sweep is around, comma-separated (default width)")
    parser.add_argument("--seeds", type=int, help="extra seeds of each confirmed run (default 2)")
    parser.add_argument("--factor", type=int, default=1, help="target runs take FACTOR x the proxy steps (default 1)")
    parser.add_argument("--state-share", type=float, default=0.25,
                        help="the recommendation keeps at most this share of AdamW's state (default 0.25)")
    parser.add_argument("--device", help="device of the target runs (default: the study's)")
    parser.add_argument("--workers", type=int, default=1,
                        help="target runs at once, one process and one torch thread each (default 1)")
    parser.add_argument("--max-runs", type=int, help="stop after this many new runs (run again to go on)")
    parser.add_argument("-o", "--output", help="output folder (default: reports/<study name>/)")
    parser.set_defaults(handler=run)
    return parser


def _override(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"--model-override {text!r}: expected KEY=VALUE, e.g. hidden_size=256")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value  # a bare string, e.g. hidden_act=silu


def _numbers(text: str | None, kind: type, option: str) -> tuple | None:
    if text is None:
        return None
    try:
        return tuple(kind(item) for item in text.split(",") if item.strip())
    except ValueError:
        raise ValueError(f"{option} {text!r}: expected comma-separated {kind.__name__}s") from None


def build_plan(args: argparse.Namespace, section: Any) -> Any:
    """Return the ``TransferPlan``: the study file's ``[transfer]`` ``section`` (a ``TransferSection``, or
    None when the file has none) with the arguments' values in place of its own.

    ``--model`` / ``--model-override`` make the target ``ModelSpec`` here, once: ``--model`` names its
    source (default the section's), the overrides replace the section's overrides when given."""
    from frugal_search.proxy import ModelSpec
    from frugal_search.validate import TransferPlan

    if args.model is None and section is None:
        raise ValueError(
            f"{args.study_file} has no [transfer] model and no --model was given; name the target, e.g. "
            "--model tiny-llama --model-override hidden_size=256"
        )
    values: dict[str, Any] = {"factor": args.factor, "device": args.device}
    if args.model is not None or args.model_override:
        overrides = dict(_override(item) for item in args.model_override)
        values["model"] = ModelSpec(args.model if args.model is not None else section.model.source, overrides=overrides)
    for key, value in (
        ("top", args.top),
        ("top_k", args.top_k),
        ("seeds", args.seeds),
        ("trials", _numbers(args.trials, int, "--trials")),
        ("lr_rules", None if args.lr_rules is None else tuple(args.lr_rules.split(","))),
        ("lr_multipliers", _numbers(args.lr_multipliers, float, "--lr-multipliers")),
        ("confirm_rules", None if args.confirm_rules is None else tuple(args.confirm_rules.split(","))),
    ):
        if value is not None:
            values[key] = value
    return TransferPlan.from_section(section, **values) if section is not None else TransferPlan(**values)


def run(args: argparse.Namespace) -> int:
    """Make the missing runs, write the report and print the correlations. Returns 2 on bad input."""
    from frugal_search.search import load_study_config
    from frugal_search.validate import run_transfer, summarize_transfer, write_transfer_report

    try:
        if args.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {args.workers}")
        config = load_study_config(args.study_file)  # the file is read here, once
        plan = build_plan(args, config.transfer)
        if args.output:
            ensure_output_dir(args.output)
        require_loss_objective(config, command="transfer")
        name = args.name or config.study.name
        out_dir = ensure_output_dir(args.output or Path("reports") / name)

        def show(key: str, result: dict) -> None:
            loss = "diverged" if result["eval_loss"] is None else f"{result['eval_loss']:.4f}"
            print(f"  {key}: target loss {loss} ({result.get('reason')})", flush=True)

        results = run_transfer(config, plan=plan, storage=args.storage, name=args.name, on_run=show,
                               max_runs=args.max_runs, workers=args.workers)
        summary = summarize_transfer(results, state_share=args.state_share)
        paths = write_transfer_report(summary, out_dir)
    except ValueError as error:
        print(f"frugal-search transfer: {error}", file=sys.stderr)
        return 2
    for condition in summary.conditions:
        overall = condition.summary.overall
        print(f"{condition.label}: {overall.count} partitions, Spearman {overall.spearman:.3f}, "
              f"Kendall {overall.kendall:.3f}, diverged {condition.diverged or 'none'}")
    if summary.recommendation is not None:
        rec = summary.recommendation
        spread = "" if math.isnan(rec.spread) else f" ± {rec.spread:.4f}"
        print(f"recommended: trial {rec.number} at lr rule {rec.best_point[0]} x{rec.best_point[1]:g}: "
              f"{rec.mean:.4f}{spread} over {len(rec.seed_losses) or 1} seed(s)")
    print(f"wrote {', '.join(str(path) for path in paths)}")
    return 0
