"""Running a study: open or create it, enqueue the baselines once, and let workers add trials
until the study holds the requested number of finished (COMPLETE or PRUNED) trials; infeasible
trials (over the memory budget, never trained) are recorded but not counted.

The same call resumes: finished trials are counted in the storage, so a second run of a complete
study adds nothing, and a study stopped half way (Ctrl-C, a killed worker, a lost machine) goes on
from where it is. Each worker checks the count before it starts a trial and waits while the running
trials of other workers could complete the count; see :func:`run_search`.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import random
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any


if TYPE_CHECKING:
    import optuna

    from frugal_search.search.config import StudyConfig

from frugal_search.units import format_bytes

logger = logging.getLogger(__name__)

DIRECTIONS = ("minimize", "minimize")
METRIC_NAMES = ["eval_loss", "state_mib"]
MAX_FAILURES_IN_A_ROW = 5  # a worker whose trials keep failing stops instead of looping
MAX_INFEASIBLE_IN_A_ROW = 200  # a space that (almost) never fits the memory budget stops the worker
_POLL_S = 1.0  # seconds between checks of the storage while waiting on other workers' trials
_WORKER_STOP_GRACE_S = 10.0  # seconds workers get to finish their bookkeeping after Ctrl-C
_LAST_TRIAL_JITTER_S = 2.0  # longest random pause of a worker before it starts the study's last trial


def open_study(config: StudyConfig, *, sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
    """Open the config's study, creating it (directions, metric names, study attributes) if new."""
    import optuna

    from frugal_search.search.storage import open_storage

    storage = open_storage(
        config.study.storage,
        heartbeat_interval=config.study.heartbeat_interval,
        grace_period=config.study.grace_period,
    )
    study = optuna.create_study(
        storage=storage,
        study_name=config.study.name,
        directions=list(DIRECTIONS),
        load_if_exists=True,
        sampler=sampler,
    )
    if [direction.name.lower() for direction in study.directions] != list(DIRECTIONS):
        raise ValueError(
            f"study {config.study.name!r} in {config.study.storage} has directions "
            f"{[d.name.lower() for d in study.directions]}, not {list(DIRECTIONS)}; it is not a "
            f"frugal-search study: pick another [study] name or --name"
        )
    if study.metric_names != METRIC_NAMES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(METRIC_NAMES)
    if "space" not in study.user_attrs:
        study.set_user_attr("space", config.space.to_dict())
        study.set_user_attr("memory_budget", config.study.memory_budget)
        study.set_user_attr("study_file", str(config.path) if config.path else None)
    return study


def proxy_budget_of(config: StudyConfig) -> Any:
    """The ``ProxyBudget`` every trial of ``config`` runs with (its lr comes from the partition)."""
    return config.proxy.budget()


def count_finished_trials(study: optuna.Study) -> int:
    """Number of finished trials that count towards ``trials`` (see :func:`counts_towards_target`)."""
    return _count_finished_and_running(study)[0]


def counts_towards_target(frozen: optuna.trial.FrozenTrial) -> bool:
    """Whether a COMPLETE, PRUNED or RUNNING trial takes one of the ``trials`` places.

    An infeasible trial (over the memory budget) is recorded but takes no place: it cost no proxy
    run, and a space that is mostly over the budget would otherwise end the study with few
    partitions actually scored. ``MAX_INFEASIBLE_IN_A_ROW`` keeps such a space from looping.
    """
    return frozen.user_attrs.get("outcome") != "infeasible"


def enqueue_baselines(study: optuna.Study, baselines: tuple[str, ...]) -> list[str]:
    """Enqueue each baseline that the study does not hold yet (finished, running or waiting).

    A baseline whose every copy failed (e.g. its worker was killed) is enqueued again. Two runs
    started at the same moment could both enqueue one; the objective then drops the later copy.
    Returns the names enqueued now.
    """
    from optuna.trial import TrialState

    held = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
    present = {trial.user_attrs.get("baseline") for trial in study.get_trials(deepcopy=False, states=held)}
    added = []
    for name in baselines:
        if name not in present:
            study.enqueue_trial({}, user_attrs={"baseline": name})
            added.append(name)
    if added:
        logger.info("enqueued baselines: %s", ", ".join(added))
    return added


