"""Models for proxy runs: built-in LLaMA presets, Hugging Face configs and directories, factories.

Every model is built from a config or a factory, never downloaded. Weights are initialised from
the run's seed inside a forked RNG, so the same seed gives the same initial weights and the
caller's global RNG is left untouched.
"""

from __future__ import annotations

import copy
import importlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)

# LLaMA shapes. tiny-llama is ours (about 0.86M parameters with the byte vocabulary, small enough
# for dozens of proxy runs on a laptop CPU); the others are the paper's pre-training shapes
# (FRUGAL arXiv 2411.07837, Table of model sizes; vocabulary 32000, untied head).
PRESETS: dict[str, dict[str, int]] = {
    "tiny-llama": {
        "vocab_size": 256, "hidden_size": 128, "intermediate_size": 344, "num_hidden_layers": 4, "num_attention_heads": 4
    },
    "llama-60m": {
        "vocab_size": 32000, "hidden_size": 512, "intermediate_size": 1376, "num_hidden_layers": 8, "num_attention_heads": 8
    },
    "llama-130m": {
        "vocab_size": 32000, "hidden_size": 768, "intermediate_size": 2048, "num_hidden_layers": 12, "num_attention_heads": 12
    },
    "llama-350m": {
        "vocab_size": 32000, "hidden_size": 1024, "intermediate_size": 2736, "num_hidden_layers": 24, "num_attention_heads": 16
    },
    "llama-1b": {
        "vocab_size": 32000, "hidden_size": 2048, "intermediate_size": 5461, "num_hidden_layers": 24, "num_attention_heads": 32
    },
}
# Rotary position embeddings do not limit the length; this only sizes HF's bookkeeping.
_PRESET_MAX_POSITIONS = 4096
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


@dataclass(frozen=True)
class ModelSpec:
    """Which model a proxy run trains; the model is built afresh for every run.

    ``source`` is one of:

    - a preset name: ``tiny-llama`` (about 0.86M parameters, byte vocabulary 256; the CPU default),
      ``llama-60m``, ``llama-130m``, ``llama-350m``, ``llama-1b`` (the paper's shapes, vocabulary
      32000, untied head);
    - a Hugging Face config file (``*.json`` with a ``model_type``): a causal LM built from it with
      fresh weights;
    - a local model directory: ``from_pretrained(dir, local_files_only=True)`` when it holds weights,
      otherwise a fresh model from its ``config.json``;
    - a factory ``"package.module:function"``: called with no arguments, it returns an ``nn.Module``
      whose ``forward(input_ids)`` returns the loss or the logits (or an object with ``.loss`` /
      ``.logits``).
    """

    source: str = "tiny-llama"
    # config fields to change, e.g. {"num_hidden_layers": 2}; presets and config files only
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def __hash__(self) -> int:  # overrides is a dict: hash its sorted items
        return hash((self.source, tuple(sorted((k, repr(v)) for k, v in self.overrides.items()))))

    def to_dict(self) -> dict[str, Any]:
        """The spec as a JSON-safe dict (``source``, ``overrides``), as trials store a target model."""
        return {"source": str(self.source), "overrides": dict(self.overrides)}


ModelLike = ModelSpec | str | nn.Module | Callable[[], nn.Module]


