"""What the validate tests share: a study file of a very small model (seconds per run on a CPU)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna

MINI_STUDY_TOML = """
[study]
name = "mini"
storage = "sqlite:///{db}"
trials = 6

[model]
source = "tiny-llama"
overrides = {{ hidden_size = 32, intermediate_size = 64, num_hidden_layers = 1, num_attention_heads = 2 }}

[data]
source = "stdlib"

[proxy]
steps = 4
batch_size = 2
seq_len = 16
eval_every = 2
eval_batches = 1
warmup_steps = 1

[space]
lr = [1e-3, 1e-2]
"""


def write_mini_study(folder: Path, toml: str, trials: list[tuple[Any, dict[str, Any], tuple[float, float]]]) -> tuple[Path, Path]:
    """Write ``toml`` (``{db}`` filled in) as ``mini.toml`` and a study of finished ``trials``:
    (partition, extra user attributes, (loss, MiB)); return the study file and the database."""
    db = folder / "mini.db"
    study_file = folder / "mini.toml"
    study_file.write_text(toml.format(db=db))
    study = optuna.create_study(study_name="mini", storage=f"sqlite:///{db}", directions=["minimize", "minimize"])
    for partition, attrs, (loss, mib) in trials:
        study.add_trial(
            optuna.trial.create_trial(
                values=[loss, mib], user_attrs={"split": partition.to_dict(), "outcome": "ok", **attrs}
            )
        )
    return study_file, db
