"""Byte quantities: parsing what people write and formatting for reports."""

from __future__ import annotations

import pytest

from frugal_search.units import format_bytes, parse_bytes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2 MiB", 2 * 1024**2),
        ("1.5GiB", 3 * 1024**3 // 2),
        ("300 kB", 300_000),
        ("7", 7),
        (4096, 4096),
        ("1e3 B", 1000),
        ("0.5 tib", 1024**4 // 2),
    ],
)
def test_parse_bytes(text: str | int, expected: int) -> None:
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["2 parsecs", "MiB", "", "-3 MiB", True, -1])
def test_parse_bytes_rejects_what_it_cannot_read(text: object) -> None:
    with pytest.raises(ValueError):
        parse_bytes(text)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("num_bytes", "expected"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.00 KiB"), (3 * 1024**2, "3.00 MiB"), (5 * 1024**3, "5.00 GiB"),
     (2048 * 1024**3, "2048.00 GiB")],
)
def test_format_bytes(num_bytes: int, expected: str) -> None:
    assert format_bytes(num_bytes) == expected
