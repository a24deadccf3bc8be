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
import os
from typing import TYPE_CHECKING

from frugal_search.search.progress import StudyProgressBar
from frugal_search.search.study import count_finished_trials, enqueue_baselines, open_study
from frugal_search.search.workers import run_worker, run_worker_processes

if TYPE_CHECKING:
    import optuna

    from frugal_search.search.config import StudyConfig

logger = logging.getLogger(__name__)


def run_search(
    config: StudyConfig,
    *,
    trials: int | None = None,
    workers: int = 1,
    device: str | None = None,
    progress: bool = True,
) -> optuna.Study:
    """Run or resume ``config``'s study until it holds ``trials`` finished trials; return it.

    Args:
        config: the study (see :func:`~frugal_search.search.config.load_study_config`).
        trials: finished trials to reach (default ``[study] trials``).
        workers: worker processes on the same storage. With ``device="cuda"`` and several GPUs
            worker ``i`` trains on ``cuda:i % n``.
        device: where proxy runs train (default ``[proxy] device``).
        progress: show a progress bar on stderr (trials counted towards the target, front size).

    A single worker runs in this process; several are spawned processes (the parent only shows
    progress). Which storages suit several workers: README section "Running a search".
    """
    config = config.with_overrides(trials=trials, device=device)
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    from frugal_search.proxy import resolve_device

    resolve_device(config.proxy.device)  # a missing GPU fails here, not as failed trials in the storage
    study = open_study(config)
    target = config.study.trials
    done = count_finished_trials(study)
    if done >= target:
        logger.info(
            "study %r already holds %d finished trials (target %d): nothing to do",
            config.study.name,
            done,
            target,
        )
        return study
    enqueue_baselines(study, config.study.baselines)
    logger.info(
        "study %r: %d of %d trials finished; %d worker(s) on %s",
        config.study.name,
        done,
        target,
        workers,
        config.study.storage,
    )
    bar = StudyProgressBar(study, target) if progress else None
    try:
        if workers == 1:
            if config.proxy.threads is not None:
                import torch

                torch.set_num_threads(config.proxy.threads)
            run_worker(
                config, worker_index=0, device=config.proxy.device, on_trial=bar.refresh if bar else None
            )
        else:
            threads = config.proxy.threads or max(1, (os.cpu_count() or 1) // workers)
            exits = run_worker_processes(
                config, workers=workers, threads=threads, on_poll=bar.refresh if bar else None
            )
            failed = [item for item in exits if item.failed]
            if failed:
                raise RuntimeError(
                    f"worker process(es) {', '.join(item.name for item in failed)} stopped with an error; "
                    "see the log above"
                )
    finally:
        if bar is not None:
            bar.close()
    return study


__all__ = ["run_search"]
