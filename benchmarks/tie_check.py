"""Is a tie in a study's report real? More seeds, and a longer budget, for a trial against a baseline.

A report calls a difference no larger than the seed spread a tie (3 seeds by default). This
re-runs one searched trial (its settings read from the report's ``trials.csv``) and one baseline
at a given lr with more seeds, at the study's own proxy budget and at longer ones (steps, warmup
and evaluation interval scaled alike, as ``frugal-search validate --factor`` does). Per budget it
prints each side's mean ± sample std at each lr (the trial's own lr times ``--trial-lr-scales``, the
baseline at ``--baseline-lrs``), then each side's best lr against the other's: the difference,
Welch's t-test p-value (SciPy) and a verdict, where a difference no larger than the larger spread
is a tie, as in the report.

    python benchmarks/tie_check.py studies/tiny.toml --trial 64 --baseline galore --baseline-lrs 0.03
    # 8 seeds at 150 steps and 3 at 600: about 7 minutes on an idle 2-core CPU
    python benchmarks/tie_check.py studies/tiny.toml --trial 64 --baseline galore \
        --baseline-lrs 0.01,0.0173,0.03 --trial-lr-scales 0.5,1,2 --factors 4 --seeds 3
    # each side at its best lr of a grid, at 4x the steps
    python benchmarks/tie_check.py studies/tiny.toml --trial 64 --baseline galore --baseline-lrs 0.03 \
        --target --factors 4 --seeds 2
    # on the study's [transfer] model (lrs under the width rule, as `frugal-search transfer` runs them)

Seeds are the proxy's (weights and data order); seed 0 is the study's own seed.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import statistics
import time
from pathlib import Path
from typing import Any


def trial_settings(trials_csv: Path, number: int) -> dict[str, Any]:
    """The space's values of trial ``number`` as ``trials.csv`` lists them (its ``param_`` columns)."""
    import pandas as pd

    table = pd.read_csv(trials_csv)
    rows = table[table["number"] == number]
    if rows.empty:
        raise SystemExit(f"error: {trials_csv} has no trial #{number}")
    row = rows.iloc[0]
    values = {}
    for column, value in row.items():
        if not column.startswith("param_") or pd.isna(value):
            continue
        value = value.item() if hasattr(value, "item") else value
        if column in ("param_update_gap", "param_rank"):  # integer dimensions, read back as floats
            value = int(value)
        values[column.removeprefix("param_")] = value
    return values


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    """One proxy run of ``job``'s side at its lr, budget factor and seed."""
    import torch

    from frugal_search import Partition
    from frugal_search.partition import quiet_unmatched_rules
    from frugal_search.proxy import run_proxy
    from frugal_search.search.config import load_study_config
    from frugal_search.search.space import partition_from_settings

    torch.set_num_threads(1)
    config = load_study_config(job["study"])
    if job["baseline"] is not None:
        partition = Partition.baseline(job["baseline"]).replace(lr=job["lr"])
    else:
        partition = partition_from_settings(job["settings"], num_layers=job["num_layers"])
        partition = partition.replace(lr=job["settings"]["lr"] * job["lr_scale"])
    model = config.model_spec()
    if job["target"]:  # the [transfer] model, with the width lr rule on the proxy's widths
        from frugal_search.report import model_on_meta

        partition = partition.with_base_widths(model_on_meta(model, seed=config.study.seed)).replace(lr_transfer="width")
        model = config.transfer.model_spec()
    budget = config.proxy.budget().scaled(job["factor"])
    started = time.perf_counter()
    with quiet_unmatched_rules():
        result = run_proxy(model, config.data_spec(), partition, budget, seed=job["seed"])
    return {**job, "eval_loss": result.eval_loss, "diverged": result.diverged, "wall_s": time.perf_counter() - started}


def _floats(text: str) -> list[float]:
    return [float(part) for part in text.split(",")]


