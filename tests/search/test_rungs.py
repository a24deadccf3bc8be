"""The confirmation rung inside ``run``: promotion, runs enqueued once, resume, nothing added twice."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from frugal_search.search import load_study_config, run_search
from frugal_search.search.config import StudyConfigError
from frugal_search.search.objective import TrialObjective
from frugal_search.search.rungs import PromotionCandidate, crowding_distances, promoted_numbers
from frugal_search.search.study import reference_key

optuna.logging.set_verbosity(optuna.logging.WARNING)
PROXY_STEPS = 4


def study_file(folder: Path, *, search: str = "confirm_factor = 2\nconfirm_top = 2\nconfirm_seeds = 2") -> Path:
    path = folder / "rungs.toml"
    path.write_text(
        f"""
[study]
name = "rungs"
trials = 3
sampler = "random"
baselines = ["galore", "frugal-rho0"]
baseline_lrs = [1e-2]
front_seeds = 1
memory_budget = "1 MiB"

[search]
{search}

[model]
source = "tiny-llama"
overrides = {{ num_hidden_layers = 2, hidden_size = 32, intermediate_size = 64, num_attention_heads = 2 }}

[data]
source = "stdlib"

[proxy]
steps = {PROXY_STEPS}
batch_size = 2
seq_len = 16
eval_every = 2
eval_batches = 1

