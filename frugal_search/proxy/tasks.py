"""Task kinds of proxy runs: what a run learns and which figures score it.

- ``causal-lm``: next-token prediction on token data (``DataSpec`` / ``TokenData``), from fresh
  weights or from a pretrained local checkpoint directory; scored by ``eval_loss``.
- ``sequence-classification``: a class for each text or text pair of labelled data
  (``LabelledDataSpec`` / ``LabelledData``), with a classification head on any Hugging Face
  encoder or decoder; scored by ``eval_loss``, ``accuracy`` and ``macro_f1`` (read macro-F1 when
  the classes are unbalanced: ``LabelledData.is_unbalanced()``).
"""

from __future__ import annotations

from dataclasses import dataclass

CAUSAL_LM = "causal-lm"
SEQUENCE_CLASSIFICATION = "sequence-classification"
TASK_KINDS: tuple[str, ...] = (CAUSAL_LM, SEQUENCE_CLASSIFICATION)
# Which way each figure is better, as Optuna spells a direction.
METRIC_DIRECTIONS: dict[str, str] = {"eval_loss": "minimize", "accuracy": "maximize", "macro_f1": "maximize"}


@dataclass(frozen=True)
class TaskSpec:
    """The kind of task a proxy run trains (see the module docstring)."""

    kind: str = CAUSAL_LM  # "causal-lm" or "sequence-classification"

    def __post_init__(self) -> None:
        if self.kind not in TASK_KINDS:
            raise ValueError(f"unknown task kind {self.kind!r}; use one of {', '.join(TASK_KINDS)}")

    @property
    def metrics(self) -> tuple[str, ...]:
        """The figures a run of this task reports (keys of ``METRIC_DIRECTIONS``)."""
        return ("eval_loss",) if self.kind == CAUSAL_LM else ("eval_loss", "accuracy", "macro_f1")


def as_task(task: TaskSpec | str) -> TaskSpec:
    """Return ``task`` as a ``TaskSpec`` (a kind name is read as ``TaskSpec(kind)``)."""
    if isinstance(task, TaskSpec):
        return task
    if isinstance(task, str):
        return TaskSpec(task)
    raise TypeError(f"task must be a TaskSpec or a kind name ({', '.join(TASK_KINDS)}); got {type(task).__name__}")
