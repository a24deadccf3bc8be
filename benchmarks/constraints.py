"""Does telling the sampler about the memory budget lower the share of infeasible partitions it samples?

A partition over ``[study] memory_budget`` is recorded as infeasible without a proxy run (PRUNED,
outcome ``infeasible``) and takes no place among the trials. Since issue 11 the objective also
calls ``trial.set_constraint("memory_budget", ...)``, Optuna 5's route for constrained samplers.
This runs the shipped tiny study's space and budget twice per sampler and seed, once as shipped
and once with ``set_constraint`` made a no-op (the search before the change), and prints the share
of sampled partitions that were infeasible.

To fit a few minutes the proxy runs are short (``--steps``, default 40, instead of 150) and the
baselines are left out, so the samplers learn from searched trials only; both arms run the same
settings, fresh SQLite storage each, one process per run, one torch thread each.

    python benchmarks/constraints.py                       # TPE, seeds 0 and 1: about 10 minutes
    python benchmarks/constraints.py --samplers tpe gp --seeds 0
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def run_arm(job: dict[str, Any]) -> dict[str, Any]:
    """One search: the shipped study reduced as ``job`` says, constraints on or off."""
    import logging

    import optuna
    import torch

    from frugal_search.search import run_search
    from frugal_search.search.config import load_study_config

    torch.set_num_threads(1)
    logging.getLogger("frugal_search").setLevel(logging.WARNING)
    if not job["constraints"]:
        optuna.trial.Trial.set_constraint = lambda self, name, value: None
    config = load_study_config(ROOT / "studies" / "tiny.toml").with_overrides(
        trials=job["trials"], steps=job["steps"], storage=f"sqlite:///{job['storage']}", name="constraints"
    )
    config = dataclasses.replace(
        config,
        study=dataclasses.replace(config.study, baselines=(), front_seeds=0, seed=job["seed"], sampler=job["sampler"]),
    )
    started = time.perf_counter()
    study = run_search(config, workers=1, progress=False)
    sampled = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("outcome") is not None]
    infeasible = sum(t.user_attrs["outcome"] == "infeasible" for t in sampled)
    return {**job, "sampled": len(sampled), "infeasible": infeasible, "wall_s": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samplers", nargs="+", default=["tpe"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--trials", type=int, default=40, help="finished trials per search (default 40)")
    parser.add_argument("--steps", type=int, default=40, help="proxy steps per trial (default 40)")
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        jobs = [
            {"sampler": sampler, "seed": seed, "constraints": constraints, "trials": args.trials,
             "steps": args.steps, "storage": str(Path(folder) / f"{sampler}-{seed}-{constraints}.db")}
            for sampler in args.samplers
            for seed in args.seeds
            for constraints in (False, True)
        ]
        with multiprocessing.get_context("spawn").Pool(args.processes) as pool:
            rows = pool.map(run_arm, jobs)
    print(f"tiny study space, budget 2.5 MiB, {args.trials} trials x {args.steps} steps, no baselines")
    print(f"{'sampler':8} {'seed':>4} {'set_constraint':>14} {'infeasible':>10} {'sampled':>7} {'share':>6} {'wall s':>7}")
    for row in rows:
        print(f"{row['sampler']:8} {row['seed']:>4} {'on' if row['constraints'] else 'off':>14} "
              f"{row['infeasible']:>10} {row['sampled']:>7} {row['infeasible'] / row['sampled']:>6.1%} {row['wall_s']:>7.0f}")
    for sampler in args.samplers:
        for constraints in (False, True):
            picked = [r for r in rows if r["sampler"] == sampler and r["constraints"] == constraints]
            infeasible, sampled = sum(r["infeasible"] for r in picked), sum(r["sampled"] for r in picked)
            print(f"{sampler} with set_constraint {'on' if constraints else 'off'}: "
                  f"{infeasible} of {sampled} sampled partitions infeasible ({infeasible / sampled:.1%})")


if __name__ == "__main__":
    main()
