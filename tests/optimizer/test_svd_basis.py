"""The svd basis, also through the QR route for tall and wide matrices, spans the top singular
vectors of a float64 SVD."""

from __future__ import annotations

import pytest
import torch

from frugal_search.optimizer._subspace import QR_FIRST_ASPECT, top_singular_vectors


@pytest.mark.parametrize("shape", [(40, 12), (12, 40), (16, 16), (20, 12)])
@pytest.mark.parametrize("kind", ["right", "left"])
def test_top_singular_vectors_span_the_float64_ones(shape, kind):
    generator = torch.Generator().manual_seed(2)
    # singular values 1, 0.8, 0.64, ...: well separated, so the top subspace is well defined
    m, n = shape
    k = min(m, n)
    left, _ = torch.linalg.qr(torch.randn(m, k, generator=generator, dtype=torch.float64))
    right, _ = torch.linalg.qr(torch.randn(n, k, generator=generator, dtype=torch.float64))
    values = 0.8 ** torch.arange(k, dtype=torch.float64)
    matrix = left @ torch.diag(values) @ right.T
    count = 3
    basis = top_singular_vectors(matrix.float(), kind, count).double()
    if kind == "right":
        assert basis.shape == (count, n)
        projector, expected = basis.T @ basis, right[:, :count] @ right[:, :count].T
    else:
        assert basis.shape == (m, count)
        projector, expected = basis @ basis.T, left[:, :count] @ left[:, :count].T
    assert torch.allclose(projector, expected, atol=1e-5)


@pytest.mark.parametrize(
    ("shape", "kind", "through_qr"),
    [((40, 12), "right", True), ((12, 40), "left", True), ((20, 12), "right", False), ((12, 40), "right", False)],
)
def test_the_qr_route_is_taken_only_for_the_long_side(shape, kind, through_qr, monkeypatch):
    calls = []
    qr = torch.linalg.qr

    def spy(*args, **kwargs):
        calls.append(args[0].shape)
        return qr(*args, **kwargs)

    monkeypatch.setattr(torch.linalg, "qr", spy)
    top_singular_vectors(torch.randn(shape), kind, 2)
    assert bool(calls) == through_qr
    assert QR_FIRST_ASPECT * 12 <= 40  # the tall and wide shapes above are past the threshold
