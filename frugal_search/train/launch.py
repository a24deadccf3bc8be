"""Start the training recipe under torchrun from Python and wait for it (tests, benchmarks, launchers).

``launch_training(config, nproc=2, log_path=...)`` runs ``python -m torch.distributed.run
--standalone --nproc_per_node 2 -m frugal_search.train <config's flags>`` and returns how it
ended (``TorchrunExit``: exit status, and whether it was stopped for time), torchrun and every rank
in one session that a timeout stops together.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from frugal_search.proxy import TorchrunExit, run_torchrun
from frugal_search.train import TrainConfig


def config_flags(config: TrainConfig) -> list[str]:
    """The ``--field value`` flags that ``python -m frugal_search.train`` parses back into ``config``."""
    flags = []
    for field in dataclasses.fields(TrainConfig):
        value = getattr(config, field.name)
        if value is not None:
            flags += [f"--{field.name.replace('_', '-')}", str(value)]
    return flags


def launch_training(
    config: TrainConfig,
    *,
    nproc: int,
    log_path: str | Path,
    timeout_s: float | None = None,
    cwd: str | Path | None = None,
    threads: int = 1,
) -> TorchrunExit:
    """Train ``config`` on ``nproc`` ranks under torchrun (gloo on CPU, NCCL with CUDA) and wait.

    Args:
        config: the run (relative paths in it are taken from ``cwd``).
        nproc: ranks, >= 1 (with ``config.parallel == "none"`` only 1 makes sense).
        log_path: torchrun's and every rank's output (ranks prefixed ``[rankN]:`` by torchrun).
        timeout_s: stop torchrun and every rank after this many seconds (``TorchrunExit.timed_out``);
            None waits.
        cwd: the ranks' working folder (None: this one).
        threads: ``OMP_NUM_THREADS`` of each rank.

    Returns:
        ``TorchrunExit``: ``returncode`` 0 after a finished run on every rank.
    """
    if not isinstance(nproc, int) or isinstance(nproc, bool) or nproc < 1:
        raise ValueError(f"nproc={nproc!r}: allowed an integer >= 1")
    if config.parallel == "none" and nproc != 1:
        raise ValueError(f"nproc={nproc} with parallel='none': use nproc=1, or parallel 'ddp' or 'fsdp'")
    package_root = str(Path(__file__).resolve().parents[2])  # the ranks import this copy of frugal_search
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
        "OMP_NUM_THREADS": str(threads),
    }
    return run_torchrun(
        ["-m", "frugal_search.train", *config_flags(config)],
        nproc=nproc,
        log_path=Path(log_path),
        env=env,
        cwd=Path(cwd) if cwd is not None else None,
        timeout_s=timeout_s,
    )


__all__ = ["config_flags", "launch_training"]
