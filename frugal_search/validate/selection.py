"""Which finished trials the fidelity check re-runs: the best of the front, and others over memory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from frugal_search.search import non_dominated_ranks


@dataclass(frozen=True)
class Candidate:
    """A finished trial as the fidelity check sees it: its number, proxy loss and state MiB."""

    number: int
    proxy_loss: float
    state_mib: float


def spread_indices(count: int, wanted: int) -> list[int]:
    """Return ``wanted`` distinct indices into ``range(count)`` evenly spaced, ends included."""
    if wanted >= count:
        return list(range(count))
    if wanted <= 0:
        return []
    if wanted == 1:
        return [count // 2]
    return sorted({round(i * (count - 1) / (wanted - 1)) for i in range(wanted)})


def select_for_fidelity(candidates: Sequence[Candidate], *, top: int) -> tuple[list[int], list[int]]:
    """Return ``(best, others)``: trial numbers to re-run, ``top`` of each where there are enough.

    ``best`` takes whole non-dominated ranks (the front first, then the next rank, ...) while they
    fit, and from the rank that does not fit, members evenly spread along memory. ``others`` are
    ``top`` of the remaining trials evenly spread over memory (lowest and highest included), so the
    check also sees how the proxy ranks partitions it did not favour.
    """
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top!r}")
    ranks = non_dominated_ranks([(c.proxy_loss, c.state_mib) for c in candidates])
    best: list[Candidate] = []
    for rank in sorted(set(ranks)):
        group = sorted(
            (c for c, r in zip(candidates, ranks) if r == rank), key=lambda c: (c.state_mib, c.proxy_loss)
        )
        room = top - len(best)
        if room <= 0:
            break
        best.extend(group[i] for i in spread_indices(len(group), room))
    chosen = {c.number for c in best}
    rest = sorted((c for c in candidates if c.number not in chosen), key=lambda c: (c.state_mib, c.proxy_loss))
    others = [rest[i] for i in spread_indices(len(rest), top)]
    return [c.number for c in best], [c.number for c in others]
