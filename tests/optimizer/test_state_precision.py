"""The moments' storage (``state_dtype``): checked at construction, the math against float64
references computed here, the planned bytes against the measured ones, and resume (torch.save and
torch.distributed.checkpoint) bit-identical for every option."""

from __future__ import annotations

import io
import math
import warnings

import pytest
import torch

from frugal_search.optimizer import FRUGAL, optimizer_state_bytes, paper_param_groups
from frugal_search.partition import Partition, Rule

# Every storage option other than today's FRUGAL (fp32, which the parity tests cover).
OPTIONS = [
    {"state_dtype": "bf16"},
    {"state_dtype": "int8"},
    {"second_moment": "factored"},
    {"state_dtype": "bf16", "second_moment": "factored"},
    {"state_dtype": "int8", "second_moment": "factored"},
]
OPTION_IDS = ["-".join(option.values()) for option in OPTIONS]
DTYPE_OPTIONS = [option for option in OPTIONS if "second_moment" not in option]  # any state-full rule
LR, BETAS, EPS, WD = 1e-2, (0.9, 0.999), 1e-8, 0.1


# ----------------------------------------------------------------------------- construction


@pytest.mark.parametrize(
    ("setting", "value", "allowed"),
    [
        ("state_dtype", "fp16", "'fp32', 'bf16', 'int8'"),
        ("state_dtype", 8, "'fp32', 'bf16', 'int8'"),
        ("state_dtype", None, "'fp32', 'bf16', 'int8'"),
        ("second_moment", "low-rank", "'full', 'factored'"),
        ("second_moment", True, "'full', 'factored'"),
    ],
)
def test_a_bad_storage_setting_names_the_value_and_the_allowed_ones(setting, value, allowed):
    param = [torch.nn.Parameter(torch.zeros(3, 3))]
    for build in (
        lambda: FRUGAL(param, **{setting: value}),
        lambda: FRUGAL([{"params": param, "role": "stateful", setting: value}]),
        lambda: Partition.paper(**{setting: value}),
        lambda: Partition.from_dict({"format": "frugal-split/1", "settings": {setting: value}, "rules": [{"role": "frugal"}]}),
    ):
        with pytest.raises(ValueError) as error:
            build()
        assert f"{setting}={value!r}" in str(error.value) and allowed in str(error.value)


@pytest.mark.parametrize("option", OPTIONS, ids=OPTION_IDS)
def test_a_split_file_carries_the_storage_and_a_default_one_does_not_name_it(option):
    partition = Partition.paper(0.25, **option)
    written = partition.to_dict()
    assert all(written["settings"][name] == value for name, value in option.items())
    assert Partition.from_dict(written) == partition
    assert not set(option) & set(Partition.paper(0.25).to_dict()["settings"])  # old files' text and fingerprint kept
    assert partition.summary() != Partition.paper(0.25).summary()


@pytest.mark.parametrize("rule", ["lion", "sgdm"])
def test_a_factored_second_moment_needs_adamw(rule):
    message = rf"second_moment='factored': allowed 'full' with stateful_rule='{rule}'.*Use stateful_rule='adamw'"
    with pytest.raises(ValueError, match=message):
        FRUGAL([torch.nn.Parameter(torch.zeros(3, 3))], stateful_rule=rule, second_moment="factored")
    with pytest.raises(ValueError, match=message):
        Partition.paper(second_moment="factored", stateful_rule=rule)
    with pytest.raises(ValueError, match=r"rules\[0\]: Invalid FRUGAL setting " + message):
        Partition([Rule("frugal", kinds=["attention"], stateful_rule=rule), Rule("stateful")], second_moment="factored")


@pytest.mark.parametrize("option", OPTIONS, ids=OPTION_IDS)
def test_storage_other_than_todays_is_not_planned_as_sharded(option):
    optimizer = FRUGAL([torch.nn.Parameter(torch.zeros(4, 4))], **option)
    assert optimizer.peak_state_bytes(world_size=1) == optimizer.peak_state_bytes()
    with pytest.raises(ValueError, match=r"state_dtype='\w+', second_moment='\w+' is not sharded by FSDP2"):
        optimizer.peak_state_bytes(world_size=2)


