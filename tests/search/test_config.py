"""Study file loading: typed values, defaults, and one clear error per kind of mistake."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from frugal_search.search.config import StudyConfigError, load_study_config

VALID = """
[study]
name = "demo"
trials = 12
sampler = "nsga2"
seed = 3
memory_budget = "2 MiB"
baselines = ["adamw", "frugal"]

[model]
source = "tiny-llama"
overrides = { num_hidden_layers = 2 }

[proxy]
steps = 30
batch_size = 4
lr = 0.002
threads = 1

[space]
density = [0.05, 0.5]
head_role = ["stateful", "state_free"]
update_gap = { low = 5, high = 100 }
mode = "blocks"

[search]
fidelity = "successive-halving"
min_fraction = 0.3
reduction_factor = 2
"""


def write(tmp_path: Path, text: str, name: str = "study.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_valid_file_gives_typed_values(tmp_path: Path) -> None:
    config = load_study_config(write(tmp_path, VALID))
    assert config.study.name == "demo"
    assert config.study.trials == 12
    assert config.study.sampler == "nsga2"
    assert config.study.memory_budget == 2 * 2**20
    assert config.study.baselines == ("adamw", "frugal")
    # default storage lies next to the study file, whatever the working directory
    assert config.study.storage == f"sqlite:///{(tmp_path / 'demo.db').resolve()}"
    assert config.proxy.steps == 30 and config.proxy.batch_size == 4
    assert config.proxy.budget().seq_len == 128  # unset keys keep the proxy stage's default
    assert config.proxy.threads == 1  # a worker setting, not part of the proxy budget
    assert config.space["lr"].fixed == 0.002  # [proxy] lr fixes the unlisted lr dimension
    assert config.space["density"].low == 0.05 and config.space["density"].high == 0.5
    assert config.space["density"].log is False
    assert config.space["update_gap"].log is True  # update gap is searched on a log scale
    assert config.space["head_role"].choices == ("stateful", "state_free")
    assert config.space["mode"].fixed == "blocks" and not config.space["mode"].varies
    assert config.space["block_order"].fixed == "descending"  # unlisted: the paper's default
    assert set(config.space.varying) == {"density", "head_role", "update_gap"}
    assert config.search.fidelity == "successive-halving" and config.search.reduction_factor == 2
    assert config.model_spec().overrides == {"num_hidden_layers": 2}


def test_overrides_are_checked_and_applied(tmp_path: Path) -> None:
    config = load_study_config(write(tmp_path, VALID)).with_overrides(
        trials=3, steps=7, name="other", storage=str(tmp_path / "x.log"), device="cuda:1"
    )
    assert (config.study.trials, config.proxy.steps, config.study.name) == (3, 7, "other")
    assert config.study.storage == f"journal://{(tmp_path / 'x.log').resolve()}"
    assert config.proxy.device == torch.device("cuda", 1)  # parsed once, typed; the set-up checks it exists
    with pytest.raises(StudyConfigError, match="trials"):
        config.with_overrides(trials=0)
    # a device given on the command line is read like the file's: a typo fails here, with the same words
    with pytest.raises(StudyConfigError, match=r"\[proxy\] device: expected 'cpu', 'cuda', 'cuda:N' or 'mps', got 'gpu'"):
        config.with_overrides(device="gpu")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("[study]", "[study]\ncolour = 'red'"), r"\[study\] unknown key 'colour'; allowed: name, storage"),
        (("[search]", "[searchh]"), r"unknown section 'searchh'; allowed: study, model"),
        (("trials = 12", "trials = '12'"), r"\[study\] trials: expected an integer, got '12'"),
        (("trials = 12", "trials = 0"), r"\[study\] trials: expected an integer >= 1"),
        (
            ('sampler = "nsga2"', 'sampler = "cmaes"'),
            r"sampler: 'cmaes' is not allowed; allowed: tpe \| nsga2",
        ),
        (('memory_budget = "2 MiB"', 'memory_budget = "2 parsecs"'), r"memory_budget: cannot read"),
        (('"adamw", "frugal"', '"adamw", "sgd"'), r"baselines: 'sgd' is not a baseline"),
        (("density = [0.05, 0.5]", "density = [0.5, 0.05]"), r"density: range low 0.5 is above high 0.05"),
        (
            ("density = [0.05, 0.5]", "density = [0.05, 1.5]"),
            r"density: 1.5 is out of range; allowed: a finite number in \[0, 1\]",
        ),
        (
            ('mode = "blocks"', 'mode = "diagonal"'),
            r"mode: 'diagonal' is not allowed; allowed: blocks \| svd",
        ),
        (('"stateful", "state_free"]', '"stateful", 3]'), r"head_role: 3 is not allowed"),
        (
            ("update_gap = { low = 5, high = 100 }", "update_gap = { low = 0, high = 100 }"),
            r"update_gap: 0 is out of range",
        ),
        (
            ("update_gap = { low = 5, high = 100 }", "update_gap = { low = 5 }"),
            r"update_gap: a range needs both",
        ),
        (("[space]", "[space]\nrho = [0.1, 0.2]"), r"\[space\] unknown key 'rho'; allowed: lr, "),
        (("batch_size = 4", "batch_size = 4.5"), r"\[proxy\] batch_size: expected an integer, got 4.5"),
        (("batch_size = 4", "batch_size = -4"), r"\[proxy\] batch_size must be a positive integer"),
        (("threads = 1", "threads = 0"), r"\[proxy\] threads: expected an integer >= 1, got 0"),
        (
            ('fidelity = "successive-halving"', 'fidelity = "hyperband"'),
            r"fidelity: 'hyperband' is not allowed",
        ),
        (("min_fraction = 0.3", "min_fraction = 1.0"), r"min_fraction: expected a number in \(0, 1\)"),
        (('source = "tiny-llama"', "source = 7"), r"\[model\] source: expected a string, got 7"),
        (("[proxy]", "[data]\nsorce = 'stdlib'\n[proxy]"), r"\[data\] unknown key 'sorce'; allowed: source"),
        (
            ('[study]', '[study]\nstorage = "bogus://x"'),
            r"storage: cannot use 'bogus://x' \(Can't load plugin.*write e.g. 'sqlite:///",
        ),
        (
            ('[study]', '[study]\nstorage = "mysql+nosuchdriver://u@h/db"'),
            r"storage: cannot use 'mysql\+nosuchdriver://u@h/db'",
        ),
        (('[study]', '[study]\nstorage = "studies/x.txt"'), r"storage: 'studies/x.txt' is neither a URL nor"),
    ],
)
def test_each_mistake_names_file_key_and_allowed_values(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    old, new = change
    assert old in VALID
    path = write(tmp_path, VALID.replace(old, new, 1))
    with pytest.raises(StudyConfigError, match=expected) as caught:
        load_study_config(path)
    assert str(caught.value).startswith(str(path))


def test_storage_whose_driver_is_not_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy.dialects.postgresql.psycopg2 import PGDialect_psycopg2

    def missing() -> None:
        raise ImportError("No module named 'psycopg2'")

    monkeypatch.setattr(PGDialect_psycopg2, "import_dbapi", classmethod(lambda cls: missing()))
    text = VALID.replace("[study]", '[study]\nstorage = "postgresql+psycopg2://u@h/db"', 1)
    with pytest.raises(StudyConfigError, match=r"driver for .* is not installed \(No module named 'psycopg2'\)"):
        load_study_config(write(tmp_path, text))


def test_syntax_error_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(StudyConfigError, match="not valid TOML"):
        load_study_config(write(tmp_path, VALID.replace("trials = 12", "trials = = 12")))
    with pytest.raises(StudyConfigError, match="no such study file"):
        load_study_config(tmp_path / "absent.toml")


@pytest.mark.parametrize(
    "space",
    ["", "[space]\n", "[space]\nmode = 'blocks'\ndensity = 0.3\n", "[space]\ndensity = [0.3, 0.3]\n"],
)
def test_space_that_varies_nothing_is_an_error(tmp_path: Path, space: str) -> None:
    text = VALID[: VALID.index("[space]")] + space
    with pytest.raises(StudyConfigError, match=r"\[space\] (is missing or empty|varies nothing)"):
        load_study_config(write(tmp_path, text))


def test_lr_in_proxy_and_space_conflict(tmp_path: Path) -> None:
    with pytest.raises(StudyConfigError, match=r"\[proxy\] lr and \[space\] lr are both set"):
        load_study_config(write(tmp_path, VALID.replace("[space]", "[space]\nlr = [1e-4, 1e-2]")))


def test_shipped_study_files_load() -> None:
    root = Path(__file__).resolve().parents[2] / "studies"
    tiny = load_study_config(root / "tiny.toml")
    assert tiny.study.baselines == (
        "adamw", "frugal", "frugal-rho0", "galore", "galore-8bit", "badam", "apollo", "apollo-mini", "adam-mini", "muon", "adamw-8bit"
    )
    assert tiny.study.competitor_lr_multipliers == (0.333, 1.0, 3.0)
    assert tiny.study.memory_budget is not None
    big = load_study_config(root / "llama-60m.toml")
    assert big.proxy.device == torch.device("cuda") and big.model.source == "llama-60m"
