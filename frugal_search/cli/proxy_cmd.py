"""``frugal-search proxy``: run one proxy training run of a partition and print its figures."""

from __future__ import annotations

import argparse
import json
import sys

def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``proxy`` subcommand."""
    parser = subparsers.add_parser(
        "proxy",
        help="run one proxy training run of a partition",
        description="Train a model briefly with one partition's FRUGAL optimizer and print eval loss, "
        "optimizer-state bytes, peak memory and speed.",
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--split", metavar="FILE", help="split config JSON (frugal-split/1) to run")
    which.add_argument(
        "--baseline", metavar="NAME",
        help="baseline to run: a partition (adamw, frugal, galore, ...) or a method (lora, apollo, adam-mini, "
        "muon, adamw-8bit, ...); an unknown name lists them all",
    )
    parser.add_argument(
        "--model",
        default="tiny-llama",
        help="preset (tiny-llama, llama-60m, llama-130m, llama-350m, llama-1b), HF config.json, local model "
        "directory, or factory package.module:function (default: tiny-llama)",
    )
    parser.add_argument(
        "--data",
        default="stdlib",
        help="stdlib (built-in corpus), a folder or glob of text files, or a .npy/.bin token file (default: stdlib)",
    )
    parser.add_argument("--tokenizer", metavar="DIR", help="local tokenizer directory for text data (default: bytes)")
    parser.add_argument("--dtype", choices=("uint16", "uint32"), help="id type of a .bin token file")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help="optimizer steps (default: 200)")
    length.add_argument("--tokens", type=int, help="train tokens instead of steps")
    parser.add_argument("--batch-size", type=int, help="sequences per micro-batch (default: 16)")
    parser.add_argument("--seq-len", type=int, help="tokens per sequence (default: 128)")
    parser.add_argument("--grad-accum", type=int, help="micro-batches per step (default: 1)")
    parser.add_argument("--lr", type=float, help="peak lr (default: the partition's own)")
    parser.add_argument("--warmup-steps", type=int, help="linear warmup steps (default: 10%% of the steps)")
    parser.add_argument("--eval-every", type=int, help="steps between evaluations (default: 50)")
    parser.add_argument("--eval-batches", type=int, help="held-out batches per evaluation (default: 4)")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and train batches (default: 0)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (cuda when available)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object, no progress bar")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the proxy described by ``args``; print the result; return the exit status."""
    import torch

    from frugal_search.partition import Partition, baseline_partition
    from frugal_search.proxy import METHOD_NAMES, METHODS, DataSpec, ModelSpec, ProxyBudget, method_spec, run_proxy

    budget_fields = {
        name: getattr(args, name)
        for name in ("steps", "tokens", "batch_size", "seq_len", "grad_accum", "lr", "warmup_steps", "eval_every", "eval_batches")
        if getattr(args, name) is not None
    }
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        if args.split:
            partition = Partition.from_json(args.split)
        elif args.baseline in METHODS:
            missing = METHODS[args.baseline].missing()
            if missing:
                raise ValueError(missing)
            partition = method_spec(args.baseline, lr=args.lr)
            budget_fields.pop("lr", None)  # the method's own groups take it (Muon's AdamW part keeps its ratio)
        else:
            try:
                partition = baseline_partition(args.baseline)
            except ValueError as error:
                raise ValueError(f"{error}; methods: {', '.join(METHOD_NAMES)}") from None
        budget = ProxyBudget(**budget_fields)
        data = DataSpec(args.data, tokenizer=args.tokenizer, dtype=args.dtype)
        result = run_proxy(
            ModelSpec(args.model), data, partition, budget, device=device, seed=args.seed, progress=not args.json
        )
    except (ValueError, TypeError, FileNotFoundError) as error:
        print(f"frugal-search proxy: error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    _print_summary(result)
    return 0


def _print_summary(result) -> None:  # result: ProxyResult
    from frugal_search.units import format_bytes

    def loss(value: float) -> str:
        return f"{value:.4f}"

    peak = format_bytes(result.peak_memory_bytes) if result.peak_memory_bytes is not None else "n/a (no CUDA)"
    print(f"model          {result.details.get('model')} ({result.details.get('parameters'):,} parameters)")
    print(f"data           {result.details.get('data')} (fingerprint {result.corpus_fingerprint})")
    print(f"steps          {result.steps} on {result.device}, seed {result.seed}: {result.reason}")
    print(f"eval loss      {loss(result.eval_loss)} (first {loss(result.first_eval_loss)}, best {loss(result.best_eval_loss)})")
    print(f"optimizer state {format_bytes(result.state_bytes)} ({result.state_bytes:,} bytes)")
    print(f"peak memory    {peak}")
    print(f"speed          {result.tokens_per_s:,.0f} tokens/s, {result.wall_s:.1f} s in all")
