"""``frugal-search proxy`` in-process: the JSON keys, split files, bad input."""

from __future__ import annotations

import json

import pytest

from frugal_search.cli import main
from frugal_search.partition import Partition

SMALL_RUN = ["--steps", "4", "--batch-size", "2", "--seq-len", "16", "--eval-every", "2", "--eval-batches", "1"]


def test_json_output_has_the_documented_keys(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["proxy", "--baseline", "paper", *SMALL_RUN, "--seed", "1", "--device", "cpu", "--json"])
    assert status == 0
    captured = capsys.readouterr()
    payload = json.loads(captured.out)  # exactly one JSON object on stdout
    for key in ("eval_loss", "eval_curve", "state_bytes", "peak_memory_bytes", "tokens_per_s", "wall_s", "diverged", "reason"):
        assert key in payload, key
    assert [step for step, _ in payload["eval_curve"]] == [0, 2, 4]
    assert payload["peak_memory_bytes"] is None and payload["seed"] == 1 and payload["steps"] == 4
    assert "step/s" not in captured.err  # no progress bar with --json


def test_split_file_and_human_summary(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    path = Partition.paper(0.0).to_json(tmp_path / "rho0.json")
    assert main(["proxy", "--split", str(path), *SMALL_RUN, "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "eval loss" in out and "optimizer state" in out and "completed" in out


def test_bad_baseline_is_an_error_status(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["proxy", "--baseline", "sgd", *SMALL_RUN, "--json"]) == 2
    assert "unknown baseline 'sgd'" in capsys.readouterr().err


def test_split_or_baseline_is_required() -> None:
    with pytest.raises(SystemExit):
        main(["proxy", *SMALL_RUN])


def test_a_method_baseline_runs_at_its_own_lr_and_an_unknown_name_lists_the_methods(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["proxy", "--baseline", "muon", *SMALL_RUN, "--lr", "0.01", "--device", "cpu", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["steps"] == 4 and payload["state_bytes"] > 0 and payload["details"]["optimizer"] == "MuonWithAdamW"
    # the lr went to the spec (Muon's AdamW groups keep their ratio), not into the budget over every group
    assert payload["details"]["budget"]["lr"] is None
    assert main(["proxy", "--baseline", "lion", *SMALL_RUN]) == 2
    assert "methods: lora, apollo, apollo-mini, adam-mini, muon, adamw-8bit" in capsys.readouterr().err
