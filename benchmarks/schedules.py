"""Do the rho and T schedules help at equal peak optimizer state? Measured on the tiny proxy.

Each base partition runs as it ships (fixed rho and T) and with the schedules of issue 13
(AdaFRUGAL's rules, arXiv 2601.11568, with steps counted as steps): rho decaying linearly from
its start to a quarter of it over the run, T grown x2 (capped at the run's length) when the
relative change of the eval loss falls under 5% (2% never triggered within 150 steps), and both.
Every variant starts at the same state, so its peak is the fixed one's; the time-averaged state
falls with the rho schedule. A control runs fixed at the end density, which shows what the lower
state costs when held from the start.

The budget is the shipped tiny study's (150 steps of 16 x 64 tokens, warmup 15, eval every 25 on
8 batches), with T = 25 so the subspace is chosen six times. Each variant runs 3 seeds, two
processes at a time, one torch thread each. Prints one table: loss mean and sample std, its
difference from the fixed base (inside the larger seed spread: a tie), the state in MiB and the
wall time. "model MiB" is what ``Partition.state_bytes``, and so the search's memory objective,
says: for blocks under a rho schedule a bound (the k largest tensors) above the exact "start MiB".
"mean MiB" is the time-averaged state. Run from the repository root:

    python benchmarks/schedules.py               # about 4 minutes on an idle 2-core CPU
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
from typing import Any

STEPS = 150
UPDATE_GAP = 25
END_SHARE = 0.25  # rho decays to this share of its start


def variants() -> dict[str, dict[str, dict[str, Any]]]:
    """``{base: {variant: settings}}``: the settings each run changes on its base partition."""
    schedule_rho = {"density_end": 0.25 * END_SHARE, "density_steps": STEPS}
    schedule_t = {"update_gap_growth": 2.0, "update_gap_max": STEPS, "loss_plateau": 0.05}
    out = {}
    for base, lr in (("frugal", 1e-3), ("galore", 3e-2)):
        fixed = {"density": 0.25, "update_gap": UPDATE_GAP, "lr": lr}
        out[base] = {
            "fixed": fixed,
            "rho schedule": {**fixed, **schedule_rho},
            "T schedule": {**fixed, **schedule_t},
            "both": {**fixed, **schedule_rho, **schedule_t},
            "fixed at end rho": {**fixed, "density": 0.25 * END_SHARE},
        }
    return out


def _partition(base: str, settings: dict[str, Any]):
    from frugal_search import Partition

    data = Partition.baseline(base).to_dict()
    data["settings"].update(settings)
    return Partition.from_dict(data)


def _mean_density(settings: dict[str, Any]) -> float:
    """Time-averaged rho of the schedule over the run (the fixed density without one)."""
    from frugal_search.optimizer._settings import scheduled_density

    group = {"density_end": None, **settings}
    return statistics.fmean(scheduled_density(group, step) for step in range(1, STEPS + 1))


def run_one(job: tuple[str, str, dict[str, Any], int]) -> dict[str, Any]:
    """One proxy run; the figures of the table."""
    import torch

    from frugal_search.proxy import ProxyBudget, build_model, run_proxy

    torch.set_num_threads(1)
    base, variant, settings, seed = job
    partition = _partition(base, settings)
    budget = ProxyBudget(steps=STEPS, batch_size=16, seq_len=64, warmup_steps=15, eval_every=25, eval_batches=8)
    with torch.device("meta"):
        model = build_model("tiny-llama")
    peak = partition.state_bytes(model)
    # the split part's state at the start density, exact (a blocks peak under a rho schedule is a
    # bound: the k largest tensors), and the state of everything else
    unscheduled = {**settings, "density_end": None}
    fixed_part = _partition(base, {**unscheduled, "density": 0.0}).state_bytes(model)
    start_state = _partition(base, unscheduled).state_bytes(model)
    started = time.perf_counter()
    result = run_proxy("tiny-llama", "stdlib", partition, budget, seed=seed)
    # state of the always-stateful part plus the split part at the time-averaged density
    share = _mean_density(settings) / settings["density"] if settings["density"] else 1.0
    mean_state = fixed_part + (start_state - fixed_part) * share
    return {
        "base": base, "variant": variant, "seed": seed, "eval_loss": result.eval_loss,
        "diverged": result.diverged, "peak_mib": peak / 2**20, "start_mib": start_state / 2**20, "mean_mib": mean_state / 2**20,
        "wall_s": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    jobs = [
        (base, variant, settings, seed)
        for base, table in variants().items()
        for variant, settings in table.items()
        for seed in range(args.seeds)
    ]
    with multiprocessing.get_context("spawn").Pool(args.processes) as pool:
        rows = pool.map(run_one, jobs)
    print(f"tiny-llama, {STEPS} steps of 16 x 64 tokens, T {UPDATE_GAP}, {args.seeds} seeds; loss = eval loss, mean ± sample std")
    print(f"{'base':8} {'variant':18} {'loss':>15} {'vs fixed':>9} {'verdict':>8} {'model MiB':>9} {'start MiB':>9} {'mean MiB':>9} {'wall s':>7}")
    for base, table in variants().items():
        losses = {v: [r["eval_loss"] for r in rows if r["base"] == base and r["variant"] == v] for v in table}
        fixed_mean, fixed_std = statistics.fmean(losses["fixed"]), statistics.stdev(losses["fixed"])
        for variant in table:
            picked = [r for r in rows if r["base"] == base and r["variant"] == variant]
            mean, std = statistics.fmean(losses[variant]), statistics.stdev(losses[variant])
            difference = mean - fixed_mean
            verdict = "-" if variant == "fixed" else (
                "tie" if abs(difference) <= max(std, fixed_std) else ("better" if difference < 0 else "worse"))
            diverged = sum(r["diverged"] for r in picked)
            print(f"{base:8} {variant:18} {mean:8.4f} ± {std:.4f} {difference:+9.4f} {verdict:>8} "
                  f"{picked[0]['peak_mib']:9.3f} {picked[0]['start_mib']:9.3f} {picked[0]['mean_mib']:9.3f} {statistics.fmean(r['wall_s'] for r in picked):7.1f}"
                  + (f"  ({diverged} diverged)" if diverged else ""))


if __name__ == "__main__":
    main()
