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


def labelled_data_spec_from_table(table: Mapping[str, Any]) -> Any:
    """Return the ``LabelledDataSpec`` that ``[data]`` describes for a classification task (``source``,
    ``text_column``, ``text_pair_column``, ``label_column``, ``validation_fraction``).

    The source must be labelled data: the built-in ``stdlib-packages`` task or a .csv / .jsonl /
    .parquet file (a text corpus such as ``stdlib`` is a causal-lm source)."""
    from frugal_search.proxy import BUILTIN_TASK, LabelledDataSpec, is_labelled_source

    check_known_keys(table, [item.name for item in dataclasses.fields(LabelledDataSpec)])
    for key in ("text_column", "text_pair_column", "label_column", "source"):
        if key in table and not isinstance(table[key], str):
            raise TypeError(f"{key}: expected a string, got {table[key]!r}")
    if "validation_fraction" in table and (
        not isinstance(table["validation_fraction"], (int, float)) or isinstance(table["validation_fraction"], bool)
    ):
        raise TypeError(f"validation_fraction: expected a number, got {table['validation_fraction']!r}")
    source = table.get("source", BUILTIN_TASK)
    if not is_labelled_source(source):
        raise ValueError(
            f"source: {source!r} is not labelled data; a sequence-classification task reads {BUILTIN_TASK!r} "
            f"or a .csv / .jsonl / .parquet file with text and label columns"
        )
    return _spec_from_table(LabelledDataSpec, table)


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