def _summary(losses: list[float]) -> tuple[float, float]:
    """Mean and sample std (inf for a diverged run: it is never best)."""
    if any(not math.isfinite(x) for x in losses):
        return math.inf, math.inf
    return statistics.fmean(losses), statistics.stdev(losses) if len(losses) > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path, help="study file (its [model], [data] and [proxy] budget)")
    parser.add_argument("--trials-csv", type=Path, help="default: reports/<study name>/trials.csv")
    parser.add_argument("--trial", type=int, required=True, help="the searched trial's number")
    parser.add_argument("--baseline", required=True)
    parser.add_argument("--baseline-lrs", required=True, help="the baseline's lrs, comma-separated (its best in the report, and neighbours)")
    parser.add_argument("--trial-lr-scales", default="1", help="multiples of the trial's own lr (default 1)")
    parser.add_argument("--num-layers", type=int, default=4, help="proxy depth the trial's layer shares snap to")
    parser.add_argument("--seeds", default="8,3", help="seeds per factor, comma-separated (default 8,3)")
    parser.add_argument("--factors", default="1,4", help="budget factors (default 1,4: 150 and 600 steps)")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--target", action="store_true",
                        help="train on the study's [transfer] model, lrs under the width rule (as frugal-search transfer)")
    args = parser.parse_args()

    from scipy.stats import ttest_ind

    from frugal_search.report import verdict as report_verdict
    from frugal_search.search.config import load_study_config

    config = load_study_config(args.study)
    trials_csv = args.trials_csv or Path("reports") / config.study.name / "trials.csv"
    settings = trial_settings(trials_csv, args.trial)
    factors = [int(f) for f in args.factors.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    if len(seeds) != len(factors):
        raise SystemExit("error: --seeds needs one count per --factors entry")
    sides = [(None, scale) for scale in _floats(args.trial_lr_scales)]
    sides += [(args.baseline, lr) for lr in _floats(args.baseline_lrs)]
    common = {"study": str(args.study), "num_layers": args.num_layers, "settings": settings, "target": args.target}
    jobs = [
        {**common, "factor": factor, "seed": seed, "baseline": baseline,
         "lr": None if baseline is None else value, "lr_scale": value if baseline is None else None}
        for factor, count in zip(factors, seeds)
        for seed in range(count)
        for baseline, value in sides
    ]
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(args.processes) as pool:
        rows = pool.map(run_one, jobs)
    print(f"#{args.trial} (lr {settings['lr']:.3g}) against {args.baseline}; eval loss, mean ± sample std "
          f"over seeds; {time.perf_counter() - started:.0f} s in all")
    for factor in factors:
        best: dict[str, tuple[str, list[float]]] = {}
        print(f"{config.proxy.steps * factor} steps{' on the [transfer] model, width lr rule' if args.target else ''}:")
        for baseline, value in sides:
            side = f"#{args.trial}" if baseline is None else baseline
            label = f"lr x{value:g}" if baseline is None else f"lr {value:g}"
            key = "lr_scale" if baseline is None else "lr"
            losses = [r["eval_loss"] for r in rows if r["factor"] == factor and r["baseline"] == baseline and r[key] == value]
            mean, std = _summary(losses)
            print(f"  {side:>8} {label:>10}: {mean:.4f} ± {std:.4f}  ({', '.join(f'{x:.4f}' for x in losses)})")
            if side not in best or mean < _summary(best[side][1])[0]:
                best[side] = (label, losses)
        (ours_label, ours), (theirs_label, theirs) = best[f"#{args.trial}"], best[args.baseline]
        (mean_ours, std_ours), (mean_theirs, std_theirs) = _summary(ours), _summary(theirs)
        difference, spread = mean_ours - mean_theirs, max(std_ours, std_theirs)
        verdict = report_verdict(mean_ours, std_ours, mean_theirs, std_theirs) or "diverged against"
        p_value = ttest_ind(ours, theirs, equal_var=False).pvalue if len(ours) > 1 else float("nan")
        print(f"  best against best: #{args.trial} ({ours_label}) {verdict} {args.baseline} ({theirs_label}) at "
              f"{len(ours)} seeds: difference {difference:+.4f}, spread {spread:.4f}, Welch p {p_value:.3f}")


if __name__ == "__main__":
    main()
