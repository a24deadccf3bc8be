"""Shapes of each mode's stateful subspace (the side rule, the rounding) and how a subspace is drawn.

Every tensor is handled as a matrix ``(m, n)``: a 2-D weight as is (nn.Linear: out x in), a tensor
with more dimensions as ``(shape[0], prod(shape[1:]))`` and a 1-D tensor as one row ``(1, numel)``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from frugal_search.optimizer._settings import PROJECTION_MODES, blocks_k, floor_count

# Bytes of one int64 index (column/row/coordinate indices are kept as int64 tensors).
INDEX_BYTES = 8


@dataclass(frozen=True)
class SubspacePlan:
    """Layout of one tensor's stateful part for a per-tensor mode (everything but blocks).

    kind: ``none`` (no stateful part: the whole gradient is state-free), ``right`` (dense basis
    ``B`` of shape (r, n), low-rank gradient ``G B^T`` of shape (m, r)), ``left`` (dense basis
    ``A`` of shape (m, r), ``A^T G`` of shape (r, n)), ``columns`` / ``rows`` (``count`` input
    columns / output rows chosen by index) or ``flat`` (``count`` entries of the flattened tensor).
    """

    kind: str
    count: int
    rows: int  # m
    cols: int  # n

    @property
    def moment_shape(self) -> tuple[int, ...]:
        """Shape of each moment (the shape of the low-rank gradient)."""
        if self.kind in ("right", "columns"):
            return (self.rows, self.count)
        if self.kind in ("left", "rows"):
            return (self.count, self.cols)
        if self.kind == "flat":
            return (self.count,)
        return (0,)

    @property
    def basis_shape(self) -> tuple[int, int] | None:
        """Shape of the dense basis (svd and random only)."""
        if self.kind == "right":
            return (self.count, self.cols)
        if self.kind == "left":
            return (self.rows, self.count)
        return None

    def state_bytes(self, itemsize: int, moments: int = 2) -> int:
        """Bytes this tensor's state holds: ``moments`` full-precision moments (AdamW 2, Lion and
        SGD-momentum 1) plus the basis or the int64 indices."""
        if self.kind == "none":
            return 0
        return moments * math.prod(self.moment_shape) * itemsize + self.selection_bytes(itemsize)

    def selection_bytes(self, itemsize: int) -> int:
        """Bytes of the subspace itself: the dense basis (in the parameter's dtype) or the int64 indices."""
        if self.kind == "none":
            return 0
        basis = self.basis_shape
        if basis is not None:
            return math.prod(basis) * itemsize
        return self.count * INDEX_BYTES


def matrix_shape(shape: torch.Size | tuple[int, ...]) -> tuple[int, int]:
    """The (m, n) matrix view FRUGAL uses for a tensor of this shape."""
    if len(shape) == 0:
        return (1, 1)
    if len(shape) == 1:
        return (1, int(shape[0]))
    return (int(shape[0]), math.prod(int(s) for s in shape[1:]))


@functools.lru_cache(maxsize=4096)
def plan_subspace(mode: str, shape: tuple[int, ...], density: float, rank: int | None) -> SubspacePlan:
    """The stateful subspace of a tensor of ``shape`` under a per-tensor mode.

    svd/random/randperm use the side rule: if m >= n project from the right with
    ``r = round(rho * n)``, else from the left with ``r = round(rho * m)``; randperm's basis rows
    are one-hot, so it is stored as the r chosen columns (right) or rows (left). columns/rows pick
    ``floor(rho * n)`` / ``floor(rho * m)``; randk ``floor(rho * m * n)`` entries. ``rank``, when
    given, replaces the density-derived count (clipped to the side's size) for every mode but randk.
    """
    m, n = matrix_shape(shape)
    if mode in PROJECTION_MODES:
        right = m >= n
        side = n if right else m
        count = min(rank, side) if rank is not None else round(density * side)
        if mode == "randperm":
            kind = "columns" if right else "rows"
        else:
            kind = "right" if right else "left"
    elif mode == "columns":
        kind, count = "columns", min(rank, n) if rank is not None else floor_count(density, n)
    elif mode == "rows":
        kind, count = "rows", min(rank, m) if rank is not None else floor_count(density, m)
    elif mode == "randk":
        kind, count = "flat", floor_count(density, m * n)
    else:
        raise ValueError(f"mode {mode!r} has no per-tensor subspace (blocks schedules whole tensors)")
    if count == 0:
        return SubspacePlan("none", 0, m, n)
    return SubspacePlan(kind, count, m, n)


def group_plan(group: Mapping[str, Any], param: torch.Tensor, density: float | None = None) -> SubspacePlan:
    """``param``'s subspace under its group's mode and rank at ``density`` (None: the group's own
    density, the start of a schedule and so its peak)."""
    rho = float(group["density"] if density is None else density)
    return plan_subspace(group["mode"], tuple(param.shape), rho, group["rank"])


def draw_subspace(
    mode: str, plan: SubspacePlan, grad_matrix: torch.Tensor, generator: torch.Generator, *, exact: bool = False
) -> torch.Tensor:
    """Choose a new subspace: the dense basis (svd, random) or the sorted int64 indices.

    Random draws happen on the CPU with the optimizer's generator and are then moved, so CPU and
    CUDA runs choose the same subspace. The basis takes the gradient's dtype; the SVD itself runs
    in float32 at least. ``exact`` (moments carried across re-selections, ``reset_state=False``):
    svd takes the vectors of ``torch.linalg.svd`` of the whole gradient, with its signs, which
    carried moments meet (see :func:`top_singular_vectors`); otherwise the faster QR route.
    """
    m, n = plan.rows, plan.cols
    device, dtype = grad_matrix.device, grad_matrix.dtype
    if mode == "svd":
        work = grad_matrix if grad_matrix.dtype == torch.float64 else grad_matrix.float()
        return top_singular_vectors(work, plan.kind, plan.count, qr_first=not exact).to(dtype).contiguous()
    if mode == "random":
        side = n if plan.kind == "right" else m
        gaussian = torch.randn((side, plan.count), generator=generator, dtype=torch.float32)
        orthonormal, _ = torch.linalg.qr(gaussian)  # (side, r), orthonormal columns
        basis = orthonormal.T if plan.kind == "right" else orthonormal
        return basis.to(device=device, dtype=dtype).contiguous()
    if plan.kind == "columns":
        size = n
    elif plan.kind == "rows":
        size = m
    else:  # flat (randk)
        size = m * n
    chosen = torch.randperm(size, generator=generator)[: plan.count]
    return torch.sort(chosen).values.to(device)


# Aspect ratio from which the SVD of a tall (wide) matrix goes through the triangular factor of its
# QR: the vectors of the long side, which FRUGAL never uses, are then never formed (688 x 256 on
# this CPU: 8.6 ms instead of 11.8, the same vectors to float32 accuracy).
QR_FIRST_ASPECT = 2.0


def top_singular_vectors(work: torch.Tensor, kind: str, count: int, *, qr_first: bool = True) -> torch.Tensor:
    """The top ``count`` right singular vectors as rows, shape (count, n) (``kind == "right"``), or
    left singular vectors as columns, shape (m, count) (``kind == "left"``), of ``work`` (m, n).

    For m >= QR_FIRST_ASPECT * n, ``work = Q R`` and R (n, n) has the same singular values and right
    singular vectors; symmetrically, a wide matrix's left singular vectors are those of ``R^T``
    from the QR of ``work^T``. Singular vectors are unique up to sign (and rotation within repeated
    singular values), so the projector onto them is what either route determines. The signs
    differ between the routes: moments carried into a new basis meet them, so ``qr_first=False``
    takes the plain SVD of ``work`` (the authors' and GaLore's convention).
    """
    m, n = work.shape
    if kind == "right":
        if qr_first and m >= QR_FIRST_ASPECT * n:
            work = torch.linalg.qr(work, mode="r").R  # (n, n)
        return torch.linalg.svd(work, full_matrices=False).Vh[:count]
    if qr_first and n >= QR_FIRST_ASPECT * m:
        work = torch.linalg.qr(work.T, mode="r").R.T  # (m, m)
    return torch.linalg.svd(work, full_matrices=False).U[:, :count]


def block_window(order: str, n_tensors: int, k: int, period: int, generator: torch.Generator | None) -> list[int]:
    """Indices (into the group's params) of the k active tensors in 0-indexed re-selection period.

    ascending: a window of k from the first tensor, advancing by k each period and wrapping.
    descending: the same from the last tensor moving down (the paper's pre-training order).
    mirror: k/2 from the front half (advancing by k/2, wrapping within the front half) plus their
    mirror images ``n-1-i`` (for odd n the middle tensor is its own mirror, so k-1 are active).
    random: k distinct tensors drawn with the optimizer's generator.
    """
    if k <= 0 or n_tensors == 0:
        return []
    if order == "ascending":
        return sorted((period * k + j) % n_tensors for j in range(k))
    if order == "descending":
        return sorted(n_tensors - 1 - (period * k + j) % n_tensors for j in range(k))
    if order == "mirror":
        half = k // 2
        front_size = (n_tensors + 1) // 2
        front = [(period * half + j) % front_size for j in range(half)]
        return sorted(set(front) | {n_tensors - 1 - i for i in front})
    if order == "random":
        if generator is None:
            raise ValueError("block order 'random' needs the optimizer's generator")
        return sorted(torch.randperm(n_tensors, generator=generator)[:k].tolist())
    raise ValueError(f"Unknown block_order {order!r}")


def blocks_window_bytes(order: str, tensor_bytes: list[int], density: float) -> list[int]:
    """State bytes of the active window in each period of one cycle of a fixed block order.

    The list repeats with the schedule: period ``p`` holds entry ``p % len(result)``. It is the
    shortest such cycle of the bytes, so that several groups combine over a short common period.
    """
    n = len(tensor_bytes)
    k = blocks_k(density, n)
    if k == 0 or n == 0:
        return [0]
    # the windows repeat after n periods; their bytes often sooner (equal-sized tensors: at once)
    window_bytes = [sum(tensor_bytes[i] for i in block_window(order, n, k, period, None)) for period in range(n)]
    cycle = next(
        length for length in range(1, n + 1) if n % length == 0 and window_bytes[length:] == window_bytes[:-length]
    )
    return window_bytes[:cycle]


def blocks_peak_bytes(order: str, tensor_bytes: list[int], density: float) -> int:
    """The largest window's state bytes over a full cycle of the block schedule.

    For random order this is the k largest tensors (the worst draw); for the fixed orders every
    distinct window position is enumerated.
    """
    if order == "random":
        k = blocks_k(density, len(tensor_bytes))
        return sum(sorted(tensor_bytes, reverse=True)[:k])
    return max(blocks_window_bytes(order, tensor_bytes, density))


MAX_JOINT_SCHEDULE_POINTS = 200_000  # re-selection points enumerated for a joint blocks peak


def joint_peak_bytes(schedules: list[tuple[int, list[int]]]) -> int | None:
    """The largest sum over optimizer steps of several groups' periodic block schedules.

    Each schedule is ``(update_gap, bytes per period)`` as from :func:`blocks_window_bytes`; group
    ``g`` holds ``bytes[((step - 1) // gap) % len(bytes)]`` at step ``step``. The sum only changes
    where some group re-selects, and repeats after the least common multiple of ``gap * len``, so
    those points are enumerated. None when there are more than ``MAX_JOINT_SCHEDULE_POINTS``.
    """
    if not schedules:
        return 0
    common = math.lcm(*(gap * len(window_bytes) for gap, window_bytes in schedules))
    if sum(common // gap for gap, _ in schedules) > MAX_JOINT_SCHEDULE_POINTS:
        return None
    points = sorted({start for gap, _ in schedules for start in range(0, common, gap)})
    return max(
        sum(window_bytes[(point // gap) % len(window_bytes)] for gap, window_bytes in schedules)
        for point in points
    )
