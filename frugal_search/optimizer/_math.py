"""The update arithmetic: a single-tensor reference path and a multi-tensor (fused / foreach) path.

Both compute, for the Hugging Face / torch form of AdamW (eps added after the bias correction),
``m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
delta = -(lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``; for the one-moment rules
Lion ``delta = -lr sign(b1 m + (1-b1) g); m = b2 m + (1-b2) g`` and SGD with momentum (torch's
convention, dampening 0) ``buf = momentum buf + g`` (a zero buffer, as after a reset, makes the
first ``buf = g``, torch's start), ``delta = -lr buf`` or, Nesterov, ``-lr (g + momentum buf)``.
"""

from __future__ import annotations

import functools
import math
from itertools import chain

import torch
from torch.optim.adamw import adamw as torch_adamw

from frugal_search.optimizer._subspace import SubspacePlan

# torch's private fused-AdamW kernel and the list of devices it supports: used only through
# `_fused_devices` and `fused_adamw_` below, which fall back on public APIs where a torch
# release lacks them (tests force the fallback by setting these to None).
try:
    from torch.optim.optimizer import _get_fused_kernels_supported_devices
except ImportError:  # pragma: no cover - depends on the torch release
    _get_fused_kernels_supported_devices = None
_FUSED_ADAMW_KERNEL = getattr(torch, "_fused_adamw_", None)


@functools.cache
def _fused_devices() -> frozenset[str]:
    """Device types of torch's fused AdamW kernel; torch's own list, or ("cuda",) without it."""
    if _get_fused_kernels_supported_devices is None:
        return frozenset({"cuda"})  # every torch release since fused AdamW runs it on CUDA
    return frozenset(_get_fused_kernels_supported_devices())


def fused_adamw_(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    steps: list[torch.Tensor],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
) -> None:
    """Count a step and run torch's raw fused AdamW kernel on tensors of one device and dtype.

    The one caller of the private ``torch._fused_adamw_``; where this torch has no such kernel,
    the public ``torch.optim.adamw.adamw`` (foreach, which counts the step itself) computes the
    same update.
    """
    if _FUSED_ADAMW_KERNEL is None:
        hyper = {"lr": lr, "beta1": beta1, "beta2": beta2, "eps": eps, "weight_decay": weight_decay}
        adamw_multi(params, grads, exp_avgs, exp_avg_sqs, steps, **hyper, fused=False)
        return
    torch._foreach_add_(steps, 1)  # the raw kernel does not count steps; torch's wrapper does it so
    _FUSED_ADAMW_KERNEL(
        params, grads, exp_avgs, exp_avg_sqs, [], steps,
        lr=lr, beta1=beta1, beta2=beta2, weight_decay=weight_decay, eps=eps, amsgrad=False, maximize=False,
    )


def cpu_tuned(device: torch.device) -> bool:
    """Whether ``device`` takes the routes tuned and measured on the CPU: the raw fused AdamW
    kernel without torch's wrapper, and cache-sized chunked passes. Elsewhere (CUDA) the multi-tensor
    path uses torch's wrapper and whole-tensor foreach ops; the tests run those routes on the CPU by
    patching this function."""
    return device.type == "cpu"


def fused_supported(tensors: list[torch.Tensor]) -> bool:
    """Whether torch's fused AdamW kernel runs on every tensor's device and dtype."""
    devices = _fused_devices()
    return all(
        t.device.type in devices and t.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64)
        for t in tensors
    )


# ---------------------------------------------------------------------------------------------
# single-tensor reference path (mirrors torch.optim.AdamW's for-loop implementation)


def adam_moments_single(
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    step: torch.Tensor,
    *,
    beta1: float,
    beta2: float,
    eps: float,
    lr: float,
) -> tuple[torch.Tensor, float]:
    """Advance the moments and the step counter; return ``(denominator, step_size)``.

    The parameter moves by ``-step_size * exp_avg / denominator``.
    """
    step.add_(1)
    t = float(step.item())
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    bias_correction1 = 1 - beta1**t
    bias_correction2_sqrt = math.sqrt(1 - beta2**t)
    denominator = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
    return denominator, lr / bias_correction1


