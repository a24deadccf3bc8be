"""Byte quantities as people write them ("2 MiB", "1.5GiB", "300 kB") and back."""

from __future__ import annotations

import re

_UNITS: dict[str, int] = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_PATTERN = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z]*)\s*$")


def parse_bytes(text: str | int | float) -> int:
    """Return the number of bytes in ``text``: a number (bytes) or a number with a unit.

    Units are case-insensitive: B, kB, MB, GB, TB (powers of 1000) and KiB, MiB, GiB, TiB (powers
    of 1024). Raises ``ValueError`` naming the allowed units when the text cannot be read.
    """
    if isinstance(text, bool):
        raise ValueError(f"not a byte quantity: {text!r}")
    if isinstance(text, (int, float)):
        if text < 0:
            raise ValueError(f"byte quantity must be >= 0, got {text!r}")
        return int(text)
    match = _PATTERN.match(text)
    unit = match.group(2).lower() if match else ""
    if match is None or (unit and unit not in _UNITS):
        allowed = ", ".join(["B", "kB", "MB", "GB", "TB", "KiB", "MiB", "GiB", "TiB"])
        raise ValueError(f"cannot read {text!r} as a byte quantity; write a number and one of: {allowed}")
    return int(round(float(match.group(1)) * _UNITS[unit or "b"]))


def format_bytes(num_bytes: float) -> str:
    """Return ``num_bytes`` in the largest binary unit that keeps it >= 1 (e.g. ``"1.50 MiB"``)."""
    value = float(num_bytes)
    if abs(value) < 1024:
        return f"{value:.0f} B"
    for unit in ("KiB", "MiB"):
        value /= 1024
        if abs(value) < 1024:
            return f"{value:.2f} {unit}"
    return f"{value / 1024:.2f} GiB"


MIB = 2**20
GIB = 2**30
