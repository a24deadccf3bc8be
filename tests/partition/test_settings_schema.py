"""The partition-wide settings are derived from the optimizer's schema: a setting added there is a
field, a keyword of ``Partition`` and a key of split files, with no second list to keep in step."""

from __future__ import annotations

import dataclasses
import importlib.util
import pickle
import sys
import types

import pytest

from frugal_search.optimizer import SETTINGS, Setting
from frugal_search.partition import FrugalSettings, Partition, Rule
from frugal_search.partition import settings as settings_module


def _settings_module_with(extra: Setting, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """The settings module executed afresh (under another name) on a schema that holds ``extra``."""
    monkeypatch.setitem(SETTINGS, extra.name, extra)
    spec = importlib.util.spec_from_file_location("fresh_partition_settings", settings_module.__file__)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_every_schema_setting_is_a_field_with_its_default_in_schema_order() -> None:
    fields = dataclasses.fields(FrugalSettings)
    assert [field.name for field in fields] == list(SETTINGS)
    assert all(field.default == SETTINGS[field.name].default for field in fields)
    assert FrugalSettings().to_kwargs() == {name: setting.default for name, setting in SETTINGS.items()}


def test_a_setting_added_to_the_schema_becomes_a_checked_field(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = Setting("clip", "float", 1.0, low=0.0, optional=True, help="a setting the schema gains")
    module = _settings_module_with(extra, monkeypatch)
    assert module.SETTING_NAMES[-1] == "clip"
    assert module.FrugalSettings().clip == 1.0 and module.FrugalSettings(clip=None).clip is None
    with pytest.raises(ValueError, match=r"Invalid FRUGAL setting clip=-1: allowed None or a finite number >= 0"):
        module.FrugalSettings(clip=-1)
    assert "``clip`` (1.0): a setting the schema gains" in module.FrugalSettings.__doc__


def test_settings_are_frozen_checked_and_pickle() -> None:
    settings = FrugalSettings(lr=0.01, betas=[0.8, 0.9], mode="svd")
    assert settings.betas == (0.8, 0.9)  # a list (as JSON gives it) is the tuple it stands for
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.lr = 0.1
    assert pickle.loads(pickle.dumps(settings)) == settings  # workers receive them pickled
    with pytest.raises(ValueError, match=r"Invalid FRUGAL setting density=1.5: allowed a finite number in \[0, 1\]"):
        FrugalSettings(density=1.5)


def test_a_split_file_round_trips_every_setting() -> None:
    partition = Partition([Rule("frugal", kinds=["attention", "mlp"]), Rule("stateful")], mode="columns", density=0.1,
                          state_dtype="bf16", update_gap=50)
    again = Partition.from_dict(partition.to_dict())
    assert again.settings == partition.settings and again.settings.state_dtype == "bf16"
