"""Lion and SGD-momentum as the state-full rule against independent references: lion-pytorch and
torch.optim.SGD at density 1, float64 formulas (FRUGAL.md) for every projected and coordinate
mode, bit-identical resume in every combination, and state bytes equal to the one-moment formula."""

from __future__ import annotations

import io
import math

import pytest
import torch

from frugal_search.optimizer import FRUGAL, optimizer_state_bytes, paper_param_groups

LR, WD = 1e-3, 0.1
PER_TENSOR_MODES = ["svd", "random", "randperm", "columns", "rows", "randk"]


@pytest.mark.parametrize("mode", ["blocks", "columns", "rows", "randperm", "randk"])
@pytest.mark.parametrize("foreach", [True, False])
def test_lion_at_density_one_equals_lion_pytorch(mode, foreach, llama_factory, trainer):
    lion_pytorch = pytest.importorskip("lion_pytorch", reason="lion-pytorch is not installed (pip install lion-pytorch)")
    reference_model, model = llama_factory(), llama_factory()
    reference = lion_pytorch.Lion(reference_model.parameters(), lr=LR, betas=(0.9, 0.99), weight_decay=WD)
    optimizer = FRUGAL(
        paper_param_groups(model), lr=LR, weight_decay=WD, stateful_rule="lion",  # betas: Lion's own
        mode=mode, density=1.0, update_gap=100, foreach=foreach,
    )
    trainer(reference_model, reference, range(12))
    trainer(model, optimizer, range(12))
    for (name, expected), actual in zip(reference_model.named_parameters(), model.parameters(), strict=True):
        assert torch.allclose(actual, expected, rtol=0, atol=1e-6), name


class _DecoupledSGD(torch.optim.SGD):
    """torch's SGD with momentum after the decoupled decay ``p *= 1 - lr * wd`` written by hand."""

    def __init__(self, params, *, lr: float, momentum: float, nesterov: bool, decay: float) -> None:
        super().__init__(params, lr=lr, momentum=momentum, nesterov=nesterov)
        self.decay = decay

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                p.mul_(1 - group["lr"] * self.decay)
        return super().step(closure)


@pytest.mark.parametrize("mode", ["blocks", "columns", "rows", "randk"])
@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("foreach", [True, False])
def test_sgdm_at_density_one_equals_torch_sgd(mode, nesterov, foreach, llama_factory, trainer):
    reference_model, model = llama_factory(), llama_factory()
    reference = _DecoupledSGD(reference_model.parameters(), lr=1e-2, momentum=0.8, nesterov=nesterov, decay=WD)
    optimizer = FRUGAL(
        paper_param_groups(model), lr=1e-2, weight_decay=WD, stateful_rule="sgdm", momentum=0.8,
        nesterov=nesterov, mode=mode, density=1.0, update_gap=4, reset_state=False, foreach=foreach,
    )
    # blocks restart the buffer at every re-selection (always a reset), torch never does: only the
    # first period is compared there; the coordinate modes carry it over (every coordinate chosen)
    steps = 4 if mode == "blocks" else 12
    trainer(reference_model, reference, range(steps))
    trainer(model, optimizer, range(steps))
    for (name, expected), actual in zip(reference_model.named_parameters(), model.parameters(), strict=True):
        assert torch.allclose(actual, expected, rtol=0, atol=2e-6), name


def _down_up(kind: str, selection: torch.Tensor, shape: tuple[int, int]):
    """Independent float64 ``down`` / ``up`` of a subspace (dense basis or chosen coordinates)."""
    m, n = shape
    s = selection.double() if selection.is_floating_point() else selection
    if kind == "right":
        return (lambda g: g @ s.T), (lambda x: x @ s)
    if kind == "left":
        return (lambda g: s.T @ g), (lambda x: s @ x)
    if kind == "columns":
        mask_shape = (m, n)

        def up(x):
            full = torch.zeros(mask_shape, dtype=torch.float64)
            full[:, s] = x
            return full

        return (lambda g: g[:, s]), up
    if kind == "rows":

        def up(x):
            full = torch.zeros((m, n), dtype=torch.float64)
            full[s] = x
            return full

        return (lambda g: g[s]), up

    def up(x):
        full = torch.zeros(m * n, dtype=torch.float64)
        full[s] = x
        return full.view(m, n)

    return (lambda g: g.reshape(-1)[s]), up


