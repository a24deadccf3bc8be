"""The partition-wide FRUGAL settings, derived from the optimizer's settings schema.

:class:`FrugalSettings` is built from :data:`frugal_search.optimizer.SETTINGS`: one frozen field
per setting, in the schema's order, with its default and its check. A setting added to the schema
is a field here, a key of split files and a keyword of ``Partition`` with no other change.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from frugal_search.optimizer import SETTINGS, Setting

# The annotation of each kind of setting (``Setting.kind``), for the generated fields.
_KIND_TYPES: dict[str, str] = {
    "float": "float",
    "int": "int",
    "choice": "str",
    "bool": "bool",
    "betas": "tuple[float, float]",
}


def _annotation(setting: Setting) -> str:
    kind = _KIND_TYPES[setting.kind]
    return f"{kind} | None" if setting.optional else kind


def _post_init(self: Any) -> None:
    """Take a list of betas as the tuple it stands for, then check every setting by its schema."""
    if isinstance(self.betas, list):
        object.__setattr__(self, "betas", tuple(self.betas))
    for field in dataclasses.fields(self):
        SETTINGS[field.name].check(getattr(self, field.name))


def _to_kwargs(self: Any) -> dict[str, Any]:
    """Return the settings as keyword arguments of ``FRUGAL``."""
    return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}


def _docstring() -> str:
    lines = [
        "The partition-wide settings passed to :class:`~frugal_search.optimizer.FRUGAL`.",
        "",
        "One frozen field per setting of the optimizer's schema, with its default (the paper's LLaMA",
        "pre-training settings) and its check: a bad value is a ``ValueError`` naming it and what is",
        "allowed. A rule's overrides take precedence for its parameters. The fields:",
        "",
    ]
    lines += [f"- ``{name}`` ({setting.default!r}): {setting.help}" for name, setting in SETTINGS.items()]
    return "\n".join(lines)


FrugalSettings = dataclasses.make_dataclass(
    "FrugalSettings",
    [(name, _annotation(setting), dataclasses.field(default=setting.default)) for name, setting in SETTINGS.items()],
    frozen=True,
    namespace={"__post_init__": _post_init, "to_kwargs": _to_kwargs, "__doc__": _docstring()},
)
FrugalSettings.__module__ = __name__  # so it pickles by this name (make_dataclass takes module= only from 3.12)

SETTING_NAMES: tuple[str, ...] = tuple(SETTINGS)
"""The names of :class:`FrugalSettings`: every key of the optimizer's schema."""
