"""Run under ``torchrun --nproc_per_node 2`` (gloo, CPU) by test_frugal_distributed.py: FRUGAL in
every mode under DDP and FSDP2 against one process, DCP resume with a fresh model and optimizer,
per-rank state bytes. Rank 0 writes the figures to the JSON file named by argv[1]."""

from __future__ import annotations

import json
import os
import sys
import tempfile

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor, Shard
from torch.nn.parallel import DistributedDataParallel

from frugal_search.optimizer import FRUGAL, MODES, optimizer_state_bytes, paper_param_groups

VOCAB = 64
STEPS = 6  # re-selection (T = 2) at steps 1, 3, 5
SAVE_AFTER = 3


def build_llama(seed: int = 0) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
        vocab_size=VOCAB, max_position_embeddings=32, tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def tokens(step: int) -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 8), generator=torch.Generator().manual_seed(1000 + step))


# Lion and SGD-momentum under FSDP2 where sharding is hardest: a left projection (moments by
# columns, an all-reduce), rows (uneven moments re-chunked at checkpoints), blocks (flat buffers).
# Not Lion with svd: the all-reduced projection rounds differently from one process's, and Lion's
# sign flips its near-zero coordinates (measured 2.5e-2 after 6 steps at lr 1e-2; SGD-momentum on
# the same path: 6e-8), so it is no test of the sharding.
RULE_CASES = [("svd", "sgdm"), ("rows", "lion"), ("blocks", "lion")]


def settings(mode: str, rule: str = "adamw") -> dict:
    return {
        "mode": mode, "density": 0.25, "update_gap": 2, "lr": 1e-2, "weight_decay": 0.1, "block_order": "random",
        "stateful_rule": rule, "nesterov": rule == "sgdm",
    }


def wrap(model: torch.nn.Module, kind: str) -> torch.nn.Module:
    if kind == "ddp":
        return DistributedDataParallel(model)
    if kind == "fsdp":
        mesh = init_device_mesh("cpu", (dist.get_world_size(),))
        for layer in model.model.layers:
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
    return model


def build(mode: str, kind: str, seed: int = 0, foreach: bool = True, rule: str = "adamw"):
    model = wrap(build_llama(seed), kind)
    optimizer = FRUGAL(paper_param_groups(model), seed=seed, foreach=foreach, **settings(mode, rule))
    return model, optimizer


def train(model, optimizer, steps: range, kind: str) -> None:
    rank = dist.get_rank()
    for step in steps:
        batch = tokens(step) if kind == "single" else tokens(step)[rank : rank + 1]  # each rank half the batch
        optimizer.zero_grad(set_to_none=True)
        model(batch, labels=batch).loss.backward()
        optimizer.step()


def full_params(model) -> dict[str, torch.Tensor]:
    out = {}
    for name, p in model.named_parameters():
        name = name.removeprefix("module.")
        out[name] = (p.full_tensor() if isinstance(p, DTensor) else p).detach().clone()
    return out


def resume_run(mode: str, kind: str, directory: str, rule: str = "adamw") -> dict[str, torch.Tensor]:
    """Train SAVE_AFTER steps, dcp.save, then a fresh model and optimizer (other seed) load and finish."""
    model, optimizer = build(mode, kind, rule=rule)
    train(model, optimizer, range(SAVE_AFTER), kind)
    model_state, optim_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=directory)
    del model, optimizer
    model, optimizer = build(mode, kind, seed=123, rule=rule)
    model_state, optim_state = get_state_dict(model, optimizer)  # the template (torch's lazy init runs here)
    state = {"model": model_state, "optim": optim_state}
    dcp.load(state, checkpoint_id=directory)
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    train(model, optimizer, range(SAVE_AFTER, STEPS), kind)
    return full_params(model)


