"""The search's progress bar: every run the command does (searched trials, baselines' lr grids,
proxy seeds, the confirmation rung), with the phases running named, the front size and time left."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from frugal_search.search.study import RUNG_ON_TARGET, count_finished_trials, reference_key, searched_front

if TYPE_CHECKING:
    import optuna

logger = logging.getLogger(__name__)

# what a reference run's kind is called on the bar
PHASE_WORDS = {
    "baseline": "baselines' lr grids", "seed": "proxy seeds", "rung": "confirmation rung", "target": "rung on the target",
}
SEARCH_PHASE = "search"


@dataclass(frozen=True)
class Progress:
    """What the bar shows: runs done of runs known, and the phases running now."""

    done: int
    total: int
    phases: tuple[str, ...]


def study_progress(trials: Sequence[optuna.trial.FrozenTrial], *, target: int, finished_searched: int) -> Progress:
    """Count the runs of a study for the bar (a pure function of its trials).

    ``total`` is the ``target`` searched trials plus every reference run enqueued so far (each
    counted once, whatever copies failed and ran again); it grows when the seeds and the rung are
    planned, since they depend on the front. ``done`` is ``finished_searched`` (at most the target)
    plus the reference runs that finished.
    """
    from optuna.trial import TrialState

    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    known: set[tuple] = set()
    finished_references: set[tuple] = set()
    phases: set[str] = set()
    for trial in trials:
        key = reference_key(trial.user_attrs)
        if trial.state == TrialState.RUNNING:
            phases.add(SEARCH_PHASE if key is None else PHASE_WORDS[_phase(key)])
        if key is None:
            continue
        known.add(key)
        if trial.state in finished:
            finished_references.add(key)
    order = [SEARCH_PHASE, *PHASE_WORDS.values()]
    return Progress(
        done=min(finished_searched, target) + len(finished_references),
        total=target + len(known),
        phases=tuple(phase for phase in order if phase in phases),
    )


class StudyProgressBar:
    """A tqdm bar on stderr over every run the search does.

    Searched trials count as the stop rule counts them
    (:func:`~frugal_search.search.study.count_finished_trials`: finished and not infeasible, at most
    ``target``); each reference run counts once when it finishes. The description names the
    phases that run now, so a bar that waits on the baselines' lr grids says so.
    """

    def __init__(self, study: optuna.Study, target: int) -> None:
        from tqdm.auto import tqdm

        self.study = study
        self.target = target
        self._shown: tuple | None = None
        self.bar = tqdm(total=target, initial=min(target, count_finished_trials(study)), unit="run", desc=study.study_name)

    def refresh(self) -> None:
        """Read the storage and redraw when a count, the phases or the front size changed."""
        try:
            trials = self.study.get_trials(deepcopy=False)
            progress = study_progress(trials, target=self.target, finished_searched=count_finished_trials(self.study))
            front = len(searched_front(self.study, trials))  # the proxy's: rung runs train longer, seeds again
        except Exception as error:  # a busy storage must not stop the search
            logger.debug("progress bar could not read the storage: %s", error)
            return
        shown = (progress.done, progress.total, progress.phases, front)
        if shown == self._shown:
            return  # redraw only on change: a log file of stderr stays short
        self._shown = shown
        self.bar.total = progress.total
        self.bar.n = progress.done
        phases = ", ".join(progress.phases) or "waiting"
        self.bar.set_description(f"{self.study.study_name} [{phases}]", refresh=False)
        self.bar.set_postfix(front=front, refresh=True)

    def close(self) -> None:
        """Draw the last state and close the bar."""
        self.refresh()
        self.bar.close()


def _phase(key: tuple) -> str:
    """The :data:`PHASE_WORDS` key of a reference run's key: its kind, a rung on the target its own."""
    return "target" if key[0] == "rung" and key[-1] == RUNG_ON_TARGET else key[0]


__all__ = ["PHASE_WORDS", "Progress", "StudyProgressBar", "study_progress"]
