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
      "provenance": {"source": {"study": "tiny", "trial": 12}, "metrics": {"eval_loss": 3.1}},
      "lr_transfer": {"rule": "width", "base_widths": {"model.layers.*.mlp.down_proj.weight": 344, ...}}
    }

``settings`` holds every FRUGAL setting (missing ones take their defaults when read), except that
the storage settings (``state_dtype``, ...) are written only when not their defaults, so that a split
written before they existed reads, writes and fingerprints as it did; ``rules``
are in the order they are tried; ``provenance`` is free-form (``source`` and ``metrics`` by
convention); ``lr_transfer`` (optional, written only when set) holds the learning-rate transfer
rule and the proxy's fan-ins (:mod:`frugal_search.partition.lr_transfer`): a file without it
means no rule. Unknown keys, wrong types and unknown format versions are errors that name the file,
the key and the allowed values.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from frugal_search.optimizer import DEFAULTS, STORAGE_SETTINGS, check_known_keys
from frugal_search.partition.lr_transfer import check_base_widths, check_lr_transfer
from frugal_search.partition.rules import Rule
from frugal_search.partition.settings import SETTING_NAMES, FrugalSettings

SPLIT_FORMAT = "frugal-split/1"
"""The format tag written into every split file; the only version this code reads."""
_TOP_KEYS = ("format", "name", "settings", "rules", "provenance", "lr_transfer")
_LR_TRANSFER_KEYS = ("rule", "base_widths")


@dataclasses.dataclass(frozen=True)
class SplitContent:
    """What a split file holds, checked: the rules, the settings, the name and the provenance."""

    rules: tuple[Rule, ...]
    settings: FrugalSettings
    name: str | None
    provenance: dict[str, Any]
    lr_transfer: str = "none"
    base_widths: dict[str, int] | None = None


def split_to_dict(content: SplitContent) -> dict[str, Any]:
    """Return ``content`` as a JSON-safe dict in the ``frugal-split/1`` format."""
    settings = content.settings.to_kwargs()
    if settings["betas"] is not None:
        settings["betas"] = list(settings["betas"])
    for name in STORAGE_SETTINGS:  # see the module docstring
        if settings[name] == DEFAULTS[name]:
            del settings[name]
    out: dict[str, Any] = {
        "format": SPLIT_FORMAT,
        "name": content.name,
        "settings": settings,
        "rules": [rule.to_dict() for rule in content.rules],
        "provenance": content.provenance,
    }
    if content.lr_transfer != "none" or content.base_widths is not None:
        out["lr_transfer"] = {"rule": content.lr_transfer, "base_widths": content.base_widths}
    return out


def split_from_dict(data: Any, *, source: str = "<dict>") -> SplitContent:
    """Check a ``frugal-split/1`` dict and return its content; errors are ``ValueError`` naming ``source``."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: a split config must be a JSON object, got {type(data).__name__}")
    check_known_keys(data, _TOP_KEYS, where=f"{source}: ")
    version = data.get("format")
    if version != SPLIT_FORMAT:
        raise ValueError(
            f"{source}: key 'format' is {version!r}; this version of frugal-search reads only {SPLIT_FORMAT!r}"
        )
    settings = data.get("settings", {})
    if not isinstance(settings, dict):
        raise ValueError(f"{source}: key 'settings' must be an object of FRUGAL settings, got {settings!r}")
    check_known_keys(settings, SETTING_NAMES, what="key", where=f"{source}: 'settings': ")
    rules_data = data.get("rules")
    if not isinstance(rules_data, list) or not rules_data:
        raise ValueError(f"{source}: key 'rules' must be a non-empty list of rule objects, got {rules_data!r}")
    rules = []
    for index, rule_data in enumerate(rules_data):
        try:
            rules.append(Rule.from_dict(rule_data))
        except ValueError as error:
            raise ValueError(f"{source}: key 'rules[{index}]': {error}") from None
    name = data.get("name")
    if name is not None and not isinstance(name, str):
        raise ValueError(f"{source}: key 'name' must be a string or null, got {name!r}")
    provenance = data.get("provenance") or {}
    if not isinstance(provenance, dict):
        raise ValueError(f"{source}: key 'provenance' must be an object, got {provenance!r}")
    try:
        checked = FrugalSettings(**settings)
    except ValueError as error:
        raise ValueError(f"{source}: key 'settings': {error}") from None
    rule, widths = _lr_transfer_from(data.get("lr_transfer"), source)
    return SplitContent(
        rules=tuple(rules), settings=checked, name=name, provenance=provenance, lr_transfer=rule, base_widths=widths
    )


def _lr_transfer_from(data: Any, source: str) -> tuple[str, dict[str, int] | None]:
    """The rule and base widths of a split's ``lr_transfer`` object; missing means no rule."""
    if data is None:
        return "none", None
    if not isinstance(data, dict):
        raise ValueError(f"{source}: key 'lr_transfer' must be an object with 'rule' and 'base_widths', got {data!r}")
    check_known_keys(data, _LR_TRANSFER_KEYS, what="key", where=f"{source}: 'lr_transfer': ")
    try:
        rule = check_lr_transfer(data.get("rule", "none"))
        widths = data.get("base_widths")
        return rule, None if widths is None else check_base_widths(widths)
    except ValueError as error:
        raise ValueError(f"{source}: key 'lr_transfer': {error}") from None


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


def split_to_json_text(data: dict[str, Any]) -> str:
    """Return a split dict (:func:`split_to_dict`) as the text :func:`write_split` writes."""
    return _dumps(data) + "\n"


def write_split(data: dict[str, Any], path: str | Path) -> Path:
    """Write a split dict to ``path`` as indented JSON; return the path."""
    path = Path(path)
    path.write_text(split_to_json_text(data), encoding="utf-8")
    return path


def read_split(path: str | Path) -> Any:
    """Read a split config file's JSON; a missing or malformed file is a ``ValueError`` naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"cannot read split config {path}: {error.strerror or error}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})") from None
