"""run_proxy end to end on the CPU: learning, reproducibility, divergence, early stop, figures."""

from __future__ import annotations

import json
import math

import pytest
import torch

from frugal_search.partition import Partition, baseline_partition
from frugal_search.proxy import (
    ModelSpec,
    ProxyBudget,
    ProxyResult,
    build_model,
    run_proxy,
)


@pytest.mark.slow
def test_adamw_on_tiny_llama_and_the_stdlib_corpus_learns() -> None:
    budget = ProxyBudget(steps=300, batch_size=8, seq_len=64, eval_every=100, eval_batches=4, log_every=25)
    result = run_proxy("tiny-llama", "stdlib", baseline_partition("adamw"), budget, seed=0)
    assert not result.diverged and result.reason == "completed" and result.steps == 300
    # ln 256 = 5.55 nats for a uniform guess over bytes; code is far more predictable than that
    assert result.first_eval_loss == pytest.approx(math.log(256), abs=0.1)
    assert result.eval_loss < result.first_eval_loss - 2.0
    assert [step for step, _ in result.eval_curve] == [0, 100, 200, 300]
    assert result.train_curve[-1][1] < result.train_curve[0][1]
    assert result.tokens_per_s > 0 and result.wall_s > 0


def test_same_seed_same_curves_other_seed_differs(small_model: ModelSpec, short_budget: ProxyBudget) -> None:
    partition = baseline_partition("frugal")
    first = run_proxy(small_model, "stdlib", partition, short_budget, seed=3)
    again = run_proxy(small_model, "stdlib", partition, short_budget, seed=3)
    other = run_proxy(small_model, "stdlib", partition, short_budget, seed=4)
    assert first.train_curve == again.train_curve and first.eval_curve == again.eval_curve
    assert first.train_curve != other.train_curve
    # the held-out batches do not depend on the seed, only the weights do: step-0 losses differ
    # by the initialisation alone, and the same weights give the same step-0 eval loss
    assert first.eval_curve[0] == again.eval_curve[0]


def test_a_huge_lr_diverges_within_a_few_steps(small_model: ModelSpec) -> None:
    budget = ProxyBudget(steps=100, batch_size=4, seq_len=32, lr=10.0, warmup_steps=0, eval_every=50, eval_batches=2)
    result = run_proxy(small_model, "stdlib", baseline_partition("adamw"), budget)
    assert result.diverged is True
    assert result.steps <= 5
    assert f"step {result.steps}" in result.reason
    assert math.isnan(result.eval_loss)
    payload = result.to_dict()
    assert payload["eval_loss"] is None and payload["diverged"] is True
    json.dumps(payload, allow_nan=False)  # JSON-safe: no NaN left


def test_on_eval_can_stop_the_run(small_model: ModelSpec, short_budget: ProxyBudget) -> None:
    seen: list[tuple[int, float]] = []

    def stop_at_step_4(step: int, eval_loss: float) -> bool:
        seen.append((step, eval_loss))
        return step >= 4

    result = run_proxy(small_model, "stdlib", baseline_partition("adamw"), short_budget, on_eval=stop_at_step_4)
    assert [step for step, _ in seen] == [0, 4]
    assert result.steps == 4 and result.reason == "stopped by on_eval" and result.diverged is False
    assert result.eval_loss == seen[-1][1]


def test_every_eval_loss_is_reported_to_an_optimizer_that_takes_it(small_model: ModelSpec, short_budget: ProxyBudget) -> None:
    from frugal_search.optimizer import FRUGAL

    reported: list[float] = []

    class Recording(FRUGAL):
        def report_loss(self, loss: float) -> None:
            reported.append(loss)
            super().report_loss(loss)

    partition = baseline_partition("frugal")
    result = run_proxy(
        small_model, "stdlib", lambda model: Recording(partition.param_groups(model)), short_budget,
    )
    assert reported == [loss for _, loss in result.eval_curve] and len(reported) == 4  # steps 0, 4, 8, 12