def adamw_single(
    param: torch.Tensor,
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    step: torch.Tensor,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
) -> None:
    """One AdamW step on a whole tensor, as torch.optim.AdamW(foreach=False) does it."""
    if weight_decay:
        param.mul_(1 - lr * weight_decay)
    denominator, step_size = adam_moments_single(
        grad, exp_avg, exp_avg_sq, step, beta1=beta1, beta2=beta2, eps=eps, lr=lr
    )
    param.addcdiv_(exp_avg, denominator, value=-step_size)


def project_down(plan: SubspacePlan, grad_matrix: torch.Tensor, selection: torch.Tensor) -> torch.Tensor:
    """The stateful (low-rank) part of the gradient: ``G B^T``, ``A^T G`` or the chosen coordinates."""
    if plan.kind == "right":
        return grad_matrix @ selection.T  # (m, n) @ (n, r) -> (m, r)
    if plan.kind == "left":
        return selection.T @ grad_matrix  # (r, m) @ (m, n) -> (r, n)
    if plan.kind == "columns":
        return grad_matrix.index_select(1, selection)  # (m, k)
    if plan.kind == "rows":
        return grad_matrix.index_select(0, selection)  # (k, n)
    return grad_matrix.reshape(-1).index_select(0, selection)  # flat: (k,)


def lift_up(plan: SubspacePlan, low: torch.Tensor, selection: torch.Tensor) -> torch.Tensor:
    """``up(low)``: back to the full (m, n) shape (zeros outside the chosen coordinates)."""
    if plan.kind == "right":
        return low @ selection  # (m, r) @ (r, n)
    if plan.kind == "left":
        return selection @ low  # (m, r) @ (r, n)
    full = low.new_zeros((plan.rows, plan.cols))
    if plan.kind == "columns":
        return full.index_copy_(1, selection, low)
    if plan.kind == "rows":
        return full.index_copy_(0, selection, low)
    return full.view(-1).index_copy_(0, selection, low).view(plan.rows, plan.cols)


def apply_state_free_single(param: torch.Tensor, residual: torch.Tensor, rule: str, lr_free: float) -> None:
    """The state-free rule on a residual: signSGD ``-lr sign(r)``, SGD ``-lr r``, or nothing."""
    if rule == "signsgd":
        param.add_(residual.sign(), alpha=-lr_free)
    elif rule == "sgd":
        param.add_(residual, alpha=-lr_free)


def one_moment_delta(
    rule: str,
    grad: torch.Tensor,
    moment: torch.Tensor,
    step: torch.Tensor,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    momentum: float,
    nesterov: bool,
) -> torch.Tensor:
    """Advance a Lion or SGD-momentum moment and the step counter; return the step ``delta``.

    The same arithmetic, op for op, as :func:`one_moment_multi_` on one tensor.
    """
    step.add_(1)
    if rule == "lion":
        direction = moment.mul(beta1).add_(grad, alpha=1 - beta1).sign_()
        moment.mul_(beta2).add_(grad, alpha=1 - beta2)
    else:  # sgdm
        moment.mul_(momentum).add_(grad)
        direction = grad.add(moment, alpha=momentum) if nesterov else moment.clone()
    return direction.mul_(-lr)


def adam_inverse_bound(beta1: float, beta2: float) -> float | None:
    """``1 / C^2`` of the bound ``m^2 <= C^2 v`` that AdamW's true moments always keep,
    ``C^2 = (1-b1)^2 / ((1-b2)(1 - b1^2/b2))`` (Cauchy-Schwarz over the EMAs' weights; a step
    keeps it, and it bounds the step by ``lr C sqrt(1-b2^t) / (1-b1^t)``); None when ``b1^2 >= b2``
    (no such bound)."""
    if beta1 * beta1 >= beta2:
        return None
    return (1 - beta2) * (1 - beta1 * beta1 / beta2) / (1 - beta1) ** 2


