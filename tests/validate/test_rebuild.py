"""A study rebuilt from its report's trials.csv holds the trials the search recorded; fed runs match what they train."""

from __future__ import annotations

import optuna
import pandas as pd
import pytest

from frugal_search.partition import ADAMW_BASELINE, Partition, baseline_partition
from frugal_search.report import trials_table
from frugal_search.search import load_study_config, open_study
from frugal_search.search.objective import TrialObjective, build_memory_model
from frugal_search.validate import rebuild_study_from_table, trained_fingerprint

from .conftest import MINI_STUDY_TOML

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # ask/tell outside optimize, as the search's workers

# integer, bool and choice dimensions besides the lr, so the table's cells must be typed back
STUDY_TOML = MINI_STUDY_TOML + """mode = ["blocks", "svd"]
density = [0.1, 0.5]
update_gap = [2, 50]
reset_state = [true, false]
attention_role = ["frugal", "state_free"]
stateful_last_layers = [0.0, 0.5]
"""
# (attributes the search enqueues the trial with, its state): searched trials, a diverged one, a
# baseline at one lr of its grid and an extra seed of trial 0
TRIALS = [
    ({}, "COMPLETE"),
    ({}, "COMPLETE"),
    ({}, "PRUNED"),
    ({"baseline": ADAMW_BASELINE, "baseline_lr": 3e-3}, "COMPLETE"),
    ({}, "COMPLETE"),
    ({"seed_of": 0, "seed": 1}, "COMPLETE"),
]


@pytest.fixture()
def searched(tmp_path):
    """A study whose trials carry the partitions the search's objective builds (made-up figures,
    no proxy run), and its report table written as trials.csv. The objective's own ``_partition``
    is the reference: what the rebuild must give back is what the search recorded."""
    study_file = tmp_path / "mini.toml"
    study_file.write_text(STUDY_TOML.format(db=tmp_path / "mini.db"))
    config = load_study_config(study_file)
    study = open_study(config)
    memory_model = build_memory_model(config)
    study.set_user_attr("adamw_state_bytes", int(baseline_partition(ADAMW_BASELINE).state_bytes(memory_model)))
    objective = TrialObjective(config, device="cpu", memory_model=memory_model)
    for index, (attrs, state) in enumerate(TRIALS):
        if attrs:
            study.enqueue_trial({}, user_attrs=attrs)
        trial = study.ask()
        partition = objective._partition(trial)
        trial.set_user_attr("split", partition.to_dict())
        trial.set_user_attr("summary", partition.summary())
        trial.set_user_attr("state_bytes", int(partition.state_bytes(memory_model)))
        loss = 3.0 + index / 7
        if state == "COMPLETE":
            trial.set_user_attr("outcome", "ok")
            trial.set_user_attr("eval_loss", loss)
            study.tell(trial, [loss, trial.user_attrs["state_bytes"] / 2**20])
        else:
            trial.set_user_attr("outcome", "diverged")
            trial.set_user_attr("reason", "loss nan at step 3")
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    table = tmp_path / "trials.csv"
    trials_table(study).to_csv(table, index=False)
    return config, study, table


def test_a_rebuilt_study_has_the_trials_numbers_values_and_partitions(searched, tmp_path):
    config, study, table = searched
    rebuilt = rebuild_study_from_table(table, f"sqlite:///{tmp_path / 'rebuilt.db'}", config)
    original, again = study.get_trials(deepcopy=False), rebuilt.get_trials(deepcopy=False)
    assert [t.number for t in again] == [t.number for t in original] == list(range(len(TRIALS)))
    assert [t.state for t in again] == [t.state for t in original]
    assert [t.values for t in again] == [t.values for t in original]  # exact: the CSV round-trips floats
    for before, after in zip(original, again, strict=True):
        assert after.user_attrs["split"] == before.user_attrs["split"], before.number
        assert Partition.from_dict(after.user_attrs["split"]).to_dict() == before.user_attrs["split"]
    assert again[3].user_attrs["baseline"] == ADAMW_BASELINE and again[3].user_attrs["baseline_lr"] == 3e-3
    assert again[5].user_attrs["seed_of"] == 0 and again[5].user_attrs["split"] == again[0].user_attrs["split"]
    assert isinstance(again[0].user_attrs["state_bytes"], int)
    assert rebuilt.user_attrs["adamw_state_bytes"] == study.user_attrs["adamw_state_bytes"]
    # the report reads the rebuilt study as it read the original, but for the sampled params
    written = pd.read_csv(table)
    kept = [column for column in written.columns if not column.startswith("param_")]
    pd.testing.assert_frame_equal(
        pd.read_csv(_written(trials_table(rebuilt), tmp_path))[kept], written[kept]
    )


def _written(frame: pd.DataFrame, folder) -> str:
    path = folder / "again.csv"
    frame.to_csv(path, index=False)
    return str(path)


def test_rebuilding_refuses_a_study_with_trials_and_a_table_with_a_gap(searched, tmp_path):
    config, _, table = searched
    with pytest.raises(ValueError, match="already holds 6 trials"):
        rebuild_study_from_table(table, config.study.storage, config)
    gap = tmp_path / "gap.csv"
    pd.read_csv(table).query("number != 1").to_csv(gap, index=False)
    with pytest.raises(ValueError, match="without a gap"):
        rebuild_study_from_table(gap, f"sqlite:///{tmp_path / 'gap.db'}", config)


def test_a_fed_run_matches_the_split_it_trained_whichever_version_wrote_it():
    partition = Partition.paper(0.25, lr=1e-3)
    current = partition.to_dict()
    older = {**current, "settings": dict(current["settings"])}  # as written before betas could be None
    older["settings"]["betas"] = [0.9, 0.999]
    for key in ("stateful_rule", "momentum", "nesterov", "density_end", "update_gap_growth"):
        older["settings"].pop(key)
    assert current["settings"]["betas"] is None
    assert trained_fingerprint(older) == trained_fingerprint(current)
    assert trained_fingerprint(partition.replace(lr=2e-3).to_dict()) != trained_fingerprint(current)
    assert trained_fingerprint(Partition.paper(0.25, lr=1e-3, betas=(0.9, 0.99)).to_dict()) != trained_fingerprint(current)
