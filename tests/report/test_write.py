"""write_report: every file, the front in pareto.csv against a brute force, the words of report.md."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from frugal_search.report import REPORT_FILES, write_report

MIB = 2**20


def brute_force_front_numbers(trials: pd.DataFrame) -> list[int]:
    """Non-dominated COMPLETE trials of trials.csv by comparing every pair."""
    rows = [(r.number, r.state_mib, r.eval_loss) for r in trials.itertuples() if r.state == "COMPLETE"]
    front = [
        (mem, loss, number)
        for number, mem, loss in rows
        if not any(m <= mem and l <= loss and (m < mem or l < loss) for _, m, l in rows)
    ]
    return [number for _, _, number in sorted(front)]


def test_report_of_a_mixed_study(make_study, fill_random, add_trial_to, tmp_path) -> None:
    study = make_study(name="mixed")
    fill_random(study, count=50, seed=4)
    add_trial_to(study, outcome="ok", state_bytes=3 * MIB, eval_loss=3.3, baseline="frugal")
    add_trial_to(study, outcome="diverged", state_bytes=2 * MIB, eval_loss=math.nan, baseline="galore",
                 reason="loss is NaN at step 4")
    report = write_report(study, tmp_path / "out", memory_budget="3.5 MiB")
    assert report == tmp_path / "out" / "report.md"
    for name in REPORT_FILES:
        assert (tmp_path / "out" / name).stat().st_size > 0, name

    trials = pd.read_csv(tmp_path / "out" / "trials.csv")
    front = pd.read_csv(tmp_path / "out" / "pareto.csv")
    assert len(trials) == 53
    assert list(front["number"]) == brute_force_front_numbers(trials)
    assert list(front["state_mib"]) == sorted(front["state_mib"])

    text = report.read_text()
    within = trials[(trials["state"] == "COMPLETE") & (trials["state_bytes"] <= 3.5 * MIB)]
    best = within.sort_values(["eval_loss", "state_bytes", "number"]).iloc[0]
    assert "## Best partition under the memory budget (3.50 MiB)" in text
    assert f"Trial **#{best['number']}**" in text
    assert f"frugal-search export studies/mixed.toml --trial {best['number']} -o split.json" in text
    assert "frugal-search memory split.json --model-config big.json" in text
    counts = trials["outcome"].value_counts()
    assert f"53 trials: {counts['ok']} ok" in text
    # every baseline is compared, the diverged one without a loss difference
    assert "| adamw | own lr | #0 | ok |" in text and "| frugal | own lr | #51 | ok |" in text
    assert "| galore | own lr | #52 | diverged | – |" in text
    assert "attention, mlp frugal blocks rho" in text  # partitions described in words
    assert "loss is NaN at step 4" in text


def test_report_of_an_empty_study_says_so(make_study, tmp_path) -> None:
    report = write_report(make_study(name="nothing"), tmp_path)
    assert all((tmp_path / name).exists() for name in REPORT_FILES)
    text = report.read_text()
    assert "The study has no trials yet" in text
    assert "## Best partition" not in text
    assert pd.read_csv(tmp_path / "pareto.csv").empty


def test_report_of_a_study_where_nothing_finished_says_so(make_study, add_trial_to, tmp_path) -> None:
    study = make_study(name="all-bad")
    add_trial_to(study, outcome="diverged", state_bytes=MIB, eval_loss=math.nan, reason="loss is NaN at step 2")
    add_trial_to(study, outcome="infeasible", state_bytes=9 * MIB, reason="over the memory budget 4.00 MiB")
    add_trial_to(study, outcome="error", state_bytes=None, split={}, reason="RuntimeError: boom")
    report = write_report(study, tmp_path, memory_budget=4 * MIB)
    text = report.read_text()
    assert "3 trials: 1 diverged, 1 error, 1 infeasible." in text
    assert "so there is no Pareto front yet" in text
    assert "None: no trial finished with a loss." in text
    assert "No hypervolume: no trial finished with a loss." in text
    for reason in ("loss is NaN at step 2", "over the memory budget 4.00 MiB", "RuntimeError: boom"):
        assert reason in text


def test_budget_below_every_trial_names_the_smallest(make_study, add_trial_to, tmp_path) -> None:
    study = make_study(name="tight")
    add_trial_to(study, outcome="ok", state_bytes=2 * MIB, eval_loss=3.0)
    text = write_report(study, tmp_path, memory_budget="1 MiB").read_text()
    assert "The smallest finished one is trial #0 with 2 MiB." in text


@pytest.mark.parametrize("budget", ["lots", -3])
def test_bad_budget_is_a_value_error(make_study, tmp_path, budget) -> None:
    with pytest.raises(ValueError, match="byte quantity"):
        write_report(make_study(), tmp_path, memory_budget=budget)


def test_settings_table_flattens_sections_ranges_and_skips_unset_values() -> None:
    from dataclasses import dataclass, field

    from frugal_search.report._markdown import flatten_settings

    class Space:
        def to_dict(self) -> dict:
            return {"density": {"low": 0.05, "high": 0.5, "log": True}, "mode": "blocks"}

    @dataclass
    class Study:
        name: str = "s"
        baselines: tuple[str, ...] = ("adamw", "frugal")
        memory_budget: int | None = None

    @dataclass
    class Config:
        study: Study = field(default_factory=Study)
        model: dict = field(default_factory=lambda: {"source": "tiny-llama", "overrides": {"hidden_size": 64}})
        space: Space = field(default_factory=Space)

    assert flatten_settings(Config()) == {
        "study.name": "s",
        "study.baselines": "adamw, frugal",
        "model.source": "tiny-llama",
        "model.overrides.hidden_size": "64",
        "space.density": "0.05 .. 0.5 (log)",
        "space.mode": "blocks",
    }


def test_running_trial_reads_as_running_not_error(make_study) -> None:
    import optuna

    from frugal_search.report import trials_table

    study = make_study()
    trial = study.ask()
    # the search writes outcome "error" first, so a killed worker's trial says what happened
    trial.set_user_attr("outcome", "error")
    assert trials_table(study).loc[0, "outcome"] == "running"
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    assert trials_table(study).loc[0, "outcome"] == "error"


def test_a_storage_under_the_working_folder_is_named_relative_to_it(tmp_path, monkeypatch) -> None:
    from frugal_search.report._write import _relative_to_cwd

    monkeypatch.chdir(tmp_path)
    assert _relative_to_cwd(f"sqlite:///{tmp_path}/studies/tiny.db") == "sqlite:///studies/tiny.db"
    assert _relative_to_cwd(f"{tmp_path}/studies/tiny.log") == "studies/tiny.log"
    assert _relative_to_cwd("sqlite:////elsewhere/tiny.db") == "sqlite:////elsewhere/tiny.db"
    assert _relative_to_cwd("postgresql+psycopg2://u@h/db") == "postgresql+psycopg2://u@h/db"
