"""FRUGAL against independent references: torch.optim.AdamW at density 1, float64 formulas for
the rotated bases (svd, random), and the single-tensor path for the fused/foreach path."""

from __future__ import annotations

import math

import pytest
import torch

from frugal_search.optimizer import FRUGAL, _math, paper_param_groups

LR, BETAS, EPS, WD = 1e-3, (0.9, 0.99), 1e-8, 0.1


@pytest.mark.parametrize("mode", ["blocks", "columns", "rows", "randperm", "randk"])
@pytest.mark.parametrize("foreach", [True, False])
def test_density_one_equals_torch_adamw(mode, foreach, llama_factory, trainer):
    reference_model, model = llama_factory(), llama_factory()
    reference = torch.optim.AdamW(reference_model.parameters(), lr=LR, betas=BETAS, eps=EPS, weight_decay=WD)
    optimizer = FRUGAL(
        paper_param_groups(model), lr=LR, betas=BETAS, eps=EPS, weight_decay=WD,
        mode=mode, density=1.0, update_gap=100, foreach=foreach,
    )
    trainer(reference_model, reference, range(20))
    trainer(model, optimizer, range(20))
    for (name, expected), actual in zip(reference_model.named_parameters(), model.parameters(), strict=True):
        assert torch.allclose(actual, expected, rtol=0, atol=1e-6), name


def _fixed_grads(shape: tuple[int, ...], steps: int, seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=generator) for _ in range(steps)]


