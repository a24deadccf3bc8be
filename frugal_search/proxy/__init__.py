"""Proxy runs: short, seeded training runs that score a partition (loss, memory, speed).

``run_proxy(model, data, partition, budget)`` builds the model and data, trains with the
partition's optimizer and returns a ``ProxyResult``. Models come from presets (``tiny-llama``,
``llama-60m`` ... ``llama-1b``), Hugging Face configs or directories, or factories; data from the
built-in Python-stdlib corpus, text files or token files.

Fine-tuning proxies: ``run_proxy(..., task="sequence-classification")`` trains a classifier on
labelled rows (``LabelledDataSpec``: the built-in ``stdlib-packages`` task or a CSV / JSONL /
Parquet file) and reports accuracy and macro-F1; ``pretrained_tiny_llama()`` gives a pretrained
starting point; a ``LoraSpec`` (through ``peft``) runs where a partition runs, and
``training_memory(method, model)`` gives the memory either holds.

Competitor optimizers (APOLLO, APOLLO-Mini, Adam-mini, Muon, 8-bit AdamW; each package an
optional extra): ``competitor_spec(name, lr=...)`` gives a ``CompetitorSpec`` that runs where a
partition runs, with its state planned from shapes and measured exactly (``COMPETITORS``,
``COMPETITOR_NAMES``, ``competitor_available``, ``competitor_state_bytes``).

Models that need several devices: ``run_proxy_multiprocess(..., nproc=N)`` runs the same proxy
under torchrun on N ranks with FSDP2 (``frugal_search.proxy.distributed``); a rank that dies raises
``RankFailedError``. ``init_process_group``, ``close_process_group``, ``shard_model`` and
``run_torchrun`` are its set-up, teardown and launch, shared with the training recipe.
"""

from frugal_search.proxy.budget import DEFAULT_STEPS, ProxyBudget, lr_factor
from frugal_search.proxy.classification import classification_scores
from frugal_search.proxy.competitors import (
    COMPETITOR_NAMES,
    COMPETITORS,
    Competitor,
    CompetitorSpec,
    MuonWithAdamW,
    competitor_available,
    competitor_spec,
    competitor_state_bytes,
    find_competitor,
)
from frugal_search.proxy.data import DataSpec, TokenData, build_data, check_data, is_validation_file
from frugal_search.proxy.distributed import (
    RankFailedError,
    TorchrunExit,
    close_process_group,
    init_process_group,
    run_proxy_multiprocess,
    run_torchrun,
    shard_model,
    torchrun_failure,
)
from frugal_search.proxy.labelled_data import (
    BUILTIN_TASK,
    LabelledData,
    LabelledDataSpec,
    LabelledRows,
    build_labelled_data,
    is_labelled_source,
)
from frugal_search.proxy.loop import parse_device, resolve_device, run_proxy
from frugal_search.proxy.lora import LORA_METHOD, LoraSpec, peft_available
from frugal_search.proxy.memory import training_memory
from frugal_search.proxy.methods import LORA_RANK, METHOD_NAMES, METHODS, Method, method_of, method_spec, spec_from_stored
from frugal_search.proxy.models import PRESETS, ModelSpec, build_model, causal_lm_loss, has_weights, model_vocab_size
from frugal_search.proxy.pretrained import (
    PRETRAINED_TINY_LLAMA,
    PretrainRecipe,
    cache_directory,
    pretrained_tiny_llama,
    resolve_pretrained,
)
from frugal_search.proxy.result import ProxyResult
from frugal_search.proxy.tasks import CAUSAL_LM, METRIC_DIRECTIONS, SEQUENCE_CLASSIFICATION, TASK_KINDS, TaskSpec

__all__ = [
    "BUILTIN_TASK",
    "CAUSAL_LM",
    "COMPETITORS",
    "COMPETITOR_NAMES",
    "DEFAULT_STEPS",
    "LORA_METHOD",
    "LORA_RANK",
    "METHODS",
    "METHOD_NAMES",
    "Method",
    "method_of",
    "method_spec",
    "spec_from_stored",
    "METRIC_DIRECTIONS",
    "PRESETS",
    "PRETRAINED_TINY_LLAMA",
    "SEQUENCE_CLASSIFICATION",
    "TASK_KINDS",
    "Competitor",
    "CompetitorSpec",
    "DataSpec",
    "LabelledData",
    "LabelledDataSpec",
    "LabelledRows",
    "LoraSpec",
    "ModelSpec",
    "MuonWithAdamW",
    "PretrainRecipe",
    "ProxyBudget",
    "ProxyResult",
    "RankFailedError",
    "TaskSpec",
    "TokenData",
    "TorchrunExit",
    "build_data",
    "build_labelled_data",
    "build_model",
    "cache_directory",
    "causal_lm_loss",
    "check_data",
    "classification_scores",
    "close_process_group",
    "competitor_available",
    "competitor_spec",
    "competitor_state_bytes",
    "find_competitor",
    "has_weights",
    "init_process_group",
    "is_labelled_source",
    "is_validation_file",
    "lr_factor",
    "model_vocab_size",
    "peft_available",
    "pretrained_tiny_llama",
    "parse_device",
    "resolve_device",
    "resolve_pretrained",
    "run_proxy",
    "run_proxy_multiprocess",
    "run_torchrun",
    "shard_model",
    "torchrun_failure",
    "training_memory",
]
