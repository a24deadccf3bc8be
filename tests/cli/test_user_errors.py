"""Every subcommand, given a mistake of the user's, prints one error line and exits 2, with no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from frugal_search.cli import main

STUDY = """
[study]
name = "mistakes"
trials = 2
storage = "{storage}"
[model]
source = "tiny-llama"
[data]
source = "{data}"
[proxy]
steps = 3
batch_size = 2
seq_len = 8
eval_every = 3
eval_batches = 1
[space]
density = [0.0, 0.5]
"""


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, str]:
    """Paths the bad arguments point at: a study file whose study was never run, a file, a truncated split."""
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "empty_folder").mkdir()
    (tmp_path / "truncated.json").write_text('{"format": "frugal-split/1"')
    study = tmp_path / "study.toml"
    study.write_text(STUDY.format(storage=f"sqlite:///{tmp_path / 'never_run.db'}", data="stdlib"))
    return {
        "dir": str(tmp_path),
        "study": str(study),
        "file": str(tmp_path / "a_file"),
        "empty": str(tmp_path / "empty_folder"),
        "truncated": str(tmp_path / "truncated.json"),
        "missing": str(tmp_path / "missing"),
    }


CASES = {
    "proxy: empty data folder": "proxy --baseline adamw --steps 2 --data {empty}",
    "proxy: missing split file": "proxy --split {missing}.json",
    "proxy: split file is a folder": "proxy --split {dir}",
    "proxy: truncated split file": "proxy --split {truncated}",
    "proxy: unknown baseline": "proxy --baseline nope",
    "proxy: unknown model": "proxy --baseline adamw --model nope",
    "proxy: negative steps": "proxy --baseline adamw --steps -1",
    "memory: missing split file": "memory {missing}.json --model tiny-llama",
    "memory: truncated split file": "memory {truncated} --model tiny-llama",
    "run: missing study file": "run {missing}.toml",
    "run: no workers": "run {study} --workers 0",
    "run: negative trials": "run {study} --trials -1",
    "report: missing study file": "report {missing}.toml",
    "report: study never run": "report {study}",
    "report: output under a file": "report {study} -o {file}/report",
    "report: output under /proc": "report {study} -o /proc/frugal-report",
    "export: output under a file": "export {study} --trial 0 -o {file}/split.json",
    "export: output is a folder": "export {study} --trial 0 -o {dir}",
    "export: output under /proc": "export {study} --trial 0 -o /proc/split.json",
    "export: study never run": "export {study} --trial 0 -o {dir}/split.json",
    "validate: no seeds": "validate {study} --seeds 0",
    "validate: output under a file": "validate {study} -o {file}/fidelity",
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_mistake_is_one_line_and_exit_code_2(
    case: str, files: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = CASES[case].format(**files).split()
    with_exit_code = _run(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert with_exit_code == 2, captured.err
    assert "Traceback" not in captured.err
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(("frugal-search", "error:")), lines[0]


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exit_:  # argparse's own errors
        return int(exit_.code)


def test_nothing_is_created_by_a_bad_output_path(files: dict[str, str]) -> None:
    target = Path(files["dir"]) / "new" / "report"
    assert _run(["report", files["study"], "-o", str(target)]) == 2  # the study was never run
    assert not target.parent.exists()
