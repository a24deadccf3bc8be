"""Distributed runs end cleanly: the training recipe (DDP and FSDP2) and the multi-process proxy
(FSDP2) on 2 CPU ranks, each launched a few times with a timeout, exit 0 every time; a rank killed
mid-step fails the run with the rank named and nothing hangs; a rank that dies after the proxy's
result was written leaves the result standing (the proxy's kill at step 2 is
tests/distributed/test_proxy_nproc.py's, through a search).

The large count (>= 50 runs) is ``python benchmarks/distributed_stress.py``; here ``REPEATS``
launches per case keep the suite short.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from frugal_search.proxy import (
    ModelSpec,
    ProxyBudget,
    run_proxy_multiprocess,
    torchrun_failure,
)
from frugal_search.proxy.distributed import KILL_AFTER_RESULT, KILL_MARKER_ENV, KILL_RANK_ENV
from frugal_search.train import TrainConfig
from frugal_search.train.__main__ import parse_args
from frugal_search.train.launch import config_flags, launch_training

REPEATS = 2  # launches per case; the benchmark repeats them 17 times
TIMEOUT_S = 150  # one launch: ~10 s on 2 idle cores; far past it is a hang
SMALL = {"num_hidden_layers": 2, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4}
PROXY_BUDGET = ProxyBudget(steps=4, batch_size=4, seq_len=16, eval_every=2, eval_batches=1)


def recipe(folder: Path, parallel: str, **changes) -> TrainConfig:
    """The issue's run: 6 steps, a checkpoint every 3, in a fresh folder."""
    values = {
        "split": "frugal", "model": "tiny-llama", "parallel": parallel, "steps": 6, "batch_size": 4,
        "seq_len": 32, "checkpoint_dir": str(folder / "ckpt"), "checkpoint_every": 3, "data_bytes": 2**20,
    }
    return TrainConfig(**{**values, **changes})


def test_the_launcher_passes_every_field_as_a_flag():
    config = TrainConfig(split="s.json", parallel="ddp", steps=7, stop_at=3, lr=0.01, checkpoint_dir="c")
    assert parse_args(config_flags(config)) == config
    with pytest.raises(ValueError, match=r"nproc=2 with parallel='none'"):
        launch_training(TrainConfig(parallel="none"), nproc=2, log_path="unused.log")


@pytest.mark.slow
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_the_training_recipe_exits_0_every_time(tmp_path, parallel):
    for run in range(REPEATS):
        folder = tmp_path / f"run{run}"
        folder.mkdir()
        log = folder / "torchrun.log"
        ended = launch_training(recipe(folder, parallel), nproc=2, log_path=log, timeout_s=TIMEOUT_S, cwd=folder)
        text = log.read_text()
        assert not ended.timed_out, f"run {run} hung:\n{text[-3000:]}"
        assert ended.returncode == 0, f"run {run} exited {ended.returncode}:\n{text[-3000:]}"
        assert text.count("done: steps 0..6") == 2  # both ranks finished
        assert "terminate called" not in text and "NOT been destroyed" not in text
        assert sorted(p.name for p in (folder / "ckpt").iterdir()) == ["step_000003", "step_000006"]


@pytest.mark.slow
def test_the_multiprocess_proxy_exits_0_every_time(caplog):
    caplog.set_level(logging.WARNING, logger="frugal_search.proxy.distributed")
    model = ModelSpec("tiny-llama", overrides=SMALL)
    for run in range(REPEATS):
        result = run_proxy_multiprocess(
            model, "stdlib", "frugal", PROXY_BUDGET, nproc=2, timeout_s=TIMEOUT_S, threads=1
        )
        assert result.steps == 4 and result.details["nproc"] == 2, run
    # a non-zero exit or a stall after the result would have been logged as a warning
    assert not [record.getMessage() for record in caplog.records], caplog.text


def _rank_pids(rank: int) -> list[int]:
    """Processes below this one (torchrun's ranks) whose environment says RANK=rank."""
    me, found = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            pid = int(entry.name)
            parent = pid
            for _ in range(4):  # rank -> torchrun -> this process
                parent = int((Path("/proc") / str(parent) / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if parent == me:
                    break
        except (OSError, ValueError, IndexError):
            continue
        if parent == me and f"RANK={rank}".encode() in environ and b"TORCHELASTIC_RUN_ID" in b" ".join(environ):
            found.append(pid)
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the rank through /proc (Linux)")
def test_a_training_rank_killed_mid_step_fails_the_run_naming_it(tmp_path):
    log = tmp_path / "torchrun.log"
    config = recipe(tmp_path, "ddp", steps=400, checkpoint_dir=None, log_every=1)
    with ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(launch_training, config, nproc=2, log_path=log, timeout_s=TIMEOUT_S, cwd=tmp_path)
        deadline = time.monotonic() + 120
        while "step 3 loss" not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
            assert not running.done(), log.read_text()[-3000:]
            time.sleep(0.1)
        victims = _rank_pids(1)
        assert len(victims) == 1, victims
        os.kill(victims[0], signal.SIGKILL)  # rank 1, somewhere inside a step
        killed_at = time.monotonic()
        ended = running.result()
    text = log.read_text()
    assert not ended.timed_out and ended.returncode != 0
    assert time.monotonic() - killed_at < 60, "the surviving rank took a minute to stop"
    assert torchrun_failure(text) == (1, -signal.SIGKILL), text[-3000:]
    assert "done:" not in text


@pytest.fixture
def kill_hook(tmp_path, monkeypatch):
    """Set the rank entry's test hook; it fires once (the marker file)."""

    def arm(value: str) -> Path:
        marker = tmp_path / "killed-once"
        monkeypatch.setenv(KILL_RANK_ENV, value)
        monkeypatch.setenv(KILL_MARKER_ENV, str(marker))
        return marker

    return arm


@pytest.mark.slow
def test_a_proxy_rank_that_aborts_after_the_result_keeps_the_result(kill_hook, caplog):
    marker = kill_hook(f"0:{KILL_AFTER_RESULT}")  # the reported failure: rank 0 aborts once the run is done
    caplog.set_level(logging.WARNING, logger="frugal_search.proxy.distributed")
    result = run_proxy_multiprocess(
        ModelSpec("tiny-llama", overrides=SMALL), "stdlib", "frugal", PROXY_BUDGET, nproc=2,
        timeout_s=TIMEOUT_S, threads=1,
    )
    assert marker.exists() and result.steps == 4
    [warning] = [record.getMessage() for record in caplog.records]
    assert "the result is kept" in warning and "rank 0 of 2 died (killed by signal 6" in warning, warning


def test_the_launch_stops_ranks_that_outlive_their_result(tmp_path):
    # A run whose output is complete but whose processes do not exit (the hang at exit) is stopped
    # exit_grace_s after the output appeared, not at the timeout.
    from frugal_search.proxy import run_torchrun

    script = tmp_path / "hangs.py"
    done = tmp_path / "done"
    script.write_text(
        "import os, sys, time\n"
        f"if os.environ['RANK'] == '0':\n    open({str(done)!r}, 'w').close()\n"
        "time.sleep(600)\n"
    )
    started = time.monotonic()
    ended = run_torchrun(
        [str(script)], nproc=2, log_path=tmp_path / "log", timeout_s=120, done=done.exists, exit_grace_s=1.0
    )
    assert ended.stalled and not ended.timed_out and ended.returncode != 0
    assert time.monotonic() - started < 60
    assert _rank_pids(0) == [] and _rank_pids(1) == []  # torchrun and its ranks were stopped together
