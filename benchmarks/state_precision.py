"""Loss and optimizer state of the moments' storage options on one split, against fp32, in one run.

Every option (``state_dtype`` bf16 / int8, ``second_moment`` factored, and int8 with factored)
trains the same split as fp32 on the built-in tiny model and data, with studies/tiny.toml's proxy
budget (150 steps of 16 x 64 tokens, warmup 15, an evaluation every 25 steps on 8 batches), for
each of the seeds. Runs are interleaved by seed, so that load from other processes spreads over
the options. Prints per option the final eval loss (mean ± sample standard deviation over the
seeds), its difference from fp32 paired by seed (mean ± std), the optimizer state the run measured
(bytes and % of fp32's) and the wall time per run. The split is the paper's FRUGAL (blocks,
descending, rho 0.25, T 200, signSGD) at lr 1e-3, its best lr in reports/tiny, unless ``--split``
names an exported split file. Never run by the tests; the numbers are measurements, not checks.

    python benchmarks/state_precision.py [--seeds 0 1 2] [--steps 150] [--threads 1] [--split split.json]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

# option name -> the storage settings it gives the split
OPTIONS: dict[str, dict[str, str]] = {
    "fp32": {},
    "bf16": {"state_dtype": "bf16"},
    "int8": {"state_dtype": "int8"},
    "factored": {"second_moment": "factored"},
    "int8 + factored": {"state_dtype": "int8", "second_moment": "factored"},
}


def spread(values: list[float]) -> str:
    """``mean ± sample standard deviation`` (no spread for one value)."""
    mean = statistics.fmean(values)
    return f"{mean:.4f} ± {statistics.stdev(values):.4f}" if len(values) > 1 else f"{mean:.4f}"


def main() -> None:
    from frugal_search.partition import Partition
    from frugal_search.proxy import ProxyBudget, run_proxy

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--split", default=None, help="an exported split file (default: the paper's FRUGAL at lr 1e-3)")
    parser.add_argument("--only", nargs="*", default=None, help="options to run besides fp32 (default: all)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    split = Partition.from_json(args.split) if args.split else Partition.paper(0.25, lr=1e-3)
    options = {name: storage for name, storage in OPTIONS.items() if name == "fp32" or not args.only or name in args.only}
    budget = ProxyBudget(steps=args.steps, batch_size=16, seq_len=64, warmup_steps=15, eval_every=25, eval_batches=8)

    losses: dict[str, list[float]] = {name: [] for name in options}
    state: dict[str, int] = {}
    wall: dict[str, list[float]] = {name: [] for name in options}
    for seed in args.seeds:
        for name, storage in options.items():
            start = time.perf_counter()
            result = run_proxy("tiny-llama", "stdlib", split.replace(**storage), budget, seed=seed)
            wall[name].append(time.perf_counter() - start)
            if result.diverged:
                print(f"  {name} seed {seed}: diverged ({result.reason})")
            losses[name].append(result.eval_loss)
            state[name] = result.state_bytes  # measured; the same for every seed
            print(f"  seed {seed} {name:<16} eval loss {result.eval_loss:.4f}  state {result.state_bytes} B", flush=True)

    print(f"split: {split.summary()}")
    print(f"{len(args.seeds)} seeds ({', '.join(map(str, args.seeds))}), {args.steps} steps, {torch.get_num_threads()} threads")
    header = f"{'option':<18}{'eval loss':>18}{'- fp32 (paired)':>20}{'state bytes':>14}{'% of fp32':>11}{'s per run':>11}"
    print(header)
    for name in options:
        paired = [loss - reference for loss, reference in zip(losses[name], losses["fp32"], strict=True)]
        difference = "" if name == "fp32" else spread(paired)
        print(
            f"{name:<18}{spread(losses[name]):>18}{difference:>20}{state[name]:>14}"
            f"{100 * state[name] / state['fp32']:>10.1f}%{statistics.fmean(wall[name]):>11.1f}"
        )


if __name__ == "__main__":
    main()
