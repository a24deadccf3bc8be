"""The fast path calls torch's fused AdamW kernel directly when a call's tensors share one device and
dtype, and through torch's wrapper otherwise; both must equal torch.optim.AdamW(fused=True) exactly."""

from __future__ import annotations

import pytest
import torch

from frugal_search.optimizer import FRUGAL


@pytest.mark.parametrize(
    "dtypes",
    [
        (torch.float32, torch.float32, torch.float32),  # one dtype: the direct kernel call
        (torch.float32, torch.bfloat16, torch.float32),  # mixed: torch's wrapper groups them
    ],
)
def test_stateful_group_equals_torch_fused_adamw_bit_for_bit(dtypes):
    shapes = [(6, 4), (5,), (3, 3)]
    generator = torch.Generator().manual_seed(0)
    start = [torch.randn(shape, generator=generator).to(dtype) for shape, dtype in zip(shapes, dtypes, strict=True)]
    ours = [torch.nn.Parameter(t.clone()) for t in start]
    theirs = [torch.nn.Parameter(t.clone()) for t in start]
    settings = {"lr": 1e-2, "betas": (0.9, 0.99), "eps": 1e-8, "weight_decay": 0.1}
    optimizer = FRUGAL([{"params": ours, "role": "stateful"}], **settings)
    reference = torch.optim.AdamW(theirs, fused=True, **settings)
    for _ in range(5):
        for mine, other in zip(ours, theirs, strict=True):
            grad = torch.randn(mine.shape, generator=generator).to(mine.dtype)
            mine.grad, other.grad = grad.clone(), grad.clone()
        optimizer.step()
        reference.step()
    for mine, other in zip(ours, theirs, strict=True):
        assert mine.dtype == other.dtype
        assert torch.equal(mine, other)
