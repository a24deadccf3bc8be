"""The Optuna sampler of a study, seeded so that a resumed run draws new points reproducibly."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna

    from frugal_search.search.config import StudyConfig

_WORKER_SEED_STRIDE = 1_000_003  # a prime: workers' seeds never collide for any realistic history


def make_sampler(config: StudyConfig, *, worker_index: int, seed_offset: int) -> optuna.samplers.BaseSampler:
    """Return the config's sampler, seeded from the study seed, the worker and the study's size.

    ``seed_offset`` (the number of trials already stored) makes a resumed run draw new points
    instead of repeating the first run's draws, while the same history still gives the same draws.
    """
    import optuna

    seed = config.study.seed + _WORKER_SEED_STRIDE * worker_index + seed_offset
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


__all__ = ["make_sampler"]
