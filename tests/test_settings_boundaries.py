"""One value, one verdict: the optimizer, a partition and its rules, a split file and a study file
all judge a FRUGAL setting by the optimizer's schema (ValueError, or a config error that is one)."""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from frugal_search.optimizer import DEFAULTS, FRUGAL, SETTINGS
from frugal_search.partition import SPLIT_FORMAT, FrugalSettings, Partition, Rule
from frugal_search.partition.rules import OVERRIDE_KEYS
from frugal_search.search.config import StudyConfigError, load_study_config
from frugal_search.search import DIMENSIONS

NAN, INF = math.nan, math.inf
OK, BAD = True, False

# (setting, value, accepted?); a rank goes with mode "svd", where it applies
CASES: list[tuple[str, Any, bool]] = [
    *[("lr", value, OK) for value in (0, 0.0, 1e-3, 1)],
    *[("lr", value, BAD) for value in (-1e-3, NAN, INF, -INF, True, "0.1")],
    *[("eps", value, OK) for value in (0, 1e-8)],
    *[("eps", value, BAD) for value in (-1e-8, NAN, INF, False)],
    *[("weight_decay", value, OK) for value in (0, 0.1)],
    *[("weight_decay", value, BAD) for value in (-0.1, INF, NAN)],
    *[(name, value, OK) for name in ("split_lr_scale", "state_free_lr_scale") for value in (0, 0.5, 2)],
    *[(name, value, BAD) for name in ("split_lr_scale", "state_free_lr_scale") for value in (-1, NAN, INF, True)],
    *[("density", value, OK) for value in (0, 0.0, 0.25, 1, 1.0)],
    *[("density", value, BAD) for value in (-0.1, 1.5, NAN, INF, True, "0.5")],
    *[("rank", value, OK) for value in (0, 4)],
    *[("rank", value, BAD) for value in (-1, 2.5, 4.0, True, "4", NAN)],
    *[("update_gap", value, OK) for value in (1, 200)],
    *[("update_gap", value, BAD) for value in (0, -5, 2.5, 200.0, True, NAN)],
    *[("mode", value, OK) for value in ("blocks", "svd", "randk")],
    *[("mode", value, BAD) for value in ("lowrank", "", 1, True)],
    *[("block_order", value, OK) for value in ("ascending", "random")],
    *[("block_order", value, BAD) for value in ("zigzag", 0)],
    *[("state_free", value, OK) for value in ("signsgd", "sgd", "none")],
    *[("state_free", value, BAD) for value in ("adam", False)],
    *[("reset_state", value, OK) for value in (True, False)],
    *[("reset_state", value, BAD) for value in (0, 1, "yes")],
    *[("betas", value, OK) for value in ((0.9, 0.999), [0.0, 0.5])],
    *[("betas", value, BAD) for value in ((1.0, 0.999), (0.9, -0.1), (0.9,), (True, 0.9), (NAN, 0.9), 0.9)],
    *[("stateful_rule", value, OK) for value in ("adamw", "lion", "sgdm")],
    *[("stateful_rule", value, BAD) for value in ("adam", "sgd", 0)],
    *[("momentum", value, OK) for value in (0, 0.9, 1)],
    *[("momentum", value, BAD) for value in (-0.1, 1.5, NAN, True)],
    *[("nesterov", value, OK) for value in (True, False)],
    *[("nesterov", value, BAD) for value in (1, "yes")],
    *[("density_end", value, OK) for value in (0, 0.05, 0.25)],
    *[("density_end", value, BAD) for value in (0.5, -0.1, NAN, True)],  # 0.5 > density 0.25
    *[("density_steps", value, OK) for value in (1, 1000)],
    *[("density_steps", value, BAD) for value in (0, 2.5, True)],
    *[("update_gap_growth", value, OK) for value in (1, 1.5)],
    *[("update_gap_growth", value, BAD) for value in (0.5, INF, True)],
    *[("update_gap_max", value, OK) for value in (1, 1000)],
    *[("update_gap_max", value, BAD) for value in (0, 10.0)],
    *[("loss_plateau", value, OK) for value in (0, 0.005)],
    *[("loss_plateau", value, BAD) for value in (-0.1, NAN)],
    *[("seed", value, OK) for value in (0, 7)],
    *[("seed", value, BAD) for value in (-1, 1.5, True, "0")],
]


def _context(name: str) -> dict[str, Any]:
    return {"mode": "svd"} if name == "rank" else {}