[space]
density = [0.05, 0.5]
"""
    )
    return path


def member(number: int, loss: float, mib: float, baseline: str | None = None, over: bool = False) -> PromotionCandidate:
    return PromotionCandidate(number=number, loss=loss, state_bytes=int(mib * 2**20), baseline=baseline, over_budget=over)


def test_promotion_goes_by_non_dominated_rank_then_crowding() -> None:
    pool = [
        member(0, 2.30, 8.0, "adamw", over=True),  # rank 2: dominated by #1 and #3
        member(1, 1.90, 2.0),  # rank 0, its lowest loss: an end
        member(2, 1.95, 0.5),  # rank 0, between the two ends
        member(3, 1.92, 2.5, "galore"),  # rank 1: dominated by #1
        member(4, 2.10, 0.4),  # rank 0, its least state: an end
        member(5, 2.00, 1.0),  # rank 1: dominated by #2
    ]
    # rank 0: both ends first (by loss), then the middle; galore, the best baseline within the
    # budget, joins whatever the cut
    assert promoted_numbers(pool, top=2) == [1, 4, 3]
    assert promoted_numbers(pool, top=3) == [1, 4, 2, 3]
    assert promoted_numbers(pool, top=6) == [1, 4, 2, 3, 5, 0]


def test_crowding_spreads_a_rank_over_memory() -> None:
    # one rank of five: the ends, then the member with the widest gap around it
    points = [(1.90, 4.0), (1.92, 3.0), (1.95, 2.9), (2.00, 1.0), (2.10, 0.5)]
    distances = crowding_distances(points, [0] * 5)
    assert distances[0] == distances[4] == math.inf
    # loss gaps over a range of 0.2, memory gaps over a range of 3.5
    assert distances[1] == pytest.approx((1.95 - 1.90) / 0.2 + (4.0 - 2.9) / 3.5)
    assert distances[2] == pytest.approx((2.00 - 1.92) / 0.2 + (3.0 - 1.0) / 3.5)
    assert distances[3] == pytest.approx((2.10 - 1.95) / 0.2 + (2.9 - 0.5) / 3.5)
    pool = [member(i, loss, mib) for i, (loss, mib) in enumerate(points)]
    assert promoted_numbers(pool, top=3) == [0, 4, 3]  # not the three lowest losses (0, 1, 2)


def test_the_best_baseline_within_the_budget_always_joins() -> None:
    pool = [member(0, 1.50, 9.0, "adamw", over=True), member(1, 1.90, 1.0), member(2, 1.99, 2.0, "galore"),
            member(3, 1.95, 2.0, "badam")]
    assert promoted_numbers(pool, top=1) == [0, 3]  # adamw is over the budget: badam is the best that fits


@pytest.mark.parametrize(
    ("search", "message"),
    [
        ("confirm_factor = 1", "confirm_factor: expected an integer >= 2"),
        ("confirm_top = 0", "confirm_top: expected an integer >= 1"),
        ("confirm_seeds = -1", "confirm_seeds: expected an integer >= 0"),
        ("confirm_seeds = 1.5", "confirm_seeds: expected an integer"),
    ],
)
def test_bad_rung_settings_name_the_key(tmp_path: Path, search: str, message: str) -> None:
    with pytest.raises(StudyConfigError, match=message):
        load_study_config(study_file(tmp_path, search=search))


def rung_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials() if t.user_attrs.get("rung_of") is not None]


def test_rungs_run_once_after_the_seeds_resume_and_add_nothing_when_done(tmp_path: Path, monkeypatch) -> None:
    path = study_file(tmp_path)
    config = load_study_config(path)
    original_run = TrialObjective._run
    interrupted = []

    def interrupt_the_first_rung_run(self, partition, *, seed, on_eval, factor=1, on_target=False):
        if factor > 1 and not interrupted:
            interrupted.append(seed)
            raise KeyboardInterrupt  # the user's Ctrl-C, or a kill, while the rung trains
        return original_run(self, partition, seed=seed, on_eval=on_eval, factor=factor)

    monkeypatch.setattr(TrialObjective, "_run", interrupt_the_first_rung_run)
    with pytest.raises(KeyboardInterrupt):
        run_search(config, workers=1, progress=False)
    study = run_search(config, workers=1, progress=False)  # the same command resumes

    trials = study.get_trials()
    rung = rung_trials(study)
    first_rung = min(t.number for t in rung)
    # the rung starts only once the proxy's seeds are done: its promotion reads their means
    seeds = [t for t in trials if t.user_attrs.get("seed_of") is not None]
    assert seeds and max(t.number for t in seeds) < first_rung
    complete = [t for t in rung if t.state == TrialState.COMPLETE]
    keys = Counter(reference_key(t.user_attrs) for t in complete)
    assert all(count == 1 for count in keys.values())  # nothing counted twice
    promoted = {key[1] for key in keys}
    assert {key[2] for key in keys} == {0, 1}  # confirm_seeds = 2: study seed 0 and 1
    assert len(keys) == 2 * len(promoted) and 2 <= len(promoted) <= 3  # top 2 (+ the best baseline within the budget)
    assert all(t.user_attrs["steps"] == 2 * PROXY_STEPS for t in complete)  # confirm_factor = 2
    for trial in complete:  # the same split as the trial it repeats, at its own memory
        source = study.trials[trial.user_attrs["rung_of"]]
        assert trial.user_attrs["split"] == source.user_attrs["split"]
        assert trial.values[1] == source.values[1]
    # the interrupted run failed and its run came back
    failed = [t for t in rung if t.state == TrialState.FAIL]
    assert len(failed) == 1 and reference_key(failed[0].user_attrs) in keys
    # rung runs take no place among the trials and are not points of the proxy front
    searched = [t for t in trials if t.user_attrs.get("baseline") is None and reference_key(t.user_attrs) is None]
    assert len([t for t in searched if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
                and t.user_attrs.get("outcome") != "infeasible"]) == 3

    before = len(study.get_trials())
    again = run_search(config, workers=1, progress=False)
    assert len(again.get_trials()) == before  # a finished study adds nothing


def test_no_rung_when_confirm_seeds_is_0(tmp_path: Path) -> None:
    config = load_study_config(study_file(tmp_path, search="confirm_seeds = 0"))
    study = run_search(config, workers=1, progress=False)
    assert not rung_trials(study)


def test_a_run_lost_with_its_worker_comes_back_within_a_workers_loop() -> None:
    from frugal_search.search.storage import WORKER_LOST_REASON
    from frugal_search.search.study import ReferenceRun, enqueue_references

    study = optuna.create_study(directions=["minimize", "minimize"])
    lost = {"rung_of": 0, "rung_factor": 4, "seed": 0, "baseline": None}
    broken = {"rung_of": 0, "rung_factor": 4, "seed": 1, "baseline": None}
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={**lost, "reason": WORKER_LOST_REASON}))
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={**broken, "reason": "ValueError: bad"}))
    added = enqueue_references(study, [ReferenceRun(lost), ReferenceRun(broken)], retry_failed=False)
    # the lost one runs again whenever it is found; the one that failed by itself only on a new command
    assert [run.key for run in added] == [("rung", 0, 0, 4, "proxy")]
    assert [run.key for run in enqueue_references(study, [ReferenceRun(broken)])] == [("rung", 0, 1, 4, "proxy")]
