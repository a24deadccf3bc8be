"""LoRA as a proxy-run method (through ``peft``, an optional extra), with its memory counted honestly.

A ``LoraSpec`` goes where a partition goes in ``run_proxy``: the run wraps the model in rank-r
adapters (``peft.get_peft_model``; the base weights are frozen, ``requires_grad=False``) and
trains the adapters, plus a classifier's new head, with ``torch.optim.AdamW``. Its memory is
what that run holds: every weight (base, adapters and peft's trainable copy of the head), the
gradients of the trainable parameters only, and AdamW's two moments of those parameters.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from frugal_search.optimizer import check_known_keys
from frugal_search.partition import TrainingMemory

LORA_METHOD = "lora"


@dataclass(frozen=True)
class LoraSpec:
    """A LoRA adapter of rank ``rank`` and its AdamW settings.

    ``target_modules`` None uses peft's defaults for the model type (``q_proj``/``v_proj`` for
    LLaMA, ``query``/``value`` for BERT); give names (``("q_proj", "k_proj", "v_proj", "o_proj")``)
    or ``("all-linear",)`` for other models. A sequence classifier's head is trained in full
    (peft's ``modules_to_save``), as LoRA fine-tuning on GLUE does.
    """

    rank: int = 8
    alpha: float | None = None  # scaling numerator; None: 2 * rank (scale 2, the common choice)
    dropout: float = 0.0
    target_modules: tuple[str, ...] | None = None
    lr: float = 1e-3  # peak lr of AdamW (ProxyBudget.lr replaces it)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.rank, int) or isinstance(self.rank, bool) or self.rank < 1:
            raise ValueError(f"LoRA rank must be a positive integer, got {self.rank!r}")
        if self.alpha is not None and not (math.isfinite(self.alpha) and self.alpha > 0):
            raise ValueError(f"LoRA alpha must be a positive number or None (2 * rank), got {self.alpha!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {self.dropout!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"LoRA lr must be a positive number, got {self.lr!r}")
        if isinstance(self.target_modules, str):
            raise ValueError(
                f"target_modules must be a tuple of module names, got the string {self.target_modules!r}; "
                f"write ({self.target_modules!r},)"
            )
        if self.target_modules is not None:
            object.__setattr__(self, "target_modules", tuple(self.target_modules))
        object.__setattr__(self, "betas", tuple(self.betas))

    # ---- what a run does with it -----------------------------------------------------------

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """Return ``model`` wrapped in this adapter (its base weights frozen); ``model`` itself is changed."""
        peft = _import_peft()
        task_type = peft.TaskType.SEQ_CLS if _is_sequence_classifier(model) else peft.TaskType.CAUSAL_LM
        config = peft.LoraConfig(
            task_type=task_type,
            r=self.rank,
            lora_alpha=self.alpha if self.alpha is not None else 2 * self.rank,
            lora_dropout=self.dropout,
            target_modules=list(self.target_modules) if self.target_modules is not None else None,
        )
        try:
            with warnings.catch_warnings():  # peft reads an attribute transformers 5 deprecates
                warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
                return peft.get_peft_model(model, config)
        except ValueError as error:  # e.g. no default target modules for this model type
            raise ValueError(
                f"cannot put LoRA adapters on {type(model).__name__}: {error}; give target_modules"
            ) from error

    def build_optimizer(self, model: nn.Module) -> torch.optim.AdamW:
        """Return AdamW over the trainable parameters of a model from :meth:`prepare_model`."""
        trainable = [p for p in model.parameters() if p.requires_grad]
        if not trainable:
            raise ValueError("the model has no trainable parameters; call prepare_model(model) first")
        return torch.optim.AdamW(trainable, lr=self.lr, betas=self.betas, eps=self.eps, weight_decay=self.weight_decay)

    def training_memory(self, model: nn.Module) -> TrainingMemory:
        """Weights, gradients and AdamW state of training ``model`` with this adapter, in bytes.

        ``model`` is the model before wrapping (it is deep-copied and wrapped) or one returned by
        :meth:`prepare_model`. Gradients and state cover the trainable parameters only; their
        AdamW state is ``exp_avg`` and ``exp_avg_sq`` at the parameters' dtype. ``adamw_state_bytes``
        is that same figure (AdamW on the same trainable parameters), as in
        :class:`~frugal_search.partition.TrainingMemory`.
        """
        import copy

        wrapped = model if _is_peft_model(model) else self.prepare_model(copy.deepcopy(model))
        weights = _bytes(wrapped.parameters())
        trainable = _bytes(p for p in wrapped.parameters() if p.requires_grad)
        return TrainingMemory(
            weights_bytes=weights, gradient_bytes=trainable, state_bytes=2 * trainable, adamw_state_bytes=2 * trainable
        )

    # ---- words and storage -------------------------------------------------------------------

    def summary(self) -> str:
        """The adapter in words, e.g. ``"LoRA rank 8 (alpha 16) on q_proj, v_proj, AdamW lr 0.001"``."""
        alpha = self.alpha if self.alpha is not None else 2 * self.rank
        targets = ", ".join(self.target_modules) if self.target_modules else "peft's default modules"
        return f"LoRA rank {self.rank} (alpha {alpha:g}) on {targets}, AdamW lr {self.lr:g}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe settings with ``"method": "lora"`` (what a trial stores instead of a split)."""
        data = asdict(self)
        data["betas"] = list(self.betas)
        data["target_modules"] = list(self.target_modules) if self.target_modules is not None else None
        return {"method": LORA_METHOD, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoraSpec:
        """Inverse of :meth:`to_dict`; an unknown key is a ``ValueError`` naming it."""
        fields = {key: value for key, value in data.items() if key != "method"}
        if data.get("method", LORA_METHOD) != LORA_METHOD:
            raise ValueError(f"not a LoRA method: method {data.get('method')!r}; expected {LORA_METHOD!r}")
        check_known_keys(fields, sorted(cls.__dataclass_fields__), what="LoRA setting")
        if fields.get("target_modules") is not None:
            fields["target_modules"] = tuple(fields["target_modules"])
        return cls(**fields)


def peft_available() -> bool:
    """Whether ``peft`` can be imported (LoRA runs need it: ``pip install peft``)."""
    try:
        import peft  # noqa: F401
    except ImportError:
        return False
    return True


def _import_peft():  # -> the peft module
    try:
        import peft
    except ImportError as error:
        raise ValueError("LoRA runs need the peft package: pip install peft (the optional 'lora' extra)") from error
    return peft


def _is_sequence_classifier(model: nn.Module) -> bool:
    return type(model).__name__.endswith("ForSequenceClassification")


def _is_peft_model(model: nn.Module) -> bool:
    return type(model).__module__.startswith("peft.")


def _bytes(tensors: Any) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)