def _verdict(build: Any) -> bool:
    """True when ``build()`` accepts; False on a ValueError (any other exception fails the test)."""
    try:
        build()
    except ValueError:
        return False
    return True


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return repr(value)


def _study(tmp_path: Path, space: dict[str, Any]) -> Path:
    lines = [f"{key} = {_toml(value)}" for key, value in space.items()]
    text = "\n".join(
        [
            "[model]",
            'source = "tiny-llama"',
            "[proxy]",
            "steps = 2",
            "[space]",
            'head_role = ["stateful", "state_free"]',  # the dimension that varies
            *lines,
        ]
    )
    path = tmp_path / "study.toml"
    path.write_text(text + "\n", encoding="utf-8")
    return path


def _split(tmp_path: Path, settings: dict[str, Any]) -> Path:
    path = tmp_path / "split.json"
    data = {"format": SPLIT_FORMAT, "settings": settings, "rules": [{"role": "frugal"}]}
    path.write_text(json.dumps(data), encoding="utf-8")  # NaN / Infinity as Python's json writes them
    return path


@pytest.mark.parametrize(("name", "value", "accepted"), CASES, ids=[f"{n}={v!r}" for n, v, _ in CASES])
def test_every_reader_of_a_setting_gives_the_same_verdict(
    tmp_path: Path, name: str, value: Any, accepted: bool
) -> None:
    settings = {**_context(name), name: value}
    verdicts = {
        "FRUGAL": _verdict(lambda: FRUGAL([torch.nn.Parameter(torch.zeros(4, 3))], **settings)),
        "Partition": _verdict(lambda: Partition([Rule("frugal")], **settings)),
        "split file": _verdict(lambda: Partition.from_json(_split(tmp_path, settings))),
    }
    if name in OVERRIDE_KEYS:
        verdicts["Rule"] = _verdict(lambda: Partition([Rule("frugal", **settings)]))
    if name in DIMENSIONS and not isinstance(value, (list, tuple)):
        verdicts["study file"] = _verdict(lambda: load_study_config(_study(tmp_path, settings)))
    assert verdicts == dict.fromkeys(verdicts, accepted)


def test_a_bad_setting_in_a_file_is_the_config_error_and_names_the_value(tmp_path: Path) -> None:
    with pytest.raises(StudyConfigError, match=r"\[space\] density: 1.5 is out of range; allowed: a finite number"):
        load_study_config(_study(tmp_path, {"density": 1.5}))
    with pytest.raises(ValueError, match=r"split.json: key 'settings': Invalid FRUGAL setting lr=-1: allowed a finite"):
        Partition.from_json(_split(tmp_path, {"lr": -1}))
    with pytest.raises(ValueError, match=r"split.json: key 'rules': rules\[0\]: Invalid FRUGAL setting rank=2"):
        Partition.from_json(_split(tmp_path, {"rank": 2}))  # rank does not apply to blocks


@pytest.mark.parametrize(("value", "accepted"), [(0, OK), (2.5, OK), (-1, BAD), (NAN, BAD), (True, BAD)])
def test_a_rules_lr_scale_and_the_spaces_outer_lr_scale_agree(tmp_path: Path, value: Any, accepted: bool) -> None:
    verdicts = [
        _verdict(lambda: Rule("stateful", lr_scale=value)),
        _verdict(lambda: load_study_config(_study(tmp_path, {"embedding_norm_head_lr_scale": value}))),
    ]
    assert verdicts == [accepted, accepted]


def test_a_log_scale_range_is_stricter_and_says_so(tmp_path: Path) -> None:
    with pytest.raises(StudyConfigError, match="a log-scale range needs low > 0, got 0; use log = false"):
        load_study_config(_study(tmp_path, {"rank": [0, 8]}))
    path = _study(tmp_path, {})
    path.write_text(path.read_text() + "rank = { low = 0, high = 8, log = false }\n", encoding="utf-8")
    assert load_study_config(path).space["rank"].low == 0


def test_every_copy_of_the_settings_derives_from_the_schema() -> None:
    assert tuple(field.name for field in FrugalSettings.__dataclass_fields__.values()) == tuple(SETTINGS)
    assert FrugalSettings().to_kwargs() == DEFAULTS
    signature = inspect.signature(FRUGAL)
    assert {name: signature.parameters[name].default for name in SETTINGS} == DEFAULTS
    for name in SETTINGS:
        if name in DIMENSIONS:
            assert DIMENSIONS[name].setting is SETTINGS[name]
