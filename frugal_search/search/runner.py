"""Running a study: the one front function, :func:`run_search`.

It opens or creates the study, enqueues the baselines once and lets workers
(``frugal_search.search.workers``) add trials until the study holds the requested number of
finished (COMPLETE or PRUNED) trials; infeasible trials (over the memory budget, never trained) are
recorded but not counted.

The same call resumes: finished trials are counted in the storage, so a second run of a complete
study adds nothing, and a study stopped half way (Ctrl-C, a killed worker, a lost machine) goes on
from where it is.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from frugal_search.search.progress import StudyProgressBar
from frugal_search.search.setup import check_setup
from frugal_search.search.storage import fail_stale_trials, open_study, printable_storage
from frugal_search.search.study import (
    count_finished_trials,
    enqueue_references,
    has_waiting_trials,
    planned_baseline_runs,
)
from frugal_search.search.workers import (
    WorkerExit,
    WorkersFailedError,
    choose_parallelism,
    enqueue_later_references,
    run_worker,
    run_worker_processes,
)

if TYPE_CHECKING:
    import optuna

    from frugal_search.search.config import StudyConfig

logger = logging.getLogger(__name__)


def run_search(
    config: StudyConfig,
    *,
    trials: int | None = None,
    workers: int | None = 1,
    device: str | None = None,
    progress: bool = True,
) -> optuna.Study:
    """Run or resume ``config``'s study until it holds ``trials`` finished trials; return it.

    Args:
        config: the study (see :func:`~frugal_search.search.config.load_study_config`).
        trials: finished trials to reach (default ``[study] trials``).
        workers: worker processes on the same storage (default 1); None picks them for the machine (see
            :func:`~frugal_search.search.workers.choose_parallelism`: on a CPU with a small model one
            single-threaded worker per core) and logs the choice. With ``device="cuda"`` and several
            GPUs worker ``i`` trains on ``cuda:i % n``.
        device: where proxy runs train (default ``[proxy] device``).
        progress: show a progress bar on stderr (trials counted towards the target, front size).

    A single worker runs in this process; several are spawned processes (the parent only shows
    progress). Which storages suit several workers: README section "Running a search".

    Raises:
        SetupError: (a ``ValueError``) the device, model, data or storage cannot be used; raised
            before the storage is opened, so nothing is written.
        WorkersFailedError: worker processes stopped early and the study is short of its target
            (when it reached the target anyway, the lost workers are only logged).
    """
    config = config.with_overrides(trials=trials, device=device)  # the same config when both are None
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
        raise ValueError(f"workers must be an integer >= 1 or None (picked for the machine), got {workers!r}")
    model = check_setup(config)  # a set-up mistake fails here, before the storage holds anything of this run
    study = open_study(config)
    target = config.study.trials
    # Trials of workers killed in an earlier run are failed first, so that a baseline they were
    # running counts as missing and is enqueued again below.
    fail_stale_trials(study, grace_period=config.study.grace_period)
    done = count_finished_trials(study)
    enqueue_references(study, planned_baseline_runs(config, study))
    # a seed or rung run whose copy failed in an earlier run comes back, even while others still wait
    added_later = done >= target and enqueue_later_references(study, config)
    if done >= target and not has_waiting_trials(study) and not added_later:
        logger.info(
            "study %r already holds %d finished trials (target %d), its baselines' lr grid, its seeds and its "
            "confirmation rung: nothing to do",
            config.study.name,
            done,
            target,
        )
        return study
    from optuna.trial import TrialState

    waiting = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
    parallel = choose_parallelism(
        config,
        workers=workers,
        parameters=sum(p.numel() for p in model.parameters()),
        remaining=max(0, target - done) + waiting,
    )
    logger.info(
        "study %r: %d of %d trials finished; %d worker(s) x %s torch thread(s) (%s) on %s",
        config.study.name,
        done,
        target,
        parallel.workers,
        parallel.threads or "default",
        parallel.reason,
        printable_storage(config.study.storage),
    )
    bar = StudyProgressBar(study, target) if progress else None
    try:
        if parallel.workers == 1:
            if parallel.threads is not None:
                import torch

                torch.set_num_threads(parallel.threads)
            run_worker(  # in this process: the study opened and the model built above serve it
                config, worker_index=0, device=config.proxy.device, on_trial=bar.refresh if bar else None,
                study=study, memory_model=model,
            )
        else:
            exits = run_worker_processes(
                config, workers=parallel.workers, threads=parallel.threads, on_poll=bar.refresh if bar else None
            )
            _report_lost_workers(study, exits, target=target)
    finally:
        if bar is not None:
            bar.close()
    return study


def _report_lost_workers(study: optuna.Study, exits: list[WorkerExit], *, target: int) -> None:
    """Say which workers ended with an error and why; raise only when the target was not reached."""
    failed = [item for item in exits if item.failed]
    if not failed:
        return
    lost = "; ".join(f"{item.name}: {item.reason}" for item in failed)
    finished = count_finished_trials(study)
    if finished >= target:
        logger.warning("the study reached its %d trials although worker(s) stopped early (%s)", target, lost)
        return
    raise WorkersFailedError(
        f"the study holds {finished} of {target} finished trials: worker(s) stopped early ({lost}); "
        "run the same command again to resume"
    )


__all__ = ["run_search"]
