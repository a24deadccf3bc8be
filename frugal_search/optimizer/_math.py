"""The update arithmetic: a single-tensor reference path and a multi-tensor (fused / foreach) path.

Both compute, for the Hugging Face / torch form of AdamW (eps added after the bias correction),
``m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
delta = -(lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``.
"""

from __future__ import annotations

import math

import torch
from torch.optim.adamw import adamw as torch_adamw
from torch.optim.optimizer import _get_fused_kernels_supported_devices

from frugal_search.optimizer._subspace import SubspacePlan


def fused_supported(tensors: list[torch.Tensor]) -> bool:
    """Whether torch's fused AdamW kernel runs on every tensor's device and dtype."""
    devices = _get_fused_kernels_supported_devices()
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


# ---------------------------------------------------------------------------------------------
# multi-tensor path


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


def lift_into(plan: SubspacePlan, param_matrix: torch.Tensor, delta_low: torch.Tensor, selection: torch.Tensor) -> None:
    """``P += up(delta_low)`` in place, without building the full-size update where avoidable."""
    if plan.kind == "right":
        param_matrix.addmm_(delta_low, selection)  # (m, r) @ (r, n)
    elif plan.kind == "left":
        param_matrix.addmm_(selection, delta_low)  # (m, r) @ (r, n)
    elif plan.kind == "columns":
        param_matrix.index_add_(1, selection, delta_low)
    elif plan.kind == "rows":
        param_matrix.index_add_(0, selection, delta_low)
    else:
        param_matrix.view(-1).index_add_(0, selection, delta_low)


def state_free_residual(
    plan: SubspacePlan, grad_matrix: torch.Tensor, low: torch.Tensor, selection: torch.Tensor, rule: str
) -> torch.Tensor:
    """A new tensor holding what the state-free rule adds (before ``-lr_free``): ``sign(residual)``
    for signSGD or the residual for SGD. One GEMM (projections) or one pass plus a small fill
    (coordinate modes)."""
    if plan.kind == "right":
        residual = torch.addmm(grad_matrix, low, selection, alpha=-1)  # G - (G B^T) B
    elif plan.kind == "left":
        residual = torch.addmm(grad_matrix, selection, low, alpha=-1)  # G - A (A^T G)
    else:
        # the chosen coordinates' residual is exactly zero; sign(0) = 0, so fill after the sign
        residual = grad_matrix.sign() if rule == "signsgd" else grad_matrix.clone()
        if plan.kind == "columns":
            residual.index_fill_(1, selection, 0)
        elif plan.kind == "rows":
            residual.index_fill_(0, selection, 0)
        else:
            residual.view(-1).index_fill_(0, selection, 0)
        return residual
    return residual.sign_() if rule == "signsgd" else residual
