"""The rung on the target model (``[search] target_rung``): planned after the confirmation rung, its
runs on ``[transfer] model`` under the width lr rule, resumed after a kill, the answer taken there."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from frugal_search.partition import Partition
from frugal_search.proxy import ModelSpec, build_model
from frugal_search.report import trials_table
from frugal_search.report._decision import study_answer
from frugal_search.report._export import select_trial
from frugal_search.search import load_study_config, run_search
from frugal_search.search.config import StudyConfigError
from frugal_search.search.objective import TrialObjective
from frugal_search.search.rungs import planned_target_runs
from frugal_search.search.study import RUNG_ON_TARGET, reference_key

from .test_rungs import study_file as rungs_study_file

optuna.logging.set_verbosity(optuna.logging.WARNING)
PROXY = {"num_hidden_layers": 2, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2}
TARGET = {"num_hidden_layers": 3, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4}


RUNGS = "confirm_factor = 2\nconfirm_top = 2\nconfirm_seeds = 2"


def study_file(folder: Path, *, search: str = f"{RUNGS}\ntarget_rung = true", transfer: bool = True) -> Path:
    """The confirmation rung's small study (``test_rungs``), with ``[transfer]`` naming a wider, deeper sibling."""
    path = rungs_study_file(folder, search=search)
    if transfer:
        overrides = ", ".join(f"{key} = {value}" for key, value in TARGET.items())
        path.write_text(path.read_text() + f'\n[transfer]\nmodel = {{ source = "tiny-llama", overrides = {{ {overrides} }} }}\n')
    return path


@pytest.mark.parametrize(
    ("search", "transfer", "message"),
    [
        ("target_rung = true", False, "target_rung: the rung trains on \\[transfer\\] model"),
        ("target_rung = true\nconfirm_seeds = 0", True, "needs confirm_seeds >= 1"),
        ("target_rung = 1", True, "target_rung: expected true or false"),
        ("target_rung = true\ntarget_factor = 0", True, "target_factor: expected an integer >= 1"),
    ],
)
def test_bad_target_rung_settings_name_the_key(tmp_path: Path, search: str, transfer: bool, message: str) -> None:
    with pytest.raises(StudyConfigError, match=message):
        load_study_config(study_file(tmp_path, search=search, transfer=transfer))


def target_runs(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials() if t.user_attrs.get("rung_on") == RUNG_ON_TARGET]


def confirmation_runs(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials() if t.user_attrs.get("rung_of") is not None
            and t.user_attrs.get("rung_on") != RUNG_ON_TARGET]


def adamw_state_bytes_by_hand(overrides: dict) -> int:
    """AdamW keeps two fp32 moments per trained element."""
    model = build_model(ModelSpec("tiny-llama", overrides), seed=0)
    return 2 * 4 * sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[optuna.Study, Path]:
    """A study run to its end with a kill (Ctrl-C) during its first run on the target, then resumed."""
    folder = tmp_path_factory.mktemp("target")
    config = load_study_config(study_file(folder))
    original_run = TrialObjective._run
    interrupted = []

    def interrupt_the_first_target_run(self, partition, *, seed, on_eval, factor=1, on_target=False):
        if on_target and not interrupted:
            interrupted.append(seed)
            raise KeyboardInterrupt
        return original_run(self, partition, seed=seed, on_eval=on_eval, factor=factor, on_target=on_target)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TrialObjective, "_run", interrupt_the_first_target_run)
        with pytest.raises(KeyboardInterrupt):
            run_search(config, workers=1, progress=False)
        study = run_search(config, workers=1, progress=False)  # the same command resumes
    assert interrupted
    return study, folder


def test_the_target_rung_follows_the_confirmation_rung_and_trains_its_candidates_within_the_budget(finished) -> None:
    study, _ = finished
    confirmation, target = confirmation_runs(study), target_runs(study)
    assert confirmation and target
    # planned once the confirmation rung is done: every one of its runs was created before the first target run
    assert max(t.number for t in confirmation) < min(t.number for t in target)
    within = {int(t.user_attrs["rung_of"]) for t in confirmation
              if not study.trials[int(t.user_attrs["rung_of"])].user_attrs.get("over_budget")}
    complete = [t for t in target if t.state == TrialState.COMPLETE]
    # each candidate within the budget, confirm_seeds (2) times, each run counted once after the resume
    assert Counter(int(t.user_attrs["rung_of"]) for t in complete) == {number: 2 for number in within}
    assert len({reference_key(t.user_attrs) for t in complete}) == len(complete)
    assert all(t.user_attrs["rung_factor"] == 1 for t in complete)


def test_a_target_run_trains_the_target_model_with_the_width_rule(finished) -> None:
    study, _ = finished
    proxy_model = build_model(ModelSpec("tiny-llama", PROXY), seed=0)
    target_model = build_model(ModelSpec("tiny-llama", TARGET), seed=0)
    adamw_on_target = adamw_state_bytes_by_hand(TARGET)
    for trial in (t for t in target_runs(study) if t.state == TrialState.COMPLETE):
        split = trial.user_attrs["split"]
        if "rules" not in split:  # a method's spec (no partition): nothing to carry
            continue
        partition = Partition.from_dict(split)
        assert partition.lr_transfer == "width"
        # the base of the rule is the proxy's: its q_proj takes hidden_size 32 inputs
        assert partition.base_widths["model.layers.*.self_attn.q_proj.weight"] == PROXY["hidden_size"]
        assert trial.user_attrs["state_bytes"] == partition.state_bytes(target_model)
        assert trial.user_attrs["state_bytes"] != partition.state_bytes(proxy_model)
        assert trial.user_attrs["adamw_state_bytes"] == adamw_on_target
        assert trial.user_attrs["target_model"] == {"source": "tiny-llama", "overrides": TARGET}
        assert trial.user_attrs["steps"] == 4  # target_factor 1 x the proxy's 4 steps


def test_the_answer_is_taken_on_the_target_and_exports_the_split_that_ran_there(finished) -> None:
    study, _ = finished
    answer, summary = study_answer(trials_table(study), memory_budget_bytes=2**20)
    assert answer is not None and answer.on_target and answer.factor == 1
    on_target = {int(t.user_attrs["rung_of"]) for t in target_runs(study)}
    assert set(summary["number"]) == on_target and answer.number in on_target
    # the summary's state is the target's (each candidate's runs there), not the proxy's
    state_there = {int(t.user_attrs["rung_of"]): t.user_attrs["state_bytes"] for t in target_runs(study)}
    assert {int(n): b for n, b in zip(summary["number"], summary["state_bytes"])} == state_there
    exported = select_trial(study, best=True)
    assert exported.user_attrs.get("rung_on") == RUNG_ON_TARGET and exported.user_attrs["rung_of"] == answer.number


def test_a_finished_study_with_a_target_rung_adds_nothing(finished) -> None:
    study, folder = finished
    before = len(study.get_trials())
    config = load_study_config(folder / "rungs.toml")
    assert len(run_search(config, workers=1, progress=False).get_trials()) == before
    assert all(reference_key(run.user_attrs) in {reference_key(t.user_attrs) for t in target_runs(study)}
               for run in planned_target_runs(study, config))


def test_no_target_runs_without_target_rung(tmp_path: Path) -> None:
    config = load_study_config(study_file(tmp_path, search=RUNGS))
    study = optuna.create_study(directions=["minimize", "minimize"])
    assert planned_target_runs(study, config) == []
    assert not config.search.confirms_on_target