# ----------------------------------------------------------------------------- the math


def _bf16_gap(value: torch.Tensor) -> torch.Tensor:
    """The distance between the bf16 neighbours around each value (8 significant bits)."""
    exponent = torch.floor(torch.log2(value.abs().clamp_min(1e-30)))
    return torch.pow(2.0, exponent - 7)


def _adamw_float64(param, grad, exp_avg, exp_avg_sq, step: int):
    """One AdamW step (Hugging Face form, decoupled decay) in float64 from the given moments."""
    b1, b2 = BETAS
    param = param * (1 - LR * WD)
    exp_avg = b1 * exp_avg + (1 - b1) * grad
    exp_avg_sq = b2 * exp_avg_sq + (1 - b2) * grad * grad
    denominator = exp_avg_sq.sqrt() / math.sqrt(1 - b2**step) + EPS
    return param - LR / (1 - b1**step) * exp_avg / denominator, exp_avg, exp_avg_sq


def _run_steps(optimizer: FRUGAL, params: list[torch.nn.Parameter], grads: list[list[torch.Tensor]]) -> None:
    for step_grads in grads:
        for param, grad in zip(params, step_grads, strict=True):
            param.grad = grad.clone()
        optimizer.step()


@pytest.mark.parametrize("foreach", [True, False])
def test_bf16_moments_are_the_float64_step_rounded_to_a_bf16_neighbour(foreach):
    generator = torch.Generator().manual_seed(0)
    param = torch.nn.Parameter(torch.randn(24, 40, generator=generator))
    grads = [[torch.randn(24, 40, generator=generator)] for _ in range(4)]
    optimizer = FRUGAL(
        [{"params": [param], "role": "stateful"}], lr=LR, betas=BETAS, eps=EPS, weight_decay=WD,
        state_dtype="bf16", foreach=foreach,
    )
    _run_steps(optimizer, [param], grads[:3])
    state = optimizer.state[param]
    assert state["exp_avg"].dtype == state["exp_avg_sq"].dtype == torch.bfloat16
    before = [t.detach().double() for t in (param, state["exp_avg"], state["exp_avg_sq"])]
    _run_steps(optimizer, [param], grads[3:])
    expected_param, expected_avg, expected_sq = _adamw_float64(*before[:1], grads[3][0].double(), *before[1:], step=4)
    # the parameter moves by the fp32 moments, before they are rounded to bf16
    assert torch.allclose(param.detach().double(), expected_param, rtol=0, atol=1e-6)
    for stored, expected in ((state["exp_avg"], expected_avg), (state["exp_avg_sq"], expected_sq)):
        error = (stored.double() - expected).abs()
        assert (error < _bf16_gap(expected) * (1 + 1e-6)).all()  # one of the two bf16 neighbours
        assert (error > 0).any()  # rounded, not kept in fp32


@pytest.mark.parametrize("foreach", [True, False])
def test_bf16_second_moment_decays_as_its_ema_where_rounding_to_nearest_would_freeze_it(foreach):
    # After the gradient stops, v decays by beta2 = 0.999 a step: 0.1%, under bf16's resolution
    # (a relative 2^-9..2^-8 to the nearest value), so rounding to nearest would never move it.
    param = torch.nn.Parameter(torch.zeros(4096))
    optimizer = FRUGAL([{"params": [param], "role": "stateful"}], lr=0.0, state_dtype="bf16", foreach=foreach)
    _run_steps(optimizer, [param], [[torch.randn(4096, generator=torch.Generator().manual_seed(1))]])
    start = optimizer.state[param]["exp_avg_sq"].double()
    nearest = start.clone().float()
    for _ in range(200):
        nearest = (nearest * 0.999).to(torch.bfloat16).float()
    assert torch.equal(nearest.double(), start)  # the premise: rounding to nearest freezes v
    _run_steps(optimizer, [param], [[torch.zeros(4096)]] * 200)
    ratio = optimizer.state[param]["exp_avg_sq"].double().sum() / (start.sum() * 0.999**200)
    assert abs(ratio - 1) < 0.01  # 0.999^200 = 0.82: the EMA, unbiased


