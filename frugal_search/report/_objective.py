"""Which figure a report ranks trials by, and which way is better: the study's first objective.

A search study's values are ``[study] objectives``: a figure (``eval_loss``, minimised; or for a
classification task ``accuracy`` / ``macro_f1``, maximised) and a memory (``state_mib`` or
``training_mib``). Every report function that ranks trials takes an :class:`Objective` (default:
eval loss against optimizer state, both minimised), so nothing says "lower is better" of accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna

# figure -> (words, axis label)
_WORDS: dict[str, tuple[str, str]] = {
    "eval_loss": ("eval loss", "eval loss (nats per token or row)"),
    "accuracy": ("accuracy", "validation accuracy"),
    "macro_f1": ("macro-F1", "validation macro-F1"),
}
_MEMORY_WORDS: dict[str, tuple[str, str]] = {
    "state_mib": ("optimizer state", "optimizer state (MiB)"),
    "training_mib": ("training memory", "training memory: weights + gradients + state (MiB)"),
}


@dataclass(frozen=True)
class Objective:
    """The figure trials are ranked by (a column of ``trials_table``) and the memory they are drawn at."""

    name: str = "eval_loss"  # eval_loss | accuracy | macro_f1
    direction: str = "minimize"  # as Optuna spells it
    memory: str = "state_mib"  # state_mib | training_mib, a column of trials_table

    @property
    def maximize(self) -> bool:
        """Whether a higher value is better (accuracy, macro-F1)."""
        return self.direction == "maximize"

    @property
    def sign(self) -> float:
        """``sign * value`` is lower-is-better whichever the direction."""
        return -1.0 if self.maximize else 1.0

    @property
    def words(self) -> str:
        """The figure in words: ``eval loss``, ``accuracy``, ``macro-F1``."""
        return _WORDS.get(self.name, (self.name.replace("_", " "), self.name))[0]

    @property
    def a_value(self) -> str:
        """The figure with its article, as in "finished with a loss": ``a loss``, ``an accuracy``."""
        return {"eval_loss": "a loss", "accuracy": "an accuracy", "macro_f1": "a macro-F1"}.get(self.name, f"a {self.words}")

    @property
    def axis_label(self) -> str:
        """The plot axis label of the figure."""
        return _WORDS.get(self.name, (self.name, self.name))[1]

    @property
    def better(self) -> str:
        """``lower is better`` or ``higher is better``."""
        return "higher is better" if self.maximize else "lower is better"

    @property
    def best_word(self) -> str:
        """``lowest`` or ``highest``."""
        return "highest" if self.maximize else "lowest"

    @property
    def memory_words(self) -> str:
        """The memory objective in words."""
        return _MEMORY_WORDS.get(self.memory, (self.memory, self.memory))[0]

    @property
    def memory_axis_label(self) -> str:
        """The plot axis label of the memory objective."""
        return _MEMORY_WORDS.get(self.memory, (self.memory, self.memory))[1]

    @property
    def directions(self) -> tuple[str, str]:
        """The (figure, memory) directions, for the search stage's Pareto functions."""
        return (self.direction, "minimize")

    def worst(self) -> float:
        """The value a run without a figure (diverged) counts as: +inf for a loss, -inf for an accuracy."""
        return -float("inf") if self.maximize else float("inf")


LOSS_OBJECTIVE = Objective()


def study_objective(study: optuna.Study) -> Objective:
    """The :class:`Objective` of a study: its first metric name and direction, and its memory metric.

    A study without metric names (made by hand) is read as eval loss against optimizer state, in
    the study's first direction."""
    names = list(study.metric_names or ["eval_loss", "state_mib"]) + ["state_mib"]
    directions = [direction.name.lower() for direction in study.directions]
    # names the table has no column for (a study made by other code) are read as the defaults
    figure = names[0] if names[0] in _WORDS else "eval_loss"
    memory = names[1] if names[1] in _MEMORY_WORDS else "state_mib"
    return Objective(name=figure, direction=directions[0], memory=memory)
