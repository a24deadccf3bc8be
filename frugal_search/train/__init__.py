"""A training recipe to copy: a split (FRUGAL) on a built-in model and corpus, under torchrun with
FSDP2 or DDP, a ``torch.distributed.checkpoint`` checkpoint every N steps, resumed from the latest.

    torchrun --nproc_per_node 2 -m frugal_search.train --split split.json --model tiny-llama \\
        --parallel fsdp --steps 200 --checkpoint-dir ckpt --checkpoint-every 50

Read it top to bottom: set up the process group, build and shard the model, build the optimizer from
the split, load the latest checkpoint if there is one, then train. Each rank trains on its slice of
a global batch drawn from a generator seeded by the step, so a resumed run sees the batches the
uninterrupted run would have seen and ends with the same weights, bit for bit.

``train`` returns on every rank and leaves the process group joined; ``python -m frugal_search.train``
then leaves it once, after the model, the optimizer and the DDP / FSDP2 wrappers are freed
(``frugal_search.proxy.close_process_group``). From Python,
``frugal_search.train.launch.launch_training(config, nproc=2, log_path=...)`` starts the recipe
under torchrun and waits.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from frugal_search.partition import Partition, baseline_partition
from frugal_search.proxy import (
    DataSpec,
    build_data,
    build_model,
    causal_lm_loss,
    init_process_group,
    lr_factor,
    shard_model,
)

logger = logging.getLogger(__name__)

PARALLEL = ("fsdp", "ddp", "none")
_CHECKPOINT_NAME = re.compile(r"step_(\d+)$")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """What to train and how (every field has a command-line flag of the same name)."""

    split: str = "frugal"  # split config JSON (frugal-search export) or a baseline name
    model: str = "tiny-llama"  # a frugal_search.proxy preset or a Hugging Face config
    parallel: str = "fsdp"  # fsdp (fully_shard per transformer block), ddp, or none (one process)
    steps: int = 100  # total optimizer steps (the lr schedule's length), counted from the start of training
    batch_size: int = 8  # global batch (sequences), split evenly over the ranks
    seq_len: int = 64
    lr: float | None = None  # None: the split's lr
    warmup_steps: int = 10
    min_lr_ratio: float = 0.1  # cosine decay to this share of lr
    seed: int = 0
    checkpoint_dir: str | None = None  # DCP checkpoints step_<N>/ here; resume from the latest
    checkpoint_every: int = 50
    stop_at: int | None = None  # end this run after this step (checkpointed), as a preemption would
    data_bytes: int = 4 * 2**20  # bytes of the built-in corpus (Python's standard library) read
    log_every: int = 10

    def __post_init__(self) -> None:
        if self.parallel not in PARALLEL:
            raise ValueError(f"parallel={self.parallel!r}: allowed {', '.join(PARALLEL)}.")
        if self.stop_at is not None and not 1 <= self.stop_at <= self.steps:
            raise ValueError(f"stop_at={self.stop_at!r}: allowed 1..steps ({self.steps}) or None.")
        for name in ("steps", "batch_size", "seq_len", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r}: allowed an int >= 1.")


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """How a run ended."""

    start_step: int  # steps already done when this run started (from the checkpoint)
    steps: int  # total steps done
    last_loss: float  # training loss of the last step (mean over ranks)
    losses: tuple[float, ...]  # training loss of each step of this run (mean over ranks)
    checkpoints: tuple[str, ...]  # checkpoint directories this run wrote


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The ``step_<N>`` checkpoint with the largest N that DCP finished writing, or None."""
    done = [p for p in Path(directory).glob("step_*") if _CHECKPOINT_NAME.search(p.name) and (p / ".metadata").exists()]
    return max(done, key=lambda p: int(_CHECKPOINT_NAME.search(p.name).group(1)), default=None)


