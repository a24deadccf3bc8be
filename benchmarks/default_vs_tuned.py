"""Wall time of `frugal-search run studies/tiny.toml` as a newcomer types it, against the hand-tuned command.

Runs, one after the other on this machine, on a reduced copy of the study (fewer trials and steps,
a fresh storage each):

- default:  ``frugal-search run STUDY``  (no flags, OMP_NUM_THREADS unset: what the README says)
- tuned:    ``OMP_NUM_THREADS=1 frugal-search run STUDY --workers 2``  (the README's hand-tuned line)
- one worker, torch's threads: ``frugal-search run STUDY --workers 1``  (the default before workers
  were picked for the machine)

and prints each wall time and its ratio to the tuned command. ``--repeats N`` runs the three N
times, interleaved, and reports the median of each. Never run by the tests.

    python benchmarks/default_vs_tuned.py                      # 8 trials of 40 steps
    python benchmarks/default_vs_tuned.py --trials 12 --steps 150 --repeats 3
    python benchmarks/default_vs_tuned.py --skip-one-worker --repeats 2   # default against tuned only
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "default": ([], {}),
    "tuned": (["--workers", "2"], {"OMP_NUM_THREADS": "1"}),
    "one worker, torch threads": (["--workers", "1"], {}),
}


def run_once(study: Path, storage: Path, extra: list[str], env_extra: dict[str, str], trials: int, steps: int) -> float:
    env = {key: value for key, value in os.environ.items() if key not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env.update(env_extra)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    command = [
        sys.executable, "-m", "frugal_search", "run", str(study), "--no-progress",
        "--trials", str(trials), "--steps", str(steps), "--storage", f"sqlite:///{storage}", *extra,
    ]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    picked = [line for line in done.stderr.splitlines() if "worker(s) x" in line]
    print(f"  {wall:7.1f} s  {' '.join(extra) or '(no flags)'} {env_extra or ''}  {picked[0].split(': ', 1)[-1] if picked else ''}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default=str(ROOT / "studies" / "tiny.toml"))
    parser.add_argument("--trials", type=int, default=8, help="finished trials per run (default 8)")
    parser.add_argument("--steps", type=int, default=40, help="proxy steps per trial (default 40)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each command (median reported)")
    parser.add_argument("--skip-one-worker", action="store_true", help="leave out the slow one-worker command")
    args = parser.parse_args()
    commands = {name: value for name, value in COMMANDS.items() if not (args.skip_one_worker and name.startswith("one"))}
    print(f"{args.study}: {args.trials} trials x {args.steps} steps, {os.cpu_count()} CPU cores, "
          f"load average {os.getloadavg()[0]:.1f}")
    times: dict[str, list[float]] = {name: [] for name in commands}
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(args.repeats):
            for index, (name, (extra, env_extra)) in enumerate(commands.items()):
                storage = Path(folder) / f"run-{repeat}-{index}.db"
                times[name].append(run_once(Path(args.study), storage, extra, env_extra, args.trials, args.steps))
    tuned = statistics.median(times["tuned"])
    print("median wall time, and its ratio to the tuned command:")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:28s} {median:7.1f} s   x{median / tuned:.2f}")


if __name__ == "__main__":
    main()
