"""The training recipe's config and flags (the runs themselves are in tests/distributed)."""

from __future__ import annotations

import pytest

from frugal_search.train import TrainConfig, latest_checkpoint
from frugal_search.train.__main__ import main, parse_args


def test_flags_are_the_config_fields():
    config = parse_args(["--split", "s.json", "--parallel", "ddp", "--steps", "7", "--stop-at", "3", "--lr", "0.01"])
    assert config == TrainConfig(split="s.json", parallel="ddp", steps=7, stop_at=3, lr=0.01)


@pytest.mark.parametrize(
    ("flags", "words"),
    [(["--parallel", "tp"], "parallel='tp'"), (["--steps", "0"], "steps=0"), (["--steps", "4", "--stop-at", "5"], "stop_at=5")],
)
def test_bad_flags_fail_in_words(flags, words, capsys):
    assert main(flags) == 2
    assert words in capsys.readouterr().err


def test_latest_checkpoint_is_the_largest_finished_step(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    for step, finished in ((2, True), (10, True), (12, False)):
        (tmp_path / f"step_{step:06d}").mkdir()
        if finished:
            (tmp_path / f"step_{step:06d}" / ".metadata").write_text("")
    assert latest_checkpoint(tmp_path).name == "step_000010"