def train(config: TrainConfig) -> TrainResult:
    """Train ``config.split`` on ``config.model`` (see the module docstring); returns on every rank."""
    distributed = config.parallel != "none"
    if distributed:  # the multi-process proxy's set-up (frugal_search.proxy.distributed)
        rank, world, device = init_process_group()
    else:
        rank, world = 0, 1
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if torch.cuda.is_available() else torch.device("cpu")
    if config.batch_size % world:
        raise ValueError(f"batch_size={config.batch_size} does not split over {world} ranks; use a multiple of {world}.")

    # model: each transformer block its own FSDP2 unit, then the root (embeddings, norm, head)
    model = build_model(config.model, seed=config.seed).to(device)
    inner = model
    if config.parallel == "fsdp":
        shard_model(model, device)
    elif config.parallel == "ddp":
        model = torch.nn.parallel.DistributedDataParallel(model)

    # optimizer: the split's param groups and settings (FRUGAL checks the sharding here)
    partition = Partition.from_json(config.split) if Path(config.split).suffix == ".json" else baseline_partition(config.split)
    optimizer = partition.build_optimizer(inner)
    base_lrs = [config.lr if config.lr is not None else group["lr"] for group in optimizer.param_groups]

    # resume: a fresh model and optimizer give the template; DCP fills it, set_state_dict loads it
    start_step = 0
    latest = latest_checkpoint(config.checkpoint_dir) if config.checkpoint_dir else None
    if latest is not None:
        model_state, optim_state = get_state_dict(model, optimizer)
        state = {"model": model_state, "optim": optim_state, "train": {"step": 0}}
        dcp.load(state, checkpoint_id=str(latest))
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
        start_step = int(state["train"]["step"])
        logger.info("resumed from %s at step %d", latest, start_step)

    data = build_data(DataSpec(max_bytes=config.data_bytes))
    per_rank = config.batch_size // world
    checkpoints: list[str] = []
    losses: list[float] = []
    for step in range(start_step, config.stop_at or config.steps):
        factor = lr_factor(step, total_steps=config.steps, warmup_steps=config.warmup_steps, min_lr_ratio=config.min_lr_ratio)
        for group, base_lr in zip(optimizer.param_groups, base_lrs, strict=True):
            group["lr"] = base_lr * factor
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
        batch = data.sample_train_batch(generator, batch_size=config.batch_size, seq_len=config.seq_len)
        batch = batch[rank * per_rank : (rank + 1) * per_rank].to(device)  # B, T + 1
        optimizer.zero_grad(set_to_none=True)
        loss = causal_lm_loss(model, batch[:, :-1], batch[:, 1:])
        loss.backward()
        optimizer.step()
        loss_value = _mean_over_ranks(loss.detach(), distributed)
        losses.append(loss_value)
        if rank == 0 and ((step + 1) % config.log_every == 0 or step + 1 == config.steps):
            logger.info("step %d loss %.4f lr %.3g", step + 1, loss_value, base_lrs[0] * factor)
        last = step + 1 in (config.steps, config.stop_at)
        if config.checkpoint_dir and ((step + 1) % config.checkpoint_every == 0 or last):
            path = Path(config.checkpoint_dir) / f"step_{step + 1:06d}"
            model_state, optim_state = get_state_dict(model, optimizer)
            dcp.save({"model": model_state, "optim": optim_state, "train": {"step": step + 1}}, checkpoint_id=str(path))
            checkpoints.append(str(path))
    return TrainResult(
        start_step=start_step,
        steps=start_step + len(losses),
        last_loss=losses[-1] if losses else float("nan"),
        losses=tuple(losses),
        checkpoints=tuple(checkpoints),
    )


def _mean_over_ranks(loss: torch.Tensor, distributed: bool) -> float:
    if distributed:
        loss = loss.clone()
        dist.all_reduce(loss)
        loss /= dist.get_world_size()
    return float(loss)


__all__ = ["PARALLEL", "TrainConfig", "TrainResult", "latest_checkpoint", "train"]
