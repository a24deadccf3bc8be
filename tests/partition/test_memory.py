"""Exact memory: the computed peak state equals the state measured while training, every mode."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from frugal_search.optimizer import optimizer_state_bytes
from frugal_search.partition import Partition, Rule, build_meta_model, paper_llama_config

from .conftest import tiny_llama

SPLIT = ["attention", "mlp"]

# name -> (partition, model intermediate size). intermediate 64 makes the mlp tensors twice the
# attention ones, so a blocks window's bytes depend on where it is; "random" order's computed
# peak is the worst draw, which only equals every draw when all tensors are the same size.
CASES = {
    "adamw": (Partition.adamw(), 64),
    "blocks-descending": (Partition.paper(0.25, update_gap=1), 64),
    "blocks-ascending": (Partition.paper(0.3, update_gap=1, block_order="ascending"), 64),
    "blocks-mirror": (Partition.paper(0.3, update_gap=1, block_order="mirror"), 64),
    "blocks-random": (Partition.paper(0.25, update_gap=1, block_order="random"), 32),
    "blocks-rho0": (Partition.paper(0.0, update_gap=1), 64),
    "svd": (Partition.paper(0.25, mode="svd", update_gap=2), 64),
    "svd-rank-no-reset": (Partition.galore(rank=3, update_gap=2), 64),
    "random": (Partition.paper(0.25, mode="random", update_gap=2), 64),
    "randperm": (Partition.paper(0.5, mode="randperm", update_gap=2), 64),
    "columns": (Partition.paper(0.25, mode="columns", update_gap=2), 64),
    "rows": (Partition.paper(0.25, mode="rows", update_gap=2), 64),
    "randk": (Partition.paper(0.1, mode="randk", update_gap=2), 64),
    "lion-svd": (Partition.paper(0.25, mode="svd", update_gap=2, stateful_rule="lion"), 64),
    "sgdm-blocks-rule": (
        Partition([Rule("frugal", kinds=SPLIT, stateful_rule="sgdm"), Rule("stateful")], update_gap=1), 64
    ),
    "mixed-roles": (
        Partition(
            [
                Rule("frugal", kinds="attention", density=0.5),
                Rule("frugal", kinds="mlp", mode="columns", density=0.25),
                Rule("state_free", kinds="norm"),
                Rule("frozen", kinds="embedding"),
                Rule("stateful"),
            ],
            update_gap=1,
        ),
        64,
    ),
}


def _measured_peak(partition: Partition, model: nn.Module, steps: int) -> int:
    optimizer = partition.build_optimizer(model)
    tokens = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(0))
    peak = 0
    for _ in range(steps):
        optimizer.zero_grad()
        model(input_ids=tokens, labels=tokens).loss.backward()
        optimizer.step()
        peak = max(peak, optimizer_state_bytes(optimizer))
    return peak


@pytest.mark.parametrize("case", sorted(CASES))
def test_state_bytes_equals_the_measured_peak_over_a_full_cycle(case: str) -> None:
    partition, intermediate = CASES[case]
    model = tiny_llama(intermediate_size=intermediate)
    # blocks: 14 split tensors, windows of k=4 move by 4 each period (T=1), so the positions repeat
    # after lcm(14, 4) / 4 = 7 periods (mirror: 2 of a front half of 7, also 7); others: 2.5 periods
    steps = 7 if partition.settings.mode == "blocks" else 5
    computed = partition.state_bytes(model)
    assert computed == _measured_peak(partition, model, steps)


def test_adamw_state_is_two_fp32_moments_per_parameter(llama: nn.Module) -> None:
    n = sum(p.numel() for p in llama.parameters())
    assert Partition.adamw().state_bytes(llama) == 2 * 4 * n
    assert Partition.adamw().state_bytes(llama, param_dtype=torch.bfloat16) == 2 * 2 * n


@pytest.mark.parametrize("rule", ["lion", "sgdm"])
def test_one_moment_rules_keep_one_fp32_moment_per_parameter(llama: nn.Module, rule: str) -> None:
    n = sum(p.numel() for p in llama.parameters())
    partition = Partition.adamw(stateful_rule=rule)
    assert partition.state_bytes(llama) == 4 * n
    assert "stateful with " in partition.summary()


def test_state_bytes_on_meta_equals_state_bytes_on_the_real_model() -> None:
    real = tiny_llama()
    with torch.device("meta"):
        meta = tiny_llama()
    for partition in (Partition.paper(), Partition.galore(), Partition.paper(0.5, mode="randk")):
        assert partition.state_bytes(meta) == partition.state_bytes(real)


# The paper's table (FRUGAL.md), optimizer state in GiB, fp32: AdamW / FRUGAL rho 0.25 / rho 0.
PAPER_GIB = {"llama-60m": (0.433, 0.291, 0.244), "llama-1b": (9.977, 3.227, 0.977)}


@pytest.mark.parametrize("size", sorted(PAPER_GIB))
def test_paper_llama_state_memory_on_meta(size: str) -> None:
    model = build_meta_model(size)
    assert next(model.parameters()).device.type == "meta"
    got = tuple(
        round(p.state_bytes(model) / 2**30, 3) for p in (Partition.adamw(), Partition.paper(0.25), Partition.paper(0.0))
    )
    assert got == PAPER_GIB[size]


def test_seven_billion_config_builds_on_meta_without_weights() -> None:
    model = build_meta_model(paper_llama_config("llama-7b"))  # 27 GB of fp32 weights if they were real
    assert all(p.device.type == "meta" for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) == 6_738_415_616
    assert round(Partition.paper(0.0).state_bytes(model) / 2**30, 2) == 1.96  # FRUGAL.md: 7B rho 0 = 1.96 GiB


def test_training_memory_adds_weights_gradients_and_state(llama: nn.Module) -> None:
    n = sum(p.numel() for p in llama.parameters())
    embed = llama.model.embed_tokens.weight.numel()
    partition = Partition([Rule("frozen", kinds="embedding"), Rule("frugal", kinds=SPLIT), Rule("stateful")])
    memory = partition.training_memory(llama, param_dtype=torch.bfloat16)
    assert memory.weights_bytes == 2 * n
    assert memory.gradient_bytes == 2 * (n - embed)  # frozen parameters get no gradient
    assert memory.state_bytes == partition.state_bytes(llama, param_dtype=torch.bfloat16)
    assert memory.adamw_state_bytes == 2 * 2 * n
    assert memory.total_bytes == memory.weights_bytes + memory.gradient_bytes + memory.state_bytes


def test_describe_table(llama: nn.Module) -> None:
    partition = Partition([Rule("frugal", kinds=SPLIT), Rule("state_free", kinds="other"), Rule("stateful")])
    table = partition.describe(llama)
    assert list(table.columns) == [
        "rule",
        "role",
        "kinds",
        "selection",
        "settings",
        "tensors",
        "parameters",
        "state_bytes",
    ]
    assert list(table["role"]) == ["frugal", "state_free", "stateful"]
    assert list(table["kinds"]) == ["attention, mlp", "", "embedding, norm, head"]
    assert list(table["tensors"]) == [14, 0, 7]
    assert table["parameters"].sum() == sum(p.numel() for p in llama.parameters())
    assert table["state_bytes"].sum() == partition.state_bytes(llama)
    stateful = table.iloc[2]
    assert stateful["state_bytes"] == 8 * stateful["parameters"]
