"""Rebuild the shipped tiny study from ``trials.csv`` and run ``frugal-search transfer`` on it.

``studies/tiny.db`` is not in git, so the study is rebuilt here, trial by trial with the same numbers,
values and partitions (``search.space.partition_from_settings`` of the ``param_*`` columns, or the
baseline), into a SQLite file of your choice. Then the transfer check of ``studies/tiny.toml``'s
``[transfer]`` section runs on it and writes ``transfer.md`` / ``transfer.png`` next to this file.

Runs already made elsewhere with the same partition, target, budget and seed can be fed in with
``--runs FILE`` (JSON ``{key: {"split": <the split that ran>, "eval_loss": ..., ...}}``); they are
matched by the fingerprint of the split the check would run, so a file from another partition or lr
is never used. ``--lead-runs FILE`` reads the quick script of issue 16 (``"<trial>/x<mult>"`` keys, no
split): its ``x1.0`` runs are the ``none`` rule as found; its ``x0.5`` runs (matrix-only groups'
lr halved) equal the ``width`` rule where every tensor gets the same lr both ways, which is checked
here tensor by tensor. ``--no-new-runs`` writes the report from what is stored and fed in.

    python reports/tiny-2026-12-01/transfer_adapter.py --db /tmp/tiny.db [--trials 3,1,...] [--runs F ...] [--lead-runs F]
        [--no-new-runs]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

HERE = Path(__file__).resolve().parent
STUDY_FILE = HERE.parents[1] / "studies" / "tiny.toml"
MATRIX_KINDS = {"attention", "mlp", "head"}


def partition_of(row, num_layers: int):
    """The partition trial ``row`` of ``trials.csv`` ran, as the search that wrote the file built it."""
    from frugal_search.partition import Rule, baseline_partition
    from frugal_search.search import partition_from_settings

    if isinstance(row["baseline"], str):
        return baseline_partition(row["baseline"])
    values = {}
    for column, value in row.items():
        if column.startswith("param_") and not (isinstance(value, float) and math.isnan(value)):
            values[column[6:]] = int(value) if column == "param_update_gap" else float(value) if isinstance(
                value, float) else value
    partition = partition_from_settings(values, num_layers=num_layers)
    # The shipped study was searched before attention and mlp of one role shared one rule (commit
    # 4063d8a): it gave each its own rule, hence its own group (its own blocks window). Rebuild that.
    rules = []
    for rule in partition.rules:
        if rule.kinds == ("attention", "mlp") and rule.layers is None:
            rules += [Rule.from_dict({**rule.to_dict(), "kinds": [kind]}) for kind in ("attention", "mlp")]
        else:
            rules.append(rule)
    return partition.replace(rules=rules)


def rebuild_study(db: Path) -> None:
    import optuna
    import pandas as pd

    storage = f"sqlite:///{db}"
    if db.exists() and "tiny" in optuna.get_all_study_names(storage):
        return
    table = pd.read_csv(HERE / "trials.csv").sort_values("number")
    study = optuna.create_study(study_name="tiny", storage=storage, directions=["minimize", "minimize"])
    for expected, (_, row) in enumerate(table.iterrows()):
        assert int(row["number"]) == expected, "trials.csv must list trial numbers 0..N-1"
        attrs = {"outcome": row["outcome"], "baseline": row["baseline"] if isinstance(row["baseline"], str) else None,
                 "summary": row["summary"]}
        if row["state"] == "COMPLETE":
            partition = partition_of(row, num_layers=4)
            attrs.update(split=partition.to_dict(), state_bytes=int(row["state_bytes"]),
                         eval_loss=float(row["eval_loss"]))
            frozen = optuna.trial.create_trial(values=[float(row["eval_loss"]), float(row["state_mib"])],
                                               user_attrs=attrs)
        else:
            frozen = optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED, user_attrs=attrs)
        study.add_trial(frozen)


def fed_runs(run_files: list[Path], lead_file: Path | None) -> dict[str, dict]:
    """Return ``{split fingerprint: result}`` of every run made elsewhere."""
    from frugal_search.partition import Partition
    from frugal_search.proxy import build_model
    from frugal_search.search import load_study_config
    from frugal_search.validate import TransferRun, run_partition
    from frugal_search.validate.store import split_fingerprint

    fed: dict[str, dict] = {}
    for path in run_files:
        if not path.exists():
            print(f"no runs in {path} yet")
            continue
        for key, result in json.loads(path.read_text()).items():
            origin = result.get("run_source") or f"{path.name}:{key}"
            fed[split_fingerprint(result["split"])] = {**_figures(result), "run_source": origin}
    if lead_file is None:
        return fed
    import pandas as pd

    table = pd.read_csv(HERE / "trials.csv").set_index("number", drop=False)
    proxy = build_model("tiny-llama")
    target = build_model(load_study_config(STUDY_FILE).transfer.model_spec())
    for key, result in json.loads(lead_file.read_text()).items():
        number, multiplier = key.split("/x")
        base = Partition.from_dict(partition_of(table.loc[int(number)], num_layers=4).to_dict())
        if float(multiplier) == 1.0:
            ran = run_partition(base, TransferRun(int(number), "none", 1.0, "check"), proxy)
        else:
            ran = run_partition(base, TransferRun(int(number), "width", 1.0, "check"), proxy)
            if _lrs(ran.build_optimizer(target)) != _lead_lrs(base, target, float(multiplier)):
                continue  # the quick script's lrs differ from the rule's for this partition: not the same run
        fed[split_fingerprint(ran.to_dict())] = {**_figures(result), "run_source": f"{lead_file.name}:{key}"}
    return fed


def _figures(result: dict) -> dict:
    loss = result.get("loss", result.get("eval_loss"))
    diverged = bool(result.get("diverged")) or result.get("outcome") == "diverged" or loss is None
    return {"outcome": "diverged" if diverged else "ok", "eval_loss": None if diverged else float(loss),
            "reason": result.get("reason"), "steps": result.get("steps"), "wall_s": result.get("wall_s"),
            "tokens_per_s": result.get("tokens_per_s")}


def _lrs(optimizer) -> dict[str, float]:
    return {name: group["lr"] for group in optimizer.param_groups for name in group["names"]}


def _lead_lrs(partition, model, multiplier: float) -> dict[str, float]:
    from frugal_search.partition import introspect

    kinds = {info.name: info.kind for info in introspect(model)}
    lrs = {}
    for group in partition.build_optimizer(model).param_groups:
        scale = multiplier if {kinds[n] for n in group["names"]} <= MATRIX_KINDS else 1.0
        lrs.update({name: group["lr"] * scale for name in group["names"]})
    return lrs


def main() -> None:
    import shlex
    import sys

    from frugal_search.search import load_study_config
    from frugal_search.validate import TransferPlan, run_transfer, summarize_transfer, target_run, write_transfer_report
    from frugal_search.validate.store import split_fingerprint

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True, help="SQLite file of the rebuilt study (created if new)")
    parser.add_argument("--runs", type=Path, action="append", default=[], help="runs made elsewhere (repeat)")
    parser.add_argument("--lead-runs", type=Path, help="runs of issue 16's quick script")
    parser.add_argument("--trials", help="check these trial numbers (comma-separated) instead of the selection")
    parser.add_argument("--no-new-runs", action="store_true", help="report from stored and fed-in runs only")
    args = parser.parse_args()
    rebuild_study(args.db)
    fed = fed_runs(args.runs, args.lead_runs)

    def runner(model, data, partition, budget, device, seed):
        found = fed.get(split_fingerprint(partition.to_dict()))
        if found is not None or args.no_new_runs:
            return found
        return target_run(model, data, partition, budget, device, seed)

    section = load_study_config(STUDY_FILE).transfer
    plan = TransferPlan(
        model=section.model_spec(), top=section.top, top_k=section.top_k, lr_rules=section.lr_rules,
        lr_multipliers=section.lr_multipliers, confirm_rules=section.confirm_rules,
        trials=None if args.trials is None else tuple(int(n) for n in args.trials.split(",")),
    )
    results = run_transfer(STUDY_FILE, plan=plan, storage=f"sqlite:///{args.db}", runner=runner,
                           on_run=lambda key, result: print(key, result["eval_loss"], result.get("run_source"), flush=True))
    results.settings["command"] = "python " + " ".join(shlex.quote(a) for a in [str(Path(__file__).relative_to(
        STUDY_FILE.parents[1])), *sys.argv[1:]])
    summary = summarize_transfer(results)
    for path in [*write_transfer_report(summary, HERE), dump_runs(args.db)]:
        print("wrote", path)


def dump_runs(db: Path) -> Path:
    """Write every told transfer run to ``transfer_runs.json`` (the ``--runs`` format), so the report
    can be regenerated from git alone: ``--runs reports/tiny-2026-12-01/transfer_runs.json --no-new-runs``."""
    import optuna

    study = optuna.load_study(study_name="tiny-transfer", storage=f"sqlite:///{db}")
    keep = ("split", "eval_loss", "outcome", "reason", "steps", "wall_s", "tokens_per_s", "run_source")
    runs = {
        frozen.user_attrs["run_key"]: {key: frozen.user_attrs.get(key) for key in keep}
        for frozen in study.get_trials(deepcopy=False)
        if frozen.state.name in ("COMPLETE", "PRUNED")
    }
    path = HERE / "transfer_runs.json"
    path.write_text(json.dumps(runs, indent=1, sort_keys=True) + "\n")
    return path


if __name__ == "__main__":
    main()
