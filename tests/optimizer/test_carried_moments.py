"""GaLore-like FRUGAL (svd, state-free none, reset_state=False: moments carried across
re-selections) against references built on the plain ``torch.linalg.svd`` of the whole gradient,
after several re-selections: a hand-written loop, and galore-torch's GaLoreAdamW where installed."""

from __future__ import annotations

import math

import pytest
import torch

from frugal_search.optimizer import FRUGAL

LR, SCALE, BETAS, EPS = 1e-2, 0.25, (0.9, 0.999), 1e-10
STEPS, GAP, RANK = 10, 2, 4  # five re-selections
# tall and wide past the QR route's aspect ratio (where its signs differ from the plain SVD's)
SHAPES = [(48, 16), (16, 48), (20, 20)]


def _grads(shape: tuple[int, int]) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(11)
    return [torch.randn(shape, generator=generator) for _ in range(STEPS)]


def _frugal(shape: tuple[int, int], foreach: bool) -> torch.Tensor:
    torch.manual_seed(7)
    weight = torch.nn.Parameter(torch.randn(shape))
    optimizer = FRUGAL(
        [weight], lr=LR, betas=BETAS, eps=EPS, mode="svd", rank=RANK, update_gap=GAP, reset_state=False,
        state_free="none", split_lr_scale=SCALE, foreach=foreach,
    )
    for grad in _grads(shape):
        weight.grad = grad.clone()
        optimizer.step()
    return weight.detach()


def _galore_like(shape: tuple[int, int]) -> torch.Tensor:
    """GaLore step by step: basis from torch.linalg.svd of the whole fp32 gradient every GAP
    steps, AdamW moments and counter carried on, the update lifted and scaled."""
    torch.manual_seed(7)
    w = torch.randn(shape)
    m, n = shape
    right = m >= n
    b1, b2 = BETAS
    m1 = m2 = basis = None
    for t, g in enumerate(_grads(shape), start=1):
        if (t - 1) % GAP == 0:
            u, _, vh = torch.linalg.svd(g, full_matrices=False)
            basis = vh[:RANK] if right else u[:, :RANK]
        low = g @ basis.T if right else basis.T @ g
        if m1 is None:
            m1, m2 = torch.zeros_like(low), torch.zeros_like(low)
        m1 = b1 * m1 + (1 - b1) * low
        m2 = b2 * m2 + (1 - b2) * low * low
        delta = -(LR * SCALE / (1 - b1**t)) * m1 / (m2.sqrt() / math.sqrt(1 - b2**t) + EPS)
        w = w + (delta @ basis if right else basis @ delta)
    return w


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("foreach", [True, False])
def test_carried_moments_equal_the_plain_svd_reference(shape, foreach):
    assert torch.allclose(_frugal(shape, foreach), _galore_like(shape), rtol=0, atol=1e-5)


@pytest.mark.filterwarnings("ignore:This implementation of AdamW is deprecated:FutureWarning")
@pytest.mark.parametrize("shape", SHAPES)
def test_carried_moments_equal_galore_torch(shape):
    galore = pytest.importorskip("galore_torch", reason="galore-torch is not installed (its import needs bitsandbytes)")
    torch.manual_seed(7)
    weight = torch.nn.Parameter(torch.randn(shape))
    group = {"params": [weight], "rank": RANK, "update_proj_gap": GAP, "scale": SCALE, "proj_type": "std"}
    optimizer = galore.GaLoreAdamW([group], lr=LR, betas=BETAS, eps=EPS, weight_decay=0.0)
    for grad in _grads(shape):
        weight.grad = grad.clone()
        optimizer.step()
    # GaLore adds eps before the bias correction, FRUGAL after it: with eps 1e-10 that is below float error
    assert torch.allclose(_frugal(shape, True), weight.detach(), rtol=0, atol=1e-5)
