"""One rank of a multi-process proxy run: ``torchrun ... -m frugal_search.proxy.distributed <folder>``.

``run_proxy_multiprocess`` starts it; ``<folder>`` holds ``inputs.json`` (model and data specs, the
split, the budget, the seed). Every rank joins the process group (gloo on CPU, NCCL on CUDA with
device ``cuda:LOCAL_RANK``), builds the model with the same seed, and runs ``run_proxy``'s own loop
(``loop._run_proxy``) with :class:`_ShardedCausalLM` as its task:

- the model is sharded with FSDP2 (each transformer block, then the root) after the partition froze
  its frozen parameters and before the optimizer is built from the split, so FRUGAL runs on the
  local DTensor shards;
- every rank draws the same global batch of ``batch_size`` sequences from the same seeded generator
  as a single-process run and trains on its slice (``batch_size / nproc`` rows; the launcher and
  the study file refuse a ``batch_size`` that is not a multiple of ``nproc``), FSDP2 averages the
  gradients, so a step sees the single-process run's batch;
- each step's train loss and each evaluation's loss (every rank on its rows of the fixed eval
  batches) are averaged over the ranks with ``all_reduce``: the schedule, evaluation, divergence and
  loss-aware T rules are ``run_proxy``'s and every rank takes the same decisions.

Rank 0 writes ``result.json`` (``ProxyResult.to_dict()``) with ``state_bytes`` and
``training_memory`` summed over the ranks (each rank's own max over the run; in blocks mode the
ranks' peaks can fall on different steps, so the sum may exceed the largest total at any one step)
and each rank's figures under ``details["per_rank"]``. Each rank's stdout and stderr go to
``<folder>/rank<N>.log``, which the launcher quotes when a rank dies. A CUDA out-of-memory error
writes ``oom.txt`` and exits 1.

Teardown: once ``_run_proxy`` has returned (its frames, the model, the optimizer and the FSDP2
wrappers with them, are gone), every rank calls ``close_process_group``: ``gc.collect()``, a barrier
after a finished run, and the one ``destroy_process_group``. After an error the rank prints the
traceback to its log and leaves without the barrier.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path

import torch
import torch.distributed as dist

from frugal_search.proxy.budget import ProxyBudget
from frugal_search.proxy.data import DataSpec, TokenData
from frugal_search.proxy.distributed import (
    INPUTS_FILE,
    KILL_AFTER_RESULT,
    KILL_MARKER_ENV,
    KILL_RANK_ENV,
    OOM_FILE,
    RESULT_FILE,
    close_process_group,
    init_process_group,
    rank_log_name,
    shard_model,
)
from frugal_search.proxy.loop import _CausalLM, _run_proxy
from frugal_search.proxy.models import ModelSpec, causal_lm_loss

_KILL_EXIT_CODE = 3


class _ShardedCausalLM(_CausalLM):
    """Next-token prediction with the model sharded over the ranks, each on its slice of the batch."""

    def __init__(self, tokens: TokenData, budget: ProxyBudget, *, device: torch.device) -> None:
        super().__init__(tokens, budget, device=device)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        per_rank = budget.batch_size // self.world  # a multiple: the launcher and the study file check it
        self.rows = slice(self.rank * per_rank, (self.rank + 1) * per_rank)
        self.eval_set = [batch[self.rows] for batch in self.eval_set]  # this rank's rows of each fixed batch
        self.micro_batches = 0
        self.kill_at = _kill_step(self.rank)

    def shard(self, net: torch.nn.Module) -> torch.nn.Module:
        return shard_model(net, self.device)

    def mean_over_ranks(self, value: torch.Tensor) -> torch.Tensor:
        value = value.detach().clone()
        dist.all_reduce(value)
        return value / self.world

    def train_loss(self, net: torch.nn.Module, generator: torch.Generator) -> torch.Tensor:
        step = self.micro_batches // self.budget.grad_accum + 1
        self.micro_batches += 1
        if step == self.kill_at:
            _die(step)
        # the single-process run's global batch (same generator), of which this rank takes its rows
        budget = self.budget
        batch = self.tokens.sample_train_batch(generator, batch_size=budget.batch_size, seq_len=budget.seq_len)
        batch = batch[self.rows].to(self.device, non_blocking=True)
        return causal_lm_loss(net, batch[:, :-1], batch[:, 1:])

    def evaluate(self, net: torch.nn.Module) -> tuple[float, dict[str, float]]:
        total = torch.zeros((), device=self.device)
        for batch in self.eval_set:
            total += causal_lm_loss(net, batch[:, :-1], batch[:, 1:])
        return self.mean_over_ranks(total / len(self.eval_set)).item(), {}


def _kill_step(rank: int) -> int | str | None:
    """The step at which this rank dies, or ``KILL_AFTER_RESULT`` (tests only:
    ``FRUGAL_SEARCH_TEST_KILL_RANK=RANK[:STEP|:after-result]``)."""
    value = os.environ.get(KILL_RANK_ENV)
    if not value:
        return None
    target, _, step = value.partition(":")
    if int(target) != rank:
        return None
    marker = os.environ.get(KILL_MARKER_ENV)
    if marker and Path(marker).exists():
        return None  # died once already
    return KILL_AFTER_RESULT if step == KILL_AFTER_RESULT else int(step or 2)


def _die(step: int | str) -> None:
    marker = os.environ.get(KILL_MARKER_ENV)
    if marker:
        Path(marker).touch()
    if step == KILL_AFTER_RESULT:  # the reported failure: a rank aborted at exit after a finished run
        print(f"test hook {KILL_RANK_ENV}: this rank aborts after the result was written", file=sys.stderr, flush=True)
        os.abort()
    print(f"test hook {KILL_RANK_ENV}: this rank dies at step {step}", file=sys.stderr, flush=True)
    os._exit(_KILL_EXIT_CODE)


def _redirect_output(run_dir: Path, rank: int) -> None:
    log = os.open(run_dir / rank_log_name(rank), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)


def _gathered(result, world: int) -> dict:
    """Rank 0's result with every rank's memory figures: sums, the largest peak, and each rank's."""
    mine = {
        "state_bytes": result.state_bytes,
        "peak_memory_bytes": result.peak_memory_bytes,
        "state_memory_bytes": result.state_memory_bytes,
        "training_memory": result.training_memory,
    }
    ranks: list[dict] = [None] * world  # type: ignore[list-item]
    dist.all_gather_object(ranks, mine)
    values = result.to_dict()
    values["state_bytes"] = sum(item["state_bytes"] for item in ranks)
    if result.training_memory is not None:
        values["training_memory"] = {
            key: sum(item["training_memory"][key] for item in ranks) for key in result.training_memory
        }
    if result.peak_memory_bytes is not None:  # CUDA: the fullest device, and the state on all of them
        values["peak_memory_bytes"] = max(item["peak_memory_bytes"] for item in ranks)
        values["state_memory_bytes"] = sum(item["state_memory_bytes"] for item in ranks)
    values["details"] = {**values["details"], "nproc": world, "per_rank": ranks}
    return values


