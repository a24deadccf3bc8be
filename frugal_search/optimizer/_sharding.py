"""Parameters sharded by FSDP2 (``DTensor`` on a 1-D mesh): which rows a rank holds, and the
collectives FRUGAL needs (an all-reduce for a left projection, gathers at re-selection and at
checkpoint time).

FSDP2 (``torch.distributed.fsdp.fully_shard``) shards every parameter on dim 0 with
``torch.chunk`` semantics: rank ``i`` of ``w`` holds rows ``[i c, min((i+1) c, d0))`` with
``c = ceil(d0 / w)``. Seen as FRUGAL's ``(m, n)`` matrix (``m = d0``), a rank holds a contiguous
block of rows, so element-wise rules (AdamW on whole tensors, signSGD, weight decay) run on the
local shard unchanged, and a per-tensor mode only has to map its global subspace onto those rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from frugal_search.optimizer._storage import storage_of
from frugal_search.optimizer._subspace import SubspacePlan, group_plan

try:  # torch.distributed is optional in CPU-only builds of torch on some platforms
    from torch.distributed.tensor import DTensor, Replicate, Shard
except ImportError:  # pragma: no cover - no distributed build
    DTensor = None  # type: ignore[assignment,misc]


def is_dtensor(tensor: object) -> bool:
    """Whether ``tensor`` is a ``torch.distributed.tensor.DTensor``."""
    return DTensor is not None and isinstance(tensor, DTensor)


def chunk_bounds(size: int, world: int, rank: int) -> tuple[int, int]:
    """``[start, stop)`` of rank's piece when ``size`` is split as ``torch.chunk`` (and DTensor) do."""
    chunk = -(-size // world) if size else 0
    start = min(rank * chunk, size)
    return start, min(start + chunk, size)


@dataclass(frozen=True)
class Shard0:
    """Where a DTensor parameter's local shard lies: rows ``[start, stop)`` of dim 0, on a 1-D mesh
    of ``world`` ranks (``sharded`` False for a replicated DTensor: the local tensor is whole)."""

    mesh: object  # torch.distributed.device_mesh.DeviceMesh
    rank: int
    world: int
    start: int
    stop: int
    sharded: bool

    @property
    def group(self) -> dist.ProcessGroup:
        """The mesh's process group (collectives of this parameter's state run on it)."""
        return self.mesh.get_group()  # type: ignore[attr-defined]

    def bounds(self, size: int) -> tuple[int, int]:
        """This rank's ``[start, stop)`` of a dimension of ``size`` split like dim 0."""
        return chunk_bounds(size, self.world, self.rank)

    def to_dtensor(self, local: torch.Tensor, global_shape: tuple[int, ...], dim: int = 0) -> torch.Tensor:
        """``local`` (this rank's ``torch.chunk`` piece along ``dim``) as a DTensor sharded on ``dim``."""
        if not self.sharded:
            return local
        stride = torch.empty(global_shape, device="meta").stride()
        return DTensor.from_local(local, self.mesh, [Shard(dim)], run_check=False, shape=global_shape, stride=stride)

    def piece(self, value: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """This rank's ``torch.chunk`` piece along ``dim`` of a saved value (a DTensor or a whole tensor)."""
        if is_dtensor(value):
            if tuple(value.placements) == (Shard(dim),):
                return value.to_local()
            value = value.full_tensor()
        if not self.sharded:
            return value
        start, stop = self.bounds(value.shape[dim])
        return value.narrow(dim, start, stop - start)

    def localize(self, plan: SubspacePlan, selection: torch.Tensor) -> tuple[SubspacePlan, torch.Tensor, int]:
        """A global subspace on this rank's rows: ``(local plan, local selection, offset)``.

        right / columns: the local rows with the whole basis or column indices; left: the local
        rows of A (``selection`` is already those rows); rows / flat: the chosen rows (entries)
        that fall in the local rows, shifted to local numbering, which are entries
        ``[offset, offset + count)`` of the sorted global indices (and of the global moments).
        """
        rows = self.stop - self.start
        if plan.kind in ("right", "columns", "left"):
            return SubspacePlan(plan.kind, plan.count, rows, plan.cols), selection, 0
        scale = plan.cols if plan.kind == "flat" else 1
        first, last = self.start * scale, self.stop * scale
        low, high = torch.searchsorted(selection, torch.tensor([first, last], device=selection.device)).tolist()
        return SubspacePlan(plan.kind, high - low, rows, plan.cols), selection[low:high] - first, low

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over the mesh in place (a left projection's partial products)."""
        if self.sharded:
            dist.all_reduce(tensor, group=self.group)
        return tensor

    def gather(self, local: torch.Tensor, global_shape: tuple[int, ...], dim: int) -> torch.Tensor:
        """The whole tensor from every rank's ``torch.chunk`` piece along ``dim`` (an all-gather)."""
        if not self.sharded:
            return local
        return self.to_dtensor(local, global_shape, dim).full_tensor()

    def assemble(self, piece: torch.Tensor, start: int, global_shape: tuple[int, ...]) -> torch.Tensor:
        """The whole tensor from pieces of uneven length along dim 0 (rank's rows start at
        ``start``): zeros elsewhere, summed over the mesh. Used at checkpoint time only."""
        whole = piece.new_zeros(global_shape)
        whole.narrow(0, start, piece.shape[0]).copy_(piece)
        return self.all_reduce(whole)


def shard_of(param: torch.Tensor) -> Shard0 | None:
    """The shard layout of a DTensor parameter, None for a plain tensor.

    Raises ValueError for a layout FRUGAL does not support: a mesh of more than one dimension
    (HSDP, tensor parallelism) or a placement other than ``Shard(0)`` / ``Replicate()``.
    """
    if not is_dtensor(param):
        return None
    mesh, placements = param.device_mesh, tuple(param.placements)
    if mesh.ndim != 1:
        raise ValueError(
            f"FRUGAL got a DTensor parameter of shape {tuple(param.shape)} on a {mesh.ndim}-D device mesh; "
            "supported: a 1-D mesh (fully_shard on one mesh dimension, or DDP). Use a 1-D mesh."
        )
    placement = placements[0]
    if isinstance(placement, Replicate):
        return Shard0(mesh, mesh.get_local_rank(), mesh.size(), 0, param.shape[0] if param.dim() else 1, sharded=False)
    if not (isinstance(placement, Shard) and placement.dim == 0):
        raise ValueError(
            f"FRUGAL got a DTensor parameter of shape {tuple(param.shape)} placed as {placement}; "
            "supported: Shard(0) (what fully_shard does by default) or Replicate(). "
            "Shard on dim 0 (drop a custom shard_placement_fn)."
        )
    rank, world = mesh.get_local_rank(), mesh.size()
    start, stop = chunk_bounds(int(param.shape[0]), world, rank)
    return Shard0(mesh, rank, world, start, stop, sharded=world > 1)


def local_part(tensor: torch.Tensor) -> torch.Tensor:
    """The local tensor of a DTensor (shares its storage), ``tensor`` itself otherwise."""
    return tensor.to_local() if is_dtensor(tensor) else tensor


def checked_shards(group: dict[str, Any]) -> dict[torch.Tensor, Shard0]:
    """The shard layout of a param group's DTensor params (FSDP2), by param; ``ValueError`` for one
    its mode or its state storage cannot run on."""
    shards: dict[torch.Tensor, Shard0] = {}
    keeps_state = group["role"] in ("stateful", "frugal")
    for position, param in enumerate(group["params"]):
        shard = shard_of(param)
        if shard is None:
            continue
        if shard.sharded and keeps_state and not storage_of(group).plain:
            name = group["names"][position] if "names" in group else f"#{position}"
            raise ValueError(
                f"FRUGAL state_dtype={group['state_dtype']!r}, second_moment={group['second_moment']!r} cannot "
                f"run on parameter {name}, sharded by FSDP2: only state_dtype='fp32' with second_moment='full' "
                "is sharded in this version. Use those under fully_shard, or train on one process or under DDP."
            )
        if (
            shard.sharded
            and param.dim() < 2
            and group["role"] == "frugal"
            and group["mode"] != "blocks"
            and group_plan(group, param).kind != "none"
        ):
            name = group["names"][position] if "names" in group else f"#{position}"
            raise ValueError(
                f"FRUGAL mode {group['mode']!r} cannot run on parameter {name} of shape {tuple(param.shape)} "
                "sharded on its only dimension (its subspace is a set of columns of one row); "
                "put 1-D parameters in a stateful, state_free or blocks group (the paper's split has only "
                "2-D Linear weights), or do not shard them."
            )
        shards[param] = shard
    return shards
