"""Layer selectors: which blocks of a stack a rule applies to, in absolute or relative terms.

A selector is an ``int`` or a string of comma-separated parts; a layer is selected when any part
selects it. With ``L`` blocks in the parameter's stack (numbered from 0):

==================  =====================================================================
``3`` or ``"3"``    layer 3 (an index past the end selects nothing)
``"2-5"``           layers 2, 3, 4 and 5 (both ends included)
``"first:2"``       layers 0 and 1; ``"last:2"``: layers L-2 and L-1
``"0.75-1.0"``      a share of the depth: layer ``i`` is selected when the middle of its
                    slice of depth, ``(i + 0.5) / L``, lies in ``[0.75, 1.0)``
``"first:0.25"``    the first ``k`` layers with ``k = max(1, floor(0.25 * L + 0.5))``
                    (the share rounded half up, at least one layer); ``"last:0.25"`` alike
==================  =====================================================================

A number with a decimal point is a share of the depth (0 to 1), a number without one is a layer
index or count. Shares make a rule transfer: ``"last:0.25"`` is layer 3 of a 4-layer proxy and
layers 24-31 of a 32-layer model; ``"0.5-1.0"`` is the upper half of any model. Each stack is
measured on its own (T5's encoder and decoder each have their own ``L``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re

_INDEX = r"\d+"
_SHARE = r"\d*\.\d+|\d+\.\d*"
_PART = re.compile(
    rf"^(?:(?P<single>{_INDEX})"
    rf"|(?P<lo>{_SHARE}|{_INDEX})-(?P<hi>{_SHARE}|{_INDEX})"
    rf"|(?P<end>first|last):(?P<count>{_SHARE}|{_INDEX}))$"
)
_HELP = (
    'write an index ("3"), a range ("2-5"), "first:K", "last:K", a share of depth ("0.75-1.0"), '
    '"first:0.25" / "last:0.25", or several of them separated by commas'
)


@dataclasses.dataclass(frozen=True)
class _Part:
    kind: str  # "range" (indices) | "share" (depth fractions) | "first" | "last"
    low: float
    high: float
    relative: bool


def _is_share(text: str) -> bool:
    return "." in text


def parse_layer_selector(selector: int | str) -> tuple[_Part, ...]:
    """Parse a selector into parts; raise ``ValueError`` naming the bad part and the grammar."""
    if isinstance(selector, bool) or not isinstance(selector, (int, str)):
        raise ValueError(f"layer selector must be an int or a string, got {selector!r}; {_HELP}")
    return _parse(selector)


@functools.lru_cache(maxsize=1024)  # rules are matched against every parameter of a model
def _parse(selector: int | str) -> tuple[_Part, ...]:
    if isinstance(selector, int):
        if selector < 0:
            raise ValueError(f"layer index must be >= 0, got {selector}; use 'last:1' for the last layer")
        return (_Part("range", selector, selector, relative=False),)
    parts = []
    for raw in selector.split(","):
        text = raw.strip().lower()
        match = _PART.match(text)
        if match is None:
            raise ValueError(f"cannot read layer selector {selector!r} (part {raw.strip()!r}); {_HELP}")
        if match["single"] is not None:
            index = int(match["single"])
            parts.append(_Part("range", index, index, relative=False))
        elif match["lo"] is not None:
            lo, hi = match["lo"], match["hi"]
            relative = _is_share(lo) or _is_share(hi)
            low, high = float(lo), float(hi)
            if relative and not 0.0 <= low < high <= 1.0:
                raise ValueError(
                    f"layer share range {raw.strip()!r} in {selector!r} must satisfy 0 <= low < high <= 1; {_HELP}"
                )
            if not relative and low > high:
                raise ValueError(f"layer range {raw.strip()!r} in {selector!r} is empty (low > high); {_HELP}")
            parts.append(_Part("share" if relative else "range", low, high, relative=relative))
        else:
            count_text = match["count"]
            relative = _is_share(count_text)
            count = float(count_text)
            if relative and not 0.0 < count <= 1.0:
                raise ValueError(f"layer share {raw.strip()!r} in {selector!r} must be in (0, 1]; {_HELP}")
            if not relative and count < 1:
                raise ValueError(f"layer count {raw.strip()!r} in {selector!r} must be >= 1; {_HELP}")
            parts.append(_Part(match["end"], count, count, relative=relative))
    return tuple(parts)


def _part_selects(part: _Part, layer: int, num_layers: int) -> bool:
    if part.kind == "range":
        return part.low <= layer <= part.high
    if part.kind == "share":
        middle = (layer + 0.5) / num_layers
        return part.low <= middle < part.high
    count = max(1, math.floor(part.low * num_layers + 0.5)) if part.relative else int(part.low)
    if part.kind == "first":
        return layer < count
    return layer >= num_layers - count


def selects_layer(selector: int | str, layer: int, num_layers: int) -> bool:
    """Return True when ``selector`` selects block ``layer`` of a stack of ``num_layers`` blocks."""
    return any(_part_selects(part, layer, num_layers) for part in parse_layer_selector(selector))


def selected_layers(selector: int | str, num_layers: int) -> list[int]:
    """Return the layer indices ``selector`` selects in a stack of ``num_layers`` blocks."""
    parts = parse_layer_selector(selector)
    return [i for i in range(num_layers) if any(_part_selects(p, i, num_layers) for p in parts)]