def build_model(model: ModelLike, *, seed: int = 0, num_labels: int | None = None) -> nn.Module:
    """Return a freshly built fp32 ``nn.Module`` on the CPU, its weights initialised from ``seed``.

    ``model`` may be a ``ModelSpec``, a string (read as ``ModelSpec(source)``), a zero-argument
    factory returning a module, or a built module (deep-copied, so the caller's weights are never
    trained; ``seed`` then does not change the weights).

    ``num_labels`` asks for a sequence classifier instead of a causal LM: presets, config files and
    model directories are built with ``AutoModelForSequenceClassification`` and that many classes
    (a directory's backbone weights are loaded, its head is new unless it already has
    ``num_labels`` outputs). A directory must then hold weights: fine-tuning from fresh weights is
    a mistake, so it is a ``ValueError``. Factories and modules are used as they are.
    """
    if isinstance(model, nn.Module):
        return copy.deepcopy(model)
    if isinstance(model, str):
        model = ModelSpec(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if isinstance(model, ModelSpec):
            built = _build_from_spec(model, num_labels)
        elif callable(model):
            built = model()
        else:
            raise TypeError(
                f"model must be a ModelSpec, a string, an nn.Module or a factory returning one; got "
                f"{type(model).__name__}"
            )
    if not isinstance(built, nn.Module):
        raise TypeError(f"the model factory returned {type(built).__name__}, not an nn.Module; return the module")
    return built.float()


def describe_model(model: ModelLike) -> str:
    """Return a short name for ``model`` (for logs and results)."""
    if isinstance(model, ModelSpec):
        return model.source
    if isinstance(model, str):
        return model
    if isinstance(model, nn.Module):
        return type(model).__name__
    return getattr(model, "__qualname__", type(model).__name__)


def _build_from_spec(spec: ModelSpec, num_labels: int | None) -> nn.Module:
    if num_labels is not None and (not isinstance(num_labels, int) or num_labels < 2):
        raise ValueError(f"num_labels must be an integer >= 2 (classes of the task), got {num_labels!r}")
    source = spec.source
    if source in PRESETS:
        return _build_preset(source, spec.overrides, num_labels)
    path = Path(source).expanduser()
    if path.is_dir():
        return _build_from_directory(path, spec.overrides, num_labels)
    if path.is_file():
        if path.suffix != ".json":
            raise ValueError(f"model file {source!r} is not a JSON config; give a Hugging Face config.json")
        return _build_from_config_file(path, spec.overrides, num_labels)
    if ":" in source:
        if spec.overrides:
            raise ValueError(f"overrides apply to presets and config files, not to the factory {source!r}")
        return _call_factory(source)
    raise ValueError(
        f"unknown model {source!r}: use a preset ({', '.join(PRESETS)}), a Hugging Face config.json, a "
        "local model directory, or a factory 'package.module:function'"
    )


def _auto_class(num_labels: int | None):  # -> a transformers auto-model class
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    return AutoModelForCausalLM if num_labels is None else AutoModelForSequenceClassification


def _build_preset(name: str, overrides: Mapping[str, Any], num_labels: int | None) -> nn.Module:
    from transformers import LlamaConfig

    fields: dict[str, Any] = {
        **PRESETS[name],
        "max_position_embeddings": _PRESET_MAX_POSITIONS,
        "tie_word_embeddings": False,
        **overrides,
    }
    # multi-head attention (as the paper) unless the overrides ask for grouped key/value heads
    fields.setdefault("num_key_value_heads", fields["num_attention_heads"])
    if num_labels is not None:
        fields["num_labels"] = num_labels
    return _auto_class(num_labels).from_config(LlamaConfig(**fields), dtype=torch.float32)


def _build_from_config_file(path: Path, overrides: Mapping[str, Any], num_labels: int | None) -> nn.Module:
    from transformers import AutoConfig

    try:
        fields = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"model config {str(path)!r} is not valid JSON: {error}") from error
    model_type = fields.pop("model_type", None) if isinstance(fields, dict) else None
    if not model_type:
        raise ValueError(
            f"model config {str(path)!r} has no 'model_type'; give a Hugging Face config.json (e.g. model_type 'llama')"
        )
    classes = {} if num_labels is None else {"num_labels": num_labels}
    config = AutoConfig.for_model(model_type, **{**fields, **overrides, **classes})
    return _auto_class(num_labels).from_config(config, dtype=torch.float32)


