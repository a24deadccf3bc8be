"""Rebuild a study from its report's ``trials.csv`` and run ``frugal-search transfer``'s check on it.

A committed report has its ``trials.csv`` but not the study's storage. This rebuilds the study into
a SQLite file of your choice (``frugal_search.validate.rebuild_study_from_table``; kept and reused
when it is there already), runs the transfer check and confirmation of the study file's
``[transfer]`` section on it, and writes ``transfer.md`` / ``transfer.png`` and every told run as
``transfer_runs.json`` into the output folder (default: the table's folder). Runs made before can be
fed in with ``--runs FILE`` (that ``transfer_runs.json`` format; matched by what the split a run
trains does, ``frugal_search.validate.trained_fingerprint``, so a run of another partition or lr is
never used); ``--no-new-runs`` writes the report from what is stored and fed in, training nothing.

``--splits-of-2026-12-01`` rebuilds the splits as the search of 2026-12-01 made them
(``reports/tiny-2026-12-01``): attention and mlp of one role each their own rule (hence their own
group and blocks window; one shared rule since commit 4063d8a), no name or provenance.

    python benchmarks/transfer_from_table.py studies/tiny.toml --table reports/tiny-2026-12-01/trials.csv \\
        --db /tmp/t.db --splits-of-2026-12-01 --trials 3,1,2,0 --runs reports/tiny-2026-12-01/transfer_runs.json \\
        --no-new-runs
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def splits_of_2026_12_01(num_layers: int):
    """The ``partition_of`` of the search of 2026-12-01: its rules and, for baselines, the registry's
    partition at its own lr (that table has no ``baseline_lr``)."""
    from frugal_search.partition import Rule, baseline_partition
    from frugal_search.search import partition_from_settings
    from frugal_search.validate import table_settings

    def partition_of(row: Mapping[str, Any]):
        if isinstance(row.get("baseline"), str):
            return baseline_partition(row["baseline"])
        values = table_settings(row)
        if not values:
            return None
        partition = partition_from_settings(values, num_layers=num_layers)
        rules = []
        for rule in partition.rules:
            if rule.kinds == ("attention", "mlp") and rule.layers is None:
                rules += [Rule.from_dict({**rule.to_dict(), "kinds": [kind]}) for kind in ("attention", "mlp")]
            else:
                rules.append(rule)
        return partition.replace(rules=rules)

    return partition_of


def _numbers(text: str | None, kind: type) -> tuple | None:
    return None if text is None else tuple(kind(item) for item in text.split(",") if item.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path, help="study file (its [model], [data], [proxy] and [transfer])")
    parser.add_argument("--table", type=Path, required=True, help="the report's trials.csv")
    parser.add_argument("--db", type=Path, required=True, help="SQLite file of the rebuilt study (created if new)")
    parser.add_argument("--splits-of-2026-12-01", action="store_true", help="the splits of that day's search (see above)")
    parser.add_argument("--num-layers", type=int, default=4, help="proxy depth the 2026-12-01 splits snap to (default 4)")
    parser.add_argument("--runs", type=Path, action="append", default=[], help="runs made before (repeat)")
    parser.add_argument("--no-new-runs", action="store_true", help="report from stored and fed-in runs only")
    parser.add_argument("--trials", help="check these trial numbers (comma-separated) instead of the selection")
    parser.add_argument("--top-k", type=int, help="searched front partitions to confirm (default: [transfer])")
    parser.add_argument("--confirm-rules", help="lr rules the sweep is around, comma-separated (default: [transfer])")
    parser.add_argument("--seeds", type=int, help="extra seeds of each confirmed run (default: [transfer])")
    parser.add_argument("-o", "--output", type=Path, help="output folder (default: the table's folder)")
    args = parser.parse_args()

    import optuna

    from frugal_search.search import load_study_config
    from frugal_search.validate import (
        TransferPlan,
        fed_runner,
        read_fed_runs,
        rebuild_study_from_table,
        run_transfer,
        summarize_transfer,
        write_transfer_report,
        write_transfer_runs,
    )

    config = load_study_config(args.study)
    section = config.transfer
    if section is None:
        raise SystemExit(f"error: {args.study} has no [transfer] section (the target model)")
    storage = f"sqlite:///{args.db}"
    if not (args.db.exists() and config.study.name in optuna.get_all_study_names(storage)):
        partition_of = splits_of_2026_12_01(args.num_layers) if args.splits_of_2026_12_01 else None
        rebuild_study_from_table(args.table, storage, config, partition_of=partition_of)
    plan = TransferPlan(
        model=section.model_spec(),
        top=section.top,
        top_k=section.top_k if args.top_k is None else args.top_k,
        lr_rules=section.lr_rules,
        lr_multipliers=section.lr_multipliers,
        confirm_rules=section.confirm_rules if args.confirm_rules is None else tuple(args.confirm_rules.split(",")),
        seeds=section.seeds if args.seeds is None else args.seeds,
        trials=_numbers(args.trials, int),
    )
    runner = fed_runner(read_fed_runs(args.runs), new_runs=not args.no_new_runs)
    results = run_transfer(
        args.study, plan=plan, storage=storage, runner=runner,
        on_run=lambda key, result: print(key, result["eval_loss"], result.get("run_source"), flush=True),
    )
    results.settings["command"] = "python " + " ".join(shlex.quote(arg) for arg in sys.argv)
    output = args.output or args.table.parent
    paths = [*write_transfer_report(summarize_transfer(results), output)]
    paths.append(write_transfer_runs(storage, config.study.name, output / "transfer_runs.json"))
    for path in paths:
        print("wrote", path)


if __name__ == "__main__":
    main()
