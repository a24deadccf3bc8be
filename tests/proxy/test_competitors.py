"""Competitor optimizers as proxy methods: exact state, learning runs, storage, missing packages, parity."""

from __future__ import annotations

import copy
import io
import json
import math
import pickle
import sys
import zipfile

import pytest
import torch

from frugal_search.optimizer import optimizer_state_bytes
from frugal_search.proxy import (
    COMPETITOR_NAMES,
    COMPETITORS,
    CompetitorSpec,
    ModelSpec,
    MuonWithAdamW,
    ProxyBudget,
    build_model,
    competitor_available,
    competitor_spec,
    competitor_state_bytes,
    run_proxy,
    training_memory,
)

# tiny-llama's width (128) on 2 blocks: its matrices (16384 values and more) are large enough for
# bitsandbytes to quantize (4096 and more) and for APOLLO's default rank (a quarter: 32)
TWO_BLOCKS = ModelSpec("tiny-llama", overrides={"num_hidden_layers": 2})


def needs_package(name: str):
    competitor = COMPETITORS[name]
    missing = f'{competitor.distribution} is not installed: pip install -e ".[{competitor.extra}]"'
    return pytest.mark.skipif(not competitor_available(name), reason=missing)


EVERY_COMPETITOR = [pytest.param(name, marks=needs_package(name)) for name in COMPETITOR_NAMES]