def _reference_float64(
    weight: torch.Tensor, grads: list[torch.Tensor], bases: list[torch.Tensor], *, density: float, gap: int,
    reset: bool, lr: float, wd: float, split: float, free_scale: float,
) -> torch.Tensor:
    """FRUGAL.md step by step in float64 for one matrix with a dense basis per period."""
    w = weight.double().clone()
    m, n = w.shape
    right = m >= n
    moment1 = moment2 = None
    t = 0
    lr_sf, lr_free = lr * split, lr * split * free_scale
    b1, b2 = BETAS
    for step, grad in enumerate(grads, start=1):
        g = grad.double()
        basis = bases[(step - 1) // gap].double()
        if (step - 1) % gap == 0 and (reset or moment1 is None):
            low_shape = (m, basis.shape[0]) if right else (basis.shape[1], n)
            moment1, moment2, t = torch.zeros(low_shape, dtype=torch.float64), torch.zeros(low_shape, dtype=torch.float64), 0
        w = w * (1 - lr * wd)
        low = g @ basis.T if right else basis.T @ g
        t += 1
        moment1 = b1 * moment1 + (1 - b1) * low
        moment2 = b2 * moment2 + (1 - b2) * low * low
        delta = -(lr_sf / (1 - b1**t)) * moment1 / (moment2.sqrt() / math.sqrt(1 - b2**t) + EPS)
        lifted = delta @ basis if right else basis @ delta
        back = low @ basis if right else basis @ low
        w = w + lifted - lr_free * torch.sign(g - back)
    return w


def _svd_basis(grad: torch.Tensor, r: int) -> torch.Tensor:
    u, _, vh = torch.linalg.svd(grad.double(), full_matrices=False)
    return vh[:r] if grad.shape[0] >= grad.shape[1] else u[:, :r]


@pytest.mark.parametrize("mode", ["svd", "random"])
@pytest.mark.parametrize("shape", [(12, 8), (6, 10)])
@pytest.mark.parametrize("reset", [True, False])
@pytest.mark.parametrize("foreach", [True, False])
def test_rotated_bases_match_float64_formulas(mode, shape, reset, foreach):
    steps, gap, density = 7, 3, 0.5
    settings = {"lr": 1e-2, "wd": 0.1, "split": 0.5, "free_scale": 0.3}
    torch.manual_seed(3)
    weight = torch.nn.Parameter(torch.randn(shape))
    start = weight.detach().clone()
    grads = _fixed_grads(shape, steps, seed=4)
    optimizer = FRUGAL(
        [weight], lr=settings["lr"], betas=BETAS, eps=EPS, weight_decay=settings["wd"], mode=mode,
        density=density, update_gap=gap, reset_state=reset, split_lr_scale=settings["split"],
        state_free_lr_scale=settings["free_scale"], foreach=foreach,
    )
    side = min(shape)
    r = round(density * side)
    bases = []
    for step, grad in enumerate(grads, start=1):
        weight.grad = grad.clone()
        optimizer.step()
        if (step - 1) % gap == 0:
            # The math below uses the optimizer's basis (singular vectors are defined up to sign, and
            # with reset off the carried moments see that sign); the basis itself is checked here.
            basis = optimizer.state[weight]["selection"].double()
            right = shape[0] >= shape[1]
            gram = basis @ basis.T if right else basis.T @ basis
            assert torch.allclose(gram, torch.eye(r, dtype=torch.float64), atol=1e-6)
            if mode == "svd":
                expected_basis = _svd_basis(grad, r)
                projector = basis.T @ basis if right else basis @ basis.T
                expected_projector = (
                    expected_basis.T @ expected_basis if right else expected_basis @ expected_basis.T
                )
                assert torch.allclose(projector, expected_projector, atol=1e-5)
            bases.append(basis)
    expected = _reference_float64(start, grads, bases, density=density, gap=gap, reset=reset, **settings)
    assert torch.allclose(weight.detach().double(), expected, rtol=0, atol=2e-5)


SHAPES = [(8, 12), (12, 8), (16,), (4, 3, 5), (10, 10), (30, 9)]


@pytest.mark.parametrize("mode", ["blocks", "svd", "random", "randperm", "columns", "rows", "randk"])
@pytest.mark.parametrize("rule", ["signsgd", "sgd", "none"])
@pytest.mark.parametrize("chunk", [None, 7, 20])
def test_fast_path_matches_single_tensor_path(mode, rule, chunk, monkeypatch):
    """The fused/foreach path against the single-tensor path, every mode, with every role present;
    tiny chunks make the CPU's chunked passes cross block boundaries inside every tensor."""
    if chunk is not None:
        monkeypatch.setattr(_math, "CHUNK_ELEMENTS", chunk)
    _assert_fast_path_matches_single_tensor_path(mode, rule)


@pytest.mark.parametrize("mode", ["blocks", "svd", "random", "randperm", "columns", "rows", "randk"])
@pytest.mark.parametrize("rule", ["signsgd", "sgd", "none"])
def test_fast_path_routes_taken_off_the_cpu_match_single_tensor_path(mode, rule, monkeypatch):
    """The routes the fast path takes on CUDA (torch's fused-AdamW wrapper, whole-tensor foreach
    passes), run on the CPU, against the single-tensor path."""
    monkeypatch.setattr(_math, "cpu_tuned", lambda device: False)
    _assert_fast_path_matches_single_tensor_path(mode, rule)


def _assert_fast_path_matches_single_tensor_path(mode: str, rule: str) -> None:
    def run(foreach: bool) -> list[torch.Tensor]:
        torch.manual_seed(5)
        frugal = [torch.nn.Parameter(torch.randn(s)) for s in SHAPES]
        stateful = [torch.nn.Parameter(torch.randn(6, 4)), torch.nn.Parameter(torch.randn(7))]
        free = [torch.nn.Parameter(torch.randn(5, 5))]
        frozen = [torch.nn.Parameter(torch.randn(3))]
        groups = [
            {"params": stateful, "role": "stateful"},
            {"params": frugal, "role": "frugal"},
            {"params": free, "role": "state_free", "state_free": "signsgd"},
            {"params": frozen, "role": "frozen"},
        ]
        optimizer = FRUGAL(
            groups, lr=1e-2, weight_decay=0.05, mode=mode, density=0.4, update_gap=3, state_free=rule,
            split_lr_scale=0.7, state_free_lr_scale=0.2, block_order="random", seed=9, foreach=foreach,
        )
        everything = stateful + frugal + free + frozen
        generator = torch.Generator().manual_seed(6)
        for _ in range(7):
            for p in everything:
                p.grad = torch.randn(p.shape, generator=generator)
            optimizer.step()
        return [p.detach().clone() for p in everything]

    for fast, single in zip(run(True), run(False), strict=True):
        assert torch.allclose(fast, single, rtol=0, atol=1e-6)
