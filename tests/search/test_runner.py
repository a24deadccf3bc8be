"""End-to-end searches on a tiny model: counts, resume, failures as data, killed and parallel workers.

Real services only: SQLite and journal files in a temporary folder, the PostgreSQL server on
127.0.0.1:5432 (skipped with the reason when it does not answer), worker processes, ``kill -9``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from frugal_search.cli import main as cli_main
from frugal_search.partition import Partition, baseline_partition
from frugal_search.proxy import ModelSpec, build_model
from frugal_search.search.config import load_study_config
from frugal_search.search.objective import SURPLUS_REASON
from frugal_search.search import open_study, run_search
from frugal_search.search.storage import WORKER_LOST_REASON, open_storage

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
MODEL_OVERRIDES = (
    "{ num_hidden_layers = 2, hidden_size = 32, intermediate_size = 64, num_attention_heads = 2 }"
)


def study_text(
    *,
    name: str,
    trials: int,
    storage: str | None = None,
    baselines: str = '["adamw", "frugal"]',
    budget: str | None = None,
    steps: int = 6,
    space: str = "density = [0.05, 0.5]\nhead_role = ['stateful', 'state_free']",
    extra_study: str = "",
    front_seeds: int = 0,
    search: str = "confirm_seeds = 0",
) -> str:
    lines = [
        "[study]",
        f'name = "{name}"',
        f"trials = {trials}",
        'sampler = "random"',
        f"baselines = {baselines}",
        f"front_seeds = {front_seeds}",
    ]
    if storage is not None:
        lines.append(f'storage = "{storage}"')
    if budget is not None:
        lines.append(f'memory_budget = "{budget}"')
    lines.append(extra_study)
    lines += [
        "[search]",
        search,
        "[model]",
        'source = "tiny-llama"',
        f"overrides = {MODEL_OVERRIDES}",
        "[data]",
        'source = "stdlib"',
        "[proxy]",
        f"steps = {steps}",
        "batch_size = 2",
        "seq_len = 16",
        "eval_every = 3",
        "eval_batches = 1",
        "[space]",
        space,
    ]
    return "\n".join(lines) + "\n"


def write_study(folder: Path, text: str, name: str = "study.toml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def load(config_path: Path) -> optuna.Study:
    config = load_study_config(config_path)
    storage = open_storage(config.study.storage, heartbeat_interval=10, grace_period=60)
    return optuna.load_study(study_name=config.study.name, storage=storage)


def memory_model():
    import torch

    with torch.device("meta"):
        return build_model(
            ModelSpec(
                "tiny-llama",
                dict(num_hidden_layers=2, hidden_size=32, intermediate_size=64, num_attention_heads=2),
            )
        )


def test_six_trials_then_the_same_command_adds_nothing(tmp_path: Path) -> None:
    path = write_study(tmp_path, study_text(name="six", trials=6))
    study = run_search(load_study_config(path), progress=False)
    trials = study.get_trials()
    # the two baselines are references: they run besides the six trials of the search
    assert [trial.state for trial in trials] == [TrialState.COMPLETE] * 8
    assert study.metric_names == ["eval_loss", "state_mib"]
    model = memory_model()
    for trial in trials:
        assert len(trial.values) == 2 and trial.values[0] > 0
        assert trial.user_attrs["outcome"] == "ok" and trial.user_attrs["reason"] is None
        # the stored split rebuilds the partition; its memory, measured again, is the second value
        partition = Partition.from_dict(trial.user_attrs["split"])
        assert trial.values[1] == pytest.approx(partition.state_bytes(model) / 2**20)
        assert trial.user_attrs["eval_curve"][0][0] == 0 and trial.user_attrs["eval_curve"][-1][0] == 6
    assert [trial.user_attrs["baseline"] for trial in trials[:2]] == ["adamw", "frugal"]
    adamw_bytes = baseline_partition("adamw").state_bytes(model)
    assert trials[0].user_attrs["state_bytes"] == adamw_bytes
    assert all(trial.user_attrs["baseline"] is None for trial in trials[2:])

    assert cli_main(["run", str(path), "--no-progress"]) == 0
    assert len(load(path).get_trials()) == 8  # nothing added, baselines not enqueued again
    # a higher count resumes the same study: baselines are still not repeated
    assert cli_main(["run", str(path), "--no-progress", "--trials", "7"]) == 0
    after = load(path).get_trials()
    assert len(after) == 9 and [t.user_attrs["baseline"] for t in after].count("adamw") == 1


def test_exception_divergence_and_oom_are_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    import frugal_search.proxy

    real_run_proxy = frugal_search.proxy.run_proxy
    calls = []

    def flaky_run_proxy(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the first sampled trial (the frugal baseline is call 1)
            raise RuntimeError("simulated crash inside the proxy run")
        if len(calls) == 3:  # what run_proxy lets through from a GPU that is too small
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_run_proxy(*args, **kwargs)

    monkeypatch.setattr(frugal_search.proxy, "run_proxy", flaky_run_proxy)
    # sampled lrs of 30-100 diverge
    text = study_text(
        name="faults",
        trials=4,
        baselines='["frugal"]',
        space="lr = [30.0, 100.0]\nmode = 'blocks'\ndensity = [0.0, 0.1]",
        extra_study="baseline_lrs = [1e-3]",  # the baseline itself trains
    )
    study = run_search(load_study_config(write_study(tmp_path, text)), progress=False)
    trials = study.get_trials()
    by_outcome = {}
    for trial in trials:
        by_outcome.setdefault(trial.user_attrs["outcome"], []).append(trial)
    assert sum(trial.state in FINISHED for trial in trials) == 5  # the search went on past the failure
    (error,) = by_outcome["error"]
    assert error.state == TrialState.FAIL
    assert "RuntimeError: simulated crash inside the proxy run" in error.user_attrs["reason"]
    assert "split" in error.user_attrs  # the partition that failed is kept for a look
    (oom,) = by_outcome["oom"]
    assert oom.state == TrialState.PRUNED and "CUDA out of memory" in oom.user_attrs["reason"]
    assert len(by_outcome["diverged"]) == 3
    for trial in by_outcome["diverged"]:
        assert trial.state == TrialState.PRUNED and trial.user_attrs["reason"]
        assert trial.params["lr"] >= 30.0
    (ok,) = by_outcome["ok"]
    assert ok.user_attrs["baseline"] == "frugal" and ok.state == TrialState.COMPLETE
    assert len(calls) == 6


def test_over_budget_trials_are_infeasible_without_a_run_but_baselines_still_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import frugal_search.proxy

    real_run_proxy = frugal_search.proxy.run_proxy
    calls = []

    def counting_run_proxy(*args, **kwargs):
        calls.append(1)
        return real_run_proxy(*args, **kwargs)

    monkeypatch.setattr(frugal_search.proxy, "run_proxy", counting_run_proxy)
    # budget between FRUGAL rho 0.25 and AdamW: attention and mlp both stateful is over it,
    # stateful attention with a state-free mlp is under it
    model = memory_model()
    budget = (
        baseline_partition("frugal").state_bytes(model) + baseline_partition("adamw").state_bytes(model)
    ) // 2
    text = study_text(
        name="budget",
        trials=6,
        budget=str(budget),
        space="attention_role = 'stateful'\nmlp_role = ['stateful', 'state_free']",
    )
    study = run_search(load_study_config(write_study(tmp_path, text)), progress=False)
    trials = study.get_trials()
    baselines = {trial.user_attrs["baseline"]: trial for trial in trials if trial.user_attrs["baseline"]}
    # the AdamW reference runs although it is over the budget, and says so
    assert baselines["adamw"].state == TrialState.COMPLETE and baselines["adamw"].user_attrs["over_budget"]
    assert baselines["frugal"].state == TrialState.COMPLETE and not baselines["frugal"].user_attrs["over_budget"]
    infeasible = [trial for trial in trials if trial.user_attrs["outcome"] == "infeasible"]
    assert infeasible, "the seeded sampler should draw at least one over-budget partition"
    for trial in infeasible:
        assert trial.state == TrialState.PRUNED and trial.params["mlp_role"] == "stateful"
        assert "over the memory budget" in trial.user_attrs["reason"] and "eval_curve" not in trial.user_attrs
    trained = [trial for trial in trials if trial.user_attrs["outcome"] != "infeasible"]
    # infeasible trials take no place: six trials were scored besides the two baselines, and only those trained
    assert len(trained) == 8 and all(trial.state == TrialState.COMPLETE for trial in trained)
    assert len(calls) == 8


def test_killed_worker_trial_is_failed_and_the_count_still_met(tmp_path: Path) -> None:
    text = study_text(
        name="killed",
        trials=4,
        steps=20,
        baselines="[]",
        extra_study="heartbeat_interval = 1\ngrace_period = 3",
    )
    path = write_study(tmp_path, text)
    command = [sys.executable, "-m", "frugal_search", "run", str(path), "--no-progress", "--workers", "1"]
    worker = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        running, done = [], []
        while time.monotonic() < deadline and not (running and done):
            time.sleep(0.2)
            if (tmp_path / "killed.db").exists():
                try:
                    trials = load(path).get_trials()
                except Exception:  # the study is being created right now
                    continue
                done = [t for t in trials if t.state == TrialState.COMPLETE]
                running = [t for t in trials if t.state == TrialState.RUNNING]
        assert running and done, "no trial was running after a finished one within 90 s"
        os.kill(worker.pid, signal.SIGKILL)
    finally:
        worker.kill()
        worker.wait()
    killed_number = running[0].number
    assert load(path).get_trials()[killed_number].state == TrialState.RUNNING  # nobody told the storage

    time.sleep(3.5)  # past the grace period: the killed trial's heartbeat is stale
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    trials = load(path).get_trials()
    killed = trials[killed_number]
    assert killed.state == TrialState.FAIL
    assert killed.user_attrs["outcome"] == "error" and killed.user_attrs["reason"] == WORKER_LOST_REASON
    for before in done:  # finished before the kill: still there, unchanged
        assert (
            trials[before.number].state == TrialState.COMPLETE
            and trials[before.number].values == before.values
        )
    finished = [t for t in trials if t.state in FINISHED]
    assert len(finished) == 4 and len({t.number for t in finished}) == 4
    assert [t.state for t in trials].count(TrialState.FAIL) == 1


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used:UserWarning")  # ask() on purpose
def test_trial_orphaned_before_its_first_heartbeat_does_not_stall_a_resumed_study(tmp_path: Path) -> None:
    # A worker killed between starting a trial and its first heartbeat leaves a RUNNING trial with
    # no heartbeat at all; Optuna's own check never fails it, so the resumed run below waited on it
    # for ever once the other trials were done.
    path = write_study(
        tmp_path,
        study_text(name="orphan", trials=2, baselines="[]", extra_study="heartbeat_interval = 1\ngrace_period = 2"),
    )
    orphan = open_study(load_study_config(path)).ask()  # RUNNING, never stamped
    time.sleep(2.5)
    rerun = subprocess.run(
        [sys.executable, "-m", "frugal_search", "run", str(path), "--no-progress", "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    trials = load(path).get_trials()
    assert trials[orphan.number].state == TrialState.FAIL
    assert trials[orphan.number].user_attrs == {"outcome": "error", "reason": WORKER_LOST_REASON}
    assert [t.state for t in trials if t.number != orphan.number] == [TrialState.COMPLETE] * 2


@pytest.mark.services
def test_three_workers_on_postgresql_finish_exactly_n(tmp_path: Path, postgres_url: str) -> None:
    name = f"frugal-search-test-{uuid.uuid4().hex[:12]}"
    path = write_study(
        tmp_path,
        study_text(name=name, trials=7, storage=postgres_url, baselines='["adamw", "frugal", "badam"]'),
    )
    try:
        study = run_search(load_study_config(path), workers=3, progress=False)
        trials = study.get_trials()
        finished = [t for t in trials if t.state in FINISHED]
        assert len(finished) == 10  # seven searched trials and three baselines
        assert all(t.user_attrs["reason"] == SURPLUS_REASON for t in trials if t.state == TrialState.FAIL)
        baselines = [t.user_attrs["baseline"] for t in finished if t.user_attrs["baseline"]]
        assert sorted(baselines) == ["adamw", "badam", "frugal"]  # each exactly once
        assert not [t for t in trials if t.state == TrialState.RUNNING]
        sampled = [tuple(sorted(t.params.items())) for t in finished if not t.user_attrs["baseline"]]
        assert len(set(sampled)) == len(sampled) == 7  # no point evaluated twice
    finally:
        optuna.delete_study(study_name=name, storage=postgres_url)


def test_two_workers_on_the_default_sqlite_storage(tmp_path: Path) -> None:
    path = write_study(tmp_path, study_text(name="pair", trials=5))
    study = run_search(load_study_config(path), workers=2, progress=False)
    assert (tmp_path / "pair.db").exists()  # the default storage, next to the study file
    trials = study.get_trials()
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 7  # five searched, two baselines
    reasons = " ".join(str(t.user_attrs.get("reason")) for t in trials)
    assert "database is locked" not in reasons
    # the only failure allowed: a trial dropped because two workers raced for the last slot
    assert all(t.user_attrs["reason"] == SURPLUS_REASON for t in trials if t.state == TrialState.FAIL)


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        (lambda text: text.replace("trials = 3", "trials = = 3"), "not valid TOML"),
        (lambda text: text.replace("[proxy]", "[proxy]\nsteppes = 3"), "[proxy] unknown key 'steppes'"),
        (lambda text: text.replace("trials = 3", 'trials = "three"'), "[study] trials: expected an integer"),
        (lambda text: text[: text.index("[space]")], "[space] is missing or empty"),
    ],
    ids=["syntax", "unknown-key", "wrong-type", "empty-space"],
)
def test_malformed_study_file_fails_before_storage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], broken, expected: str
) -> None:
    database = tmp_path / "existing.db"
    url = f"sqlite:///{database}"
    optuna.create_study(storage=url, study_name="bad")  # an existing storage that must stay as it is
    before = (database.read_bytes(), database.stat().st_mtime_ns)
    path = write_study(tmp_path, broken(study_text(name="bad", trials=3, storage=url)), name="bad.toml")
    assert cli_main(["run", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {path}") and expected in err[0]
    assert (database.read_bytes(), database.stat().st_mtime_ns) == before
    assert not (tmp_path / "existing.db-wal").exists()


def test_device_this_machine_lacks_fails_before_any_trial(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    missing = f"cuda:{count}"  # one past the last GPU: no machine has it
    path = write_study(tmp_path, study_text(name="gpu", trials=2))
    assert cli_main(["run", str(path), "--no-progress", "--device", missing]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: device '{missing}' asked for")
    with pytest.raises(ValueError, match="asked for"):
        run_search(load_study_config(path), device=missing, progress=False)
    assert not (tmp_path / "gpu.db").exists()  # no study, no failed baselines to re-enqueue


def test_journal_storage_runs_and_fails_dead_trials(tmp_path: Path) -> None:
    from frugal_search.search.storage import HEARTBEAT_ATTR, fail_stale_trials

    path = write_study(
        tmp_path,
        study_text(name="journal", trials=3, baselines='["frugal"]', storage=str(tmp_path / "j.log")),
    )
    study = run_search(load_study_config(path), progress=False)
    assert isinstance(study._storage, optuna.storages.JournalStorage)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4  # three searched, one baseline
    assert all(HEARTBEAT_ATTR in t.system_attrs for t in trials)  # stamped while they ran

    # a trial left RUNNING by a dead process: failed once its last stamp is older than the grace period
    orphan = study.ask()
    study._storage.set_trial_system_attr(orphan._trial_id, HEARTBEAT_ATTR, time.time() - 100)
    assert fail_stale_trials(study, grace_period=1000) == []
    assert fail_stale_trials(study, grace_period=50) == [orphan.number]
    assert study.get_trials()[orphan.number].state == TrialState.FAIL


def test_successive_halving_stop_is_recorded_as_stopped_early(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import frugal_search.search.fidelity as fidelity

    seen = []

    class StopAtStep3:
        stopped_at = None

        def __call__(self, step: int, eval_loss: float) -> bool:
            seen.append(step)
            if step >= 3:
                self.stopped_at = step
                return True
            return False

    monkeypatch.setattr(fidelity, "make_early_stop", lambda trial, config, state_bytes=None: StopAtStep3())
    text = (
        study_text(name="halving", trials=1, baselines="[]", search="fidelity = 'successive-halving'\nconfirm_seeds = 0")
    )
    study = run_search(load_study_config(write_study(tmp_path, text)), progress=False)
    (trial,) = study.get_trials()
    assert trial.state == TrialState.PRUNED and trial.user_attrs["outcome"] == "stopped-early"
    assert trial.user_attrs["steps"] == 3 and seen == [0, 3]  # the proxy run ended at the first rung


def test_baselines_run_on_their_lr_grid_and_take_no_place_among_the_trials(tmp_path: Path) -> None:
    text = study_text(
        name="grid",
        trials=2,
        baselines='["frugal", "adamw"]',
        space="lr = [1e-3, 8e-3]\ndensity = [0.05, 0.5]",
    )
    config = load_study_config(write_study(tmp_path, text))
    study = run_search(config, progress=False)
    trials = study.get_trials()
    grid = [(t.user_attrs["baseline"], t.user_attrs["baseline_lr"]) for t in trials if t.user_attrs["baseline"]]
    # 4 log-spaced lrs over the space's range, each baseline at each, besides the 2 searched trials;
    # a best on an edge adds up to 2 steps past it (tests/search/test_lr_grid.py)
    for name in ("frugal", "adamw"):
        lrs = sorted(lr for baseline, lr in grid if baseline == name)
        assert {0.001, 0.002, 0.004, 0.008} <= set(lrs) and len(lrs) == len(set(lrs))
        assert set(lrs) <= {0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032}
    assert sum(1 for t in trials if not t.user_attrs["baseline"] and t.state in FINISHED) == 2
    for trial in trials:
        if trial.user_attrs["baseline"]:
            assert Partition.from_dict(trial.user_attrs["split"]).settings.lr == trial.user_attrs["baseline_lr"]
    # FRUGAL is a point of this space: the sampler sees its grid runs as observations; AdamW is not,
    # nor is an lr past the space's range
    frugal_runs = [t for t in trials if t.user_attrs["baseline"] == "frugal"]
    assert all(t.params["lr"] == t.user_attrs["baseline_lr"] for t in frugal_runs if 1e-3 <= t.user_attrs["baseline_lr"] <= 8e-3)
    assert all(not t.params for t in frugal_runs if not 1e-3 <= t.user_attrs["baseline_lr"] <= 8e-3)
    assert all(not t.params for t in trials if t.user_attrs["baseline"] == "adamw")

    assert cli_main(["run", str(write_study(tmp_path, text)), "--no-progress"]) == 0
    assert len(load(write_study(tmp_path, text)).get_trials()) == len(trials)  # nothing added


def test_the_front_and_the_best_baselines_get_extra_seeds_once(tmp_path: Path) -> None:
    path = write_study(tmp_path, study_text(name="seeds", trials=3, baselines='["frugal"]', front_seeds=1))
    study = run_search(load_study_config(path), progress=False)
    trials = study.get_trials()
    replicas = [t for t in trials if t.user_attrs.get("seed_of") is not None]
    originals = [t for t in trials if t.user_attrs.get("seed_of") is None]
    assert sum(1 for t in originals if not t.user_attrs["baseline"]) == 3
    front = {t.number for t in originals if not t.user_attrs["baseline"]} & {t.number for t in study.best_trials}
    sources = {t.user_attrs["seed_of"] for t in replicas}
    baseline_trial = next(t.number for t in originals if t.user_attrs["baseline"] == "frugal")
    assert baseline_trial in sources and front <= sources
    for replica in replicas:
        source = trials[replica.user_attrs["seed_of"]]
        assert replica.state == TrialState.COMPLETE and replica.user_attrs["seed"] == 1
        assert replica.user_attrs["split"]["rules"] == source.user_attrs["split"]["rules"]
        assert replica.values[1] == source.values[1] and replica.values[0] != source.values[0]
    assert cli_main(["run", str(path), "--no-progress"]) == 0
    assert len(load(path).get_trials()) == len(trials)  # a finished study adds nothing, seeds included


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used:UserWarning")  # ask() on purpose
def test_a_seed_run_whose_worker_died_is_run_again(tmp_path: Path) -> None:
    def text(front_seeds: int) -> str:
        heartbeat = "heartbeat_interval = 1\ngrace_period = 2"
        return study_text(name="lost-seed", trials=1, baselines="[]", front_seeds=front_seeds, extra_study=heartbeat)

    path = write_study(tmp_path, text(0))
    (searched,) = run_search(load_study_config(path), progress=False).get_trials()
    path = write_study(tmp_path, text(1))
    study = open_study(load_study_config(path))
    # the seed run of the only trial, started by a worker that was killed before its first heartbeat
    study.enqueue_trial({}, user_attrs={"seed_of": searched.number, "seed": 1, "baseline": None})
    lost = study.ask()
    time.sleep(2.5)
    assert cli_main(["run", str(path), "--no-progress"]) == 0
    trials = load(path).get_trials()
    assert trials[lost.number].state == TrialState.FAIL
    assert trials[lost.number].user_attrs["reason"] == WORKER_LOST_REASON
    (replica,) = [t for t in trials if t.state == TrialState.COMPLETE and t.user_attrs.get("seed_of") is not None]
    assert replica.user_attrs["seed"] == 1 and replica.user_attrs["seed_of"] == searched.number