def local_rows(size: int) -> int:
    world, rank = dist.get_world_size(), dist.get_rank()
    chunk = -(-size // world)
    start = min(rank * chunk, size)
    return min(start + chunk, size) - start


def analytic_bytes(model, mode: str) -> int:
    """Per-rank state of columns / svd / random under FSDP2, written out from the shapes (fp32)."""
    total = 0
    for group in paper_param_groups(model):
        for p in group["params"]:
            m, n = p.shape[0], p.numel() // p.shape[0]
            rows = local_rows(m)
            if group["role"] == "stateful":
                total += 2 * rows * n * 4
            elif mode == "columns":
                k = int(0.25 * n)
                total += 2 * rows * k * 4 + 8 * k
            elif m >= n:  # svd / random, right: moments (rows, r), basis (r, n) whole
                r = round(0.25 * n)
                total += (2 * rows * r + r * n) * 4
            else:  # left: A's rows, moments (r, n) by columns
                r = round(0.25 * m)
                total += (2 * r * local_rows(n) + rows * r) * 4
    return total


def main() -> None:
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    rank = dist.get_rank()
    results: dict = {"cases": [], "errors": {}}
    with tempfile.TemporaryDirectory() as scratch:
        shared = [scratch if rank == 0 else None]
        dist.broadcast_object_list(shared)
        for mode in MODES:
            single_model, single_opt = build_llama(), None
            single_opt = FRUGAL(paper_param_groups(single_model), **settings(mode))
            train(single_model, single_opt, range(STEPS), "single")
            reference = full_params(single_model)
            for kind in ("ddp", "fsdp"):
                model, optimizer = build(mode, kind)
                train(model, optimizer, range(STEPS), kind)
                straight = full_params(model)
                case = {"mode": mode, "kind": kind}
                case["max_diff_single"] = max(float((straight[k] - v).abs().max()) for k, v in reference.items())
                case["state_bytes"] = optimizer_state_bytes(optimizer)
                case["peak_state_bytes"] = optimizer.peak_state_bytes()
                if kind == "fsdp" and mode in ("svd", "random", "columns"):
                    case["analytic_bytes"] = analytic_bytes(model, mode)
                case["single_state_bytes"] = optimizer_state_bytes(single_opt)
                case["planned_peak_bytes"] = single_opt.peak_state_bytes(world_size=dist.get_world_size())
                resumed = resume_run(mode, kind, f"{shared[0]}/{mode}-{kind}")
                case["resume_identical"] = all(torch.equal(resumed[k], v) for k, v in straight.items())
                case["resume_max_diff"] = max(float((resumed[k] - v).abs().max()) for k, v in straight.items())
                if mode in ("svd", "rows", "randk") and kind == "fsdp":  # the single-tensor path, sharded
                    model, optimizer = build(mode, kind, foreach=False)
                    train(model, optimizer, range(STEPS), kind)
                    case["reference_path_max_diff"] = max(
                        float((full_params(model)[k] - v).abs().max()) for k, v in reference.items()
                    )
                if mode == "random":  # a checkpoint of an optimizer that has not stepped yet changes nothing
                    model, optimizer = build(mode, kind)
                    get_state_dict(model, optimizer)  # torch's lazy state initialisation runs here
                    train(model, optimizer, range(STEPS), kind)
                    case["early_checkpoint_identical"] = all(
                        torch.equal(full_params(model)[k], v) for k, v in straight.items()
                    )
                gathered = [None] * dist.get_world_size()
                dist.all_gather_object(gathered, case)
                results["cases"].append(gathered)
        results["rule_cases"] = rule_runs(shared[0])
        results["recipe"] = {parallel: recipe_runs(shared[0], parallel) for parallel in ("fsdp", "ddp")}
    results["errors"] = bad_input()
    results["adamw_bytes"] = adamw_bytes()
    if rank == 0:
        with open(sys.argv[1], "w") as handle:
            json.dump(results, handle)
    dist.destroy_process_group()


def rule_runs(directory: str) -> list[list[dict]]:
    """RULE_CASES under FSDP2: against one process, DCP resume, state bytes against the peak."""
    cases = []
    for mode, rule in RULE_CASES:
        single_model = build_llama()
        train(single_model, FRUGAL(paper_param_groups(single_model), **settings(mode, rule)), range(STEPS), "single")
        reference = full_params(single_model)
        model, optimizer = build(mode, "fsdp", rule=rule)
        train(model, optimizer, range(STEPS), "fsdp")
        straight = full_params(model)
        resumed = resume_run(mode, "fsdp", f"{directory}/{mode}-{rule}", rule=rule)
        case = {
            "mode": mode, "rule": rule,
            "max_diff_single": max(float((straight[k] - v).abs().max()) for k, v in reference.items()),
            "resume_identical": all(torch.equal(resumed[k], v) for k, v in straight.items()),
            "state_bytes": optimizer_state_bytes(optimizer), "peak_state_bytes": optimizer.peak_state_bytes(),
        }
        gathered = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, case)
        cases.append(gathered)
    return cases