def factored_adam_delta(
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    row: torch.Tensor,
    col: torch.Tensor,
    step: torch.Tensor,
    *,
    beta1: float,
    beta2: float,
    eps: float,
    lr: float,
) -> torch.Tensor:
    """AdamW's step with the second moment factored as Adafactor keeps it (Shazeer and Stern 2018).

    For the gradient as an (m, n) matrix: ``r = b2 r + (1-b2) (g^2 1_n)`` (m,), ``c = b2 c + (1-b2)
    (1_m^T g^2)`` (n,) and ``v = r c^T / sum(r)``, exact when ``g^2`` has rank one; then the step of
    :func:`adam_moments_single` from ``m`` and that ``v``, raised to ``m^2 / C^2`` where the
    factorization puts it below the bound every true second moment keeps (``_storage.keep_adam_bound_``:
    no step larger than fp32 AdamW's largest). ``r`` and ``c`` are fp32; ``m`` advances in place in
    its own dtype. One arithmetic for both paths. Returns the step in fp32, in ``grad``'s shape.
    """
    step.add_(1)
    t = float(step.item())
    exp_avg.lerp_(grad, 1 - beta1)
    square = grad.to(row.dtype).reshape(row.numel(), col.numel()).square()  # (m, n)
    row.mul_(beta2).add_(square.sum(dim=1), alpha=1 - beta2)  # (m,)
    col.mul_(beta2).add_(square.sum(dim=0), alpha=1 - beta2)  # (n,)
    first = exp_avg.to(row.dtype).reshape(square.shape)
    second = torch.outer(row, col).div_(row.sum().clamp_min(torch.finfo(row.dtype).tiny))  # (m, n)
    inverse_bound = adam_inverse_bound(beta1, beta2)
    if inverse_bound is not None:
        torch.maximum(second, first.square().mul_(inverse_bound), out=second)
    denominator = second.sqrt_().div_(math.sqrt(1 - beta2**t)).add_(eps)
    return first.div(denominator).mul_(-lr / (1 - beta1**t)).view(grad.shape)


# ---------------------------------------------------------------------------------------------
# multi-tensor path


def one_moment_multi_(
    rule: str,
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    moments: list[torch.Tensor],
    steps: list[torch.Tensor],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    momentum: float,
    nesterov: bool,
) -> None:
    """Lion or SGD-momentum on many whole tensors at once with foreach ops (decay done by the caller)."""
    if not params:
        return
    torch._foreach_add_(steps, 1)
    if rule == "lion":
        direction = torch._foreach_mul(moments, beta1)
        torch._foreach_add_(direction, grads, alpha=1 - beta1)
        torch._foreach_sign_(direction)
        torch._foreach_add_(params, direction, alpha=-lr)
        torch._foreach_mul_(moments, beta2)
        torch._foreach_add_(moments, grads, alpha=1 - beta2)
        return
    torch._foreach_mul_(moments, momentum)
    torch._foreach_add_(moments, grads)
    direction = torch._foreach_add(grads, moments, alpha=momentum) if nesterov else moments
    torch._foreach_add_(params, direction, alpha=-lr)


def adamw_multi(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    steps: list[torch.Tensor],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    fused: bool | None,
) -> None:
    """AdamW on many whole tensors at once: torch's fused kernel where supported, else foreach.

    ``fused=None`` picks the fused kernel when every tensor's device supports it.
    """
    if not params:
        return
    use_fused = fused_supported(params) if fused is None else fused
    if use_fused and cpu_tuned(params[0].device) and _one_device_and_dtype(params, grads):
        # torch's wrapper only groups by device and dtype, counts the steps and calls this
        # kernel; on the CPU its Python costs a tenth of a millisecond a call, so skip it there
        # (elsewhere the wrapper stays: unmeasured, and it handles device-side lr tensors)
        fused_adamw_(
            params, grads, exp_avgs, exp_avg_sqs, steps, lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay
        )
        return
    torch_adamw(
        params,
        grads,
        exp_avgs,
        exp_avg_sqs,
        [],
        steps,
        foreach=not use_fused,
        fused=use_fused,
        amsgrad=False,
        beta1=beta1,
        beta2=beta2,
        lr=lr,
        weight_decay=weight_decay,
        eps=eps,
        maximize=False,
    )


def _one_device_and_dtype(params: list[torch.Tensor], grads: list[torch.Tensor]) -> bool:
    """Whether every parameter and gradient shares the first parameter's device and dtype (the
    moments follow their parameter; steps are float32 scalars on the same device)."""
    device, dtype = params[0].device, params[0].dtype
    return all(t.device == device and t.dtype == dtype for t in chain(params, grads))


def adam_delta(
    low: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    step: torch.Tensor,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    fused: bool | None,
) -> torch.Tensor:
    """Advance one tensor's low-rank moments and return its Adam step (fused kernel on zeros)."""
    delta = torch.zeros_like(low)
    use_fused = fused_supported([low]) if fused is None else fused
    if use_fused:
        fused_adamw_([delta], [low], [exp_avg], [exp_avg_sq], [step], lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=0.0)
    else:
        adamw_multi([delta], [low], [exp_avg], [exp_avg_sq], [step], lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=0.0, fused=False)
    return delta


