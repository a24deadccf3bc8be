"""Baselines that are no partition (competitors, LoRA) in a search: one registry, run like the others."""

from __future__ import annotations

import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from frugal_search.proxy import METHODS, CompetitorSpec, build_model, competitor_spec, spec_from_stored
from frugal_search.report._export import select_trial
from frugal_search.search import SetupError, check_setup, load_study_config, run_search
from frugal_search.search.config import BASELINE_NAMES

optuna.logging.set_verbosity(optuna.logging.WARNING)
OVERRIDES = "{ num_hidden_layers = 2, hidden_size = 32, intermediate_size = 64, num_attention_heads = 2 }"


def study_file(folder: Path, baselines: list[str]) -> Path:
    path = folder / "methods.toml"
    path.write_text(
        f"""
[study]
name = "methods"
trials = 1
sampler = "random"
baselines = {baselines!r}
baseline_lrs = [1e-3, 1e-2]
front_seeds = 1

[search]
confirm_factor = 2
confirm_top = 1
confirm_seeds = 1

[model]
source = "tiny-llama"
overrides = {OVERRIDES}

[data]
source = "stdlib"

[proxy]
steps = 4
batch_size = 2
seq_len = 16
eval_every = 2
eval_batches = 1

[space]
density = [0.05, 0.5]
"""
    )
    return path


def test_every_method_is_a_baseline_name() -> None:
    assert {"lora", "apollo", "apollo-mini", "adam-mini", "muon", "adamw-8bit"} <= set(METHODS)
    assert set(METHODS) <= set(BASELINE_NAMES)


def test_competitors_run_on_their_grid_with_their_state_counted(tmp_path: Path) -> None:
    config = load_study_config(study_file(tmp_path, ["muon", "adamw-8bit"]))
    study = run_search(config, workers=1, progress=False)
    model = build_model(config.model_spec(), seed=0)
    for name in ("muon", "adamw-8bit"):
        grid = [t for t in study.trials if t.user_attrs.get("baseline") == name]
        assert {1e-3, 1e-2} <= {t.user_attrs["baseline_lr"] for t in grid}  # a best on an edge grows it
        assert any(trial.state == TrialState.COMPLETE for trial in grid)
        for trial in grid:  # a grid grown past its edge may reach an lr where the method diverges
            assert trial.state == TrialState.COMPLETE or trial.user_attrs["outcome"] == "diverged"
            spec = spec_from_stored(trial.user_attrs["split"])
            assert isinstance(spec, CompetitorSpec) and spec.name == name and spec.lr == trial.user_attrs["baseline_lr"]
            # the planned state the budget sees is the spec's own count on the study's model
            assert trial.user_attrs["state_bytes"] == competitor_spec(name, lr=spec.lr).state_bytes(model)
            with pytest.raises(ValueError, match=f"is a {name} trial .*not a split"):
                select_trial(study, trial=trial.number)
    # repeats of a competitor (a proxy seed, a rung run) rebuild the same optimizer
    repeats = [t for t in study.trials if t.user_attrs.get("seed_of") is not None or t.user_attrs.get("rung_of") is not None]
    for trial in repeats:
        source = study.trials[trial.user_attrs.get("seed_of", trial.user_attrs.get("rung_of"))]
        assert trial.user_attrs["split"] == source.user_attrs["split"]
    assert any(isinstance(spec_from_stored(t.user_attrs["split"]), CompetitorSpec) for t in repeats)


def test_a_missing_package_stops_the_run_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "apollo_torch", None)  # as if apollo-torch were not installed
    config = load_study_config(study_file(tmp_path, ["apollo", "muon"]))
    with pytest.raises(SetupError, match=r'\[study\] baselines: .*apollo-torch.*pip install -e "\.\[apollo\]".*drop \'apollo\'') as caught:
        check_setup(config)
    assert "\n" not in str(caught.value)


def test_a_competitor_runs_on_its_own_grid_around_its_authors_lr(tmp_path: Path) -> None:
    from frugal_search.search.study import baseline_lr_grid, planned_baseline_runs

    path = study_file(tmp_path, ["adamw", "muon", "adam-mini", "lora"])
    path.write_text(path.read_text().replace("front_seeds = 1", "front_seeds = 1\ncompetitor_lr_multipliers = [3, 1, 0.333]"))
    config = load_study_config(path)
    assert baseline_lr_grid(config, "muon") == (0.00666, 0.02, 0.06)  # Muon's 0.02, sorted, 3 digits
    assert baseline_lr_grid(config, "adam-mini") == (0.000333, 0.001, 0.003)
    for name in ("adamw", "lora"):  # a partition baseline and LoRA keep baseline_lrs
        assert baseline_lr_grid(config, name) == (1e-3, 1e-2)
    planned = {(run.user_attrs["baseline"], run.user_attrs["baseline_lr"]) for run in planned_baseline_runs(config)}
    assert ("muon", 0.06) in planned and ("muon", 1e-2) not in planned and ("lora", 1e-2) in planned


@pytest.mark.parametrize("value", ["[0]", "[-1.0]", '"x3"', "[true]"])
def test_bad_competitor_lr_multipliers_are_refused(tmp_path: Path, value: str) -> None:
    from frugal_search.search.config import StudyConfigError

    path = study_file(tmp_path, ["muon"])
    path.write_text(path.read_text().replace("front_seeds = 1", f"front_seeds = 1\ncompetitor_lr_multipliers = {value}"))
    with pytest.raises(StudyConfigError, match=r"\[study\] competitor_lr_multipliers: expected a list of positive numbers"):
        load_study_config(path)
