"""``frugal-search memory``: the table and totals for a split on a meta model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from frugal_search.cli import memory_cmd
from frugal_search.partition import Partition, paper_llama_config


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    memory_cmd.add_parser(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.handler(args)


def test_memory_of_a_split_file_on_the_1b_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(paper_llama_config("llama-1b")))
    split = Partition.paper(0.25).to_json(tmp_path / "split.json")
    assert _run(["memory", str(split), "--model-config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "LlamaForCausalLM" in out
    assert "attention, mlp" in out and "embedding, norm, head" in out
    # FRUGAL.md: 1B fp32 AdamW 9.977 GiB, FRUGAL rho 0.25 3.227 GiB
    assert "optimizer state 3.227 GiB vs AdamW 9.977 GiB (32.3% of AdamW)" in out
    assert "MiB" in out


def test_memory_of_a_baseline_by_name_in_bf16(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["memory", "paper-rho0", "--model", "llama-60m", "--dtype", "bfloat16"]) == 0  # an alias
    out = capsys.readouterr().out
    assert "optimizer state 0.122 GiB vs AdamW 0.216 GiB" in out  # half of the fp32 0.244 / 0.433


def test_bad_inputs_exit_2_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["memory", "nosuch", "--model", "llama-60m"]) == 2
    err = capsys.readouterr().err
    assert "neither a split config file nor a baseline (adamw, frugal, frugal-rho0, galore, badam, frugal-finetune, galore-rank8, galore-8bit, paper, paper-rho0, paper-finetune)" in err
    assert _run(["memory", "adamw", "--model", str(tmp_path / "missing.json")]) == 2
    assert "cannot read model config" in capsys.readouterr().err


def test_memory_command_is_registered_in_the_cli() -> None:
    from frugal_search.cli import _COMMANDS

    assert _COMMANDS["memory"] == "frugal_search.cli.memory_cmd"