# Elements per chunk of the CPU passes: 1 MiB of fp32. The sign (or residual) of a chunk of the
# gradient is added to the parameter chunk while still in cache, so signSGD reads g and p and
# writes p once, with no full-size temporary (faulting in fresh pages for one every step costs
# more than the arithmetic on this CPU).
CHUNK_ELEMENTS = 1 << 18


def _chunk_elements(device: torch.device) -> int:
    """Chunk size for ``device``: cache-sized on the CPU; elsewhere whole tensors (fewer launches)."""
    return CHUNK_ELEMENTS if cpu_tuned(device) else 1 << 62


def _scratch(reference: torch.Tensor, size: int) -> torch.Tensor:
    return torch.empty(size, dtype=reference.dtype, device=reference.device)


def state_free_update_(
    params: list[torch.Tensor], grads: list[torch.Tensor], *, rule: str, lr_free: float, decay: float
) -> None:
    """``p = p * decay - lr_free * rule(g)`` for every pair (rule: sign for signSGD, identity for SGD,
    nothing for none). Per tensor in cache-sized chunks on the CPU, foreach ops elsewhere."""
    if not params or (rule == "none" and decay == 1.0):
        return
    if not cpu_tuned(params[0].device) or not all(p.is_contiguous() for p in params):
        if decay != 1.0:
            torch._foreach_mul_(params, decay)
        if rule == "signsgd":
            torch._foreach_add_(params, torch._foreach_sign(grads), alpha=-lr_free)
        elif rule == "sgd":
            torch._foreach_add_(params, grads, alpha=-lr_free)
        return
    if rule == "sgd" and decay == 1.0:
        torch._foreach_add_(params, grads, alpha=-lr_free)  # already one read of p and g
        return
    for param, grad in zip(params, grads, strict=True):
        if param.numel() <= CHUNK_ELEMENTS:  # most tensors: no slicing, fewer dispatches
            chunks = [(param, grad)]
        else:
            param_flat, grad_flat = param.view(-1), grad.reshape(-1)
            chunks = [
                (param_flat[start : start + CHUNK_ELEMENTS], grad_flat[start : start + CHUNK_ELEMENTS])
                for start in range(0, param_flat.numel(), CHUNK_ELEMENTS)
            ]
        for param_chunk, grad_chunk in chunks:
            if decay != 1.0:
                param_chunk.mul_(decay)
            if rule == "signsgd":
                # A fresh sign temporary, freed at once: the allocator hands the same cache-warm
                # block back for the next chunk. Measured faster on this CPU than torch.sign(out=)
                # into a reused scratch view (and far faster than foreach ops, which keep every
                # temporary alive and fault in fresh pages for each).
                param_chunk.add_(grad_chunk.sign(), alpha=-lr_free)
            elif rule == "sgd":
                param_chunk.add_(grad_chunk, alpha=-lr_free)


def split_update_(
    plan: SubspacePlan,
    param_matrix: torch.Tensor,
    grad_matrix: torch.Tensor,
    low: torch.Tensor,
    delta_low: torch.Tensor,
    selection: torch.Tensor,
    *,
    rule: str,
    lr_free: float,
    decay: float,
) -> None:
    """Weight decay, ``P += up(delta_low)`` and the state-free rule on ``G - up(low)``, in place.

    The same arithmetic, in the same order, as the single-tensor path.
    """
    if plan.kind in ("right", "left"):
        _projected_update_(plan, param_matrix, grad_matrix, low, delta_low, selection, rule=rule, lr_free=lr_free, decay=decay)
        return
    _coordinate_update_(plan, param_matrix, grad_matrix, delta_low, selection, rule=rule, lr_free=lr_free, decay=decay)


