"""Optimizer step time under FSDP2 of FRUGAL against torch's AdamW, measured in one run.

Run under torchrun (NCCL on GPUs, gloo on the CPU):

    torchrun --nproc_per_node N benchmarks/fsdp_step.py [--model llama-60m] [--steps 50] [--modes blocks svd]

A preset model is built from its config and sharded by ``fully_shard`` (each transformer block, then
the root); its gradients are filled once with fixed random DTensors, so only ``optimizer.step()``
is timed (FSDP's gather and reduce-scatter are the same for every optimizer and left out). Each
optimizer gets its own model, runs interleaved chunks of steps, and rank 0 prints the mean step time
(the slowest rank's) and its ratio to AdamW (fused where the device has it). Target from issue 12:
FRUGAL blocks rho .25 at most 0.9 x AdamW.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

from frugal_search.optimizer import FRUGAL, find_transformer_blocks, paper_param_groups
from frugal_search.proxy import build_model


def sharded_model(name: str, device: torch.device, world: int) -> torch.nn.Module:
    model = build_model(name, seed=0).to(device)
    mesh = init_device_mesh(device.type, (world,))
    for block in find_transformer_blocks(model)[1]:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    generator = torch.Generator(device=device).manual_seed(dist.get_rank())
    for p in model.parameters():  # a fixed local gradient shard per rank
        p.grad = torch.distributed.tensor.DTensor.from_local(
            torch.randn(p.to_local().shape, generator=generator, device=device) * 1e-3,
            p.device_mesh, p.placements, shape=p.shape, stride=p.stride(),
        )
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny-llama")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--chunk", type=int, default=10)
    parser.add_argument("--modes", nargs="+", default=["blocks", "svd", "columns"])
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    world = dist.get_world_size()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    builders = {"AdamW": lambda m: torch.optim.AdamW(m.parameters(), lr=1e-3, fused=cuda or None)}
    for mode in args.modes:
        builders[f"FRUGAL {mode} rho .25"] = lambda m, mode=mode: FRUGAL(paper_param_groups(m), mode=mode, density=0.25)
    runs = {}
    for label, build in builders.items():
        model = sharded_model(args.model, device, world)
        runs[label] = (model, build(model), [])
    for _ in range(0, args.steps, args.chunk):
        for label, (_, optimizer, times) in runs.items():
            for _ in range(args.chunk):
                if cuda:
                    torch.cuda.synchronize()
                start = time.perf_counter()
                optimizer.step()
                if cuda:
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - start)
    means = {label: torch.tensor(sum(times) / len(times)) for label, (_, _, times) in runs.items()}
    for value in means.values():
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
    if dist.get_rank() == 0:
        print(f"{args.model} under FSDP2 on {world} x {device.type}, {args.steps} steps")
        print(f"{'optimizer':28s} {'ms/step':>8s} {'x AdamW':>8s}")
        for label, value in means.items():
            print(f"{label:28s} {1e3 * float(value):8.3f} {float(value / means['AdamW']):8.2f}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
