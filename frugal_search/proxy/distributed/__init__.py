"""Multi-process proxy runs (``[proxy] nproc = N``): one proxy run on N ranks under torchrun, FSDP2.

``run_proxy_multiprocess(model, data, partition, budget, nproc=N)`` writes the run's inputs to a
temporary folder, starts ``python -m torch.distributed.run --standalone --nproc_per_node N -m
frugal_search.proxy.distributed <folder>``, waits, and returns rank 0's ``ProxyResult``. On a CPU
the N ranks are N processes on gloo; on CUDA each rank owns one of N GPUs (NCCL), the worker's
``cuda:K`` .. ``cuda:K+N-1``. What each rank does is in ``__main__.py``: the loop of ``run_proxy``
with the model sharded by FSDP2 and each rank on its slice of the same global batch.

A rank that dies (a non-zero exit, no result) raises :class:`RankFailedError` naming the rank, its
exit code and the last lines of its log; a CUDA out-of-memory error on a rank raises
``torch.cuda.OutOfMemoryError`` as ``run_proxy`` does.

The process-group set-up and the sharding (``init_process_group``, ``shard_model``) are shared with
the training recipe ``frugal_search.train``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from frugal_search.proxy.budget import ProxyBudget
from frugal_search.proxy.data import DataSpec
from frugal_search.proxy.models import ModelSpec
from frugal_search.proxy.result import ProxyResult

INPUTS_FILE = "inputs.json"
RESULT_FILE = "result.json"
OOM_FILE = "oom.txt"
LAUNCHER_LOG = "torchrun.log"
_LOG_TAIL_LINES = 12
# the test hook of a rank that dies mid-run (read by the rank entry only)
KILL_RANK_ENV = "FRUGAL_SEARCH_TEST_KILL_RANK"  # "RANK" or "RANK:STEP" (step 2 by default)
KILL_MARKER_ENV = "FRUGAL_SEARCH_TEST_KILL_MARKER"  # a path: die only while it is missing, then create it


class RankFailedError(RuntimeError):
    """A rank of a multi-process proxy run died: the message names it, its exit code and its last log lines."""


def rank_log_name(rank: int) -> str:
    """The file of the run's folder that holds rank ``rank``'s stdout and stderr."""
    return f"rank{rank}.log"


def init_process_group() -> tuple[int, int, torch.device]:
    """Join torchrun's process group (NCCL with CUDA, gloo otherwise) unless joined; return
    ``(rank, world size, this rank's device)``: ``cuda:LOCAL_RANK`` with CUDA, else the CPU."""
    import torch.distributed as dist

    cuda = torch.cuda.is_available()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def shard_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """FSDP2 over the whole process group: each transformer block its own ``fully_shard`` unit, then
    the root (embeddings, final norm, head); returns the (same, now sharded) model."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from frugal_search.optimizer import find_transformer_blocks

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    for block in find_transformer_blocks(model)[1]:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def run_proxy_multiprocess(
    model: ModelSpec | str,
    data: DataSpec | str,
    partition: Any,
    budget: ProxyBudget | None = None,
    *,
    nproc: int,
    device: str = "cpu",
    seed: int = 0,
    timeout_s: float | None = None,
    threads: int | None = None,
) -> ProxyResult:
    """Run one causal-lm proxy run on ``nproc`` ranks under torchrun; return rank 0's result.

    Args:
        model: a ``ModelSpec`` or a model source string (every rank builds it with ``seed``).
        data: a ``DataSpec`` or a data source string (causal-lm token data only).
        partition: a ``Partition`` (anything with ``to_dict()``) or a baseline name.
        budget: as ``run_proxy``'s; ``batch_size`` is the global batch, a multiple of ``nproc``.
        nproc: ranks (processes; on CUDA, GPUs), >= 1.
        device: ``"cpu"`` (gloo) or ``"cuda"`` / ``"cuda:K"`` (NCCL on ``cuda:K`` .. ``cuda:K+nproc-1``).
        seed: as ``run_proxy``'s (the same on every rank).
        timeout_s: end the run (every rank) after this many seconds; None waits.
        threads: torch CPU threads of each rank; None: this process's ``torch.get_num_threads()``.

    Returns:
        ``ProxyResult`` as ``run_proxy``'s, with ``state_bytes`` and ``training_memory`` summed over
        the ranks (each rank's figures in ``details["per_rank"]``) and ``peak_memory_bytes`` the
        largest rank's.

    Raises:
        RankFailedError: a rank died or the run timed out (the message names the rank, the exit code
            and the last lines of that rank's log).
        torch.cuda.OutOfMemoryError: a rank ran out of CUDA memory.
        ValueError: ``nproc`` below 1, or a ``batch_size`` that does not split over the ranks.
    """
    budget = ProxyBudget() if budget is None else budget
    if not isinstance(nproc, int) or isinstance(nproc, bool) or nproc < 1:
        raise ValueError(f"nproc must be an integer >= 1, got {nproc!r}")
    if budget.batch_size % nproc:
        raise ValueError(
            f"batch_size {budget.batch_size} does not split over {nproc} ranks; use a multiple of {nproc}"
        )
    model = ModelSpec(model) if isinstance(model, str) else model
    data = DataSpec(data) if isinstance(data, str) else data
    if not isinstance(model, ModelSpec) or not isinstance(data, DataSpec):
        raise TypeError(
            "run_proxy_multiprocess takes a ModelSpec (or source string) and a DataSpec (or source string), got "
            f"{type(model).__name__} and {type(data).__name__}: every rank rebuilds them"
        )
    split = {"baseline": partition} if isinstance(partition, str) else {"split": partition.to_dict()}
    inputs = {
        "model": {"source": model.source, "overrides": dict(model.overrides)},
        "data": dataclasses.asdict(data),
        **split,
        "budget": dataclasses.asdict(budget),
        "seed": int(seed),
    }
    with tempfile.TemporaryDirectory(prefix="frugal-proxy-") as folder:
        run_dir = Path(folder)
        (run_dir / INPUTS_FILE).write_text(json.dumps(inputs), encoding="utf-8")
        returncode, timed_out = _launch(run_dir, nproc=nproc, device=device, threads=threads, timeout_s=timeout_s)
        result_path = run_dir / RESULT_FILE
        if returncode == 0 and result_path.exists():
            return ProxyResult.from_dict(json.loads(result_path.read_text(encoding="utf-8")))
        if (run_dir / OOM_FILE).exists():
            raise torch.cuda.OutOfMemoryError((run_dir / OOM_FILE).read_text(encoding="utf-8").strip())
        raise RankFailedError(_failure_message(run_dir, nproc, returncode, timed_out, timeout_s))


def _launch(
    run_dir: Path, *, nproc: int, device: str, threads: int | None, timeout_s: float | None
) -> tuple[int, bool]:
    """Run torchrun on ``run_dir``; return its exit code and whether it was stopped for time."""
    package_root = str(Path(__file__).resolve().parents[3])  # the ranks import this copy of frugal_search
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
        "OMP_NUM_THREADS": str(threads or torch.get_num_threads()),
    }
    if device.startswith("cuda"):
        env["CUDA_VISIBLE_DEVICES"] = ",".join(_cuda_devices(device, nproc))
    else:
        env["CUDA_VISIBLE_DEVICES"] = ""  # gloo on CPU ranks even on a machine with GPUs
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
        "--max_restarts", "0", "-m", "frugal_search.proxy.distributed", str(run_dir),
    ]
    with open(run_dir / LAUNCHER_LOG, "w", encoding="utf-8") as log:
        # its own session, so a timeout or Ctrl-C ends torchrun and every rank together
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return process.wait(timeout=timeout_s), False
        except subprocess.TimeoutExpired:
            _stop(process)
            return process.returncode, True
        finally:
            if process.poll() is None:  # interrupted (KeyboardInterrupt): leave no rank behind
                _stop(process)


def _stop(process: subprocess.Popen) -> None:
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if process.poll() is not None:
            return


def _cuda_devices(device: str, nproc: int) -> list[str]:
    """The ``nproc`` CUDA devices from ``device``'s index on, as CUDA_VISIBLE_DEVICES entries."""
    first = torch.device(device).index or 0
    visible = [item for item in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if item.strip()]
    count = len(visible) if visible else torch.cuda.device_count()
    if first + nproc > count:
        raise ValueError(f"nproc {nproc} from {device} needs {first + nproc} CUDA devices, this machine shows {count}")
    indices = range(first, first + nproc)
    return [visible[i] for i in indices] if visible else [str(i) for i in indices]


# torchrun's summary of a failed run: "rank : 1 (local_rank: 1)" then "exitcode : 3 (pid: ...)"
_FAILURE = re.compile(r"rank\s*:\s*(\d+)\s*\(local_rank:\s*\d+\)\s*exitcode\s*:\s*(-?\d+)")


def _failure_message(run_dir: Path, nproc: int, returncode: int, timed_out: bool, timeout_s: float | None) -> str:
    launcher = (run_dir / LAUNCHER_LOG).read_text(encoding="utf-8", errors="replace")
    root_cause = launcher.split("Root Cause", 1)[-1]
    found = _FAILURE.search(root_cause) or _FAILURE.search(launcher)
    if timed_out:
        head = f"the {nproc}-process proxy run timed out after {timeout_s:g} s and was stopped"
        rank = None
    elif found:
        rank, code = int(found.group(1)), int(found.group(2))
        how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        head = f"rank {rank} of {nproc} died ({how}; torchrun exit code {returncode})"
    else:
        rank = None
        head = f"the {nproc}-process proxy run failed (torchrun exit code {returncode}) without a result"
    tails = []
    for item in [rank] if rank is not None else range(nproc):
        lines = _tail(run_dir / rank_log_name(item))
        if lines:
            tails.append(f"rank {item}'s last log lines:\n{lines}")
    if not tails:
        tails.append(f"torchrun's last lines:\n{_tail(run_dir / LAUNCHER_LOG)}")
    return head + "\n" + "\n".join(tails)


def _tail(path: Path) -> str:
    if not path.exists():
        return ""
    lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    return "\n".join(lines[-_LOG_TAIL_LINES:])


__all__ = [
    "KILL_MARKER_ENV",
    "KILL_RANK_ENV",
    "RankFailedError",
    "init_process_group",
    "rank_log_name",
    "run_proxy_multiprocess",
    "shard_model",
]
