"""Optimizer step time of FRUGAL against torch's AdamW (foreach and fused), measured in one run.

A LLaMA-style model (4 layers, hidden 256, ffn 688, vocabulary 512) is built from a config; its
gradients are filled once with fixed random tensors, so only ``optimizer.step()`` is timed. Each
optimizer gets its own copy of the model and runs 200 steps (from step 1, so the svd basis is
computed once per T = 200 steps, as in training), in interleaved chunks so that load from other
processes spreads over all of them. Prints the mean step time (wall and CPU) and the ratios to fused AdamW.
The last two rows are no optimizer: the three GEMMs per tensor that an exact svd step cannot avoid,
alone, and with the elementwise work it cannot avoid either (see ``SvdStepFloor``). The rows of the
moments' storage (``state_dtype`` bf16 / int8, ``second_moment`` factored) run the same split as
"FRUGAL blocks rho .25", and their ratios to it are printed at the end.

    python benchmarks/optimizer_step.py [--steps 200] [--chunk 25] [--threads N] [--only blocks svd ...]
    python benchmarks/optimizer_step.py --threads 1 --only "blocks rho .25" "blocks .25 state"   # storage only
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable

import torch

# Targets from the issue, as multiples of fused AdamW on CPU.
TARGETS = {"FRUGAL blocks rho .25": 0.9, "FRUGAL blocks rho 0": 0.8, "FRUGAL svd rho .25": 2.5, "FRUGAL columns rho .25": 2.5}
# issue 13: an svd step at most this multiple of the three GEMMs it cannot avoid
SVD_FLOOR_TARGET = 1.1
# the split the storage rows share, and the storage settings of each of those rows
STORAGE_SPLIT = "FRUGAL blocks rho .25"
STORAGE_ROWS = {
    "FRUGAL blocks .25 state bf16": {"state_dtype": "bf16"},
    "FRUGAL blocks .25 state int8": {"state_dtype": "int8"},
    "FRUGAL blocks .25 state factored": {"second_moment": "factored"},
    "FRUGAL blocks .25 state int8 factored": {"state_dtype": "int8", "second_moment": "factored"},
    "FRUGAL svd .25 state int8": {"state_dtype": "int8"},
}


def build_model() -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        hidden_size=256,
        intermediate_size=688,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        vocab_size=512,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config)


def fill_grads(model: torch.nn.Module) -> None:
    generator = torch.Generator().manual_seed(1)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=generator) * 1e-2


def _project(kind: str, grad: torch.Tensor, basis: torch.Tensor, low: torch.Tensor) -> None:
    """``low = G B^T`` (right) or ``A^T G`` (left), into ``low``."""
    torch.mm(grad, basis.T, out=low) if kind == "right" else torch.mm(basis.T, grad, out=low)


def _lift_and_residual(kind: str, param: torch.Tensor, grad: torch.Tensor, basis: torch.Tensor, low: torch.Tensor,
                       delta: torch.Tensor, residual: torch.Tensor) -> None:
    """``P += up(delta)`` and ``residual = G - up(low)``: the other two GEMMs of a step."""
    if kind == "right":
        param.addmm_(delta, basis)
        torch.addmm(grad, low, basis, alpha=-1, out=residual)
    else:
        param.addmm_(basis, delta)
        torch.addmm(grad, basis, low, alpha=-1, out=residual)


class SvdGemmFloor:
    """Not an optimizer: only the three GEMMs an svd-mode step needs for every frugal tensor (the
    projection ``G B^T``, the lift ``delta B`` and the residual ``G - low B``; mirrored for the left
    side), into preallocated outputs. Its time is the floor of any exact fp32 svd step here."""

    def __init__(self, model: torch.nn.Module, density: float) -> None:
        from frugal_search.optimizer import paper_param_groups
        from frugal_search.optimizer._subspace import plan_subspace

        self.work = []
        for group in paper_param_groups(model):
            if group["role"] != "frugal":
                continue
            for param in group["params"]:
                plan = plan_subspace("svd", tuple(param.shape), density, None)
                if plan.kind not in ("right", "left"):
                    continue
                grad = param.grad.reshape(plan.rows, plan.cols)
                basis = torch.randn(plan.basis_shape)
                low, delta = torch.empty(plan.moment_shape), torch.randn(plan.moment_shape) * 1e-3
                self.work.append((plan.kind, param.detach().view(plan.rows, plan.cols), grad, basis, low, delta, torch.empty_like(grad)))

    def step(self) -> None:
        """The GEMMs of one step."""
        for kind, param, grad, basis, low, delta, residual in self.work:
            _project(kind, grad, basis, low)
            _lift_and_residual(kind, param, grad, basis, low, delta, residual)


class SvdStepFloor(SvdGemmFloor):
    """Not an optimizer: the three GEMMs plus the elementwise work every svd step must also do,
    each as one torch op: fused AdamW of the always-stateful tensors (embeddings, norms, head), one
    multi-tensor fused AdamW of the low-rank moments into a zeroed buffer, and the sign of the
    residual added to the parameter. What FRUGAL's svd step takes above this is its own overhead
    (Python, routing, the amortised SVD), not arithmetic any exact step avoids."""

    def __init__(self, model: torch.nn.Module, density: float) -> None:
        from frugal_search.optimizer import paper_param_groups

        super().__init__(model, density)
        stateful = [p for group in paper_param_groups(model) if group["role"] != "frugal" for p in group["params"]]
        self.stateful = torch.optim.AdamW(stateful, lr=1e-3, fused=True)
        lows = [low for _, _, _, _, low, _, _ in self.work]
        self.moments = [torch.zeros_like(low) for low in lows], [torch.zeros_like(low) for low in lows]
        self.steps = [torch.zeros(()) for _ in lows]
        self.deltas = torch.zeros(sum(low.numel() for low in lows))

    def step(self) -> None:
        """GEMMs, low-rank Adam, sign and add of one step, and the always-stateful AdamW."""
        from frugal_search.optimizer._math import fused_adamw_

        self.stateful.step()
        lows = []
        for kind, _, grad, basis, low, _, _ in self.work:
            _project(kind, grad, basis, low)
            lows.append(low)
        self.deltas.zero_()
        deltas = [part.view(low.shape) for part, low in zip(self.deltas.split([low.numel() for low in lows]), lows)]
        fused_adamw_(deltas, lows, *self.moments, self.steps, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0)
        for (kind, param, grad, basis, low, _, residual), delta in zip(self.work, deltas):
            _lift_and_residual(kind, param, grad, basis, low, delta, residual)
            param.add_(residual.sign_(), alpha=-1e-3)


def optimizers() -> dict[str, Callable[[torch.nn.Module], torch.optim.Optimizer]]:
    from frugal_search.optimizer import FRUGAL, paper_param_groups

    def frugal(**settings) -> Callable[[torch.nn.Module], torch.optim.Optimizer]:
        return lambda model: FRUGAL(paper_param_groups(model), lr=1e-3, update_gap=200, **settings)

    return {
        "AdamW fused": lambda model: torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True),
        "AdamW foreach": lambda model: torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=True),
        "FRUGAL blocks rho .25": frugal(mode="blocks", density=0.25),
        "FRUGAL blocks rho 0": frugal(mode="blocks", density=0.0),
        "FRUGAL svd rho .25": frugal(mode="svd", density=0.25),
        "FRUGAL columns rho .25": frugal(mode="columns", density=0.25),
        "FRUGAL blocks .25 Lion": frugal(mode="blocks", density=0.25, stateful_rule="lion"),
        "FRUGAL blocks .25 SGDm": frugal(mode="blocks", density=0.25, stateful_rule="sgdm"),
        "FRUGAL svd rho .25 Lion": frugal(mode="svd", density=0.25, stateful_rule="lion"),
        **{
            name: frugal(mode="svd" if " svd " in name else "blocks", density=0.25, **storage)
            for name, storage in STORAGE_ROWS.items()
        },
        "(svd .25: 3 GEMMs alone)": lambda model: SvdGemmFloor(model, density=0.25),
        "(svd .25: GEMMs + elementwise)": lambda model: SvdStepFloor(model, density=0.25),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--chunk", type=int, default=25, help="steps per optimizer before switching")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--only", nargs="*", default=None, help="substrings of the rows to run (fused AdamW always runs)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    base = build_model()
    runs = {}
    for name, make in optimizers().items():
        if args.only and name != "AdamW fused" and not any(part in name for part in args.only):
            continue
        model = copy.deepcopy(base)
        fill_grads(model)
        runs[name] = (model, make(model))
    elapsed = dict.fromkeys(runs, 0.0)
    cpu = dict.fromkeys(runs, 0.0)
    done = 0
    while done < args.steps:
        chunk = min(args.chunk, args.steps - done)
        for name, (_, optimizer) in runs.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(chunk):
                optimizer.step()
            elapsed[name] += time.perf_counter() - start
            cpu[name] += time.process_time() - start_cpu
        done += chunk

    n_params = sum(p.numel() for p in base.parameters())
    print(f"model: {n_params / 1e6:.2f}M parameters, {args.steps} steps, {torch.get_num_threads()} threads")
    # Wall time is what training sees; CPU time (all threads of this process) is less disturbed by
    # other processes sharing the cores, so both are printed.
    fused_ms = elapsed["AdamW fused"] / args.steps * 1e3
    fused_cpu_ms = cpu["AdamW fused"] / args.steps * 1e3
    width = max(len(name) for name in elapsed) + 2
    print(f"{'optimizer':<{width}}{'ms/step':>10}{'x fused':>10}{'cpu ms':>10}{'x fused':>10}{'target':>10}")
    for name, seconds in elapsed.items():
        ms, cpu_ms = seconds / args.steps * 1e3, cpu[name] / args.steps * 1e3
        target = f"<= {TARGETS[name]}" if name in TARGETS else ""
        print(f"{name:<{width}}{ms:>10.3f}{ms / fused_ms:>10.2f}{cpu_ms:>10.3f}{cpu_ms / fused_cpu_ms:>10.2f}{target:>10}")
    print_storage_ratios(elapsed, cpu)
    name, floor, step_floor = "FRUGAL svd rho .25", "(svd .25: 3 GEMMs alone)", "(svd .25: GEMMs + elementwise)"
    if name in elapsed and floor in elapsed:
        print(f"{name} / its GEMM floor: {elapsed[name] / elapsed[floor]:.2f} wall, "
              f"{cpu[name] / cpu[floor]:.2f} cpu (target <= {SVD_FLOOR_TARGET})")
    if step_floor in elapsed and floor in elapsed:
        print(f"GEMMs + elementwise / GEMMs alone: {elapsed[step_floor] / elapsed[floor]:.2f} wall "
              "(the least any exact svd step built of torch ops takes)")
        if name in elapsed:
            print(f"{name} / GEMMs + elementwise: {elapsed[name] / elapsed[step_floor]:.2f} wall (FRUGAL's own overhead)")


def print_storage_ratios(elapsed: dict[str, float], cpu: dict[str, float]) -> None:
    """Each storage row's time over fp32's on the same split (wall and CPU), measured in this run."""
    for name in STORAGE_ROWS:
        reference = "FRUGAL svd rho .25" if " svd " in name else STORAGE_SPLIT
        if name in elapsed and reference in elapsed:
            print(f"{name} / {reference} (fp32): {elapsed[name] / elapsed[reference]:.2f} wall, "
                  f"{cpu[name] / cpu[reference]:.2f} cpu")


if __name__ == "__main__":
    main()
