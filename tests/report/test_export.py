"""Export: the split file reads back, trains, and the AdamW baseline's file is plain AdamW."""

from __future__ import annotations

import json
import math

import pytest
import torch

from frugal_search.optimizer import resolved_betas
from frugal_search.partition import Partition, baseline_partition
from frugal_search.report import export_split, select_trial

MIB = 2**20


class Attention(torch.nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.q, self.k, self.v, self.o = (torch.nn.Linear(width, width, bias=False) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attended = torch.nn.functional.scaled_dot_product_attention(self.q(x), self.k(x), self.v(x), is_causal=True)
        return self.o(attended)


class Block(torch.nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = torch.nn.LayerNorm(width)
        self.self_attn = Attention(width)
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(width, 2 * width, bias=False), torch.nn.GELU(), torch.nn.Linear(2 * width, width, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.norm(x))
        return x + self.mlp(x)


class TinyLM(torch.nn.Module):
    """A 2-block causal LM in plain torch: embedding, attention, mlp, norm and head parameters, the
    kinds partition rules match, without the import time of transformers."""

    def __init__(self, vocab: int = 64, width: int = 32) -> None:
        super().__init__()
        self.embed_tokens = torch.nn.Embedding(vocab, width)
        self.layers = torch.nn.ModuleList([Block(width), Block(width)])
        self.final_norm = torch.nn.LayerNorm(width)
        self.lm_head = torch.nn.Linear(width, vocab, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed_tokens(tokens[:, :-1])  # B, T-1, C
        for block in self.layers:
            x = block(x)
        logits = self.lm_head(self.final_norm(x))
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())


def tiny_lm(seed: int = 0) -> TinyLM:
    torch.manual_seed(seed)
    return TinyLM()


def train_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, steps: int) -> list[float]:
    generator = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(steps):
        tokens = torch.randint(0, 64, (2, 16), generator=generator)
        loss = model(tokens)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


@pytest.fixture
def study(make_study, add_trial_to):
    study = make_study(name="export-me")
    add_trial_to(study, outcome="ok", state_bytes=8 * MIB, eval_loss=3.0, baseline="adamw")  # 0
    add_trial_to(study, outcome="ok", state_bytes=2 * MIB, eval_loss=3.4, params={"density": 0.1})  # 1
    add_trial_to(study, outcome="ok", state_bytes=3 * MIB, eval_loss=3.2, params={"density": 0.3})  # 2
    add_trial_to(study, outcome="infeasible", state_bytes=20 * MIB, params={"density": 0.9})  # 3
    add_trial_to(study, outcome="error", state_bytes=None, split={}, reason="RuntimeError: boom")  # 4
    return study


def test_exported_trial_reads_back_with_provenance_and_trains(study, tmp_path) -> None:
    path = export_split(study, trial=2, path=tmp_path / "split.json", storage_url="sqlite:///x.db")
    stored = json.loads(path.read_text())
    assert stored["format"] == "frugal-split/1"
    assert stored["provenance"]["source"] == {
        "study": "export-me", "storage": "sqlite:///x.db", "trial": 2, "state": "COMPLETE", "outcome": "ok",
        "baseline": None, "summary": Partition.paper(0.3).summary(),
    }
    assert stored["provenance"]["metrics"]["eval_loss"] == 3.2
    assert stored["provenance"]["metrics"]["state_mib"] == 3.0
    partition = Partition.from_json(path)
    expected = Partition.paper(0.3)
    assert partition.rules == expected.rules and partition.settings == expected.settings
    model = tiny_lm()
    before = [p.detach().clone() for p in model.parameters()]
    losses = train_steps(model, partition.build_optimizer(model), steps=3)
    assert all(math.isfinite(loss) for loss in losses)
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_exported_adamw_baseline_is_plain_adamw(study, tmp_path) -> None:
    path = export_split(study, trial=0, path=tmp_path / "adamw.json")
    partition = Partition.from_json(path)
    settings = partition.settings
    model = tiny_lm()
    reference_model = tiny_lm()
    reference = torch.optim.AdamW(
        reference_model.parameters(), lr=settings.lr, betas=resolved_betas(settings.to_kwargs()), eps=settings.eps,
        weight_decay=settings.weight_decay,
    )
    train_steps(model, partition.build_optimizer(model), steps=4)
    train_steps(reference_model, reference, steps=4)
    for (name, ours), theirs in zip(model.named_parameters(), reference_model.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")


def test_best_under_max_memory(study, tmp_path) -> None:
    assert select_trial(study, best=True).number == 0
    assert select_trial(study, best=True, max_memory="3 MiB").number == 2
    assert select_trial(study, best=True, max_memory="2.5 MiB").number == 1
    path = export_split(study, best=True, max_memory=int(2.5 * MIB), path=tmp_path / "b.json")
    assert json.loads(path.read_text())["provenance"]["source"]["trial"] == 1


def test_no_trial_under_max_memory_names_the_lowest_memory(study) -> None:
    with pytest.raises(ValueError, match=r"lowest memory available is 2\.00 MiB .*trial #1"):
        select_trial(study, best=True, max_memory="1.5 MiB")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "choose exactly one trial"),
        ({"trial": 1, "best": True}, "choose exactly one trial"),
        ({"best": True, "baseline": "adamw"}, "choose exactly one trial"),
        ({"baseline": "galore"}, "has no baseline 'galore'; its baselines: adamw"),
        ({"trial": 1, "max_memory": "1 MiB"}, "only applies with best=True"),
        ({"trial": 99}, r"no trial 99; trial numbers: 0\.\.4"),
        ({"trial": 4}, "stored no split config .*RuntimeError: boom"),
    ],
)
def test_bad_choices_are_explained(study, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        select_trial(study, **kwargs)


def test_study_without_finished_trials_says_so(make_study, add_trial_to) -> None:
    empty = make_study()
    with pytest.raises(ValueError, match="no trial that finished with a loss"):
        select_trial(empty, best=True)
    add_trial_to(empty, outcome="diverged", state_bytes=MIB, eval_loss=math.nan)
    with pytest.raises(ValueError, match="no trial that finished with a loss"):
        select_trial(empty, best=True, max_memory="1 GiB")


def test_exporting_an_infeasible_trial_still_writes_a_valid_split(study, tmp_path) -> None:
    path = export_split(study, trial=3, path=tmp_path / "big.json")
    assert Partition.from_json(path).settings == Partition.paper(0.9).settings
    assert json.loads(path.read_text())["provenance"]["source"]["outcome"] == "infeasible"


def test_baseline_split_matches_the_named_baseline(study, tmp_path) -> None:
    path = export_split(study, trial=0, path=tmp_path / "a.json")
    assert Partition.from_json(path).rules == baseline_partition("adamw").rules


def test_a_baseline_exports_as_its_best_run_of_the_lr_grid(make_study, add_trial_to, tmp_path) -> None:
    study = make_study(name="grid")
    for lr, loss in ((1e-3, 3.1), (3e-3, 2.9), (1e-2, 3.3)):  # 0, 1, 2
        add_trial_to(study, outcome="ok", state_bytes=8 * MIB, eval_loss=loss, baseline="adamw", baseline_lr=lr)
    add_trial_to(study, outcome="diverged", state_bytes=2 * MIB, baseline="galore", baseline_lr=1e-2)  # 3
    assert select_trial(study, baseline="adamw").number == 1
    path = export_split(study, baseline="adamw", path=tmp_path / "adamw.json")
    assert json.loads(path.read_text())["provenance"]["source"]["trial"] == 1
    with pytest.raises(ValueError, match=r"no run of baseline 'galore' .*finished with a loss \(lr 0.01: diverged\)"):
        select_trial(study, baseline="galore")
