"""Split config files: a partition as versioned, human-readable JSON.

Format ``frugal-split/1``::

    {
      "format": "frugal-split/1",
      "name": "frugal",
      "settings": {"lr": 0.001, "betas": [0.9, 0.999], ..., "seed": 0},
      "rules": [
        {"role": "frugal", "kinds": ["attention", "mlp"]},
        {"role": "stateful"}
      ],
      "provenance": {"source": {"study": "tiny", "trial": 12}, "metrics": {"eval_loss": 3.1}}
    }

``settings`` holds every FRUGAL setting (missing ones take their defaults when read); ``rules``
are in the order they are tried; ``provenance`` is free-form (``source`` and ``metrics`` by
convention). Unknown keys, wrong types and unknown format versions are errors that name the file,
the key and the allowed values.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from frugal_search.partition.partition import SETTING_NAMES, Partition
from frugal_search.partition.rules import Rule

SPLIT_FORMAT = "frugal-split/1"
"""The format tag written into every split file; the only version this code reads."""
_TOP_KEYS = ("format", "name", "settings", "rules", "provenance")


def partition_to_dict(partition: Partition) -> dict[str, Any]:
    """Return ``partition`` as a JSON-safe dict in the ``frugal-split/1`` format."""
    settings = partition.settings.to_kwargs()
    settings["betas"] = list(settings["betas"])
    return {
        "format": SPLIT_FORMAT,
        "name": partition.name,
        "settings": settings,
        "rules": [rule.to_dict() for rule in partition.rules],
        "provenance": partition.provenance,
    }


def partition_from_dict(data: Any, *, source: str = "<dict>") -> Partition:
    """Build a partition from a ``frugal-split/1`` dict; ``source`` names the file in errors."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: a split config must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - set(_TOP_KEYS))
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {unknown}; allowed keys: {', '.join(_TOP_KEYS)}")
    version = data.get("format")
    if version != SPLIT_FORMAT:
        raise ValueError(
            f"{source}: key 'format' is {version!r}; this version of frugal-search reads only {SPLIT_FORMAT!r}"
        )
    settings = data.get("settings", {})
    if not isinstance(settings, dict):
        raise ValueError(f"{source}: key 'settings' must be an object of FRUGAL settings, got {settings!r}")
    unknown = sorted(set(settings) - set(SETTING_NAMES))
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {unknown} in 'settings'; allowed: {', '.join(SETTING_NAMES)}")
    rules_data = data.get("rules")
    if not isinstance(rules_data, list) or not rules_data:
        raise ValueError(f"{source}: key 'rules' must be a non-empty list of rule objects, got {rules_data!r}")
    rules = []
    for index, rule_data in enumerate(rules_data):
        try:
            rules.append(Rule.from_dict(rule_data))
        except (ValueError, TypeError) as error:
            raise ValueError(f"{source}: key 'rules[{index}]': {error}") from None
    name = data.get("name")
    if name is not None and not isinstance(name, str):
        raise ValueError(f"{source}: key 'name' must be a string or null, got {name!r}")
    provenance = data.get("provenance") or {}
    if not isinstance(provenance, dict):
        raise ValueError(f"{source}: key 'provenance' must be an object, got {provenance!r}")
    try:
        return Partition(rules, name=name, provenance=provenance, **settings)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{source}: key 'settings': {error}") from None


def _dumps(value: Any, depth: int = 0) -> str:
    """JSON with objects and lists of objects indented by 2, short lists of scalars on one line."""
    pad, inner = "  " * depth, "  " * (depth + 1)
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(str(k))}: {_dumps(v, depth + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        items = [f"{inner}{_dumps(v, depth + 1)}" for v in value]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return json.dumps(value, allow_nan=False)


def split_to_json_text(partition: Partition) -> str:
    """Return the split config of ``partition`` as the text :func:`write_split` writes."""
    return _dumps(partition_to_dict(partition)) + "\n"


def write_split(partition: Partition, path: str | Path) -> Path:
    """Write ``partition`` to ``path`` as indented JSON; return the path."""
    path = Path(path)
    text = split_to_json_text(partition)
    path.write_text(text, encoding="utf-8")
    return path


def read_split(path: str | Path) -> Partition:
    """Read a split config file; a missing, malformed or invalid file is a ``ValueError``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"cannot read split config {path}: {error.strerror or error}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})") from None
    return partition_from_dict(data, source=str(path))
