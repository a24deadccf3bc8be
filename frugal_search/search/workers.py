"""Workers: the loop that adds trials to a study until it holds its target, and worker processes.

Each worker checks the count before it starts a trial and waits while the running trials of other
workers could complete the count, so K workers on one storage do not overshoot the target; a
trial that still races past it is dropped by the objective (``SurplusTrialError``).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from frugal_search.partition import quiet_unmatched_rules
from frugal_search.search.objective import TrialObjective, build_memory_model
from frugal_search.search.rungs import planned_rung_runs, planned_target_runs
from frugal_search.search.sampler import make_sampler
from frugal_search.search.storage import fail_stale_trials, open_study, sqlite_path
from frugal_search.search.study import (
    RUNG_ON_TARGET,
    count_finished_and_running,
    enqueue_references,
    has_waiting_trials,
    planned_baseline_runs,
    planned_seed_runs,
    record_adamw_state_bytes,
    reference_key,
)
from frugal_search.units import format_bytes

if TYPE_CHECKING:
    import optuna
    import torch
    from torch import nn

    from frugal_search.search.config import StudyConfig

logger = logging.getLogger(__name__)

MAX_FAILURES_IN_A_ROW = 5  # a worker whose trials keep failing stops instead of looping
MAX_INFEASIBLE_IN_A_ROW = 200  # a space that (almost) never fits the memory budget stops the worker
_POLL_S = 1.0  # seconds between checks of the storage while waiting on other workers' trials
_WORKER_STOP_GRACE_S = 10.0  # seconds workers get to finish their bookkeeping after Ctrl-C
_LAST_TRIAL_JITTER_S = 2.0  # longest random pause of a worker before it starts the study's last trial


@dataclass(frozen=True)
class WorkerExit:
    """How one worker process ended: its name, exit code and, when it failed, why."""

    name: str
    exitcode: int | None
    reason: str | None = None

    @property
    def failed(self) -> bool:
        """Whether the process ended with an error or a signal."""
        return self.exitcode not in (0, None)


SMALL_MODEL_PARAMETERS = 100_000_000  # below this, CPU trials run faster side by side than threaded


@dataclass(frozen=True)
class Parallelism:
    """How a search spreads over the machine: worker processes, torch threads each, and why."""

    workers: int
    threads: int | None  # None: torch's own default
    reason: str


def usable_cpu_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the system has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def choose_parallelism(
    config: StudyConfig, *, workers: int | None, parameters: int, remaining: int, cores: int | None = None
) -> Parallelism:
    """Pick worker processes and torch threads per worker for ``remaining`` trials still to run.

    ``workers`` given: that many, each with ``[proxy] threads`` or an equal share of the cores
    (torch's default for a single worker). ``workers`` None: on a CPU with a model under
    :data:`SMALL_MODEL_PARAMETERS` parameters, one single-threaded worker per core (no more than
    trials remain), since a small model's matrices gain little from a second thread and several
    threads per process oversubscribe the cores; a large model on a CPU gets one worker with
    every core; on CUDA one worker per visible GPU. An in-memory storage always gets one worker.

    With ``[proxy] nproc = N`` a worker owns N ranks: on a CPU ``cores // N`` workers (at least 1),
    the threads being each rank's (``cores // (workers x N)``); on CUDA ``GPUs // N`` workers, each
    with its N devices (:func:`worker_device`).
    """
    cores = cores or usable_cpu_cores()
    threads_set = config.proxy.threads
    nproc = config.proxy.nproc
    if workers is not None:
        if workers == 1 and nproc == 1:
            return Parallelism(1, threads_set, "--workers 1")
        return Parallelism(workers, threads_set or max(1, cores // (workers * nproc)), f"--workers {workers}")
    remaining = max(1, remaining)
    if config.study.storage.startswith("sqlite") and sqlite_path(config.study.storage) is None:
        return Parallelism(1, threads_set, "an in-memory storage serves one process")
    device = config.proxy.device
    if device.type == "cuda":
        import torch

        gpus = torch.cuda.device_count() if device.index is None else 1
        count = max(1, min(gpus // nproc, remaining))
        ranks = f", {nproc} per worker" if nproc > 1 else ""
        return Parallelism(count, threads_set, f"{gpus} GPU(s) on {device}{ranks}")
    ranks = f", {nproc} ranks per worker" if nproc > 1 else ""
    if parameters >= SMALL_MODEL_PARAMETERS:
        reason = f"{parameters / 1e6:.0f}M parameters: one worker on {cores} cores{ranks}"
        return Parallelism(1, threads_set or max(1, cores // nproc), reason)
    count = max(1, min(cores // nproc, remaining))
    threads = threads_set or max(1, cores // (count * nproc))
    return Parallelism(
        count,
        threads,
        f"{cores} CPU core(s), a small model ({parameters / 1e6:.2g}M parameters), {remaining} trial(s) to run{ranks}",
    )


class WorkersFailedError(RuntimeError):
    """Worker processes stopped early and the study is short of its target; the message says why."""


def worker_device(device: torch.device, index: int, nproc: int = 1) -> torch.device:
    """The device of worker ``index``: ``cuda`` (no index) spreads workers over the visible GPUs;
    with ``nproc`` ranks per worker, worker ``i``'s ranks own ``cuda:i*nproc`` ..
    ``cuda:i*nproc+nproc-1`` (named by the first)."""
    if device.type != "cuda" or device.index is not None:
        return device
    import torch

    count = torch.cuda.device_count()
    groups = max(1, count // nproc)
    return torch.device("cuda", (index % groups) * nproc) if count > 1 else device


def run_worker_processes(
    config: StudyConfig, *, workers: int, threads: int | None, on_poll: Callable[[], None] | None = None
) -> list[WorkerExit]:
    """Run ``workers`` spawned worker processes of ``threads`` torch threads each (None: torch's
    default) until all end.

    ``on_poll`` is called about once a second while they run (the progress bar). Returns how each
    process ended; a worker that raised says what, one killed by a signal names the signal.
    """
    context = multiprocessing.get_context("spawn")  # fork would copy torch/optuna threads and locks
    processes = []
    readers = []  # one pipe per worker for its last words: a pipe holds no lock a kill -9 could leave taken
    with _thread_environment(threads):
        for index in range(workers):
            reader, writer = context.Pipe(duplex=False)
            process = context.Process(
                target=_worker_main,
                args=(config, index, worker_device(config.proxy.device, index, config.proxy.nproc), threads, writer),
                name=f"frugal-search-worker-{index}",
            )
            process.start()
            writer.close()  # the child holds its own copy
            processes.append(process)
            readers.append(reader)
    try:
        while any(process.is_alive() for process in processes):
            for process in processes:
                process.join(timeout=_POLL_S / len(processes))
            if on_poll is not None:
                on_poll()
    except BaseException:
        # Ctrl-C reaches the workers too; give them a moment to record their trials as failed.
        deadline = time.monotonic() + _WORKER_STOP_GRACE_S
        for process in processes:
            process.join(timeout=max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.terminate()
        raise
    return [_exit_of(process, _last_words(reader)) for process, reader in zip(processes, readers)]


def _last_words(reader: Any) -> str | None:
    """What a worker sent before it ended with an error, None if it sent nothing."""
    try:
        return reader.recv() if reader.poll() else None
    except (EOFError, OSError):  # killed: the pipe closed with nothing in it
        return None
    finally:
        reader.close()


_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@contextlib.contextmanager
def _thread_environment(threads: int | None) -> Iterator[None]:
    """Spawned workers start with ``threads`` in the thread-count variables the user left unset.

    ``torch.set_num_threads`` in the worker sets torch's own pool only; OpenMP and the BLAS
    libraries size theirs from these variables when they load, before the worker's code runs.
    """
    unset = [name for name in _THREAD_VARIABLES if name not in os.environ] if threads is not None else []
    for name in unset:
        os.environ[name] = str(threads)
    try:
        yield
    finally:
        for name in unset:
            os.environ.pop(name, None)


def _exit_of(process: Any, raised: str | None) -> WorkerExit:
    code = process.exitcode
    reason = None
    if code is not None and code < 0:
        try:
            reason = f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            reason = f"killed by signal {-code}"
    elif code not in (0, None):
        reason = raised or f"exited with status {code}"
    return WorkerExit(name=process.name, exitcode=code, reason=reason)


def _worker_main(config: StudyConfig, index: int, device: torch.device, threads: int | None, last_words: Any) -> None:
    import torch

    logging.basicConfig(level=logging.INFO, format=f"%(levelname)s worker-{index} %(name)s: %(message)s")
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        run_worker(config, worker_index=index, device=device, several_workers=True)
    except Exception as error:
        last_words.send(f"{type(error).__name__}: {error}")
        raise
    finally:
        last_words.close()


def references_running(study: Any) -> bool:
    """Whether a reference run (a baseline's grid point, a seed, a rung run) is running on some worker."""
    from optuna.trial import TrialState

    return any(
        reference_key(trial.user_attrs) is not None
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    )


def enqueue_later_references(study: Any, config: StudyConfig, *, retry_failed: bool = True) -> bool:
    """Once the search trials are done: enqueue the proxy seeds of the front and the best baselines;
    once no seed run waits or runs, the confirmation rung (``search.rungs``), whose promotion reads
    the seeds' means; once no rung run waits or runs, the rung on the target model when the study
    has one. Return whether anything was enqueued. Safe to call again: what the study holds
    is not enqueued twice (a run whose every copy failed is, with ``retry_failed``)."""
    from optuna.trial import TrialState

    if enqueue_references(study, planned_seed_runs(study, config), retry_failed=retry_failed):
        return True
    pending = study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
    if any(trial.user_attrs.get("seed_of") is not None for trial in pending):
        return False
    if enqueue_references(study, planned_rung_runs(study, config), retry_failed=retry_failed):
        return True
    if any(trial.user_attrs.get("rung_of") is not None and trial.user_attrs.get("rung_on") != RUNG_ON_TARGET
           for trial in pending):
        return False
    return bool(enqueue_references(study, planned_target_runs(study, config), retry_failed=retry_failed))


def run_worker(
    config: StudyConfig,
    *,
    worker_index: int,
    device: torch.device,
    several_workers: bool = False,
    on_trial: Callable[[], None] | None = None,
    study: optuna.Study | None = None,
    memory_model: nn.Module | None = None,
) -> int:
    """Add trials to the study until it holds ``[study] trials`` finished ones; return how many ran.

    Before each trial the worker fails trials of dead workers, then counts: it stops when enough
    trials are finished, waits while finished plus running trials reach the count (a running one
    may still fail), and starts a trial otherwise. ``on_trial`` is called after each trial.
    ``study`` and ``memory_model``: the study already opened and the model already built by the
    caller in this process (None: this worker opens and builds its own).
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own log lines say what happened
    # Sampled partitions end with catch-all rules (biases, a head rule) so that they transfer to
    # models that have such parameters; on a proxy without them the partition stage's "rule
    # matches no parameter" warning would repeat in every trial and say nothing. The level is put
    # back afterwards: a caller's own partitions still warn.
    with quiet_unmatched_rules():
        return _add_trials(
            config, worker_index=worker_index, device=device, several_workers=several_workers, on_trial=on_trial,
            study=study, memory_model=memory_model,
        )


def _add_trials(
    config: StudyConfig,
    *,
    worker_index: int,
    device: torch.device,
    several_workers: bool,
    on_trial: Callable[[], None] | None,
    study: optuna.Study | None,
    memory_model: nn.Module | None,
) -> int:
    from optuna.trial import TrialState

    study = study if study is not None else open_study(config)
    study.sampler = make_sampler(
        config, worker_index=worker_index, seed_offset=len(study.get_trials(deepcopy=False))
    )
    memory_model = memory_model if memory_model is not None else build_memory_model(config)
    record_adamw_state_bytes(study, memory_model)
    objective = TrialObjective(config, device=device, memory_model=memory_model)
    target = config.study.trials
    ran = 0
    failures_in_a_row = 0
    infeasible_in_a_row = 0
    waiting = False
    while True:
        lost = fail_stale_trials(study, grace_period=config.study.grace_period)
        # A run a dead worker held runs again; a baseline best at an edge of its grid gets one more lr.
        enqueue_references(study, planned_baseline_runs(config, study), retry_failed=bool(lost))
        references_wait = has_waiting_trials(study)  # baselines on their grid, seeds, rungs: run whatever the count
        finished, running = count_finished_and_running(study)
        if finished >= target and not references_wait:
            if running == 0 and enqueue_later_references(study, config, retry_failed=bool(lost)):
                continue
            if running == 0 and not references_running(study):
                return ran  # while a reference runs elsewhere, its end may plan more (the rung after the seeds)
        if finished + running >= target and not references_wait:
            if not waiting:
                logger.info(
                    "worker %d waits: %d of %d trials finished and %d running elsewhere (a running "
                    "trial whose worker died is failed after grace_period = %d s)",
                    worker_index,
                    finished,
                    target,
                    running,
                    config.study.grace_period,
                )
            waiting = True
            time.sleep(_POLL_S * (0.5 + random.random()))  # jitter: workers do not wake in step
            continue
        waiting = False
        if several_workers and finished + running + 1 == target:
            # The last trial: workers that finished at the same moment would all start one. A random
            # pause and a second look let one of them take it; the objective drops any that still race.
            time.sleep(_LAST_TRIAL_JITTER_S * random.random())
            finished, running = count_finished_and_running(study)
            if finished + running >= target:
                continue
        finished_here: list[Any] = []
        study.optimize(
            objective,
            n_trials=1,
            catch=(Exception,),
            callbacks=[lambda _, frozen: finished_here.append(frozen)],
        )
        ran += 1
        last = finished_here[-1] if finished_here else None
        failures_in_a_row = failures_in_a_row + 1 if last is not None and last.state == TrialState.FAIL else 0
        infeasible = last is not None and last.user_attrs.get("outcome") == "infeasible"
        infeasible_in_a_row = infeasible_in_a_row + 1 if infeasible else 0
        if infeasible_in_a_row >= MAX_INFEASIBLE_IN_A_ROW:
            logger.error(
                "worker %d stops: %d sampled partitions in a row were over the memory budget %s; "
                "raise [study] memory_budget or narrow [space] (e.g. fewer stateful roles or layers)",
                worker_index,
                infeasible_in_a_row,
                format_bytes(config.study.memory_budget or 0),
            )
            return ran
        if failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
            # Every trial failing means the set-up is broken (data, model, device), not the partitions.
            logger.error(
                "worker %d stops: %d trials in a row failed; the last one said: %s",
                worker_index,
                failures_in_a_row,
                last.user_attrs.get("reason") if last else "?",
            )
            return ran
        if on_trial is not None:
            on_trial()


__all__ = [
    "MAX_FAILURES_IN_A_ROW",
    "MAX_INFEASIBLE_IN_A_ROW",
    "SMALL_MODEL_PARAMETERS",
    "Parallelism",
    "choose_parallelism",
    "usable_cpu_cores",
    "WorkerExit",
    "WorkersFailedError",
    "enqueue_later_references",
    "run_worker",
    "run_worker_processes",
    "worker_device",
]
