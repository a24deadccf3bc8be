"""How many bytes an optimizer's state holds."""

from __future__ import annotations

import torch

from frugal_search.optimizer._sharding import local_part


def optimizer_state_bytes(optimizer: torch.optim.Optimizer, *, device_type: str | None = None) -> int:
    """Bytes of every non-scalar tensor in ``optimizer.state`` now: moments, bases, index vectors.

    0-dim tensors (the per-tensor ``step`` and ``period`` counters) and FRUGAL's generator state
    are bookkeeping of constant size, independent of the model, and are not counted, so AdamW on
    fp32 parameters gives exactly ``2 * 4 * N``. Works for any ``torch.optim.Optimizer``.
    ``device_type`` (e.g. ``"cuda"``) counts only the tensors on that kind of device. A sharded
    (DTensor) state tensor, as torch's optimizers keep under FSDP2, counts this rank's shard.
    """
    total = 0
    for state in optimizer.state.values():
        for value in state.values():
            value = local_part(value)
            if (
                isinstance(value, torch.Tensor)
                and value.dim() > 0
                and (device_type is None or value.device.type == device_type)
            ):
                total += value.numel() * value.element_size()
    return total