def _coordinate_update_(
    plan: SubspacePlan,
    param_matrix: torch.Tensor,
    grad_matrix: torch.Tensor,
    delta_low: torch.Tensor,
    selection: torch.Tensor,
    *,
    rule: str,
    lr_free: float,
    decay: float,
) -> None:
    """Coordinate modes: ``P = P * decay - lr_free * rule(G with the chosen coordinates zeroed)``
    block by block through one scratch, then ``P[chosen] += delta`` (adding the zeroed residual's
    ``-0`` first leaves the chosen values exactly as the reference's order does)."""
    m, n = plan.rows, plan.cols
    flat = plan.kind == "flat"
    # flat (randk) and rows walk the flattened tensor / whole rows; columns walk row blocks
    rows, cols = (1, m * n) if flat else (m, n)
    param_view, grad_view = param_matrix.view(rows, cols), grad_matrix.reshape(rows, cols)
    if rule == "none":
        if decay != 1.0:
            param_matrix.mul_(decay)
    elif flat:
        chunk = _chunk_elements(grad_matrix.device)
        for start in range(0, cols, chunk):
            stop = min(cols, start + chunk)
            block = _rule_of(grad_view[0, start:stop], rule)
            lo, hi = torch.searchsorted(selection, torch.tensor([start, stop], device=selection.device)).tolist()
            block.index_fill_(0, selection[lo:hi] - start, 0)
            _decay_and_add(param_view[0, start:stop], block, decay, lr_free)
    else:
        # 0 at the chosen columns (rows), 1 elsewhere: a broadcast multiply zeroes the residual
        # there far faster than a strided fill or scatter
        keep_shape = (n,) if plan.kind == "columns" else (m, 1)
        keep = torch.ones(keep_shape, dtype=grad_matrix.dtype, device=grad_matrix.device)
        keep.index_fill_(0, selection, 0)
        rows_per_block = max(1, _chunk_elements(grad_matrix.device) // n)
        for start in range(0, m, rows_per_block):
            stop = min(m, start + rows_per_block)
            keep_block = keep if plan.kind == "columns" else keep[start:stop]
            if rule == "signsgd":
                block = grad_view[start:stop].sign().mul_(keep_block)
            else:
                block = grad_view[start:stop] * keep_block
            _decay_and_add(param_view[start:stop], block, decay, lr_free)
    if plan.kind == "columns":
        param_matrix.index_add_(1, selection, delta_low)
    elif plan.kind == "rows":
        param_matrix.index_add_(0, selection, delta_low)
    else:
        param_matrix.view(-1).index_add_(0, selection, delta_low)


def _rule_of(grad: torch.Tensor, rule: str) -> torch.Tensor:
    """A fresh ``sign(grad)`` (signSGD) or copy (SGD) of one chunk, freed by the caller at once:
    the allocator hands the same cache-warm block back for the next chunk (see
    ``state_free_update_``)."""
    return grad.sign() if rule == "signsgd" else grad.clone()


def _decay_and_add(param_block: torch.Tensor, update: torch.Tensor, decay: float, lr_free: float) -> None:
    if decay != 1.0:
        param_block.mul_(decay)
    param_block.add_(update, alpha=-lr_free)


def _projected_update_(
    plan: SubspacePlan,
    param_matrix: torch.Tensor,
    grad_matrix: torch.Tensor,
    low: torch.Tensor,
    delta_low: torch.Tensor,
    basis: torch.Tensor,
    *,
    rule: str,
    lr_free: float,
    decay: float,
) -> None:
    """Dense basis: row blocks of P so that the residual of a block is built, signed and added
    while in cache (one scratch, no full-size temporary). Right: P (m, n), delta/low (m, r),
    B (r, n). Left: A (m, r), delta/low (r, n)."""
    m, n = plan.rows, plan.cols
    rows_per_block = max(1, _chunk_elements(param_matrix.device) // n)
    scratch = _scratch(grad_matrix, min(m, rows_per_block) * n) if rule != "none" else None
    for start in range(0, m, rows_per_block):
        stop = min(m, start + rows_per_block)
        param_block, grad_block = param_matrix[start:stop], grad_matrix[start:stop]
        if decay != 1.0:
            param_block.mul_(decay)
        if plan.kind == "right":
            param_block.addmm_(delta_low[start:stop], basis)  # (rows, r) @ (r, n)
        else:
            param_block.addmm_(basis[start:stop], delta_low)  # (rows, r) @ (r, n)
        if scratch is None:
            continue
        residual = scratch[: (stop - start) * n].view(stop - start, n)
        if plan.kind == "right":
            torch.addmm(grad_block, low[start:stop], basis, alpha=-1, out=residual)  # G - (G B^T) B
        else:
            torch.addmm(grad_block, basis[start:stop], low, alpha=-1, out=residual)  # G - A (A^T G)
        if rule == "signsgd":
            residual.sign_()
        param_block.add_(residual, alpha=-lr_free)
