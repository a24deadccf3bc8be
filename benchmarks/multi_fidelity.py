"""Multi-fidelity (successive halving) against the plain search, at equal wall time.

Both searches run the same study file (default studies/tiny.toml: same space, sampler, seed,
baselines and memory budget) side by side, each in its own process with one torch thread and its
own SQLite storage under --workdir, for the same wall-clock time; then both are stopped. The plain
search gives every partition the full proxy budget; the other sets ``[search] fidelity =
"successive-halving"`` (rungs at min_fraction x steps x reduction_factor^i; a partition goes on only
if its non-dominated rank at the rung is in the top 1/reduction_factor, see
frugal_search/search/fidelity.py).

The score is the hypervolume of each search's front of finished feasible trials (memory MiB,
eval loss; both minimised), computed with the report stage's ``hypervolume_2d`` and ONE reference
point for both: 1.1 x the worst memory and loss over the feasible trials of both searches. A trial
still running when time is up counts for nothing. Writes reports/multi-fidelity/result.md,
result.csv and hypervolume.png. Run from the repository root:

    python benchmarks/multi_fidelity.py --minutes 6
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import multiprocessing
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ARMS = ("plain", "successive-halving")


def arm_config(base: Any, arm: str, *, workdir: Path, min_fraction: float, reduction_factor: float) -> Any:
    """Return the study config of one arm: its own name and storage, the fidelity setting, no trial cap."""
    from frugal_search.search.config import SearchSection

    study = dataclasses.replace(
        base.study, name=f"{base.study.name}-{arm}", storage=f"sqlite:///{workdir / (arm + '.db')}", trials=100_000
    )
    search = SearchSection(
        fidelity="none" if arm == "plain" else "successive-halving",
        min_fraction=min_fraction,
        reduction_factor=reduction_factor,
    )
    return dataclasses.replace(base, study=study, search=search)


def _arm_main(config: Any, threads: int) -> None:
    import torch

    from frugal_search.search import run_search

    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(threads)
    run_search(config, progress=False)


def hypervolume_over_time(
    finished: list[tuple[float, float, float]], reference: tuple[float, float], times: list[float]
) -> list[float]:
    """Hypervolume of the points finished by each time in ``times``.

    ``finished`` holds ``(seconds since the start, memory MiB, loss)`` of every feasible trial.
    """
    import numpy as np

    from frugal_search.report import hypervolume_2d

    volumes = []
    for moment in times:
        points = [(memory, loss) for seconds, memory, loss in finished if seconds <= moment]
        volumes.append(hypervolume_2d(np.array(points), reference) if points else 0.0)
    return volumes


def arm_figures(study: Any, started_at: Any) -> dict[str, Any]:
    """Counts and feasible points of one finished arm."""
    from frugal_search.report import pareto_front, trials_table
    from frugal_search.report._table import feasible_rows

    table = trials_table(study)
    feasible = feasible_rows(table)
    trials = {frozen.number: frozen for frozen in study.get_trials(deepcopy=False)}
    finished = []
    for row in feasible.itertuples(index=False):
        frozen = trials[row.number]
        seconds = (frozen.datetime_complete - started_at).total_seconds()
        finished.append((seconds, float(row.state_mib), float(row.eval_loss)))
    outcomes = table["outcome"].value_counts().to_dict()
    return {
        "table": table,
        "finished_points": finished,
        "front": pareto_front(table),
        "outcomes": {str(key): int(value) for key, value in outcomes.items()},
        "proxy_steps": float(table["steps"].fillna(0).sum()),
    }


def run_side_by_side(configs: dict[str, Any], *, minutes: float, threads: int, workdir: Path) -> None:
    """Run every arm in its own process for ``minutes``, then stop them all."""
    context = multiprocessing.get_context("spawn")
    print(f"running {', '.join(configs)} side by side for {minutes:g} min each ...", flush=True)
    started = time.time()
    (workdir / "started").write_text(repr(started))
    processes = {arm: context.Process(target=_arm_main, args=(config, threads), name=arm) for arm, config in configs.items()}
    for process in processes.values():
        process.start()
    deadline = started + 60.0 * minutes
    while time.time() < deadline and any(p.is_alive() for p in processes.values()):
        time.sleep(2.0)
    for process in processes.values():
        process.terminate()  # the trial it was running stays RUNNING and counts for nothing
    for process in processes.values():
        process.join()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", default="studies/tiny.toml", help="study file (default studies/tiny.toml)")
    parser.add_argument("--minutes", type=float, default=6.0, help="wall time of each search (default 6)")
    parser.add_argument("--min-fraction", type=float, default=0.25, help="first rung as a share of the steps")
    parser.add_argument("--reduction-factor", type=float, default=3.0, help="keep the top 1/this at a rung")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per search (default 1)")
    parser.add_argument("--seed", type=int, default=None, help="study seed of both searches (default: the file's)")
    parser.add_argument("--workdir", default="/tmp/frugal-multi-fidelity", help="storages go to WORKDIR/seed<N> (wiped)")
    parser.add_argument("--report-only", action="store_true", help="do not search; re-read the storages of --seed")
    parser.add_argument("-o", "--output", default="reports/multi-fidelity")
    args = parser.parse_args(argv)

    import optuna

    from frugal_search.report import hypervolume_2d
    from frugal_search.search import load_study_config

    base = load_study_config(args.study)
    if args.seed is not None:
        base = dataclasses.replace(base, study=dataclasses.replace(base.study, seed=args.seed))
    seed = base.study.seed
    workdir = Path(args.workdir) / f"seed{seed}"
    configs = {
        arm: arm_config(base, arm, workdir=workdir, min_fraction=args.min_fraction, reduction_factor=args.reduction_factor)
        for arm in ARMS
    }
    if not args.report_only:
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        run_side_by_side(configs, minutes=args.minutes, threads=args.threads, workdir=workdir)
    started = float((workdir / "started").read_text())

    import datetime

    started_at = datetime.datetime.fromtimestamp(started)
    figures = {}
    for arm in ARMS:
        study = optuna.load_study(study_name=configs[arm].study.name, storage=configs[arm].study.storage)
        figures[arm] = arm_figures(study, started_at)
    all_points = [point for arm in ARMS for point in figures[arm]["finished_points"]]
    if not all_points:
        print("no feasible trial finished in either search; give more --minutes", file=sys.stderr)
        return 1
    worst_memory = max(memory for _, memory, _ in all_points)
    worst_loss = max(loss for _, _, loss in all_points)
    reference = (1.1 * worst_memory, 1.1 * worst_loss)
    import numpy as np

    rows = []
    for arm in ARMS:
        points = np.array([(memory, loss) for _, memory, loss in figures[arm]["finished_points"]]).reshape(-1, 2)
        outcomes = figures[arm]["outcomes"]
        rows.append(
            {
                "seed": seed,
                "minutes": args.minutes,
                "reference_mib": reference[0],
                "reference_loss": reference[1],
                "search": arm,
                "hypervolume": hypervolume_2d(points, reference),
                "finished_trials": int(figures[arm]["table"]["state"].isin(["COMPLETE", "PRUNED"]).sum()),
                "complete": outcomes.get("ok", 0),
                "stopped_early": outcomes.get("stopped-early", 0),
                "infeasible": outcomes.get("infeasible", 0),
                "diverged": outcomes.get("diverged", 0),
                "front_size": len(figures[arm]["front"]),
                "best_loss": min((loss for _, _, loss in figures[arm]["finished_points"]), default=float("nan")),
                "proxy_steps_trained": figures[arm]["proxy_steps"],
            }
        )
    write_outputs(rows, figures, reference=reference, args=args, seconds=60.0 * args.minutes, seed=seed)
    print((Path(args.output) / "result.md").read_text())
    return 0


def judged_steps(args: Any) -> dict[str, Any]:
    """The rungs of the study under ``args`` and the evaluation steps at which they are judged."""
    from frugal_search.search import load_study_config
    from frugal_search.search.fidelity import rung_steps

    budget = load_study_config(args.study).proxy.budget()
    steps = budget.total_steps
    rungs = rung_steps(total_steps=steps, min_fraction=args.min_fraction, reduction_factor=args.reduction_factor)
    evals = [step for step in range(budget.eval_every, steps, budget.eval_every)]
    judged = sorted({next((e for e in evals if e >= rung), steps) for rung in rungs} - {steps})
    return {"steps": steps, "eval_every": budget.eval_every, "rungs": rungs, "judged": judged}


def write_outputs(
    rows: list[dict[str, Any]], figures: dict[str, Any], *, reference: tuple[float, float], args: Any, seconds: float, seed: int
) -> None:
    """Write result-seed<N>.csv and hypervolume-seed<N>.png, then result.md over every seed's CSV."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out / f"result-seed{seed}.csv", index=False)

    figure, axis = plt.subplots(figsize=(7.5, 4.5))
    times = [seconds * i / 100 for i in range(101)]
    by_arm = {row["search"]: row for row in rows}
    for arm in ARMS:
        volumes = hypervolume_over_time(figures[arm]["finished_points"], reference, times)
        axis.plot([t / 60 for t in times], volumes, label=f"{arm} ({by_arm[arm]['hypervolume']:.3f})")
    axis.set_xlabel("wall time (min)")
    axis.set_ylabel("hypervolume (MiB x loss, common reference)")
    axis.set_title(f"Multi-fidelity vs plain search at equal wall time (study seed {seed})")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out / f"hypervolume-seed{seed}.png", dpi=120)
    plt.close(figure)

    table = pd.concat([pd.read_csv(path) for path in sorted(out.glob("result-seed*.csv"))], ignore_index=True)
    judged = judged_steps(args)
    lines = [
        "# Multi-fidelity against plain search at equal wall time",
        "",
        f"Study {args.study}: both searches side by side (one process and one torch thread each, the same "
        f"machine, the same sampler seed) for the same wall time. Successive halving: min_fraction "
        f"{args.min_fraction:g}, reduction_factor {args.reduction_factor:g}. Score: hypervolume of the front of "
        "finished feasible trials (memory MiB x eval loss), with one reference point for both searches of a "
        "seed (1.1 x the worst memory and loss of either). Larger is better. Plots: hypervolume-seed<N>.png.",
        "",
        f"With this study's {judged['steps']} proxy steps and an evaluation every {judged['eval_every']} steps, "
        f"the rungs at steps {judged['rungs']} are judged at the evaluations of steps {judged['judged']} "
        "(a rung is judged at the first evaluation at or after it; the last step is never judged).",
        "",
        "Regenerate with (one line per seed):",
        "",
        "```bash",
        *[
            f"python benchmarks/multi_fidelity.py --minutes {minutes:g} --seed {int(s)}"
            for s, minutes in table.groupby("seed")["minutes"].first().items()
        ],
        "```",
        "",
        "| seed | minutes | search | hypervolume | finished trials | complete | stopped early | infeasible | diverged | front size | best loss | proxy steps trained |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in table.itertuples(index=False):
        lines.append(
            f"| {row.seed} | {row.minutes:g} | {row.search} | {row.hypervolume:.4f} | {row.finished_trials} | "
            f"{row.complete} | {row.stopped_early} | {row.infeasible} | {row.diverged} | {row.front_size} | "
            f"{row.best_loss:.4f} | {row.proxy_steps_trained:.0f} |"
        )
    ratios = []
    for seed_value, group in table.groupby("seed"):
        values = dict(zip(group["search"], group["hypervolume"]))
        ratio = values["successive-halving"] / values["plain"] if values.get("plain") else float("nan")
        ratios.append(ratio)
        lines.append("")
        lines.append(f"Seed {seed_value}: successive halving / plain hypervolume = {ratio:.3f}.")
    lines += [
        "",
        f"Mean ratio over {len(ratios)} seed(s): {sum(ratios) / len(ratios):.3f}. On a shared CPU the wall-time "
        "budget buys a different number of trials from run to run; read a difference of a few percent as noise.",
    ]
    (out / "result.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
