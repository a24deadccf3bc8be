"""Layer selectors: absolute indices, ranges, first/last, shares of depth that transfer."""

from __future__ import annotations

import pytest

from frugal_search.partition.layers import parse_layer_selector, selected_layers, selects_layer


@pytest.mark.parametrize(
    ("selector", "num_layers", "expected"),
    [
        (3, 8, [3]),
        ("3", 8, [3]),
        ("9", 8, []),
        ("2-5", 8, [2, 3, 4, 5]),
        ("first:2", 8, [0, 1]),
        ("last:2", 8, [6, 7]),
        ("first:1, last:1", 8, [0, 7]),
        ("last:0.25", 4, [3]),
        ("last:0.25", 32, list(range(24, 32))),
        ("0.75-1.0", 4, [3]),
        ("0.75-1.0", 32, list(range(24, 32))),
        ("0.0-0.5", 6, [0, 1, 2]),
        # layer i is in a share range when its middle (i + 0.5) / L is in [low, high)
        ("0.5-1.0", 3, [1, 2]),
        ("0-0.5", 3, [0]),
        # first/last shares round half up and keep at least one layer
        ("first:0.1", 4, [0]),
        ("first:0.5", 3, [0, 1]),
        ("last:1.0", 5, [0, 1, 2, 3, 4]),
    ],
)
def test_selected_layers(selector: int | str, num_layers: int, expected: list[int]) -> None:
    assert selected_layers(selector, num_layers) == expected
    assert [i for i in range(num_layers) if selects_layer(selector, i, num_layers)] == expected


def test_share_selector_means_the_same_share_at_any_depth() -> None:
    for num_layers in (4, 8, 12, 24, 32):
        assert len(selected_layers("0.5-1.0", num_layers)) == num_layers // 2
        assert selected_layers("last:0.5", num_layers) == selected_layers("0.5-1.0", num_layers)


@pytest.mark.parametrize("bad", ["", "x", "-1", "3-1", "0.5-0.2", "0.5-1.5", "last:0", "first:1.5", "last:", "1,,2"])
def test_bad_selector_names_the_part_and_the_grammar(bad: str) -> None:
    with pytest.raises(ValueError, match="first:K"):
        parse_layer_selector(bad)


def test_negative_int_and_wrong_type() -> None:
    with pytest.raises(ValueError, match="last:1"):
        parse_layer_selector(-1)
    with pytest.raises(ValueError):
        parse_layer_selector(1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="int or a string"):
        parse_layer_selector([0, 1])  # type: ignore[arg-type]