def recipe_runs(directory: str, parallel: str) -> dict:
    """python -m frugal_search.train's library under ``parallel`` (fsdp or ddp): a 7-step run stopped after 4 (DCP checkpoints
    every 2), resumed to 7, and an uninterrupted run to 7 (T = 2, random mode: re-selections cross the save)."""
    from frugal_search.partition import Partition
    from frugal_search.train import TrainConfig, train as train_recipe

    split = Partition.from_dict(
        {**Partition.paper(0.25).to_dict(), "settings": {**Partition.paper(0.25).to_dict()["settings"], "mode": "random", "update_gap": 2, "lr": 1e-2}}
    )
    directory = f"{directory}/{parallel}"
    split_path = f"{directory}/split.json"
    if dist.get_rank() == 0:
        os.makedirs(directory, exist_ok=True)
        split.to_json(split_path)
    dist.barrier()
    common = {"split": split_path, "parallel": parallel, "batch_size": 4, "seq_len": 16, "warmup_steps": 2,
              "checkpoint_every": 2, "data_bytes": 2_000_000}
    first = train_recipe(TrainConfig(steps=7, stop_at=4, checkpoint_dir=f"{directory}/recipe", **common))
    resumed = train_recipe(TrainConfig(steps=7, checkpoint_dir=f"{directory}/recipe", **common))
    straight = train_recipe(TrainConfig(steps=7, checkpoint_dir=f"{directory}/straight", **common))
    return {"first": first.losses, "resumed": resumed.losses, "resumed_start": resumed.start_step,
            "straight": straight.losses, "checkpoints": [c.rsplit("/", 1)[-1] for c in first.checkpoints]}


def adamw_bytes() -> list[int]:
    """optimizer_state_bytes of torch's AdamW after a step: one process, then one FSDP2 rank."""
    figures = []
    for kind in ("single", "fsdp"):
        model = wrap(build_llama(), kind)
        optimizer = torch.optim.AdamW(model.parameters())
        train(model, optimizer, range(1), kind)
        figures.append(optimizer_state_bytes(optimizer))
    return figures


def bad_input() -> dict[str, str]:
    """Layouts FRUGAL refuses: Shard(1) placements, a sharded 1-D tensor in a per-tensor mode."""
    errors = {}
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    model = build_llama()
    fully_shard(model, mesh=mesh, shard_placement_fn=lambda p: Shard(1) if p.dim() == 2 else Shard(0))
    try:
        FRUGAL(paper_param_groups(model), mode="blocks")
    except ValueError as error:
        errors["shard1"] = str(error)
    model = build_llama()
    fully_shard(model, mesh=mesh)
    norm = model.model.norm.weight
    try:
        FRUGAL([{"params": [norm], "role": "frugal", "mode": "columns", "names": ["model.norm.weight"]}])
    except ValueError as error:
        errors["one_dim"] = str(error)
    return errors


if __name__ == "__main__":
    main()
