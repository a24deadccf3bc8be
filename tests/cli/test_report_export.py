"""The report and export commands on a study created by the search stage in a SQLite file."""

from __future__ import annotations

import json
import math

import optuna
import pytest

from frugal_search.cli import main
from frugal_search.partition import Partition

MIB = 2**20


@pytest.fixture
def study_file(tmp_path, add_trial_to):
    """A study file, its study opened by the search stage, and hand-made trials in it."""
    from frugal_search.search import load_study_config
    from frugal_search.search import open_study

    path = tmp_path / "cli.toml"
    path.write_text(
        "[study]\n"
        'name = "cli"\n'
        f'storage = "sqlite:///{tmp_path / "cli.db"}"\n'
        'memory_budget = "3 MiB"\n'
        'baselines = ["adamw"]\n'
        "[model]\n"
        'source = "tiny-llama"\n'
        "[space]\n"
        "density = [0.05, 0.5]\n"
    )
    study = open_study(load_study_config(path))
    add_trial_to(study, outcome="ok", state_bytes=8 * MIB, eval_loss=3.0, baseline="adamw")
    add_trial_to(study, outcome="ok", state_bytes=2 * MIB, eval_loss=3.4, params={"density": 0.1})
    add_trial_to(study, outcome="diverged", state_bytes=MIB, eval_loss=math.nan, params={"density": 0.05})
    return path


def test_storage_stays_readable_by_optuna(study_file, tmp_path) -> None:
    study = optuna.load_study(study_name="cli", storage=f"sqlite:///{tmp_path / 'cli.db'}")
    assert study.metric_names == ["eval_loss", "state_mib"]
    assert [d.name for d in study.directions] == ["MINIMIZE", "MINIMIZE"]
    assert len(study.trials) == 3


def _dashboard_get(app, path: str) -> dict:
    """GET ``path`` from a WSGI app, as a browser on optuna-dashboard would; the JSON body."""
    from wsgiref.util import setup_testing_defaults

    environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "QUERY_STRING": ""}
    setup_testing_defaults(environ)
    statuses = []
    body = b"".join(app(environ, lambda status, headers, exc_info=None: statuses.append(status)))
    assert statuses == ["200 OK"], (path, statuses, body[:500])
    return json.loads(body)


def test_optuna_dashboard_opens_the_study(study_file, tmp_path) -> None:
    dashboard = pytest.importorskip("optuna_dashboard", reason="pip install -e '.[dev]' installs optuna-dashboard")
    app = dashboard.wsgi(f"sqlite:///{tmp_path / 'cli.db'}")
    (summary,) = _dashboard_get(app, "/api/studies")["study_summaries"]
    assert summary["study_name"] == "cli" and summary["directions"] == ["minimize", "minimize"]
    detail = _dashboard_get(app, f"/api/studies/{summary['study_id']}")
    assert detail["objective_names"] == ["eval_loss", "state_mib"]  # the axes are named
    assert [trial["state"] for trial in detail["trials"]] == ["Complete", "Complete", "Pruned"]
    assert sorted(trial["number"] for trial in detail["best_trials"]) == [0, 1]  # both on the front
    attrs = {item["key"]: item["value"] for item in detail["trials"][2]["user_attrs"]}
    assert attrs["outcome"] == "diverged"  # the trial contract's words show in the dashboard


def test_report_command_from_the_study_file(study_file, tmp_path, capsys) -> None:
    out = tmp_path / "report"
    assert main(["report", str(study_file), "-o", str(out)]) == 0
    text = (out / "report.md").read_text()
    # the budget comes from the study file; the export command names it
    assert "## Best partition under the memory budget (3.00 MiB)" in text
    assert f"frugal-search export {study_file} --trial 1 -o split.json" in text
    assert "| memory budget | 3145728 bytes (3 MiB) |" in text and "| study.baselines | adamw |" in text
    assert str(out) in capsys.readouterr().out


def test_report_command_from_storage_and_name(study_file, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    out = tmp_path / "by-url"
    assert main(["report", "--storage", url, "--name", "cli", "-o", str(out)]) == 0
    assert f"frugal-search export --storage {url} --name cli --trial 1 -o split.json" in (out / "report.md").read_text()


def test_report_command_names_the_studies_a_storage_holds(study_file, tmp_path, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert main(["report", "--storage", url, "--name", "nope", "-o", str(tmp_path / "x")]) == 2
    assert "holds no study named 'nope' (it holds: cli)" in capsys.readouterr().err


def test_missing_storage_file_is_not_created(tmp_path, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'absent.db'}"
    assert main(["export", "--storage", url, "--name", "x", "--trial", "0"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "absent.db").exists()


def test_export_command_by_trial_and_best(study_file, tmp_path, capsys) -> None:
    split = tmp_path / "split.json"
    assert main(["export", str(study_file), "--trial", "1", "-o", str(split)]) == 0
    source = json.loads(split.read_text())["provenance"]["source"]
    assert (source["study"], source["trial"]) == ("cli", 1)
    assert source["storage"] == f"sqlite:///{tmp_path / 'cli.db'}"
    assert Partition.from_json(split).settings == Partition.paper(0.1).settings

    best = tmp_path / "best.json"
    assert main(["export", str(study_file), "--best", "--max-memory", "2 MiB", "-o", str(best)]) == 0
    assert json.loads(best.read_text())["provenance"]["source"]["trial"] == 1

    assert main(["export", str(study_file), "--best", "--max-memory", "1.5 MiB", "-o", str(best)]) == 2
    assert "lowest memory available is 2.00 MiB" in capsys.readouterr().err


def test_export_command_needs_a_trial_choice(study_file) -> None:
    with pytest.raises(SystemExit):
        main(["export", str(study_file)])
