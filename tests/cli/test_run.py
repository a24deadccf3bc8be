"""``frugal-search run``: set-up mistakes are one line and exit 2 before the storage is touched;
lost workers are named; the storage URL printed is one Optuna's tools accept; the default picks
workers for the machine."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from frugal_search.cli import main
from frugal_search.search import SetupError, WorkersFailedError, load_study_config, printable_storage, run_search
from frugal_search.search.workers import WorkerExit, choose_parallelism

optuna.logging.set_verbosity(optuna.logging.WARNING)
SMALL_MODEL = "{ num_hidden_layers = 2, hidden_size = 32, intermediate_size = 64, num_attention_heads = 2 }"


def write_study(folder: Path, *, storage: str, model: str = "tiny-llama", data: str = "stdlib", trials: int = 2) -> Path:
    path = folder / "study.toml"
    path.write_text(
        "\n".join(
            [
                "[study]",
                'name = "setup"',
                f"trials = {trials}",
                "baselines = ['frugal']",
                "front_seeds = 0",
                f'storage = "{storage}"',
                "[search]",
                "confirm_seeds = 0",
                "[model]",
                f'source = "{model}"',
                f"overrides = {SMALL_MODEL}",
                "[data]",
                f'source = "{data}"',
                "[proxy]",
                "steps = 4",
                "batch_size = 2",
                "seq_len = 16",
                "eval_every = 2",
                "eval_batches = 1",
                "[space]",
                "density = [0.05, 0.5]",
            ]
        )
        + "\n"
    )
    return path


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture
def existing_storage(tmp_path: Path) -> tuple[Path, str]:
    """A SQLite storage holding one study with one trial, to check that a failed run leaves it as it was."""
    database = tmp_path / "existing.db"
    url = f"sqlite:///{database}"
    study = optuna.create_study(storage=url, study_name="setup", directions=["minimize", "minimize"])
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL))
    return database, url


def test_a_model_that_does_not_exist_fails_before_the_storage_is_created(tmp_path, capsys) -> None:
    database = tmp_path / "new.db"
    path = write_study(tmp_path, storage=f"sqlite:///{database}", model="no-such-model")
    assert main(["run", str(path), "--no-progress"]) == 2
    line = one_error_line(capsys)
    assert "[model] 'no-such-model' cannot be built" in line and "use a preset" in line
    assert not database.exists()  # no study, no WAITING baselines left behind


@pytest.mark.parametrize("kind", ["empty folder", "float32 .npy", "ids beyond the vocabulary"])
def test_bad_data_fails_in_one_line_and_the_storage_is_unchanged(tmp_path, capsys, existing_storage, kind) -> None:
    database, url = existing_storage
    if kind == "empty folder":
        (tmp_path / "empty").mkdir()
        source = tmp_path / "empty"
    elif kind == "float32 .npy":
        source = tmp_path / "float.npy"
        np.save(source, np.arange(1000, dtype=np.float32))
    else:
        source = tmp_path / "big_ids.npy"
        np.save(source, np.arange(1000, dtype=np.uint16))  # tiny-llama's vocabulary is 256 bytes
    before = (database.read_bytes(), database.stat().st_mtime_ns)
    assert main(["run", str(write_study(tmp_path, storage=url, data=str(source))), "--no-progress"]) == 2
    assert one_error_line(capsys).startswith("error: [data] ")
    assert (database.read_bytes(), database.stat().st_mtime_ns) == before
    trials = optuna.load_study(study_name="setup", storage=url).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL]


def test_a_storage_that_cannot_be_written_fails_before_anything_runs(tmp_path, capsys) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for storage in (f"sqlite:///{blocker}/x.db", f"{blocker}/x.log", f"sqlite:///{tmp_path}"):
        assert main(["run", str(write_study(tmp_path, storage=storage)), "--no-progress"]) == 2
        line = one_error_line(capsys)
        assert "the storage" in line and ("cannot be written" in line or "is a folder" in line)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "study.toml"]


@pytest.mark.services
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql+psycopg2://postgres@127.0.0.1:5432/no_such_db_{tag}", "createdb"),
        ("postgresql+psycopg2://postgres@127.0.0.1:1/test", "check that the database server runs"),
        ("postgresql+psycopg2://no_such_role_{tag}:secret@127.0.0.1:5432/test", "check the user name and password"),
    ],
    ids=["missing-database", "refused-connection", "bad-credentials"],
)
def test_postgresql_mistakes_are_one_line_naming_the_url(tmp_path, capsys, postgres_url, url, expected) -> None:
    url = url.format(tag=uuid.uuid4().hex[:8])
    assert main(["run", str(write_study(tmp_path, storage=url)), "--no-progress"]) == 2
    line = one_error_line(capsys)
    assert f"cannot open the storage {printable_storage(url)}" in line and expected in line
    assert "secret" not in line  # the password is hidden


def test_journal_storage_is_printed_as_the_path_optuna_tools_read(tmp_path, capsys) -> None:
    log = tmp_path / "j.log"
    path = write_study(tmp_path, storage=str(log), trials=1)
    assert main(["run", str(path), "--no-progress", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert out.strip().endswith(f"storage {log}") and "journal://" not in out
    from optuna.cli import _get_storage  # what `optuna studies --storage PATH` does with it

    storage = _get_storage(str(log), None)
    assert [s.study_name for s in optuna.get_all_study_summaries(storage)] == ["setup"]


def _fake_processes(exits: list[WorkerExit], *, run_trials: bool):
    """Stands in for run_worker_processes: runs the trials in this process (or not), reports ``exits``."""
    from frugal_search.search.workers import run_worker

    def fake(config, *, workers, threads, on_poll=None):
        if run_trials:
            run_worker(config, worker_index=0, device="cpu")
        return exits

    return fake


def test_a_lost_worker_is_named_and_a_run_that_reached_its_target_succeeds(
    tmp_path, capsys, caplog, monkeypatch
) -> None:
    import frugal_search.search.runner as runner

    killed = WorkerExit("frugal-search-worker-1", -9, "killed by signal SIGKILL")
    monkeypatch.setattr(runner, "run_worker_processes", _fake_processes([WorkerExit("w0", 0), killed], run_trials=True))
    path = write_study(tmp_path, storage=f"sqlite:///{tmp_path / 'lost.db'}")
    with caplog.at_level(logging.WARNING):
        assert main(["run", str(path), "--no-progress", "--workers", "2"]) == 0
    assert "frugal-search-worker-1: killed by signal SIGKILL" in caplog.text and "reached its 2 trials" in caplog.text

    short = WorkerExit("frugal-search-worker-0", 1, "RuntimeError: boom")
    monkeypatch.setattr(runner, "run_worker_processes", _fake_processes([short], run_trials=False))
    capsys.readouterr()
    assert main(["run", str(path), "--no-progress", "--workers", "2", "--trials", "3"]) == 1
    line = one_error_line(capsys)
    assert "holds 2 of 3 finished trials" in line and "frugal-search-worker-0: RuntimeError: boom" in line
    with pytest.raises(WorkersFailedError):
        run_search(load_study_config(path), trials=3, workers=2, progress=False)


def test_the_default_uses_every_core_with_one_thread_each_for_a_small_model(tmp_path) -> None:
    config = load_study_config(write_study(tmp_path, storage=f"sqlite:///{tmp_path / 'x.db'}", trials=40))
    small = choose_parallelism(config, workers=None, parameters=900_000, remaining=40, cores=8)
    assert (small.workers, small.threads) == (8, 1) and "8 CPU core(s)" in small.reason
    few_left = choose_parallelism(config, workers=None, parameters=900_000, remaining=3, cores=8)
    assert (few_left.workers, few_left.threads) == (3, 2)  # no idle worker; the cores are shared out
    large = choose_parallelism(config, workers=None, parameters=500_000_000, remaining=40, cores=8)
    assert (large.workers, large.threads) == (1, 8)
    given = choose_parallelism(config, workers=2, parameters=900_000, remaining=40, cores=8)
    assert (given.workers, given.threads) == (2, 4)
    assert choose_parallelism(config, workers=1, parameters=900_000, remaining=40, cores=8).threads is None


def test_set_up_errors_are_setup_errors_in_the_library(tmp_path) -> None:
    config = load_study_config(write_study(tmp_path, storage=f"sqlite:///{tmp_path / 'x.db'}", model="nope"))
    with pytest.raises(SetupError, match="cannot be built"):
        run_search(config, progress=False)
    assert not (tmp_path / "x.db").exists()


def test_a_tied_head_is_said_once_before_the_search(caplog) -> None:
    import logging

    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from frugal_search.search.setup import _say_missing_kinds

    with torch.device("meta"):
        model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=256))
    with caplog.at_level(logging.INFO, logger="frugal_search.search.setup"):
        _say_missing_kinds(model)
    (record,) = [r for r in caplog.records if r.name == "frugal_search.search.setup"]
    assert "no head parameters" in record.getMessage() and "head_role does nothing" in record.getMessage()
