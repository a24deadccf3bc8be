"""The search's progress bar: trials counted towards the target, Pareto front size, time left."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from frugal_search.search.study import count_finished_trials

if TYPE_CHECKING:
    import optuna

logger = logging.getLogger(__name__)


class StudyProgressBar:
    """A tqdm bar on stderr over the trials that count towards ``target``.

    It counts what the stop rule counts (:func:`~frugal_search.search.study.count_finished_trials`:
    finished trials that are not infeasible), so the bar reaches its end when the search stops.
    """

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
        """Read the storage and redraw when the count or the front size changed."""
        from optuna.trial import TrialState

        try:
            done = min(count_finished_trials(self.study), self.bar.total)
            complete = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            front = len(self.study.best_trials) if complete else 0
        except Exception as error:  # a busy storage must not stop the search
            logger.debug("progress bar could not read the storage: %s", error)
            return
        if (done, front) == self._shown:
            return  # redraw only on change: a log file of stderr stays short
        self._shown = (done, front)
        if done > self.bar.n:
            self.bar.update(done - self.bar.n)
        self.bar.set_postfix(front=front, refresh=True)

    def close(self) -> None:
        """Draw the last state and close the bar."""
        self.refresh()
        self.bar.close()


__all__ = ["StudyProgressBar"]
