"""Do distributed runs always exit cleanly? Launch them many times and count exit codes and hangs.

Each repetition runs three launches on 2 CPU ranks (gloo), each with a timeout: the training
recipe under DDP and under FSDP2 (``python -m frugal_search.train``, the issue's run: 6 steps, a
DCP checkpoint every 3, a fresh folder each time) and the multi-process proxy (``[proxy] nproc =
2``, FSDP2, ``run_proxy_multiprocess``). A launch counts as clean when torchrun exits 0 (for the
proxy: a result, and no warning that a rank ended badly after it); a hang is a launch stopped at
its timeout, or a proxy whose ranks outlived their result.

    python benchmarks/distributed_stress.py                  # 17 repetitions: 51 launches, ~10 minutes
    python benchmarks/distributed_stress.py --repeats 4 --timeout 120

Prints one line per case (launches, exit 0, other exit codes, hangs, mean wall time) and the total;
it never fails on timing.
"""

from __future__ import annotations

import argparse
import collections
import logging
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SMALL = {"num_hidden_layers": 2, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4}


class _Warnings(logging.Handler):
    """Keeps the proxy launcher's warnings (a rank that ended badly after the result)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def run_recipe(parallel: str, folder: Path, timeout_s: float) -> tuple[str, float]:
    """One training-recipe launch; its outcome ("0", "exit N" or "hang") and wall seconds."""
    from frugal_search.train import TrainConfig
    from frugal_search.train.launch import launch_training

    config = TrainConfig(
        split="frugal", model="tiny-llama", parallel=parallel, steps=6, batch_size=4, seq_len=32,
        checkpoint_dir=str(folder / "ckpt"), checkpoint_every=3, data_bytes=2**20,
    )
    ended = launch_training(config, nproc=2, log_path=folder / "torchrun.log", timeout_s=timeout_s, cwd=folder)
    if ended.timed_out:
        return "hang", ended.wall_s
    return ("0" if ended.returncode == 0 else f"exit {ended.returncode}"), ended.wall_s


def run_proxy(timeout_s: float, warnings: _Warnings) -> tuple[str, float]:
    """One multi-process proxy launch; its outcome and wall seconds."""
    from frugal_search.proxy import ModelSpec, ProxyBudget, RankFailedError, run_proxy_multiprocess

    budget = ProxyBudget(steps=4, batch_size=4, seq_len=16, eval_every=2, eval_batches=1)
    warnings.messages.clear()
    started = time.monotonic()
    try:
        run_proxy_multiprocess(
            ModelSpec("tiny-llama", overrides=SMALL), "stdlib", "frugal", budget, nproc=2,
            timeout_s=timeout_s, threads=1,
        )
    except RankFailedError as error:
        text = str(error)
        return ("hang" if "timed out" in text else _code_of(text)), time.monotonic() - started
    wall = time.monotonic() - started
    if not warnings.messages:
        return "0", wall
    text = warnings.messages[-1]
    return ("hang" if "had not exited" in text or "timed out" in text else _code_of(text)), wall


def _code_of(text: str) -> str:
    found = re.search(r"(exit code|killed by signal) (-?\d+)", text)
    if not found:
        return "failed"
    return f"exit {found.group(2)}" if found.group(1) == "exit code" else f"signal {found.group(2)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=17, help="repetitions of the three launches (default 17: 51)")
    parser.add_argument("--timeout", type=float, default=150.0, help="seconds one launch may take (default 150)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats}: use 1 or more")
    warnings = _Warnings()
    logging.getLogger("frugal_search.proxy.distributed").addHandler(warnings)
    outcomes: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    walls: dict[str, list[float]] = collections.defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="distributed-stress-") as scratch:
        for repeat in range(args.repeats):
            for case in ("train ddp", "train fsdp", "proxy fsdp"):
                folder = Path(scratch) / f"{repeat}-{case.replace(' ', '-')}"
                folder.mkdir()
                if case.startswith("train"):
                    outcome, wall = run_recipe(case.split()[1], folder, args.timeout)
                else:
                    outcome, wall = run_proxy(args.timeout, warnings)
                outcomes[case][outcome] += 1
                walls[case].append(wall)
                if outcome != "0":
                    print(f"repetition {repeat} {case}: {outcome}", flush=True)
    total = collections.Counter()
    print(f"{'case':<12} {'launches':>8} {'exit 0':>7} {'other exits':<24} {'hangs':>5} {'mean s':>7}")
    for case, counts in outcomes.items():
        total.update(counts)
        others = ", ".join(f"{key}: {n}" for key, n in sorted(counts.items()) if key not in ("0", "hang")) or "-"
        launches = sum(counts.values())
        mean = sum(walls[case]) / launches
        print(f"{case:<12} {launches:>8} {counts['0']:>7} {others:<24} {counts['hang']:>5} {mean:>7.1f}")
    others = ", ".join(f"{key}: {n}" for key, n in sorted(total.items()) if key not in ("0", "hang")) or "-"
    print(f"{'all':<12} {sum(total.values()):>8} {total['0']:>7} {others:<24} {total['hang']:>5}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
