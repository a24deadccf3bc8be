"""``--world-size`` / ``training_memory(world_size=N)``: one GPU's share under FSDP2."""

from __future__ import annotations

import argparse

import pytest

from frugal_search.cli import memory_cmd
from frugal_search.partition import Partition, build_meta_model
from frugal_search.units import GIB


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    memory_cmd.add_parser(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.handler(args)


def test_7b_on_8_gpus_is_an_eighth_of_every_figure():
    # every dim 0 of LLaMA-7B (4096, 11008, 32000) divides by 8 and blocks keeps no basis:
    # each GPU holds exactly an eighth of weights, gradients and state
    model = build_meta_model("llama-7b")
    partition = Partition.paper(0.25)
    whole = partition.training_memory(model)
    share = partition.training_memory(model, world_size=8)
    assert 8 * share.state_bytes == whole.state_bytes
    assert 8 * share.weights_bytes == whole.weights_bytes and 8 * share.gradient_bytes == whole.gradient_bytes
    assert whole.state_bytes / GIB == pytest.approx(14.0, abs=0.05)  # FRUGAL.md: 7B, rho 0.25


def test_an_uneven_split_counts_rank_0_the_largest_shard():
    model = build_meta_model("llama-60m")  # ffn 1376 = 3 * 458 + 2: rank 0 holds 459 rows of 3
    partition = Partition.paper(0.0)
    share = partition.training_memory(model, world_size=3)
    expected = sum(p.numel() // p.shape[0] * -(-p.shape[0] // 3) * 4 for p in model.parameters())
    assert share.weights_bytes == expected


def test_cli_prints_the_per_gpu_share(capsys: pytest.CaptureFixture[str]):
    assert _run(["memory", "frugal", "--model", "llama-7b", "--world-size", "8"]) == 0
    out = capsys.readouterr().out
    assert "per GPU of 8 under FSDP2" in out
    assert _run(["memory", "frugal", "--model", "llama-7b", "--world-size", "0"]) == 2
    assert "--world-size 0" in capsys.readouterr().err