def _build_from_directory(path: Path, overrides: Mapping[str, Any], num_labels: int | None) -> nn.Module:
    if not has_weights(path):
        if num_labels is not None:
            raise ValueError(
                f"model directory {str(path)!r} has no weights ({', '.join(_WEIGHT_FILES)}): a fine-tuning starts from "
                "pretrained weights; save them there with model.save_pretrained(dir), or give its config.json to "
                "start from fresh weights"
            )
        if not (path / "config.json").is_file():
            raise ValueError(f"model directory {str(path)!r} has neither weights nor a config.json")
        logger.info("model directory %s has no weights: building fresh weights from its config.json", path)
        return _build_from_config_file(path / "config.json", overrides, None)
    if overrides:
        raise ValueError(f"overrides cannot change the pretrained model in {str(path)!r}; edit its config instead")
    if num_labels is None:
        return _auto_class(None).from_pretrained(str(path), local_files_only=True, dtype=torch.float32)
    # a classifier's head is new (or re-initialised when its class count differs), its backbone
    # loaded; transformers' table of the dropped LM head and the new head is expected, so quiet
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model = _auto_class(num_labels).from_pretrained(
            str(path), local_files_only=True, dtype=torch.float32, num_labels=num_labels, ignore_mismatched_sizes=True
        )
    finally:
        hf_logging.set_verbosity(verbosity)
    logger.info("loaded the backbone of %s with a new head of %d classes", path, num_labels)
    return model


def has_weights(directory: str | Path) -> bool:
    """Return whether a local model directory holds Hugging Face weight files."""
    path = Path(directory).expanduser()
    return any((path / name).exists() for name in _WEIGHT_FILES)


def _call_factory(source: str) -> nn.Module:
    module_name, _, function_name = source.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"cannot import the model factory module {module_name!r} of {source!r}: {error}") from error
    factory = getattr(module, function_name, None)
    if factory is None:
        raise ValueError(f"{module_name!r} has no {function_name!r}; the factory is 'package.module:function'")
    if not callable(factory):
        raise TypeError(f"{source!r} is a {type(factory).__name__}, not a callable returning an nn.Module")
    return factory()


def model_vocab_size(model: nn.Module) -> int | None:
    """Return the number of rows of the model's input embedding, or None when it cannot be found."""
    get_embeddings = getattr(model, "get_input_embeddings", None)
    embedding = get_embeddings() if callable(get_embeddings) else None
    if embedding is None:
        embedding = next((m for m in model.modules() if isinstance(m, nn.Embedding)), None)
    return embedding.num_embeddings if isinstance(embedding, nn.Embedding) else None


def causal_lm_loss(model: nn.Module, input_ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Return the mean next-token cross-entropy of ``model`` on one batch.

    ``input_ids`` and ``targets`` are (B, T); ``targets`` is ``input_ids`` shifted left by one
    token. A model that returns logits is scored on all T targets; a model that returns its own
    loss (a factory's choice) is trusted as it is.
    """
    if _is_hf_model(model):
        # use_cache=False: a training forward must not allocate the key/value cache
        output = model(input_ids=input_ids, use_cache=False)
    else:
        output = model(input_ids)
    loss = getattr(output, "loss", None)
    logits = getattr(output, "logits", None)
    if isinstance(output, torch.Tensor):
        if output.dim() == 0:
            loss = output
        else:
            logits = output
    elif isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        loss, logits = (output[0], None) if output[0].dim() == 0 else (None, output[0])
    if loss is not None:
        return loss.float()
    if logits is None or logits.dim() != 3:
        raise TypeError(
            f"the model's forward(input_ids) returned {type(output).__name__}; return the loss (a scalar), "
            "logits of shape (batch, seq, vocab), or an object with .loss or .logits"
        )
    # B, T, V = logits.shape; the loss in fp32 even under bf16 autocast
    return nn.functional.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


def _is_hf_model(model: nn.Module) -> bool:
    # transformers is imported only when the model could be one of its classes
    if not type(model).__module__.startswith("transformers."):
        return False
    from transformers import PreTrainedModel

    return isinstance(model, PreTrainedModel)
