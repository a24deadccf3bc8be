"""Multi-process proxy runs (``[proxy] nproc = N``): one proxy run on N ranks under torchrun, FSDP2.

``run_proxy_multiprocess(model, data, partition, budget, nproc=N)`` writes the run's inputs to a
temporary folder, starts ``python -m torch.distributed.run --standalone --nproc_per_node N -m
frugal_search.proxy.distributed <folder>``, waits, and returns rank 0's ``ProxyResult``. On a CPU
the N ranks are N processes on gloo; on CUDA each rank owns one of N GPUs (NCCL), the worker's
``cuda:K`` .. ``cuda:K+N-1``. What each rank does is in ``__main__.py``: the loop of ``run_proxy``
with the model sharded by FSDP2 and each rank on its slice of the same global batch.

A rank that dies before rank 0 wrote the result (a non-zero exit, no result) raises
:class:`RankFailedError` naming the rank, its exit code and the last lines of its log; a rank that
dies (or hangs) after the result was written leaves the result valid: it is returned and the crash
is logged as a warning. A CUDA out-of-memory error on a rank raises ``torch.cuda.OutOfMemoryError``
as ``run_proxy`` does.

Teardown: every rank releases its model, optimizer and FSDP2 wrappers (the run's frames are gone,
``gc.collect()`` frees FSDP2's reference cycles), waits at a barrier and destroys the process group
once (:func:`close_process_group`). A gloo group destroyed while a model, a DDP reducer or a
pending collective still holds it is torn down later, during interpreter shutdown, where its worker
threads can wait forever for the interpreter lock (a hang) or be ended by Python mid-destructor
(``terminate called without an active exception``, SIGABRT).

The process-group set-up, the teardown, the sharding and the launch (``init_process_group``,
``close_process_group``, ``shard_model``, ``run_torchrun``) are shared with the training recipe
``frugal_search.train``.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

import torch

from frugal_search.proxy.budget import ProxyBudget
from frugal_search.proxy.data import DataSpec
from frugal_search.proxy.models import ModelSpec
from frugal_search.proxy.result import ProxyResult

logger = logging.getLogger(__name__)

INPUTS_FILE = "inputs.json"
RESULT_FILE = "result.json"
OOM_FILE = "oom.txt"
LAUNCHER_LOG = "torchrun.log"
_LOG_TAIL_LINES = 12
_POLL_S = 0.2  # seconds between looks at a running launch
# the test hook of a rank that dies mid-run (read by the rank entry only)
KILL_RANK_ENV = "FRUGAL_SEARCH_TEST_KILL_RANK"  # "RANK", "RANK:STEP" (step 2 by default) or "RANK:after-result"
KILL_AFTER_RESULT = "after-result"  # the KILL_RANK_ENV step that aborts the rank once the result is written
EXIT_GRACE_S = 60.0  # seconds the ranks get to exit once the result is written; then they are stopped
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


def close_process_group(*, barrier: bool = True) -> None:
    """Leave torchrun's process group cleanly; a no-op when none is joined (so it runs once).

    Call it after the run's model, optimizer and DDP / FSDP2 wrappers went out of scope (returned
    from the function that built them, or ``del``): ``gc.collect()`` first frees what only reference
    cycles still hold (FSDP2 modules keep themselves alive through their hooks and state), so the
    last reference to the group is ``torch.distributed``'s own and the group's worker threads are
    joined here, in the main thread, while the interpreter is whole. ``barrier`` (after a finished
    run, on every rank) waits until every rank is done communicating; after a failure, pass False:
    the other ranks may be dead or still inside a collective.
    """
    import torch.distributed as dist

    gc.collect()
    if not dist.is_initialized():
        return
    if barrier:
        dist.barrier()
    dist.destroy_process_group()


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
    device: str | torch.device = "cpu",
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
        RankFailedError: a rank died, or the run timed out, before the result was written (the
            message names the rank, the exit code and the last lines of that rank's log). A rank
            that dies or hangs after it was written is only logged: the result stands.
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
        ended = _launch(run_dir, nproc=nproc, device=device, threads=threads, timeout_s=timeout_s)
        result_path = run_dir / RESULT_FILE
        if result_path.exists():  # written whole (renamed into place) after every rank's figures were gathered
            if ended.returncode != 0:
                logger.warning(
                    "the %d-process proxy run wrote its result, then ended badly; the result is kept: %s",
                    nproc,
                    _failure_message(run_dir, nproc, ended, timeout_s).splitlines()[0],
                )
            return ProxyResult.from_dict(json.loads(result_path.read_text(encoding="utf-8")))
        if (run_dir / OOM_FILE).exists():
            raise torch.cuda.OutOfMemoryError((run_dir / OOM_FILE).read_text(encoding="utf-8").strip())
        raise RankFailedError(_failure_message(run_dir, nproc, ended, timeout_s))


@dataclasses.dataclass(frozen=True)
class TorchrunExit:
    """How a torchrun launch ended."""

    returncode: int  # torchrun's exit status (negative: the signal that ended it)
    timed_out: bool  # stopped after timeout_s
    stalled: bool  # stopped: the ranks had not exited exit_grace_s after done() became true
    wall_s: float


def run_torchrun(
    target: list[str],
    *,
    nproc: int,
    log_path: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout_s: float | None = None,
    done: Callable[[], bool] | None = None,
    exit_grace_s: float = EXIT_GRACE_S,
) -> TorchrunExit:
    """Run ``python -m torch.distributed.run --standalone --nproc_per_node nproc <target>`` and wait.

    torchrun and its ranks run in their own session and are stopped together (SIGTERM, then
    SIGKILL) when ``timeout_s`` passes, when the caller is interrupted, or when ``done()`` (polled
    about every 0.2 s; e.g. "the result file exists") has been true for ``exit_grace_s`` seconds
    and the ranks still have not exited: a run whose output is complete cannot hang its caller.
    torchrun's own output goes to ``log_path``; ``env`` replaces the environment (None: this one).
    """
    if timeout_s is not None and timeout_s <= 0:
        raise ValueError(f"timeout_s={timeout_s!r}: allowed a number of seconds > 0, or None to wait")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
        "--max_restarts", "0", *target,
    ]
    started = time.monotonic()
    done_at = None
    with open(log_path, "w", encoding="utf-8") as log:
        # its own session, so a timeout or Ctrl-C ends torchrun and every rank together
        process = subprocess.Popen(
            command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            while True:
                try:
                    code = process.wait(timeout=_POLL_S)
                    return TorchrunExit(code, False, False, time.monotonic() - started)
                except subprocess.TimeoutExpired:
                    pass
                now = time.monotonic()
                if done_at is None and done is not None and done():
                    done_at = now
                stalled = done_at is not None and now - done_at > exit_grace_s
                timed_out = timeout_s is not None and now - started > timeout_s
                if stalled or timed_out:
                    _stop(process)
                    return TorchrunExit(process.returncode, timed_out and not stalled, stalled, now - started)
        finally:
            if process.poll() is None:  # interrupted (KeyboardInterrupt): leave no rank behind
                _stop(process)


def _launch(run_dir: Path, *, nproc: int, device: str | torch.device, threads: int | None, timeout_s: float | None) -> TorchrunExit:
    """Run the ranks on ``run_dir`` under torchrun and wait (see :func:`run_torchrun`)."""
    package_root = str(Path(__file__).resolve().parents[3])  # the ranks import this copy of frugal_search
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
        "OMP_NUM_THREADS": str(threads or torch.get_num_threads()),
    }
    if torch.device(device).type == "cuda":
        env["CUDA_VISIBLE_DEVICES"] = ",".join(_cuda_devices(device, nproc))
    else:
        env["CUDA_VISIBLE_DEVICES"] = ""  # gloo on CPU ranks even on a machine with GPUs
    return run_torchrun(
        ["-m", "frugal_search.proxy.distributed", str(run_dir)],
        nproc=nproc,
        log_path=run_dir / LAUNCHER_LOG,
        env=env,
        timeout_s=timeout_s,
        done=(run_dir / RESULT_FILE).exists,
    )


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


def _cuda_devices(device: str | torch.device, nproc: int) -> list[str]:
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


def torchrun_failure(log: str) -> tuple[int, int] | None:
    """``(rank, exit code)`` of the first rank that failed, from torchrun's summary in ``log`` (its
    "Root Cause" entry when there is one; a negative code is the signal that ended the rank); None
    when the log names no failed rank."""
    found = _FAILURE.search(log.split("Root Cause", 1)[-1]) or _FAILURE.search(log)
    return (int(found.group(1)), int(found.group(2))) if found else None


def _failure_message(run_dir: Path, nproc: int, ended: TorchrunExit, timeout_s: float | None) -> str:
    found = torchrun_failure((run_dir / LAUNCHER_LOG).read_text(encoding="utf-8", errors="replace"))
    returncode = ended.returncode
    if ended.timed_out:
        head = f"the {nproc}-process proxy run timed out after {timeout_s:g} s and was stopped"
        rank = None
    elif ended.stalled:
        head = f"the {nproc}-process proxy run's ranks had not exited {EXIT_GRACE_S:g} s after the result and were stopped"
        rank = None
    elif found:
        rank, code = found
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
    "EXIT_GRACE_S",
    "KILL_AFTER_RESULT",
    "KILL_MARKER_ENV",
    "KILL_RANK_ENV",
    "RankFailedError",
    "TorchrunExit",
    "close_process_group",
    "init_process_group",
    "rank_log_name",
    "run_proxy_multiprocess",
    "run_torchrun",
    "shard_model",
    "torchrun_failure",
]
