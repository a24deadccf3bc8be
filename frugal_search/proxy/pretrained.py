"""A pretrained starting point for fine-tuning demos: tiny-llama pre-trained once on the built-in corpus.

``pretrained_tiny_llama()`` returns a local model directory (``config.json`` and
``model.safetensors``) holding tiny-llama after a short, seeded AdamW pre-training on the
built-in ``stdlib`` corpus (a ``run_proxy`` run; a few minutes on a laptop CPU). It is built
once and cached under ``$FRUGAL_SEARCH_CACHE``, else ``$XDG_CACHE_HOME/frugal-search``, else
``~/.cache/frugal-search``; it is rebuilt when the directory is missing, lacks its weights, or
its recorded fingerprint (the recipe and the corpus fingerprint) differs from the wanted one. A
file lock makes concurrent workers build it once.

The directory is an ordinary checkpoint: ``build_model(dir)`` loads the causal LM, and
``build_model(dir, num_labels=K)`` a sequence classifier whose backbone is these weights and
whose head is new. In study files and ``run_proxy`` the name ``tiny-llama-stdlib`` stands for it
once :func:`resolve_pretrained` has mapped it to the directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from frugal_search.partition import Partition
from frugal_search.proxy.budget import ProxyBudget
from frugal_search.proxy.data import DataSpec, build_data
from frugal_search.proxy.loop import run_proxy
from frugal_search.proxy.models import ModelLike, ModelSpec, has_weights

logger = logging.getLogger(__name__)

PRETRAINED_TINY_LLAMA = "tiny-llama-stdlib"
CACHE_ENV = "FRUGAL_SEARCH_CACHE"
_RECORD_FILE = "frugal-pretrain.json"
_RECORD_FORMAT = "frugal-pretrain/1"


@dataclass(frozen=True)
class PretrainRecipe:
    """How the cached model is pre-trained; every field enters its fingerprint."""

    preset: str = "tiny-llama"
    overrides: Mapping[str, Any] = field(default_factory=dict)  # preset config fields to change
    data: str = "stdlib"  # data source of the pre-training (DataSpec source)
    steps: int = 300
    batch_size: int = 8
    seq_len: int = 128
    lr: float = 3e-3
    seed: int = 0

    def __hash__(self) -> int:  # overrides is a dict: hash its sorted items
        return hash((self.preset, tuple(sorted(self.overrides.items())), self.data, self.steps, self.lr, self.seed))

    def budget(self) -> ProxyBudget:
        """The proxy budget of the pre-training run."""
        return ProxyBudget(
            steps=self.steps,
            batch_size=self.batch_size,
            seq_len=self.seq_len,
            lr=self.lr,
            eval_every=max(1, self.steps // 3),
        )


DEFAULT_RECIPE = PretrainRecipe()


def cache_directory() -> Path:
    """The cache folder of frugal-search (see the module docstring for the order of the variables)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "frugal-search"


def recipe_fingerprint(recipe: PretrainRecipe) -> str:
    """Hex digest of ``recipe`` and of the corpus it reads: equal digests mean an equal model."""
    corpus = build_data(DataSpec(recipe.data)).fingerprint
    fields = {**asdict(recipe), "overrides": dict(sorted(recipe.overrides.items())), "corpus": corpus}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def pretrained_tiny_llama(
    recipe: PretrainRecipe = DEFAULT_RECIPE, *, cache_dir: str | Path | None = None, device: str = "cpu"
) -> Path:
    """Return the directory of the pre-trained model of ``recipe``, building it when needed.

    Raises:
        RuntimeError: the pre-training diverged (it does not with the default recipe).
    """
    root = Path(cache_dir).expanduser() if cache_dir is not None else cache_directory()
    name = PRETRAINED_TINY_LLAMA  # one directory: another recipe replaces the model there
    target = root / name
    fingerprint = recipe_fingerprint(recipe)
    if _is_current(target, fingerprint):
        return target
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f"{name}.lock"):
        if _is_current(target, fingerprint):  # another worker built it while this one waited
            return target
        logger.info(
            "pre-training %s on %s for %d steps (once; cached in %s)", recipe.preset, recipe.data, recipe.steps, target
        )
        staging = root / f"{name}.building-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        record = _pretrain(recipe, staging, device=device)
        record["fingerprint"] = fingerprint
        (staging / _RECORD_FILE).write_text(json.dumps(record, indent=1))
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return target


def resolve_pretrained(model: ModelLike, *, cache_dir: str | Path | None = None) -> ModelLike:
    """Return ``model`` with the name ``tiny-llama-stdlib`` replaced by its cached directory.

    Other models are returned as they are. Call it before ``run_proxy`` / ``build_model`` where
    a user may name the pretrained demo model.
    """
    source = model.source if isinstance(model, ModelSpec) else model if isinstance(model, str) else None
    if source != PRETRAINED_TINY_LLAMA:
        return model
    if isinstance(model, ModelSpec) and model.overrides:
        raise ValueError(
            f"overrides cannot change the pretrained {PRETRAINED_TINY_LLAMA!r}; use the preset 'tiny-llama' with "
            "overrides (fresh weights) or pre-train your own with pretrained_tiny_llama(PretrainRecipe(...))"
        )
    return ModelSpec(str(pretrained_tiny_llama(cache_dir=cache_dir)))


def _is_current(directory: Path, fingerprint: str) -> bool:
    try:
        record = json.loads((directory / _RECORD_FILE).read_text())
    except (OSError, ValueError):
        return False
    return record.get("fingerprint") == fingerprint and has_weights(directory)


def _pretrain(recipe: PretrainRecipe, directory: Path, *, device: str) -> dict[str, Any]:
    trained: list[nn.Module] = []

    def adamw_keeping_the_model(model: nn.Module):  # -> FRUGAL; run_proxy trains this very module
        trained.append(model)
        return Partition.adamw(lr=recipe.lr).build_optimizer(model)

    result = run_proxy(
        ModelSpec(recipe.preset, overrides=dict(recipe.overrides)),
        DataSpec(recipe.data),
        adamw_keeping_the_model,
        recipe.budget(),
        device=device,
        seed=recipe.seed,
    )
    if result.diverged:
        raise RuntimeError(f"pre-training {recipe.preset} diverged ({result.reason}); lower the recipe's lr")
    trained[0].cpu().save_pretrained(directory)
    logger.info("pre-trained %s: eval loss %.3f -> %.3f", recipe.preset, result.first_eval_loss, result.eval_loss)
    return {"format": _RECORD_FORMAT, "recipe": asdict(recipe), "eval_curve": result.eval_curve}


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, the last builder's rename wins
        yield
        return
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
