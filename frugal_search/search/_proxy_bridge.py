"""Turn the ``[model]`` and ``[data]`` tables of a study file into the proxy stage's specs."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from frugal_search.optimizer import check_known_keys


def _spec_from_table(spec_type: type, table: Mapping[str, Any]) -> Any:
    check_known_keys(table, [item.name for item in dataclasses.fields(spec_type)])
    for item in dataclasses.fields(spec_type):
        value = table.get(item.name)
        if item.name == "source" and value is not None and not isinstance(value, str):
            raise TypeError(f"source: expected a string, got {value!r}")
    return spec_type(**dict(table))


def model_spec_from_table(table: Mapping[str, Any]) -> Any:
    """Return the ``ModelSpec`` that ``[model]`` describes (``source``, ``overrides``)."""
    from frugal_search.proxy import ModelSpec

    overrides = table.get("overrides", {})
    if not isinstance(overrides, Mapping):
        raise TypeError(f"overrides: expected a table of config fields, got {overrides!r}")
    values = dict(table)
    if "overrides" in values:
        values["overrides"] = dict(overrides)
    return _spec_from_table(ModelSpec, values)


def data_spec_from_table(table: Mapping[str, Any]) -> Any:
    """Return the ``DataSpec`` that ``[data]`` describes (``source``, ``tokenizer``, ``dtype``, ...)."""
    from frugal_search.proxy import DataSpec

    for key in ("validation_fraction",):
        if key in table and (not isinstance(table[key], (int, float)) or isinstance(table[key], bool)):
            raise TypeError(f"{key}: expected a number, got {table[key]!r}")
    for key in ("max_bytes", "vocab_size"):
        if key in table and (not isinstance(table[key], int) or isinstance(table[key], bool)):
            raise TypeError(f"{key}: expected an integer, got {table[key]!r}")
    for key in ("tokenizer", "dtype"):
        if key in table and not isinstance(table[key], str):
            raise TypeError(f"{key}: expected a string, got {table[key]!r}")
    return _spec_from_table(DataSpec, table)