def main(argv: list[str]) -> int:
    """One rank's run on the folder ``argv[0]``: 0 after a finished run, 1 after an error."""
    run_dir = Path(argv[0])
    rank = int(os.environ.get("RANK", 0))
    _redirect_output(run_dir, rank)
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    inputs = json.loads((run_dir / INPUTS_FILE).read_text(encoding="utf-8"))
    rank, _, device = init_process_group()
    values = None
    try:
        values = _run(inputs, run_dir, device)
    except torch.cuda.OutOfMemoryError as error:
        (run_dir / OOM_FILE).write_text(f"rank {rank}: {error}", encoding="utf-8")
    except Exception:
        traceback.print_exc()
    # Out here an error's traceback, which held the run's frames (model, optimizer), is gone.
    if values is None:
        close_process_group(barrier=False)  # the other ranks may be dead or inside a collective
        return 1
    if rank == 0:
        partial = run_dir / (RESULT_FILE + ".part")
        partial.write_text(json.dumps(values), encoding="utf-8")
        partial.replace(run_dir / RESULT_FILE)
    close_process_group(barrier=True)
    if _kill_step(rank) == KILL_AFTER_RESULT:
        _die(KILL_AFTER_RESULT)
    sys.stdout.flush()
    sys.stderr.flush()
    return 0


def _run(inputs: dict, run_dir: Path, device: torch.device) -> dict:
    """The proxy run on this rank; rank 0's result with every rank's figures (on every rank)."""
    model = ModelSpec(inputs["model"]["source"], overrides=inputs["model"]["overrides"])
    if "split" in inputs:
        from frugal_search.partition import Partition

        partition = Partition.from_dict(inputs["split"], source=str(run_dir / INPUTS_FILE))
    else:
        partition = inputs["baseline"]
    result = _run_proxy(
        model,
        DataSpec(**inputs["data"]),
        partition,
        ProxyBudget(**inputs["budget"]),
        task="causal-lm",
        device=device,
        seed=inputs["seed"],
        progress=False,
        on_eval=None,
        causal_lm=_ShardedCausalLM,
    )
    return _gathered(result, dist.get_world_size())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