def _decode_int8_float64(codes: torch.Tensor, scales: torch.Tensor, *, signed: bool) -> torch.Tensor:
    """The int8 maps written out: code q of block b is scale_b sign(q) (|q|/127)^4, or scale_b (q/255)^8."""
    q = codes.reshape(-1).double()
    block_scale = scales.double()[torch.arange(q.numel()) // 256]
    value = block_scale * (q.abs() / 127) ** 4 * q.sign() if signed else block_scale * (q / 255) ** 8
    return value.view(codes.shape)


def _codes_around_float64(value: torch.Tensor, *, signed: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per value: its block's scale (largest magnitude) and the magnitudes of the two codes around it."""
    levels, power = (127, 4) if signed else (255, 8)
    flat = value.reshape(-1).abs()
    padded = torch.cat([flat, flat.new_zeros(-flat.numel() % 256)]).view(-1, 256)
    block_scale = padded.amax(dim=1)
    scale = block_scale[torch.arange(flat.numel()) // 256]
    share = flat / scale
    lower = torch.floor(share ** (1 / power) * levels).clamp(max=levels - 1)
    return block_scale, scale * (lower / levels) ** power, scale * ((lower + 1) / levels) ** power


@pytest.mark.parametrize("foreach", [True, False])
def test_int8_moments_are_the_float64_step_quantized_to_a_code_around_it(foreach):
    generator = torch.Generator().manual_seed(0)
    shape = (24, 40)  # 960 values: three whole blocks of 256 and a partial one
    param = torch.nn.Parameter(torch.randn(shape, generator=generator))
    # magnitudes over four decades within each block, as gradients of a layer have them
    spread = torch.logspace(-4, 0, 40).expand(shape)
    grads = [[torch.randn(shape, generator=generator) * spread] for _ in range(4)]
    optimizer = FRUGAL(
        [{"params": [param], "role": "stateful"}], lr=LR, betas=BETAS, eps=EPS, weight_decay=WD,
        state_dtype="int8", foreach=foreach,
    )
    _run_steps(optimizer, [param], grads[:3])
    state = optimizer.state[param]
    assert (state["exp_avg"].dtype, state["exp_avg_sq"].dtype) == (torch.int8, torch.uint8)
    assert state["exp_avg_scale"].shape == state["exp_avg_sq_scale"].shape == (4,)
    exp_avg = _decode_int8_float64(state["exp_avg"], state["exp_avg_scale"], signed=True)
    exp_avg_sq = _decode_int8_float64(state["exp_avg_sq"], state["exp_avg_sq_scale"], signed=False)
    # the bound every true pair of moments keeps, m^2 <= C^2 v (Cauchy-Schwarz over the EMAs' weights)
    b1, b2 = BETAS
    bound = (1 - b1) ** 2 / ((1 - b2) * (1 - b1**2 / b2))
    exp_avg_sq = torch.maximum(exp_avg_sq, exp_avg**2 / bound)
    start = param.detach().double()
    _run_steps(optimizer, [param], grads[3:])
    expected_param, expected_avg, expected_sq = _adamw_float64(start, grads[3][0].double(), exp_avg, exp_avg_sq, step=4)
    # the parameter moves by the dequantized moments updated in fp32, before they are quantized again
    assert torch.allclose(param.detach().double(), expected_param, rtol=0, atol=1e-6)
    for key, expected, signed in (("exp_avg", expected_avg, True), ("exp_avg_sq", expected_sq, False)):
        block_scale, low, high = _codes_around_float64(expected, signed=signed)
        assert torch.allclose(state[key + "_scale"].double(), block_scale, rtol=1e-6, atol=0)
        stored = _decode_int8_float64(state[key], state[key + "_scale"], signed=signed).reshape(-1)
        slack = 1e-5 * block_scale.max()
        assert ((stored.abs() >= low - slack) & (stored.abs() <= high + slack)).all()  # one of the two codes
        if signed:
            assert (stored.sign() * expected.reshape(-1).sign() >= 0).all()
        else:
            assert (stored[expected.reshape(-1) > 0] > 0).all()  # a positive v never reads back as 0
        largest = expected.reshape(-1).abs().argmax()
        assert torch.isclose(stored[largest].abs(), expected.reshape(-1)[largest].abs(), rtol=1e-6)  # exact


@pytest.mark.parametrize("state_dtype", ["bf16", "int8"])
def test_moments_decay_as_their_ema_once_the_gradient_stops(state_dtype):
    param = torch.nn.Parameter(torch.zeros(64, 64))
    optimizer = FRUGAL([{"params": [param], "role": "stateful"}], lr=0.0, state_dtype=state_dtype)
    _run_steps(optimizer, [param], [[torch.randn(64, 64, generator=torch.Generator().manual_seed(1))]])

    def read(key: str) -> torch.Tensor:
        state = optimizer.state[param]
        if state_dtype == "bf16":
            return state[key].double()
        return _decode_int8_float64(state[key], state[key + "_scale"], signed=key == "exp_avg")

    first, second = read("exp_avg"), read("exp_avg_sq")
    _run_steps(optimizer, [param], [[torch.zeros(64, 64)]] * 30)
    decayed_first = (read("exp_avg") * first.sign()).sum() / (first.abs().sum() * 0.9**30)
    decayed_second = read("exp_avg_sq").sum() / (second.sum() * 0.999**30)
    assert abs(decayed_first - 1) < 0.02 and abs(decayed_second - 1) < 0.01


@pytest.mark.parametrize("foreach", [True, False])
def test_an_int8_step_is_never_larger_than_the_largest_fp32_adamw_step(foreach):
    # Blocks whose gradients span nine decades, then all but the largest stop (an embedding row
    # not in the batch): on a linear map their v reads back as 0 while m does not, a step of m / eps.
    # fp32 AdamW's step is at most lr C sqrt(1 - b2^t) / (1 - b1^t), C^2 = (1-b1)^2 / ((1-b2)(1 - b1^2/b2)).
    param = torch.nn.Parameter(torch.zeros(512))
    grad = torch.randn(512, generator=torch.Generator().manual_seed(2)) * 1e-3
    grad[::256] = 1e3
    quiet = torch.where(torch.arange(512) % 256 == 0, grad, 0.0)
    optimizer = FRUGAL([{"params": [param], "role": "stateful"}], lr=LR, state_dtype="int8", foreach=foreach)
    b1, b2 = 0.9, 0.999
    bound = math.sqrt((1 - b1) ** 2 / ((1 - b2) * (1 - b1**2 / b2)))
    for step in range(1, 31):
        before = param.detach().clone()
        param.grad = (grad if step <= 5 else quiet).clone()
        optimizer.step()
        largest = LR * bound * math.sqrt(1 - b2**step) / (1 - b1**step)
        assert (param.detach() - before).abs().max() <= largest * (1 + 1e-5)


def _factored_adamw_float64(param, grads, *, shape_2d: bool, low_columns=None):
    """Adafactor's factored second moment with AdamW's step, step by step in float64: for G (m, n)
    r = b2 r + (1-b2) rowsum(G^2), c = b2 c + (1-b2) colsum(G^2), v = r c^T / sum(r), raised to
    m^2 / C^2 where below; a vector keeps its full v. ``low_columns``: the FRUGAL columns mode's
    chosen columns (Adam on them, signSGD on the rest)."""
    b1, b2 = BETAS
    bound = (1 - b1) ** 2 / ((1 - b2) * (1 - b1**2 / b2))
    w = param.double().clone()
    first = row = col = second = None
    for t, grad in enumerate(grads, start=1):
        g = grad.double()
        low = g[:, low_columns] if low_columns is not None else g
        if first is None:
            first = torch.zeros_like(low)
            row, col, second = torch.zeros(low.shape[0]).double(), torch.zeros(low.shape[-1]).double(), torch.zeros_like(low)
        w = w * (1 - LR * WD)
        first = b1 * first + (1 - b1) * low
        if shape_2d:
            row = b2 * row + (1 - b2) * (low**2).sum(dim=1)
            col = b2 * col + (1 - b2) * (low**2).sum(dim=0)
            v = torch.outer(row, col) / row.sum()
        else:
            second = b2 * second + (1 - b2) * low**2
            v = second
        v = torch.maximum(v, first**2 / bound)
        delta = -LR / (1 - b1**t) * first / (v.sqrt() / math.sqrt(1 - b2**t) + EPS)
        if low_columns is None:
            w = w + delta
        else:
            w[:, low_columns] += delta
            rest = g.clone()
            rest[:, low_columns] = 0
            w = w - LR * torch.sign(rest)
    return w, row, col


@pytest.mark.parametrize("foreach", [True, False])
def test_factored_second_moment_matches_a_float64_adafactor_reference(foreach):
    generator = torch.Generator().manual_seed(3)
    matrix = torch.nn.Parameter(torch.randn(12, 20, generator=generator))
    vector = torch.nn.Parameter(torch.randn(20, generator=generator))
    split = torch.nn.Parameter(torch.randn(10, 16, generator=generator))
    params = [matrix, vector, split]
    starts = [p.detach().clone() for p in params]
    grads = [[torch.randn(p.shape, generator=generator) * (1 + 5 * torch.rand(p.shape, generator=generator)) for p in params] for _ in range(5)]
    optimizer = FRUGAL(
        [{"params": [matrix, vector], "role": "stateful"}, {"params": [split], "role": "frugal"}],
        lr=LR, betas=BETAS, eps=EPS, weight_decay=WD, mode="columns", density=0.5, update_gap=100,
        second_moment="factored", foreach=foreach,
    )
    _run_steps(optimizer, params, grads)
    assert set(optimizer.state[matrix]) == {"exp_avg", "exp_avg_sq_row", "exp_avg_sq_col", "step"}
    assert set(optimizer.state[vector]) == {"exp_avg", "exp_avg_sq", "step"}  # 1-D: full
    columns = optimizer.state[split]["selection"]
    cases = [
        (matrix, _factored_adamw_float64(starts[0], [g[0] for g in grads], shape_2d=True)),
        (vector, _factored_adamw_float64(starts[1], [g[1] for g in grads], shape_2d=False)),
        (split, _factored_adamw_float64(starts[2], [g[2] for g in grads], shape_2d=True, low_columns=columns)),
    ]
    for param, (expected, row, col) in cases:
        assert torch.allclose(param.detach().double(), expected, rtol=0, atol=2e-6)
        if param.dim() == 2:
            state = optimizer.state[param]
            assert torch.allclose(state["exp_avg_sq_row"].double(), row, rtol=1e-5, atol=0)
            assert torch.allclose(state["exp_avg_sq_col"].double(), col, rtol=1e-5, atol=0)


# ----------------------------------------------------------------------------- memory

MODES = [
    {"mode": "blocks", "block_order": "descending"},
    {"mode": "blocks", "block_order": "random"},
    {"mode": "svd"},
    {"mode": "random"},
    {"mode": "randperm"},
    {"mode": "columns"},
    {"mode": "rows", "rank": 3},
    {"mode": "randk"},
]
MODE_IDS = ["-".join(str(v) for v in mode.values()) for mode in MODES]


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
@pytest.mark.parametrize("option", OPTIONS, ids=OPTION_IDS)
def test_planned_state_bytes_equal_the_measured_ones(option, mode, llama_factory):
    settings = {"density": 0.25, "update_gap": 1, **mode, **option}
    model = llama_factory()
    optimizer = FRUGAL(paper_param_groups(model), **settings)
    measured = []
    for _ in range(len(optimizer.param_groups[1]["params"])):  # n periods cover every window
        for p in model.parameters():
            p.grad = torch.randn(p.shape)
        optimizer.step()
        measured.append(optimizer_state_bytes(optimizer))
    planned = optimizer.peak_state_bytes()
    if mode.get("block_order") == "random":  # planned: the worst draw, which a run need not meet
        assert max(measured) <= planned
    else:
        assert max(measured) == planned
    with torch.device("meta"):
        meta_model = llama_factory()
    assert FRUGAL(paper_param_groups(meta_model), **settings).peak_state_bytes() == planned


@pytest.mark.parametrize("option", OPTIONS, ids=OPTION_IDS)
@pytest.mark.parametrize("mode", ["blocks", "columns"])
def test_the_partitions_state_bytes_are_what_its_optimizer_holds(option, mode, llama_factory, trainer):
    model = llama_factory()
    partition = Partition.paper(0.25, mode=mode, update_gap=1, **option)
    optimizer = partition.build_optimizer(model)
    peak = 0
    for step in range(14):  # 14 split tensors: every window of k = 4 (mode blocks)
        trainer(model, optimizer, range(step, step + 1))
        peak = max(peak, optimizer_state_bytes(optimizer))
    assert partition.state_bytes(model) == peak < Partition.paper(0.25, mode=mode).state_bytes(model)


# ----------------------------------------------------------------------------- resume

RESUME_MODES = ["blocks", "svd", "columns", "rows", "randk"]


def _optimizer(model, option: dict, mode: str, seed: int = 0) -> FRUGAL:
    return FRUGAL(
        paper_param_groups(model), lr=1e-3, density=0.25, update_gap=4, mode=mode, seed=seed,
        block_order="descending", **option,
    )


def _resumed_through_torch_save(model, optimizer, llama_factory, build):
    """A fresh model (other weights) and optimizer (other seed) loaded from torch.save of these."""
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    resumed_model = llama_factory(seed=123)
    resumed_model.load_state_dict(checkpoint["model"])
    resumed = build(resumed_model, seed=123)
    resumed.load_state_dict(checkpoint["optimizer"])
    return resumed_model, resumed


@pytest.mark.parametrize("mode", RESUME_MODES)
@pytest.mark.parametrize("option", OPTIONS, ids=OPTION_IDS)
def test_resume_from_torch_save_is_bit_identical(option, mode, llama_factory, trainer):
    total, save_after = 10, 6  # re-selection at 1, 5, 9
    straight_model = llama_factory()
    trainer(straight_model, _optimizer(straight_model, option, mode), range(total))

    model = llama_factory()
    optimizer = _optimizer(model, option, mode)
    trainer(model, optimizer, range(save_after))
    resumed_model, resumed = _resumed_through_torch_save(
        model, optimizer, llama_factory, lambda m, seed: _optimizer(m, option, mode, seed=seed)
    )
    assert {(k, v.dtype) for s in resumed.state.values() for k, v in s.items()} == {
        (k, v.dtype) for s in optimizer.state.values() for k, v in s.items()
    }
    trainer(resumed_model, resumed, range(save_after, total))
    for (name, expected), actual in zip(straight_model.named_parameters(), resumed_model.parameters(), strict=True):
        assert torch.equal(actual, expected), name


@pytest.mark.parametrize("mode", ["blocks", "random", "rows"])
@pytest.mark.parametrize("option", OPTIONS, ids=OPTION_IDS)
def test_resume_through_distributed_checkpoint_is_bit_identical(option, mode, llama_factory, trainer, tmp_path):
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    total, save_after = 8, 3
    straight_model = llama_factory()
    trainer(straight_model, _optimizer(straight_model, option, mode), range(total))

    model = llama_factory()
    optimizer = _optimizer(model, option, mode)
    trainer(model, optimizer, range(save_after))
    with warnings.catch_warnings():  # "torch.distributed is disabled ...: assuming a single process"
        warnings.simplefilter("ignore", UserWarning)
        model_state, optimizer_state = get_state_dict(model, optimizer)
        dcp.save({"model": model_state, "optim": optimizer_state}, checkpoint_id=str(tmp_path))
        resumed_model = llama_factory(seed=123)
        resumed = _optimizer(resumed_model, option, mode, seed=123)
        model_state, optimizer_state = get_state_dict(resumed_model, resumed)  # the template
        loaded = {"model": model_state, "optim": optimizer_state}
        dcp.load(loaded, checkpoint_id=str(tmp_path))
        set_state_dict(resumed_model, resumed, model_state_dict=loaded["model"], optim_state_dict=loaded["optim"])
    trainer(resumed_model, resumed, range(save_after, total))
    for (name, expected), actual in zip(straight_model.named_parameters(), resumed_model.parameters(), strict=True):
        assert torch.equal(actual, expected), name


@pytest.mark.parametrize("mode", ["blocks", "svd"])
@pytest.mark.parametrize("rule", ["lion", "sgdm"])
@pytest.mark.parametrize("option", DTYPE_OPTIONS, ids=lambda option: option["state_dtype"])
def test_one_moment_rules_store_their_moment_plan_it_and_resume(option, rule, mode, llama_factory, trainer):
    def build(model, seed=0):
        return FRUGAL(
            paper_param_groups(model), lr=1e-3, density=0.25, update_gap=2, mode=mode, seed=seed,
            stateful_rule=rule, **option,
        )

    straight_model = llama_factory()
    straight = build(straight_model)
    measured = []
    for step in range(6):
        trainer(straight_model, straight, range(step, step + 1))
        measured.append(optimizer_state_bytes(straight))
    key = "exp_avg" if rule == "lion" else "momentum_buffer"
    stored = {state[key].dtype for state in straight.state.values() if key in state}
    assert stored == {torch.bfloat16 if option["state_dtype"] == "bf16" else torch.int8}
    assert max(measured) == straight.peak_state_bytes()

    model = llama_factory()
    optimizer = build(model)
    trainer(model, optimizer, range(3))
    resumed_model, resumed = _resumed_through_torch_save(model, optimizer, llama_factory, build)
    trainer(resumed_model, resumed, range(3, 6))
    for expected, actual in zip(straight_model.parameters(), resumed_model.parameters(), strict=True):
        assert torch.equal(actual, expected)


@pytest.mark.parametrize("mode", ["blocks", "svd"])
def test_a_state_dict_from_before_the_storage_settings_loads_as_fp32_full(mode, llama_factory, trainer):
    straight_model = llama_factory()
    trainer(straight_model, _optimizer(straight_model, {}, mode), range(8))
    model = llama_factory()
    optimizer = _optimizer(model, {}, mode)
    trainer(model, optimizer, range(3))
    saved = optimizer.state_dict()
    for group in saved["param_groups"]:  # what a version without them wrote
        del group["state_dtype"], group["second_moment"]
    resumed = _optimizer(model, {"state_dtype": "int8"}, mode, seed=5)  # the checkpoint's settings win
    resumed.load_state_dict(saved)
    assert {(g["state_dtype"], g["second_moment"]) for g in resumed.param_groups} == {("fp32", "full")}
    trainer(model, resumed, range(3, 8))
    for expected, actual in zip(straight_model.parameters(), model.parameters(), strict=True):
        assert torch.equal(actual, expected)


@pytest.mark.parametrize("option", OPTIONS, ids=OPTION_IDS)
def test_bfloat16_parameters_take_every_storage(option, llama_factory, trainer):
    model = llama_factory(dtype=torch.bfloat16)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = FRUGAL(paper_param_groups(model), mode="svd", density=0.5, update_gap=2, lr=1e-2, **option)
    measured = []
    for step in range(3):
        trainer(model, optimizer, range(step, step + 1))
        measured.append(optimizer_state_bytes(optimizer))
    for p, start in zip(model.parameters(), before, strict=True):
        assert p.dtype == torch.bfloat16 and torch.isfinite(p).all() and not torch.equal(p, start)
    assert max(measured) == optimizer.peak_state_bytes()
