"""``frugal-search memory``: a split's optimizer memory on any (large) model, without its weights."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

_DTYPES = ("float32", "bfloat16", "float16")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``memory`` subcommand."""
    parser = subparsers.add_parser(
        "memory",
        help="print a split's optimizer-state memory on a model built on the meta device",
        description="Apply a split config (or a baseline by name) to a model built from a Hugging Face "
        "config on the meta device (no weights allocated) and print, per rule, the tensors, parameters "
        "and peak optimizer state, then the totals beside AdamW's.",
    )
    # the registry's names are not listed here: building the parser must not import torch
    parser.add_argument("split", help="split config JSON, or a baseline's name (an unknown name lists them all)")
    parser.add_argument(
        "--model-config",
        "--model",
        dest="model_config",
        required=True,
        help="Hugging Face config.json (or its folder), or a paper model: llama-60m, llama-130m, "
        "llama-350m, llama-1b, llama-7b",
    )
    parser.add_argument(
        "--dtype", choices=_DTYPES, default="float32", help="dtype of weights, gradients and moments (default float32)"
    )
    parser.add_argument(
        "--world-size",
        type=int,
        default=1,
        help="GPUs sharing the model under FSDP2 (fully_shard): print one GPU's share (default 1)",
    )
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Print the table and totals; return 2 on bad input."""
    import pandas as pd
    import torch

    from frugal_search.partition import Partition, accepted_baseline_names, build_meta_model
    from frugal_search.units import GIB, MIB

    try:
        if Path(args.split).suffix == ".json" or Path(args.split).exists():
            partition = Partition.from_json(args.split)
        elif args.split in accepted_baseline_names():
            partition = Partition.baseline(args.split)
        else:
            raise ValueError(
                f"{args.split!r} is neither a split config file nor a baseline ({', '.join(accepted_baseline_names())})"
            )
        model = build_meta_model(args.model_config)
        dtype = getattr(torch, args.dtype)
        table = partition.describe(model, param_dtype=dtype)
        if args.world_size < 1:
            raise ValueError(f"--world-size {args.world_size}: allowed an int >= 1 (GPUs sharding the model)")
        memory = partition.training_memory(model, param_dtype=dtype, world_size=args.world_size)
    except ValueError as error:
        print(f"frugal-search memory: {error}", file=sys.stderr)
        return 2
    table["state_MiB"] = (table["state_bytes"] / MIB).round(2)
    num_params = sum(p.numel() for p in model.parameters())
    print(
        f"{partition.name or args.split} on {type(model).__name__} ({num_params / 1e6:.1f}M parameters, {args.dtype})"
    )
    print(f"  {partition.summary()}")
    with pd.option_context("display.max_colwidth", 60, "display.width", 200):
        print(table.drop(columns=["state_bytes"]).to_string(index=False))
    if args.world_size > 1:
        print(f"per GPU of {args.world_size} under FSDP2 (rank 0, the largest shard):")
    for line in memory.lines():
        print(line)
    ratio = memory.state_bytes / memory.adamw_state_bytes if memory.adamw_state_bytes else float("nan")
    print(
        f"optimizer state {memory.state_bytes / GIB:.3f} GiB vs AdamW {memory.adamw_state_bytes / GIB:.3f} GiB "
        f"({ratio:.1%} of AdamW)"
    )
    return 0
