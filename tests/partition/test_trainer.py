"""Hugging Face Trainer recipe: ``Trainer(..., optimizers=partition.trainer_optimizers(model))``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from frugal_search.optimizer import FRUGAL
from frugal_search.partition import Partition

from .conftest import tiny_llama


class _TokenDataset(torch.utils.data.Dataset):
    """Eight random 8-token sequences, labels = inputs (causal LM)."""

    def __init__(self) -> None:
        self.tokens = torch.randint(0, 64, (8, 8), generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.tokens[index], "labels": self.tokens[index]}


def test_trainer_steps_with_a_partition_optimizer(tmp_path: Path) -> None:
    pytest.importorskip("accelerate", reason="transformers.Trainer needs accelerate (pip install 'accelerate>=1.1')")
    from transformers import Trainer, TrainingArguments

    model = tiny_llama()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    partition = Partition.paper(0.25, update_gap=2, lr=1e-2)
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=3,
        per_device_train_batch_size=2,
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        lr_scheduler_type="constant",
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=_TokenDataset(), optimizers=partition.trainer_optimizers(model)
    )
    trainer.train()
    optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)  # accelerate may wrap it
    assert isinstance(optimizer, FRUGAL)
    assert [g["role"] for g in optimizer.param_groups] == ["frugal", "stateful"]
    # the peak lr is the partition's, not TrainingArguments.learning_rate
    assert [g["lr"] for g in optimizer.param_groups] == [1e-2, 1e-2]
    assert trainer.state.global_step == 3
    changed = [n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())]
    assert sorted(changed) == sorted(before)  # every parameter trained (blocks: the window covers what steps)