def make_sampler(config: StudyConfig, *, worker_index: int, seed_offset: int) -> optuna.samplers.BaseSampler:
    """Return the config's sampler, seeded from the study seed, the worker and the study's size.

    ``seed_offset`` (the number of trials already stored) makes a resumed run draw new points
    instead of repeating the first run's draws, while the same history still gives the same draws.
    """
    import optuna

    seed = config.study.seed + 1_000_003 * worker_index + seed_offset
    name = config.study.sampler
    if name == "tpe":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # group=True
            return optuna.samplers.TPESampler(
                seed=seed,
                multivariate=True,
                group=True,  # the space is conditional (block order only for blocks, ...)
                n_startup_trials=min(10, max(4, config.study.trials // 4)),
            )
    if name == "nsga2":
        population = max(4, min(50, config.study.trials // 4))
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=population)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


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
        progress: show a progress bar on stderr (trials done, front size, time left).

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
    bar = _ProgressBar(study, target) if progress else None
    try:
        if workers == 1:
            if config.proxy.threads is not None:
                import torch

                torch.set_num_threads(config.proxy.threads)
            run_worker(
                config, worker_index=0, device=config.proxy.device, on_trial=bar.refresh if bar else None
            )
        else:
            _run_worker_processes(config, workers=workers, bar=bar)
    finally:
        if bar is not None:
            bar.close()
    return study


def _run_worker_processes(config: StudyConfig, *, workers: int, bar: _ProgressBar | None) -> None:
    context = multiprocessing.get_context("spawn")  # fork would copy torch/optuna threads and locks
    threads = config.proxy.threads or max(1, (os.cpu_count() or 1) // workers)
    processes = []
    for index in range(workers):
        process = context.Process(
            target=_worker_main,
            args=(config, index, worker_device(config.proxy.device, index), threads),
            name=f"frugal-search-worker-{index}",
        )
        process.start()
        processes.append(process)
    try:
        while any(process.is_alive() for process in processes):
            for process in processes:
                process.join(timeout=_POLL_S / len(processes))
            if bar is not None:
                bar.refresh()
    except BaseException:
        # Ctrl-C reaches the workers too; give them a moment to record their trials as failed.
        deadline = time.monotonic() + _WORKER_STOP_GRACE_S
        for process in processes:
            process.join(timeout=max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.terminate()
        raise
    failed = [process.name for process in processes if process.exitcode not in (0, None)]
    if failed:
        raise RuntimeError(f"worker process(es) {', '.join(failed)} stopped with an error; see the log above")


def worker_device(device: str, index: int) -> str:
    """The device of worker ``index``: ``cuda`` spreads workers over the visible GPUs."""
    if device != "cuda":
        return device
    import torch

    count = torch.cuda.device_count()
    return f"cuda:{index % count}" if count > 1 else device


def _worker_main(config: StudyConfig, index: int, device: str, threads: int) -> None:
    import torch

    logging.basicConfig(level=logging.INFO, format=f"%(levelname)s worker-{index} %(name)s: %(message)s")
    torch.set_num_threads(threads)
    run_worker(config, worker_index=index, device=device, several_workers=True)


def run_worker(
    config: StudyConfig,
    *,
    worker_index: int,
    device: str,
    several_workers: bool = False,
    on_trial: Callable[[], None] | None = None,
) -> int:
    """Add trials to the study until it holds ``[study] trials`` finished ones; return how many ran.

    Before each trial the worker fails trials of dead workers, then counts: it stops when enough
    trials are finished, waits while finished plus running trials reach the count (a running one
    may still fail), and starts a trial otherwise.
    """
    import optuna
    from optuna.trial import TrialState

    from frugal_search.search.objective import TrialObjective
    from frugal_search.search.storage import fail_stale_trials

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own log lines say what happened
    _quiet_catch_all_warnings()
    study = open_study(config)
    study.sampler = make_sampler(
        config, worker_index=worker_index, seed_offset=len(study.get_trials(deepcopy=False))
    )
    memory_model = _memory_model(config)
    if "adamw_state_bytes" not in study.user_attrs:
        from frugal_search.partition import baseline_partition

        # the report's memory axis shows every partition as a share of AdamW's state
        study.set_user_attr("adamw_state_bytes", int(baseline_partition("adamw").state_bytes(memory_model)))
    objective = TrialObjective(config, device=device, memory_model=memory_model)
    target = config.study.trials
    ran = 0
    failures_in_a_row = 0
    infeasible_in_a_row = 0
    waiting = False
    while True:
        fail_stale_trials(study, grace_period=config.study.grace_period)
        finished, running = _count_finished_and_running(study)
        if finished >= target:
            return ran
        if finished + running >= target:
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
            finished, running = _count_finished_and_running(study)
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


class _CatchAllFilter(logging.Filter):
    """Drops the partition stage's "rule matches no parameter" warnings for sampled partitions.

    Sampled partitions end with a catch-all rule (biases, other parameters) so that they transfer
    to models that have such parameters; on a proxy without them the warning would repeat in
    every trial and say nothing.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "matches no parameter" not in record.getMessage()


def _quiet_catch_all_warnings() -> None:
    partition_logger = logging.getLogger("frugal_search.partition.partition")
    if not any(isinstance(item, _CatchAllFilter) for item in partition_logger.filters):
        partition_logger.addFilter(_CatchAllFilter())


def _count_finished_and_running(study: optuna.Study) -> tuple[int, int]:
    from optuna.trial import TrialState

    trials = study.get_trials(
        deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    )
    trials = [trial for trial in trials if counts_towards_target(trial)]
    running = sum(1 for trial in trials if trial.state == TrialState.RUNNING)
    return len(trials) - running, running


def _memory_model(config: StudyConfig) -> Any:
    """The model ``Partition.state_bytes`` measures: built on ``meta`` (no memory) when possible."""
    import torch

    from frugal_search.proxy import build_model

    spec = config.model_spec()
    try:
        with torch.device("meta"):
            return build_model(spec, seed=config.study.seed)
    except Exception as error:  # some factories or checkpoints cannot be built on meta
        logger.info("building the model on the meta device failed (%s); measuring a CPU copy", error)
        return build_model(spec, seed=config.study.seed)


class _ProgressBar:
    """tqdm bar on stderr: finished trials of the target, Pareto front size, time left."""

    def __init__(self, study: optuna.Study, target: int) -> None:
        from tqdm.auto import tqdm

        self.study = study
        self._shown: tuple[int, int] | None = None
        self.bar = tqdm(
            total=target,
            initial=min(target, count_finished_trials(study)),
            unit="trial",
            desc=study.study_name,
        )

    def refresh(self) -> None:
        from optuna.trial import TrialState

        try:
            trials = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
            front = len(self.study.best_trials) if any(t.state == TrialState.COMPLETE for t in trials) else 0
        except Exception as error:  # a busy storage must not stop the search
            logger.debug("progress bar could not read the storage: %s", error)
            return
        done = min(len(trials), self.bar.total)
        if (done, front) == self._shown:
            return  # redraw only on change: a log file of stderr stays short
        self._shown = (done, front)
        if done > self.bar.n:
            self.bar.update(done - self.bar.n)
        self.bar.set_postfix(front=front, refresh=True)

    def close(self) -> None:
        self.refresh()
        self.bar.close()


__all__ = [
    "DIRECTIONS",
    "METRIC_NAMES",
    "count_finished_trials",
    "enqueue_baselines",
    "make_sampler",
    "open_study",
    "proxy_budget_of",
    "run_search",
    "run_worker",
    "worker_device",
]
