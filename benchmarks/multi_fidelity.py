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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", default="studies/tiny.toml", help="study file (default studies/tiny.toml)")
    parser.add_argument("--minutes", type=float, default=6.0, help="wall time of each search (default 6)")
    parser.add_argument("--min-fraction", type=float, default=0.25, help="first rung as a share of the steps")
    parser.add_argument("--reduction-factor", type=float, default=3.0, help="keep the top 1/this at a rung")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per search (default 1)")
    parser.add_argument("--workdir", default="/tmp/frugal-multi-fidelity", help="where the two storages go (wiped)")
    parser.add_argument("-o", "--output", default="reports/multi-fidelity")
    args = parser.parse_args(argv)

    import optuna

    from frugal_search.report import hypervolume_2d
    from frugal_search.search import load_study_config

    base = load_study_config(args.study)
    workdir = Path(args.workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    configs = {
        arm: arm_config(base, arm, workdir=workdir, min_fraction=args.min_fraction, reduction_factor=args.reduction_factor)
        for arm in ARMS
    }
    context = multiprocessing.get_context("spawn")
    print(f"running {', '.join(ARMS)} side by side for {args.minutes:g} min each on {args.study} ...", flush=True)
    started = time.time()
    processes = {arm: context.Process(target=_arm_main, args=(configs[arm], args.threads), name=arm) for arm in ARMS}
    for process in processes.values():
        process.start()
    deadline = started + 60.0 * args.minutes
    while time.time() < deadline and any(p.is_alive() for p in processes.values()):
        time.sleep(2.0)
    for process in processes.values():
        process.terminate()  # the trial it was running stays RUNNING and counts for nothing
    for process in processes.values():
        process.join()

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
    rows = []
    for arm in ARMS:
        import numpy as np

        points = np.array([(memory, loss) for _, memory, loss in figures[arm]["finished_points"]]).reshape(-1, 2)
        outcomes = figures[arm]["outcomes"]
        rows.append(
            {
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
    write_outputs(rows, figures, reference=reference, args=args, seconds=60.0 * args.minutes)
    print((Path(args.output) / "result.md").read_text())
    return 0


def write_outputs(rows: list[dict[str, Any]], figures: dict[str, Any], *, reference: tuple[float, float], args: Any, seconds: float) -> None:
    """Write result.csv, result.md and hypervolume.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out / "result.csv", index=False)
    by_arm = {row["search"]: row for row in rows}
    plain, halving = by_arm["plain"]["hypervolume"], by_arm["successive-halving"]["hypervolume"]
    ratio = halving / plain if plain else float("nan")
    lines = [
        "# Multi-fidelity against plain search at equal wall time",
        "",
        f"Study {args.study}, both searches side by side for {args.minutes:g} minutes each (one process and "
        f"one torch thread each, the same machine). Successive halving: min_fraction {args.min_fraction:g}, "
        f"reduction_factor {args.reduction_factor:g}. Hypervolume of the front of finished feasible trials "
        f"(memory MiB x eval loss), one reference point for both: ({reference[0]:.3f} MiB, {reference[1]:.4f}), "
        "1.1 x the worst value of either search. Larger is better.",
        "",
        "Regenerate with:",
        "",
        "```bash",
        f"python benchmarks/multi_fidelity.py --minutes {args.minutes:g}",
        "```",
        "",
        "| search | hypervolume | finished trials | complete | stopped early | infeasible | diverged | front size | best loss | proxy steps trained |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['search']} | {row['hypervolume']:.4f} | {row['finished_trials']} | {row['complete']} | "
            f"{row['stopped_early']} | {row['infeasible']} | {row['diverged']} | {row['front_size']} | "
            f"{row['best_loss']:.4f} | {row['proxy_steps_trained']:.0f} |"
        )
    lines += [
        "",
        f"Successive halving / plain hypervolume: {ratio:.3f}. One run of each on a shared CPU: the wall-time "
        "budget buys a different number of trials from run to run, so read a small difference as no difference.",
    ]
    (out / "result.md").write_text("\n".join(lines) + "\n")

    figure, axis = plt.subplots(figsize=(7.5, 4.5))
    times = [seconds * i / 100 for i in range(101)]
    for arm in ("plain", "successive-halving"):
        volumes = hypervolume_over_time(figures[arm]["finished_points"], reference, times)
        axis.plot([t / 60 for t in times], volumes, label=f"{arm} ({by_arm[arm]['hypervolume']:.3f})")
    axis.set_xlabel("wall time (min)")
    axis.set_ylabel("hypervolume (MiB x loss, common reference)")
    axis.set_title("Multi-fidelity vs plain search at equal wall time")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out / "hypervolume.png", dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    sys.exit(main())
