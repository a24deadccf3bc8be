"""Training memory of fine-tuning methods: the planned count equals what the run holds, LoRA included."""

from __future__ import annotations

import pytest
import torch

from frugal_search.partition import Partition, Rule
from frugal_search.proxy import LoraSpec, ModelSpec, ProxyBudget, build_model, peft_available, run_proxy, training_memory

SMALL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
MODEL = ModelSpec("tiny-llama", overrides=SMALL)
BUDGET = ProxyBudget(steps=3, batch_size=4, seq_len=32, eval_every=3, eval_batches=1, log_every=1)
NEEDS_PEFT = pytest.mark.skipif(not peft_available(), reason="LoRA needs peft: pip install peft")

# the paper's fine-tuning setting (columns, T 500, state-free lr x 0.1) with the embedding frozen
FINETUNE = Partition(
    (Rule("frozen", kinds=["embedding"]), Rule("frugal", kinds=["attention", "mlp"]), Rule("stateful")),
    mode="columns",
    density=0.25,
    update_gap=500,
    state_free_lr_scale=0.1,
)


def _as_measured(planned) -> dict[str, int]:  # a TrainingMemory in the keys of ProxyResult.training_memory
    figures = {name: getattr(planned, name) for name in ("weights_bytes", "gradient_bytes", "state_bytes")}
    return {**figures, "total_bytes": planned.total_bytes}


def test_a_frugal_partition_with_frozen_weights_holds_what_its_count_says() -> None:
    net = build_model(MODEL, num_labels=12)
    planned = training_memory(FINETUNE, net)
    result = run_proxy(MODEL, "stdlib-packages", FINETUNE, BUDGET)
    assert result.training_memory == _as_measured(planned)
    assert result.state_bytes == FINETUNE.state_bytes(net)  # optimizer_state_bytes of the real FRUGAL
    # the frozen token embedding (256 x 32 fp32) has no gradient in the run
    parameter_bytes = 4 * sum(p.numel() for p in net.parameters())
    assert result.training_memory["weights_bytes"] == parameter_bytes
    assert result.training_memory["gradient_bytes"] == parameter_bytes - 4 * 256 * 32


@NEEDS_PEFT
def test_lora_memory_matches_a_hand_count_and_the_run() -> None:
    rank, hidden, layers, classes = 4, 32, 2, 12
    lora = LoraSpec(rank=rank)
    net = build_model(MODEL, num_labels=classes)
    base_bytes = 4 * sum(p.numel() for p in net.parameters())
    # q_proj and v_proj of every layer get A (r x h) and B (h x r); the head (classes x h) is trained in a copy
    adapters = layers * 2 * (rank * hidden + hidden * rank)
    trainable_bytes = 4 * (adapters + classes * hidden)
    planned = lora.training_memory(net)
    assert planned.weights_bytes == base_bytes + trainable_bytes
    assert planned.gradient_bytes == trainable_bytes
    assert planned.state_bytes == 2 * trainable_bytes  # AdamW exp_avg + exp_avg_sq, fp32
    assert all(p.requires_grad for p in net.parameters())  # the count wrapped a copy, not the caller's model
    result = run_proxy(MODEL, "stdlib-packages", lora, BUDGET)
    assert result.details["optimizer"] == "AdamW"
    assert result.state_bytes == planned.state_bytes  # optimizer_state_bytes of the real AdamW
    assert result.training_memory == _as_measured(planned)
    assert not result.diverged and result.accuracy is not None


@NEEDS_PEFT
def test_lora_trains_only_the_adapters_and_the_head() -> None:
    lora = LoraSpec(rank=2, target_modules=("q_proj", "k_proj", "v_proj", "o_proj"))
    wrapped = lora.prepare_model(build_model(MODEL, num_labels=3))
    names = [name for name, p in wrapped.named_parameters() if p.requires_grad]
    assert names and all("lora_" in name or "score" in name for name in names)
    assert sum("lora_A" in name for name in names) == 2 * 4
    # a causal LM gets adapters too, and no head copy
    causal = LoraSpec(rank=2).prepare_model(build_model(MODEL))
    assert all("lora_" in name for name, p in causal.named_parameters() if p.requires_grad)
    # and the adapter starts as the identity (B = 0): the wrapped model computes what the base did
    ids = torch.randint(1, 256, (2, 8), generator=torch.Generator().manual_seed(0))
    base = build_model(MODEL, seed=5)
    expected = base(input_ids=ids).logits
    torch.testing.assert_close(LoraSpec(rank=2).prepare_model(base)(input_ids=ids).logits, expected)


def test_lora_settings_round_trip_and_bad_values() -> None:
    spec = LoraSpec(rank=8, alpha=32, target_modules=("q_proj", "v_proj"), lr=2e-3)
    assert LoraSpec.from_dict(spec.to_dict()) == spec
    assert spec.to_dict()["method"] == "lora"
    assert "LoRA rank 8 (alpha 32) on q_proj, v_proj" in spec.summary()
    with pytest.raises(ValueError, match="rank must be a positive integer, got 0"):
        LoraSpec(rank=0)
    with pytest.raises(ValueError, match=r"write \('q_proj',\)"):
        LoraSpec(target_modules="q_proj")
    with pytest.raises(ValueError, match=r"unknown LoRA setting 'ranks'"):
        LoraSpec.from_dict({"method": "lora", "ranks": 4})
    with pytest.raises(TypeError, match="Partition, a baseline name or a LoraSpec"):
        training_memory(object(), build_model(MODEL))
