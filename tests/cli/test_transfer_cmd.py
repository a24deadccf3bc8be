"""``frugal-search transfer``: a missing target, a bad [transfer] table or bad options are one line and exit 2."""

from __future__ import annotations

import pytest

from frugal_search.cli import main

STUDY = """
[study]
name = "t"
storage = "sqlite:///{db}"

[model]
source = "tiny-llama"

[space]
lr = [1e-3, 1e-2]
"""


@pytest.mark.parametrize(
    ("transfer", "options", "fragment"),
    [
        ("", [], "has no [transfer] model and no --model"),
        ("[transfer]\ntop = 2\n", [], "[transfer] model: expected a table with a source"),
        ('[transfer]\nmodel = { source = "tiny-llama" }\nlr_rules = ["mup"]\n', [], "lr_rules: expected distinct names"),
        ('[transfer]\nmodel = { source = "tiny-llama" }\nlr_multipliers = [0.5, -1]\n', [], "lr_multipliers"),
        ('[transfer]\nmodel = { source = "tiny-llama" }\nwidths = 1\n', [], "unknown key"),
        ("", ["--model", "tiny-llama", "--model-override", "hidden_size"], "expected KEY=VALUE"),
        ("", ["--model", "tiny-llama", "--model-override", "hidden_size=abc"], "the target model 'tiny-llama' cannot be built"),
        ("", ["--model", "tiny-llama", "--lr-multipliers", "0.5,x"], "--lr-multipliers"),
        ("", ["--model", "tiny-llama", "--lr-rules", "none,none"], "lr_rules must be distinct"),
        ("", ["--model", "tiny-llama", "--top-k", "-1"], "top_k must be an integer >= 0"),
        ("", ["--model", "tiny-llama", "--seeds", "-1"], "seeds must be an integer >= 0"),
        ('[transfer]\nmodel = { source = "tiny-llama" }\nseeds = -2\n', [], "[transfer] seeds: expected an integer >= 0"),
    ],
)
def test_a_bad_target_or_plan_is_one_line_and_exit_2(tmp_path, capsys, transfer, options, fragment) -> None:
    study_file = tmp_path / "t.toml"
    study_file.write_text(STUDY.format(db=tmp_path / "t.db") + transfer)
    assert main(["transfer", str(study_file), "-o", str(tmp_path / "out"), *options]) == 2
    error = capsys.readouterr().err.strip()
    assert fragment in error and error.startswith("frugal-search transfer:") and "\n" not in error
    assert not (tmp_path / "t.db").exists()  # nothing was created