def train_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, steps: int, *, seed: int = 0) -> list[float]:
    """``steps`` optimizer steps on random byte sequences; the losses."""
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        batch = torch.randint(0, 256, (4, 33), generator=generator)
        loss = model(batch[:, :-1], labels=batch[:, :-1]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


def serialized_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of the storages ``torch.save`` writes for ``optimizer.state_dict()``'s state without the
    step counters: torch's serializer walks the state (subclass inner tensors, pickled helper
    objects) and writes each storage once, as one ``data/N`` record of the archive."""
    state = {
        index: {key: value for key, value in entry.items() if key != "step"}
        for index, entry in optimizer.state_dict()["state"].items()
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as archive:
        return sum(info.file_size for info in archive.infolist() if "/data/" in info.filename)


def meta_model(spec: ModelSpec) -> torch.nn.Module:
    with torch.device("meta"):
        return build_model(spec)


@pytest.mark.parametrize("name", EVERY_COMPETITOR)
def test_state_after_steps_is_what_torch_save_writes_and_what_was_planned(name: str) -> None:
    spec = competitor_spec(name)
    planned = spec.state_bytes(meta_model(TWO_BLOCKS))
    model = build_model(TWO_BLOCKS)
    optimizer = spec.build_optimizer(model)
    train_steps(model, optimizer, 2)
    measured = spec.measure_state_bytes(optimizer)
    assert measured == serialized_state_bytes(optimizer)
    assert measured == planned == spec.state_bytes(model)
    train_steps(model, optimizer, 2, seed=1)  # no state appears after the first step
    assert spec.measure_state_bytes(optimizer) == planned
    adamw_bytes = 8 * sum(p.numel() for p in model.parameters())
    assert 0 < planned < adamw_bytes  # every competitor holds less than AdamW's two fp32 moments
    assert spec.training_memory(model).state_bytes == planned == training_memory(spec, model).state_bytes


# tiny-llama by hand (4 blocks, width 128): per block 4 attention matrices 128 x 128, 3 mlp
# matrices 344 x 128 / 128 x 344 and 2 norms of 128; outside the blocks the embedding and the head
# (256 x 128) and the final norm; fp32 throughout
MATRICES = 4 * (4 * 128 * 128 + 3 * 344 * 128)
REST = 2 * 256 * 128 + 9 * 128
# APOLLO at rank r: two moments of r x (longer side), the projection r x (shorter side) and the
# norm-growth limiter's last norm per matrix
APOLLO_PER_BLOCK = {r: 4 * (3 * r * 128 + 1) + 3 * (2 * r * 344 + r * 128 + 1) for r in (32, 1)}
# Adam-mini's second moments per block: one per head of q and k (4 heads), one per row of v, o
# and the mlp matrices, one per norm; outside: one per token of the embedding and the head, one
# for the final norm
ADAM_MINI_SECOND = 4 * (2 * 4 + 2 * 128 + 2 * 344 + 128 + 2) + 2 * 256 + 1
# bitsandbytes: every matrix 8-bit (a byte a moment, a float32 absmax per 256 values), the norms
# fp32, and its two code tables of 256 float32 once
QUANTIZED = MATRICES + 2 * 256 * 128
TINY_LLAMA_STATE = {
    "muon": 4 * MATRICES + 8 * REST,
    "apollo": 4 * 4 * APOLLO_PER_BLOCK[32] + 8 * REST,
    "apollo-mini": 4 * 4 * APOLLO_PER_BLOCK[1] + 8 * REST,
    "adam-mini": 4 * (MATRICES + REST + ADAM_MINI_SECOND),
    "adamw-8bit": 2 * QUANTIZED + 2 * 4 * (QUANTIZED // 256) + 8 * 9 * 128 + 2 * 256 * 4,
}


@pytest.mark.parametrize("name", EVERY_COMPETITOR)
def test_the_planned_state_on_tiny_llama_is_the_figure_worked_by_hand(name: str) -> None:
    model = meta_model(ModelSpec("tiny-llama"))
    assert 8 * sum(p.numel() for p in model.parameters()) == 8 * (MATRICES + REST)  # AdamW's
    assert competitor_spec(name).state_bytes(model) == TINY_LLAMA_STATE[name]


@pytest.mark.parametrize("name", EVERY_COMPETITOR)
def test_a_short_proxy_run_learns_and_reports_the_planned_state(
    name: str, small_model: ModelSpec, short_budget: ProxyBudget
) -> None:
    spec = competitor_spec(name)
    result = run_proxy(small_model, "stdlib", spec, short_budget)
    assert not result.diverged and result.reason == "completed"
    assert math.isfinite(result.eval_loss)
    assert result.eval_loss < result.first_eval_loss - 0.2
    assert result.state_bytes == spec.state_bytes(build_model(small_model))


@pytest.mark.parametrize("name", COMPETITOR_NAMES)
def test_to_dict_from_dict_round_trip(name: str) -> None:
    spec = competitor_spec(name, lr=0.005)
    data = spec.to_dict()
    assert data["method"] == name and data["lr"] == 0.005
    assert set(data["settings"]) == set(COMPETITORS[name].defaults)
    again = CompetitorSpec.from_dict(json.loads(json.dumps(data, allow_nan=False)))
    assert again == spec and hash(again) == hash(spec)
    assert pickle.loads(pickle.dumps(spec)) == spec == copy.deepcopy(spec)  # worker processes get copies
    assert spec != competitor_spec(name, lr=0.004)
    assert again.summary() == spec.summary()


def test_settings_override_the_defaults_and_bad_ones_are_named() -> None:
    spec = CompetitorSpec.from_dict({"method": "apollo", "settings": {"rank": 16, "betas": [0.9, 0.95]}})
    assert spec.lr == COMPETITORS["apollo"].default_lr
    assert spec.settings["rank"] == 16 and spec.settings["betas"] == (0.9, 0.95)
    assert spec.settings["scale_type"] == "channel"
    assert "rank 16" in spec.summary() and "betas (0.9, 0.95)" in spec.summary()
    assert competitor_spec("muon").lr == 0.02
    with pytest.raises(ValueError, match="unknown competitor 'lion'; allowed: apollo, apollo-mini"):
        competitor_spec("lion")
    with pytest.raises(ValueError, match="unknown muon setting.*'rank'"):
        competitor_spec("muon", rank=4)
    with pytest.raises(ValueError, match=r"apollo setting scale_type='row': allowed 'channel', 'tensor'"):
        competitor_spec("apollo", scale_type="row")
    with pytest.raises(ValueError, match=r"adamw-8bit setting betas=\(0.9, 1.0\): allowed two numbers in \[0, 1\)"):
        competitor_spec("adamw-8bit", betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="apollo-mini setting rank=0: allowed an integer >= 1"):
        competitor_spec("apollo-mini", rank=0)
    with pytest.raises(ValueError, match="muon lr must be a positive number"):
        competitor_spec("muon", lr=-1.0)
    with pytest.raises(ValueError, match="unknown competitor key.*'rank'"):
        CompetitorSpec.from_dict({"method": "muon", "rank": 4})


@pytest.mark.parametrize("name", [name for name in COMPETITOR_NAMES if COMPETITORS[name].extra is not None])
def test_a_missing_package_is_one_line_naming_the_extra(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    competitor = COMPETITORS[name]
    monkeypatch.setitem(sys.modules, competitor.module, None)  # import now raises ImportError
    assert not competitor_available(name)
    spec = competitor_spec(name)  # a spec is still a record: trials that stored one can be read
    model = build_model(TWO_BLOCKS)
    with pytest.raises(ValueError) as error:
        spec.build_optimizer(model)
    message = str(error.value)
    assert "\n" not in message
    assert f'pip install -e ".[{competitor.extra}]"' in message and competitor.distribution in message
    if competitor.needs_package_to_plan:
        with pytest.raises(ValueError, match=r"pip install -e"):
            spec.state_bytes(model)
    # the others still work: Muon is torch's own
    optimizer = competitor_spec("muon").build_optimizer(model)
    train_steps(model, optimizer, 1)


@needs_package("adamw-8bit")
def test_8bit_adamw_follows_fp32_adamw() -> None:
    """bitsandbytes' 8-bit AdamW against torch's fp32 AdamW over 10 steps of the same batches: the
    updates agree within 10% (relative, per tensor) and the losses within 2e-3, yet not exactly
    (the moments really are 8-bit)."""
    spec = competitor_spec("adamw-8bit", lr=1e-3)
    initial = build_model(TWO_BLOCKS)
    quantized, reference = copy.deepcopy(initial), copy.deepcopy(initial)
    optimizer = spec.build_optimizer(quantized)
    quantized_losses = train_steps(quantized, optimizer, 10)
    fp32 = torch.optim.AdamW(reference.parameters(), lr=1e-3, weight_decay=0.0)
    reference_losses = train_steps(reference, fp32, 10)
    dtypes = {t.dtype for state in optimizer.state.values() for t in state.values() if torch.is_tensor(t)}
    assert torch.uint8 in dtypes
    assert max(abs(a - b) for a, b in zip(quantized_losses, reference_losses)) < 2e-3
    worst = 0.0
    for start, ours, theirs in zip(initial.parameters(), quantized.parameters(), reference.parameters()):
        reference_update = theirs.detach() - start.detach()
        worst = max(worst, ((ours.detach() - theirs.detach()).norm() / reference_update.norm()).item())
    assert 0.0 < worst < 0.1


def test_muon_with_adamw_steps_as_torchs_muon_and_adamw_side_by_side() -> None:
    """The wrapper against torch.optim.Muon on the matrices and torch.optim.AdamW on the rest, built by hand."""
    spec = competitor_spec("muon")
    initial = build_model(TWO_BLOCKS)
    ours, theirs = copy.deepcopy(initial), copy.deepcopy(initial)
    optimizer = spec.build_optimizer(ours)
    assert isinstance(optimizer, MuonWithAdamW)
    names = dict(theirs.named_parameters())
    matrices = [p for n, p in names.items() if ".layers." in n and p.dim() == 2]
    rest = [p for n, p in names.items() if not (".layers." in n and p.dim() == 2)]
    muon = torch.optim.Muon(matrices, lr=0.02, momentum=0.95, nesterov=True, ns_steps=5, weight_decay=0.01)
    adamw = torch.optim.AdamW(rest, lr=0.02 * 0.015, betas=(0.9, 0.95), eps=1e-10, weight_decay=0.01)

    class Both(torch.optim.Optimizer):
        def __init__(self) -> None:
            super().__init__(list(theirs.parameters()), {"lr": 0.02})

        def step(self, closure=None) -> None:
            muon.step()
            adamw.step()

    train_steps(ours, optimizer, 3)
    train_steps(theirs, Both(), 3)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert [g["lr"] for g in optimizer.param_groups] == [0.02, pytest.approx(0.02 * 0.015)]
    assert optimizer_state_bytes(optimizer) == spec.measure_state_bytes(optimizer)


def test_muon_with_adamw_resumes_from_its_state_dict() -> None:
    spec = competitor_spec("muon")
    model = build_model(TWO_BLOCKS)
    optimizer = spec.build_optimizer(model)
    train_steps(model, optimizer, 2)
    resumed_model = copy.deepcopy(model)
    resumed = spec.build_optimizer(resumed_model)
    resumed.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    assert spec.measure_state_bytes(resumed) == spec.measure_state_bytes(optimizer)
    train_steps(model, optimizer, 2, seed=5)
    train_steps(resumed_model, resumed, 2, seed=5)
    for a, b in zip(model.parameters(), resumed_model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_state_counting_looks_inside_tensor_subclasses_and_helper_objects() -> None:
    """A wrapper subclass counts its inner tensors' bytes (not the float size it reports), a tensor
    held by a helper object counts, a storage shared by two entries counts once, steps do not."""

    class Codes(torch.Tensor):  # a minimal traceable wrapper: uint8 codes standing for floats
        @staticmethod
        def __new__(cls, codes: torch.Tensor, scale: torch.Tensor):
            return torch.Tensor._make_wrapper_subclass(cls, codes.shape, dtype=torch.float32)

        def __init__(self, codes: torch.Tensor, scale: torch.Tensor) -> None:
            self.codes, self.scale = codes, scale

        def __tensor_flatten__(self):
            return ["codes", "scale"], None

        @classmethod
        def __torch_dispatch__(cls, func, types, args=(), kwargs=None):  # no maths on it here
            raise NotImplementedError(f"{func} is not defined on the test's 8-bit stand-in")

    class Holder:
        def __init__(self, matrix: torch.Tensor) -> None:
            self.matrix = matrix

    param = torch.nn.Parameter(torch.zeros(64, 8))
    optimizer = torch.optim.SGD([param], lr=0.1)
    shared = torch.zeros(256)
    optimizer.state[param] = {
        "step": torch.tensor(3.0),
        "moment": Codes(torch.zeros(64, 8, dtype=torch.uint8), torch.zeros(2)),
        "projector": Holder(torch.zeros(8, 4)),
        "table": shared,
        "same_table": shared,
    }
    assert optimizer.state[param]["moment"].element_size() == 4  # what the subclass reports
    assert competitor_state_bytes(optimizer) == 64 * 8 + 2 * 4 + 8 * 4 * 4 + 256 * 4
