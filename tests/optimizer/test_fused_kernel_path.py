"""The fast path calls torch's fused AdamW kernel directly when a call's tensors share one device and
dtype, and through torch's wrapper otherwise; both must equal torch.optim.AdamW(fused=True) exactly."""

from __future__ import annotations

import pytest
import torch
from torch.optim.adamw import adamw as public_adamw

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


def _train(optimizer_factory, start, grads):
    params = [torch.nn.Parameter(t.clone()) for t in start]
    optimizer = optimizer_factory(params)
    for step_grads in grads:
        for param, grad in zip(params, step_grads, strict=True):
            param.grad = grad.clone()
        optimizer.step()
    return params


def test_without_torchs_private_kernel_the_public_fallback_equals_torch_adamw(monkeypatch):
    # stateful (whole-tensor) and svd (low-rank moments) groups both reach the fused kernel wrapper
    from frugal_search.optimizer import _math

    generator = torch.Generator().manual_seed(1)
    start = [torch.randn(shape, generator=generator) for shape in ((6, 4), (5,), (8, 6))]
    grads = [[torch.randn(t.shape, generator=generator) for t in start] for _ in range(4)]
    settings = {"lr": 1e-2, "betas": (0.9, 0.99), "eps": 1e-8, "weight_decay": 0.1}

    def frugal(params):
        groups = [{"params": params[:2], "role": "stateful"}, {"params": params[2:], "mode": "svd", "rank": 2}]
        return FRUGAL(groups, **settings, update_gap=2, fused=True)

    fast = _train(frugal, start, grads)
    calls = []
    monkeypatch.setattr(_math, "_FUSED_ADAMW_KERNEL", None)
    monkeypatch.setattr(_math, "torch_adamw", lambda *a, **k: calls.append(k["fused"]) or public_adamw(*a, **k))
    fallback = _train(frugal, start, grads)
    assert calls and not any(calls)  # the public foreach path ran in place of the kernel
    reference = _train(lambda params: torch.optim.AdamW(params[:2], foreach=True, **settings), start, grads)
    for mine, theirs in zip(fallback[:2], reference[:2], strict=True):
        assert torch.equal(mine, theirs)  # the same as torch.optim.AdamW's foreach path
    for mine, theirs in zip(fallback, fast, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-6, atol=1e-6)  # and as the fused kernel
    assert not torch.equal(fast[2], start[2])


def test_without_torchs_device_list_the_fused_kernel_is_taken_for_cuda_only(monkeypatch):
    from frugal_search.optimizer import _math

    monkeypatch.setattr(_math, "_get_fused_kernels_supported_devices", None)
    _math._fused_devices.cache_clear()
    try:
        assert not _math.fused_supported([torch.zeros(2)])
        assert _math._fused_devices() == frozenset({"cuda"})
    finally:
        monkeypatch.undo()
        _math._fused_devices.cache_clear()
    assert _math.fused_supported([torch.zeros(2)])  # torch 2.13's own list has the CPU


@pytest.mark.parametrize("dtypes", [(torch.float32, torch.float32), (torch.float32, torch.float64)])
def test_low_rank_moments_on_the_fused_kernel_equal_the_single_tensor_path(dtypes):
    # the fast path runs each split tensor's low-rank Adam on the fused kernel, tensor by tensor,
    # also when the group mixes dtypes
    generator = torch.Generator().manual_seed(3)
    start = [torch.randn(shape, generator=generator).to(dtype) for shape, dtype in zip(((8, 6), (5, 9)), dtypes)]
    grads = [[torch.randn(t.shape, generator=generator).to(t.dtype) for t in start] for _ in range(6)]

    def frugal(foreach):
        return lambda params: FRUGAL(
            [{"params": params, "mode": "svd", "rank": 2}], lr=1e-2, update_gap=3, foreach=foreach, weight_decay=0.1
        )

    fast, single = _train(frugal(True), start, grads), _train(frugal(False), start, grads)
    for mine, reference in zip(fast, single, strict=True):
        assert mine.dtype == reference.dtype
        torch.testing.assert_close(mine, reference, rtol=0, atol=1e-6)