def test_state_bytes_match_the_partition_count(small_model: ModelSpec, short_budget: ProxyBudget) -> None:
    model = build_model(small_model)
    parameters = sum(p.numel() for p in model.parameters())
    adamw = run_proxy(small_model, "stdlib", baseline_partition("adamw"), short_budget)
    assert adamw.state_bytes == 2 * 4 * parameters  # exp_avg + exp_avg_sq in fp32
    for name in ("frugal", "frugal-rho0"):
        partition = baseline_partition(name)
        result = run_proxy(small_model, "stdlib", partition, short_budget)
        assert result.state_bytes == partition.state_bytes(model), name
        assert result.state_bytes < adamw.state_bytes
    assert adamw.peak_memory_bytes is None and adamw.state_memory_bytes is None  # CPU


def test_lr_override_keeps_group_ratios_and_the_schedule_ends_at_the_floor(small_model: ModelSpec) -> None:
    built: list[torch.optim.Optimizer] = []

    def two_group_adamw(model: torch.nn.Module) -> torch.optim.Optimizer:
        params = list(model.parameters())
        optimizer = torch.optim.AdamW([{"params": params[:2], "lr": 5e-4}, {"params": params[2:]}], lr=1e-3)
        built.append(optimizer)
        return optimizer

    budget = ProxyBudget(steps=6, batch_size=2, seq_len=16, lr=2e-3, eval_every=6, eval_batches=1, min_lr_ratio=0.1)
    run_proxy(small_model, "stdlib", two_group_adamw, budget)
    groups = built[0].param_groups
    assert [g["initial_lr"] for g in groups] == pytest.approx([1e-3, 2e-3])
    assert [g["lr"] for g in groups] == pytest.approx([1e-4, 2e-4])


def test_grad_accumulation_equals_one_bigger_batch(small_model: ModelSpec) -> None:
    # the train generator draws the same windows either way, so the two runs see the same data
    common = {"steps": 3, "seq_len": 16, "eval_every": 3, "eval_batches": 1, "log_every": 1, "grad_clip": None}
    adamw = baseline_partition("adamw")
    whole = run_proxy(small_model, "stdlib", adamw, ProxyBudget(batch_size=8, **common))
    split = run_proxy(small_model, "stdlib", adamw, ProxyBudget(batch_size=4, grad_accum=2, **common))
    assert [s for s, _ in split.train_curve] == [1, 2, 3]
    for (_, a), (_, b) in zip(whole.train_curve, split.train_curve):
        assert a == pytest.approx(b, rel=1e-4)


def test_split_file_partition_and_tokens_budget(tmp_path, small_model: ModelSpec) -> None:
    path = Partition.paper(0.25).to_json(tmp_path / "split.json")
    budget = ProxyBudget(tokens=500, batch_size=2, seq_len=32, eval_every=10, eval_batches=1)
    result = run_proxy(small_model, "stdlib", Partition.from_json(path), budget)
    assert isinstance(result, ProxyResult)
    assert result.steps == 8  # ceil(500 / 64)
    assert result.details["train_tokens"] == 512


def test_bad_inputs_are_value_or_type_errors(small_model: ModelSpec, short_budget: ProxyBudget) -> None:
    with pytest.raises(TypeError, match="ProxyBudget"):
        run_proxy(small_model, "stdlib", "adamw", {"steps": 3})
    with pytest.raises(ValueError, match="unknown baseline"):
        run_proxy(small_model, "stdlib", "adamw-please", short_budget)
    with pytest.raises(ValueError, match="CUDA is not available"):
        if torch.cuda.is_available():
            raise ValueError("CUDA is not available (skipped: this machine has CUDA)")
        run_proxy(small_model, "stdlib", "adamw", short_budget, device="cuda")
    with pytest.raises(ValueError, match="vocabulary"):
        run_proxy(
            ModelSpec("tiny-llama", overrides={**small_model.overrides, "vocab_size": 100}),
            "stdlib",
            "adamw",
            short_budget,
        )


def test_out_of_memory_propagates_after_releasing_the_model(small_model: ModelSpec, short_budget: ProxyBudget) -> None:
    import gc
    import weakref

    models: list[weakref.ref] = []

    def optimizer_that_runs_out_of_memory(model: torch.nn.Module) -> torch.optim.Optimizer:
        models.append(weakref.ref(model))
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")

    with pytest.raises(torch.cuda.OutOfMemoryError, match="simulated") as caught:
        run_proxy(small_model, "stdlib", optimizer_that_runs_out_of_memory, short_budget)
    assert caught.value.__context__ is None  # the failed run's frames are not kept alive
    gc.collect()
    assert models and models[0]() is None
