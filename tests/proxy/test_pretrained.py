"""The cached pretrained starting point: built once, rebuilt on a fingerprint change, loadable as a classifier."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from frugal_search.proxy import (
    PRETRAINED_TINY_LLAMA,
    ModelSpec,
    PretrainRecipe,
    ProxyBudget,
    build_model,
    cache_directory,
    pretrained_tiny_llama,
    resolve_pretrained,
    run_proxy,
)

SMALL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}


@pytest.fixture
def recipe(tmp_path: Path) -> PretrainRecipe:
    # a few steps on a small text folder, so building costs about a second
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(30):
        (corpus / f"doc{i:02d}.txt").write_text(f"def function_{i}(x):\n    return x * {i}\n" * 8)
    return PretrainRecipe(overrides=SMALL, data=str(corpus), steps=4, batch_size=2, seq_len=16)


def test_built_once_then_reused_and_rebuilt_when_the_recipe_changes(tmp_path: Path, recipe: PretrainRecipe) -> None:
    cache = tmp_path / "cache"
    directory = pretrained_tiny_llama(recipe, cache_dir=cache)
    assert directory == cache / PRETRAINED_TINY_LLAMA
    weights = directory / "model.safetensors"
    record = json.loads((directory / "frugal-pretrain.json").read_text())
    assert record["recipe"]["steps"] == 4 and record["eval_curve"][-1][1] < record["eval_curve"][0][1]
    built_at = weights.stat().st_mtime_ns
    assert pretrained_tiny_llama(recipe, cache_dir=cache) == directory
    assert weights.stat().st_mtime_ns == built_at  # reused, not rebuilt
    changed = PretrainRecipe(**{**recipe.__dict__, "steps": 5})
    pretrained_tiny_llama(changed, cache_dir=cache)
    assert json.loads((directory / "frugal-pretrain.json").read_text())["recipe"]["steps"] == 5
    # a damaged record (or missing weights) means a rebuild too
    weights.unlink()
    pretrained_tiny_llama(changed, cache_dir=cache)
    assert weights.is_file()
    assert not list(cache.glob("*.building-*"))  # no staging folder left behind


def test_the_backbone_transfers_to_a_classifier_with_a_new_head(tmp_path: Path, recipe: PretrainRecipe) -> None:
    directory = pretrained_tiny_llama(recipe, cache_dir=tmp_path)
    causal = build_model(str(directory))
    classifier = build_model(str(directory), num_labels=5, seed=1)
    backbone = dict(classifier.named_parameters())
    for name, weight in causal.named_parameters():
        if name.startswith("model."):
            assert torch.equal(backbone[name], weight), name
    assert backbone["score.weight"].shape == (5, 32) and "lm_head.weight" not in backbone
    # the pretraining moved the weights away from a fresh model's
    fresh = build_model(ModelSpec("tiny-llama", overrides=SMALL), seed=recipe.seed)
    assert not torch.equal(fresh.model.embed_tokens.weight, causal.model.embed_tokens.weight)
    # and a causal-lm proxy starts from those weights: its step-0 loss is the pre-training's last one
    budget = ProxyBudget(steps=1, batch_size=2, seq_len=16, eval_every=1)
    assert recipe.budget().eval_batches == budget.eval_batches and recipe.budget().batch_size == budget.batch_size
    result = run_proxy(str(directory), recipe.data, "adamw", budget)
    record = json.loads((directory / "frugal-pretrain.json").read_text())
    assert result.first_eval_loss == pytest.approx(record["eval_curve"][-1][1], rel=1e-5)


def test_cache_directory_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FRUGAL_SEARCH_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_directory() == tmp_path / "xdg" / "frugal-search"
    monkeypatch.setenv("FRUGAL_SEARCH_CACHE", str(tmp_path / "mine"))
    assert cache_directory() == tmp_path / "mine"


def test_resolve_pretrained_maps_only_its_name() -> None:
    assert resolve_pretrained("tiny-llama") == "tiny-llama"
    spec = ModelSpec("tiny-llama", overrides=SMALL)
    assert resolve_pretrained(spec) is spec
    with pytest.raises(ValueError, match="overrides cannot change the pretrained 'tiny-llama-stdlib'"):
        resolve_pretrained(ModelSpec(PRETRAINED_TINY_LLAMA, overrides={"num_hidden_layers": 2}))
