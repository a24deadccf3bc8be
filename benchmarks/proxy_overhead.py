"""Overhead of run_proxy's instrumentation: a bare hand-written loop vs run_proxy, side by side.

Both build the same model from the same seed, the same optimizer from the same partition, draw
the same train batches and apply the same schedule and clipping for the same number of steps,
so their train losses agree to the bit (printed as a check). run_proxy additionally evaluates
(step 0, every eval_every steps, the end), records curves, checks for divergence and counts the
optimizer state every step. Runs alternate (bare, proxy, bare, proxy, ...) so machine load hits
both alike; the ratio of the medians of whole-call wall times is the overhead (target <= 1.05).

    python benchmarks/proxy_overhead.py                      # tiny-llama, built-in corpus, CPU
    python benchmarks/proxy_overhead.py --device cuda --model llama-60m --batch-size 64 --seq-len 256
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from frugal_search.partition import baseline_partition
from frugal_search.proxy import (
    ProxyBudget,
    build_data,
    build_model,
    causal_lm_loss,
    lr_factor,
    run_proxy,
)


def bare_loop(args: argparse.Namespace, budget: ProxyBudget, data) -> float:
    """Train exactly as run_proxy does, with nothing else; return the last step's train loss."""
    device = torch.device(args.device)
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(args.seed)
        model = build_model(args.model, seed=args.seed).to(device).train()
        optimizer = baseline_partition(args.baseline).build_optimizer(model)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: lr_factor(
                step,
                total_steps=budget.total_steps,
                warmup_steps=budget.total_warmup_steps,
                min_lr_ratio=budget.min_lr_ratio,
            ),
        )
        generator = torch.Generator().manual_seed(args.seed)
        parameters = [p for p in model.parameters() if p.requires_grad]
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
        for _ in range(budget.total_steps):
            batch = data.sample_train_batch(generator, batch_size=budget.batch_size, seq_len=budget.seq_len)
            batch = batch.to(device, non_blocking=True)
            with autocast:
                loss = causal_lm_loss(model, batch[:, :-1], batch[:, 1:])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, budget.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        return loss.item()  # the only host sync of the bare loop


def proxy_loop(args: argparse.Namespace, budget: ProxyBudget, data) -> float:
    """The same training through run_proxy; return the last step's train loss."""
    result = run_proxy(args.model, data, baseline_partition(args.baseline), budget, device=args.device, seed=args.seed)
    return result.train_curve[-1][1]


def timed(function, *call_args) -> tuple[float, float]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    value = function(*call_args)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-llama")
    parser.add_argument("--data", default="stdlib")
    parser.add_argument("--baseline", default="frugal", help="partition of both loops (default: frugal)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--eval-batches", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each loop (after one warm-up each)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    # log_every = 1 makes the train curve end at the last step, so the two last losses compare
    budget = ProxyBudget(
        steps=args.steps,
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        eval_every=args.eval_every,
        eval_batches=args.eval_batches,
        log_every=1,
    )
    data = build_data(args.data)
    print(
        f"model {args.model}, data {args.data}, partition {args.baseline}, {args.steps} steps of "
        f"{args.batch_size} x {args.seq_len} tokens, eval every {args.eval_every} steps "
        f"({args.eval_batches} batches), device {args.device}, {torch.get_num_threads()} threads"
    )
    timed(bare_loop, args, budget, data)  # warm-up: imports, allocator, caches
    timed(proxy_loop, args, budget, data)
    bare_times: list[float] = []
    proxy_times: list[float] = []
    for repeat in range(args.repeats):
        bare_seconds, bare_loss = timed(bare_loop, args, budget, data)
        proxy_seconds, proxy_loss = timed(proxy_loop, args, budget, data)
        bare_times.append(bare_seconds)
        proxy_times.append(proxy_seconds)
        print(
            f"repeat {repeat}: bare {bare_seconds:.2f} s, run_proxy {proxy_seconds:.2f} s, "
            f"ratio {proxy_seconds / bare_seconds:.3f}; last train loss bare {bare_loss:.6f} proxy {proxy_loss:.6f}"
        )
    ratio = statistics.median(proxy_times) / statistics.median(bare_times)
    print(
        f"median: bare {statistics.median(bare_times):.2f} s, run_proxy {statistics.median(proxy_times):.2f} s, "
        f"overhead ratio {ratio:.3f} (target <= 1.05)"
    )
    if bare_loss != proxy_loss:
        print("WARNING: the two loops' last train losses differ; they are not doing the same work")


if __name__ == "__main__":
    main()