def _kind(mode: str, shape: tuple[int, int]) -> str:
    right = shape[0] >= shape[1]
    return {
        "svd": "right" if right else "left",
        "random": "right" if right else "left",
        "randperm": "columns" if right else "rows",
        "columns": "columns",
        "rows": "rows",
        "randk": "flat",
    }[mode]


def _reference(start, grads, selections, *, kind, gap, reset, rule, lr, wd, split, free, betas, momentum, nesterov):
    """FRUGAL.md's step, float64, with the Lion or SGD-momentum state-full part (torch's buffer start)."""
    w = start.double().clone()
    b1, b2 = betas
    moment = None
    for step, grad in enumerate(grads, start=1):
        g = grad.double()
        down, up = _down_up(kind, selections[(step - 1) // gap], tuple(w.shape))
        low = down(g)
        if (step - 1) % gap == 0 and (reset or moment is None):
            moment = torch.zeros_like(low)
            first = True
        w = w * (1 - lr * wd)
        if rule == "lion":
            direction = torch.sign(b1 * moment + (1 - b1) * low)
            moment = b2 * moment + (1 - b2) * low
        else:
            moment = low.clone() if first else momentum * moment + low
            direction = low + momentum * moment if nesterov else moment
        first = False
        w = w - lr * split * up(direction) - lr * split * free * torch.sign(g - up(low))
    return w


@pytest.mark.parametrize("mode", PER_TENSOR_MODES)
@pytest.mark.parametrize("rule", ["lion", "sgdm"])
@pytest.mark.parametrize("shape", [(12, 8), (6, 10)])
@pytest.mark.parametrize("reset", [True, False])
@pytest.mark.parametrize("foreach", [True, False])
def test_projected_and_coordinate_modes_match_float64_formulas(mode, rule, shape, reset, foreach):
    steps, gap = 7, 3
    settings = {"lr": 1e-2, "wd": 0.1, "split": 0.5, "free": 0.3, "betas": (0.8, 0.95), "momentum": 0.7, "nesterov": rule == "sgdm"}
    torch.manual_seed(3)
    weight = torch.nn.Parameter(torch.randn(shape))
    start = weight.detach().clone()
    generator = torch.Generator().manual_seed(4)
    grads = [torch.randn(shape, generator=generator) for _ in range(steps)]
    optimizer = FRUGAL(
        [weight], lr=settings["lr"], betas=settings["betas"], weight_decay=settings["wd"], stateful_rule=rule,
        momentum=settings["momentum"], nesterov=settings["nesterov"], mode=mode, density=0.5, update_gap=gap,
        reset_state=reset, split_lr_scale=settings["split"], state_free_lr_scale=settings["free"], foreach=foreach,
    )
    selections = []
    for step, grad in enumerate(grads, start=1):
        weight.grad = grad.clone()
        optimizer.step()
        if (step - 1) % gap == 0:  # the subspace is the optimizer's (drawn); the arithmetic is checked
            selections.append(optimizer.state[weight]["selection"].clone())
    assert set(optimizer.state[weight]) == {"step", "period", "selection", "exp_avg" if rule == "lion" else "momentum_buffer"}
    expected = _reference(start, grads, selections, kind=_kind(mode, shape), gap=gap, reset=reset, rule=rule, **settings)
    assert torch.allclose(weight.detach().double(), expected, rtol=0, atol=2e-5)


SHAPES = [(8, 12), (12, 8), (16,), (4, 3, 5)]


def _run(rule: str, mode: str, reset: bool, foreach: bool, steps: range, optimizer=None, params=None):
    if params is None:
        torch.manual_seed(5)
        params = [torch.nn.Parameter(torch.randn(s)) for s in [(6, 4), *SHAPES]]
    if optimizer is None:
        groups = [{"params": params[:1], "role": "stateful"}, {"params": params[1:], "role": "frugal"}]
        optimizer = FRUGAL(
            groups, lr=1e-2, weight_decay=0.05, stateful_rule=rule, nesterov=True, mode=mode, density=0.5,
            update_gap=3, reset_state=reset, block_order="random", seed=9, foreach=foreach,
        )
    for step in steps:
        generator = torch.Generator().manual_seed(100 + step)
        for p in params:
            p.grad = torch.randn(p.shape, generator=generator)
        optimizer.step()
    return params, optimizer


@pytest.mark.parametrize("mode", ["blocks", *PER_TENSOR_MODES])
@pytest.mark.parametrize("rule", ["lion", "sgdm"])
@pytest.mark.parametrize("reset", [True, False])
def test_resume_is_bit_identical(mode, rule, reset):
    straight, _ = _run(rule, mode, reset, True, range(8))
    params, optimizer = _run(rule, mode, reset, True, range(4))  # stops inside the second period
    buffer = io.BytesIO()
    torch.save(optimizer.state_dict(), buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
    _, fresh = _run(rule, mode, reset, True, range(0), params=copies)
    fresh.load_state_dict(saved)
    _run(rule, mode, reset, True, range(4, 8), optimizer=fresh, params=copies)
    for expected, actual in zip(straight, copies, strict=True):
        assert torch.equal(actual, expected)


@pytest.mark.parametrize("rule", ["lion", "sgdm"])
@pytest.mark.parametrize("mode", ["blocks", *PER_TENSOR_MODES])
def test_fast_path_matches_single_tensor_path(rule, mode):
    for reset in (True, False):
        fast, _ = _run(rule, mode, reset, True, range(7))
        single, _ = _run(rule, mode, reset, False, range(7))
        for a, b in zip(fast, single, strict=True):
            assert torch.allclose(a, b, rtol=0, atol=1e-6)


# One moment per state-full coordinate, fp32 (4 bytes): a (12, 8) matrix at density 0.5.
ONE_MOMENT_BYTES = {
    "blocks": 96 * 4,  # 2 tensors, k = 1: one whole (12, 8) moment
    "svd": (12 * 4 + 4 * 8) * 4,  # right, r 4: moment (12, 4) + basis (4, 8)
    "random": (12 * 4 + 4 * 8) * 4,
    "randperm": 12 * 4 * 4 + 4 * 8,  # 4 columns: moment (12, 4) + 4 int64 indices
    "columns": 12 * 4 * 4 + 4 * 8,
    "rows": 6 * 8 * 4 + 6 * 8,  # floor(0.5 * 12) rows
    "randk": 48 * 4 + 48 * 8,  # floor(0.5 * 96) entries: one fp32 moment + one int64 index each
}


@pytest.mark.parametrize("rule", ["lion", "sgdm"])
@pytest.mark.parametrize("mode", list(ONE_MOMENT_BYTES))
def test_state_bytes_equal_the_one_moment_formula(rule, mode):
    frugal = [torch.nn.Parameter(torch.randn(12, 8)) for _ in range(2 if mode == "blocks" else 1)]
    stateful = [torch.nn.Parameter(torch.randn(5, 3))]
    groups = [{"params": stateful, "role": "stateful"}, {"params": frugal, "role": "frugal"}]
    optimizer = FRUGAL(groups, stateful_rule=rule, mode=mode, density=0.5, update_gap=1)
    expected = 15 * 4 + ONE_MOMENT_BYTES[mode]
    for p in stateful + frugal:
        p.grad = torch.randn(p.shape)
    optimizer.step()
    assert optimizer_state_bytes(optimizer) == optimizer.peak_state_bytes() == expected
    adamw = FRUGAL(groups, mode=mode, density=0.5, update_gap=1).peak_state_bytes()
    per_moment = 15 * 4 + {"blocks": 96, "svd": 48, "random": 48, "randperm": 48, "columns": 48, "rows": 48, "randk": 48}[mode] * 4
    assert adamw == expected + per_moment  # AdamW keeps one moment more per state-full coordinate


def test_lion_takes_its_own_betas_and_nesterov_needs_momentum():
    weight = torch.nn.Parameter(torch.ones(3, 2))
    lion, adamw = FRUGAL([weight], stateful_rule="lion"), FRUGAL([weight])
    assert lion.param_groups[0]["betas"] is None and adamw.param_groups[0]["betas"] is None
    from frugal_search.optimizer._settings import resolved_betas

    assert resolved_betas(lion.param_groups[0]) == (0.9, 0.99)
    assert resolved_betas(adamw.param_groups[0]) == (0.9, 0.999)
    with pytest.raises(ValueError, match=r"nesterov=True: allowed False when momentum is 0"):
        FRUGAL([weight], stateful_rule="sgdm", momentum=0.0, nesterov=True)
    with pytest.raises(ValueError, match=r"stateful_rule='adam'.*'adamw', 'lion', 'sgdm'"):
        FRUGAL([weight], stateful_rule="adam")
    assert math.isclose(FRUGAL([weight], stateful_rule="sgdm").param_groups[0]["momentum"], 0.9)
