#!/usr/bin/env bash
# GPU check of proxy runs: llama-60m on a generated token file, for AdamW, FRUGAL rho 0.25 and
# FRUGAL rho 0. Prints tokens/s, measured peak CUDA memory (and its optimizer-state part) and the
# optimizer-state bytes, and checks the measured state against Partition.state_bytes within 2%
# (exit status 1 otherwise).
#
#   bash benchmarks/gpu_check.sh                          # on a CUDA machine: 300 steps, batch 64 x 256
#   bash benchmarks/gpu_check.sh --device cpu --steps 2   # smoke test of the script on a CPU
#
# Options (all optional): --device cuda|cpu, --steps N, --batch-size N, --seq-len N, --model NAME.
# Without --batch-size/--seq-len: 64 x 256 on CUDA, 2 x 64 on the CPU. The token file holds random
# uint16 ids below 32000 (the loss cannot fall far; this checks speed and memory, not learning).
set -euo pipefail
cd "$(dirname "$0")/.."
workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT

python - "$workdir" "$@" <<'PY'
import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from frugal_search.partition import baseline_partition
from frugal_search.proxy import DataSpec, ModelSpec, ProxyBudget, build_model, run_proxy
from frugal_search.units import format_bytes

TOLERANCE = 0.02
parser = argparse.ArgumentParser(prog="gpu_check.sh")
parser.add_argument("workdir")
parser.add_argument("--device", default="cuda")
parser.add_argument("--steps", type=int, default=300)
parser.add_argument("--batch-size", type=int)
parser.add_argument("--seq-len", type=int)
parser.add_argument("--model", default="llama-60m")
args = parser.parse_args()
on_cuda = args.device.startswith("cuda")
if on_cuda and not torch.cuda.is_available():
    sys.exit("gpu_check: CUDA is not available here; run with --device cpu --steps 2 for a smoke test")
batch_size = args.batch_size or (64 if on_cuda else 2)
seq_len = args.seq_len or (256 if on_cuda else 64)

# enough tokens for every step to read fresh windows, plus the validation tail
num_tokens = max(1_000_000, int(1.1 * args.steps * batch_size * (seq_len + 1)))
token_file = Path(args.workdir) / "tokens.npy"
np.save(token_file, np.random.default_rng(0).integers(0, 32000, size=num_tokens, dtype=np.uint16))
data = DataSpec(str(token_file), validation_fraction=0.05, vocab_size=32000)
model = ModelSpec(args.model)
budget = ProxyBudget(
    steps=args.steps, batch_size=batch_size, seq_len=seq_len, eval_every=max(1, args.steps // 3), eval_batches=2
)
device_name = torch.cuda.get_device_name() if on_cuda else "cpu"
print(f"{args.model} on {device_name}: {args.steps} steps of {batch_size} x {seq_len} tokens, {num_tokens:,} random ids")
print(f"torch {torch.__version__}")

failures = []
rows = []
for name in ("adamw", "frugal", "frugal-rho0"):
    partition = baseline_partition(name)
    result = run_proxy(model, data, partition, budget, device=args.device, seed=0)
    expected = partition.state_bytes(build_model(model))
    error = abs(result.state_bytes - expected) / expected if expected else float(result.state_bytes != 0)
    rows.append((name, result, expected, error))
    if error > TOLERANCE:
        failures.append(f"{name}: measured state {result.state_bytes} vs Partition.state_bytes {expected} ({error:.1%})")
    if result.diverged:
        failures.append(f"{name}: diverged ({result.reason})")
    if on_cuda:
        torch.cuda.empty_cache()

print(f"{'partition':<12} {'tokens/s':>10} {'peak memory':>12} {'state (cuda)':>12} {'state bytes':>14} {'expected':>14} {'error':>7} {'eval loss':>9}")
for name, result, expected, error in rows:
    peak = format_bytes(result.peak_memory_bytes) if result.peak_memory_bytes is not None else "n/a"
    state_part = format_bytes(result.state_memory_bytes) if result.state_memory_bytes is not None else "n/a"
    print(
        f"{name:<12} {result.tokens_per_s:>10,.0f} {peak:>12} {state_part:>12} {result.state_bytes:>14,} "
        f"{expected:>14,} {error:>7.2%} {result.eval_loss:>9.4f}"
    )
if failures:
    print("FAILED:\n  " + "\n  ".join(failures))
    sys.exit(1)
print(f"OK: measured optimizer state within {TOLERANCE:.0%} of Partition.state_bytes for every partition")
PY
