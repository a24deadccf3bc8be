"""Model specs: presets, HF config files and directories, factories, and the loss adapter."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from frugal_search.proxy import PRESETS, ModelSpec, build_model, causal_lm_loss

SMALL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}


def _llama_parameter_count(vocab: int, hidden: int, ffn: int, layers: int) -> int:
    # untied embedding and head; per layer q, k, v, o (h x h), gate, up, down (h x f), two RMSNorms
    per_layer = 4 * hidden * hidden + 3 * hidden * ffn + 2 * hidden
    return 2 * vocab * hidden + layers * per_layer + hidden


def test_tiny_llama_preset_has_the_documented_shape() -> None:
    model = build_model("tiny-llama")
    assert sum(p.numel() for p in model.parameters()) == _llama_parameter_count(256, 128, 344, 4)
    assert model.config.tie_word_embeddings is False
    assert all(p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.parametrize("name", ["llama-60m", "llama-130m", "llama-350m", "llama-1b"])
def test_paper_presets_match_the_paper_table(name: str) -> None:
    # FRUGAL.md's table of paper shapes: hidden, ffn, layers, heads
    table = {
        "llama-60m": (512, 1376, 8, 8),
        "llama-130m": (768, 2048, 12, 12),
        "llama-350m": (1024, 2736, 24, 16),
        "llama-1b": (2048, 5461, 24, 32),
    }
    hidden, ffn, layers, heads = table[name]
    assert PRESETS[name] == {
        "vocab_size": 32000, "hidden_size": hidden, "intermediate_size": ffn, "num_hidden_layers": layers, "num_attention_heads": heads
    }


def test_same_seed_same_weights_and_global_rng_untouched() -> None:
    spec = ModelSpec("tiny-llama", overrides=SMALL)
    torch.manual_seed(7)
    before = torch.rand(3)
    torch.manual_seed(7)
    a, b, c = build_model(spec, seed=1), build_model(spec, seed=1), build_model(spec, seed=2)
    assert torch.equal(torch.rand(3), before)
    weights = lambda m: torch.cat([p.flatten() for p in m.parameters()])
    assert torch.equal(weights(a), weights(b))
    assert not torch.equal(weights(a), weights(c))


def test_config_file_and_model_directory(tmp_path: Path) -> None:
    source = build_model(ModelSpec("tiny-llama", overrides=SMALL), seed=3)
    source.save_pretrained(tmp_path / "saved")
    loaded = build_model(str(tmp_path / "saved"), seed=99)  # pretrained weights: the seed is irrelevant
    for (name, p), (_, q) in zip(source.named_parameters(), loaded.named_parameters()):
        assert torch.equal(p, q), name
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    config["num_hidden_layers"] = 1
    (tmp_path / "one_layer.json").write_text(json.dumps(config))
    fresh = build_model(str(tmp_path / "one_layer.json"))
    assert fresh.config.num_hidden_layers == 1 and type(fresh).__name__ == "LlamaForCausalLM"


def test_factory_spec_is_imported_and_called(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "proxy_factory_mod.py").write_text(
        textwrap.dedent(
            """
            from torch import nn

            def make():
                return nn.Sequential(nn.Embedding(256, 8), nn.Linear(8, 256))
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "proxy_factory_mod", raising=False)
    model = build_model("proxy_factory_mod:make", seed=0)
    assert isinstance(model, nn.Sequential) and model[0].num_embeddings == 256
    with pytest.raises(ValueError, match="has no 'missing'"):
        build_model("proxy_factory_mod:missing")


def test_unknown_model_lists_the_forms() -> None:
    with pytest.raises(ValueError, match="tiny-llama"):
        build_model("llama-7b-please")


def test_loss_adapter_matches_hugging_face_labels_loss() -> None:
    model = build_model(ModelSpec("tiny-llama", overrides=SMALL))
    window = torch.randint(0, 256, (3, 17), generator=torch.Generator().manual_seed(0))
    # HF shifts labels itself over the whole window; causal attention makes the first 16
    # positions' logits identical to a forward over window[:, :-1]
    reference = model(input_ids=window, labels=window).loss
    ours = causal_lm_loss(model, window[:, :-1], window[:, 1:])
    torch.testing.assert_close(ours, reference)


def test_loss_adapter_accepts_logits_or_a_loss() -> None:
    logits_model = nn.Sequential(nn.Embedding(256, 8), nn.Linear(8, 256))
    inputs = torch.randint(0, 256, (2, 5))
    targets = torch.randint(0, 256, (2, 5))
    expected = nn.functional.cross_entropy(logits_model(inputs).reshape(-1, 256), targets.reshape(-1))
    torch.testing.assert_close(causal_lm_loss(logits_model, inputs, targets), expected)

    class LossModel(nn.Module):
        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            return input_ids.float().mean()

    assert causal_lm_loss(LossModel(), inputs, targets).item() == pytest.approx(inputs.float().mean().item())
