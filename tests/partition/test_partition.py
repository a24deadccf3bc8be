"""Rules, first-match-wins, param groups, optimizer building, words, baselines."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from frugal_search.optimizer import FRUGAL
from frugal_search.partition import (
    BASELINE_NAMES,
    BASELINES,
    UNMATCHED_RULE_LOGGER,
    Partition,
    Rule,
    accepted_baseline_names,
    baseline_partition,
    find_baseline,
)

from .conftest import tiny_llama


def _names(group: dict) -> list[str]:
    return list(group["names"])


def test_first_matching_rule_wins_and_groups_keep_model_order(llama: nn.Module) -> None:
    partition = Partition(
        [
            Rule("stateful", names="*.q_proj.weight"),  # takes q before the attention rule sees it
            Rule("frugal", kinds="attention"),
            Rule("state_free", kinds="mlp", layers="last:1"),
            Rule("stateful"),
        ]
    )
    groups = partition.param_groups(llama)
    assert [g["role"] for g in groups] == ["stateful", "frugal", "state_free", "stateful"]
    assert _names(groups[0]) == ["model.layers.0.self_attn.q_proj.weight", "model.layers.1.self_attn.q_proj.weight"]
    assert _names(groups[1]) == [f"model.layers.{i}.self_attn.{p}_proj.weight" for i in (0, 1) for p in ("k", "v", "o")]
    assert _names(groups[2]) == [f"model.layers.1.mlp.{p}_proj.weight" for p in ("gate", "up", "down")]
    # every parameter exactly once, and the group tensors are the model's own
    all_names = [n for g in groups for n in g["names"]]
    assert sorted(all_names) == sorted(n for n, _ in llama.named_parameters())
    params = dict(llama.named_parameters())
    assert all(p is params[n] for g in groups for n, p in zip(g["names"], g["params"]))


def test_overrides_and_lr_scale_reach_the_optimizer(llama: nn.Module) -> None:
    partition = Partition(
        [
            Rule("stateful", kinds=["embedding", "head"], lr_scale=0.5, weight_decay=0.0),
            Rule("frugal", kinds=["attention", "mlp"], mode="columns", density=0.5, update_gap=7),
            Rule("stateful"),
        ],
        lr=2e-3,
        weight_decay=0.1,
    )
    optimizer = partition.build_optimizer(llama)
    assert isinstance(optimizer, FRUGAL)
    embed_head, split, rest = optimizer.param_groups
    assert (embed_head["lr"], embed_head["weight_decay"]) == (pytest.approx(1e-3), 0.0)
    assert (split["mode"], split["density"], split["update_gap"], split["lr"]) == ("columns", 0.5, 7, 2e-3)
    assert (rest["lr"], rest["weight_decay"], rest["mode"]) == (2e-3, 0.1, "blocks")


def test_unmatched_trainable_parameters_are_an_error_listing_them(llama: nn.Module) -> None:
    partition = Partition([Rule("frugal", kinds=["attention", "mlp"])])
    with pytest.raises(ValueError, match="match no rule") as error:
        partition.param_groups(llama)
    message = str(error.value)
    assert "lm_head.weight" in message and "model.norm.weight" in message
    assert "Rule('stateful')" in message


def test_frozen_parameters_are_left_out(llama: nn.Module) -> None:
    llama.model.embed_tokens.weight.requires_grad_(False)
    partition = Partition([Rule("frugal", kinds=["attention", "mlp"]), Rule("stateful", kinds=["norm", "head"])])
    names = [n for g in partition.param_groups(llama) for n in g["names"]]
    assert "model.embed_tokens.weight" not in names


def test_rule_matching_nothing_warns_or_fails_when_strict(llama: nn.Module, caplog: pytest.LogCaptureFixture) -> None:
    partition = Partition([Rule("frugal", kinds="other"), Rule("stateful")])
    with caplog.at_level(logging.WARNING, logger="frugal_search.partition"):
        groups = partition.param_groups(llama)
    assert len(groups) == 1
    assert "rule 0" in caplog.text and "matches no parameter" in caplog.text
    with pytest.raises(ValueError, match="rule 0"):
        partition.param_groups(llama, strict=True)


def test_the_unmatched_rule_warning_has_its_own_logger(llama: nn.Module, caplog: pytest.LogCaptureFixture) -> None:
    partition = Partition([Rule("frugal", kinds="other"), Rule("stateful")])
    with caplog.at_level(logging.WARNING):
        partition.param_groups(llama)
    assert [record.name for record in caplog.records] == [UNMATCHED_RULE_LOGGER]
    assert UNMATCHED_RULE_LOGGER == "frugal_search.partition.unmatched"
    caplog.clear()
    quiet = logging.getLogger(UNMATCHED_RULE_LOGGER)
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # what a caller (the search) does to silence it
    try:
        with caplog.at_level(logging.WARNING):
            partition.param_groups(llama)
    finally:
        quiet.setLevel(level)
    assert caplog.records == []


def test_layer_rules_transfer_from_proxy_to_deeper_model() -> None:
    partition = Partition([Rule("frugal", kinds="mlp", layers="last:0.5"), Rule("stateful")])
    for layers in (2, 4):
        model = tiny_llama(layers=layers)
        frugal_layers = {int(n.split(".")[2]) for n in partition.param_groups(model)[0]["names"]}
        assert frugal_layers == set(range(layers // 2, layers))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(role="adam"), "'stateful', 'frugal', 'state_free', 'frozen'"),
        (dict(role="frugal", kinds=["attn"]), "embedding, norm, head"),
        (dict(role="frugal", layers="top:2"), "first:K"),
        (dict(role="frugal", mode="lowrank"), "'blocks', 'svd'"),
        (dict(role="frugal", density=1.5), r"\[0, 1\]"),
        (dict(role="frugal", state_free="adam"), "'signsgd', 'sgd', 'none'"),
        (dict(role="frugal", update_gap=0), ">= 1"),
        (dict(role="frugal", lr_scale=-1), "lr_scale=-1: allowed a finite number >= 0"),
        (dict(role="frugal", kinds=3), "kinds must be a string or a list of strings"),
    ],
)
def test_bad_rules_name_the_allowed_values(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Rule(**kwargs)


def test_bad_partition_settings() -> None:
    with pytest.raises(ValueError, match="unknown Partition setting 'learning_rate'; allowed: lr, betas"):
        Partition([Rule("stateful")], learning_rate=1e-3)
    with pytest.raises(ValueError, match="at least one rule"):
        Partition([])
    with pytest.raises(ValueError, match=r"rules\[0\]: Invalid FRUGAL setting rank=4: allowed None for mode 'blocks'"):
        Partition([Rule("frugal", rank=4)])


def test_summary_words() -> None:
    assert Partition.paper().summary() == (
        "attention, mlp frugal blocks rho 0.25 every 200 steps (descending), state-free signSGD; rest stateful; lr 0.001"
    )
    words = Partition(
        [
            Rule("stateful", kinds="head", lr_scale=0.5),
            Rule("frugal", kinds="mlp", layers="0.5-1.0", mode="svd"),
            Rule("state_free"),
        ]
    ).summary()
    assert words == (
        "head stateful (lr x0.5); mlp in layers 0.5-1.0 frugal svd rho 0.25 every 200 steps, state-free signSGD; "
        "rest state-free signSGD; lr 0.001"
    )


def test_baselines_by_name_and_their_settings(llama: nn.Module) -> None:
    assert BASELINE_NAMES == ("adamw", "frugal", "frugal-rho0", "galore", "badam", "frugal-finetune", "galore-rank8", "galore-8bit")
    for name in BASELINE_NAMES:
        assert baseline_partition(name).name == name
    assert baseline_partition("paper") == Partition.paper(0.25)
    assert baseline_partition("paper-rho0").settings.density == 0.0
    galore = Partition.galore(0.25).settings
    assert (galore.mode, galore.state_free, galore.reset_state, galore.lr, galore.split_lr_scale) == (
        "svd",
        "none",
        False,
        0.01,
        0.25,
    )
    # the paper's fine-tuning setting (columns, rho 0, T 500, state-free lr x0.1) and GaLore at rank 8
    finetune = baseline_partition("frugal-finetune", density=0.5).settings
    assert (finetune.mode, finetune.density, finetune.update_gap, finetune.state_free_lr_scale) == ("columns", 0.0, 500, 0.1)
    rank8 = baseline_partition("galore-rank8").settings
    assert (rank8.mode, rank8.rank, rank8.state_free, rank8.lr, rank8.split_lr_scale) == ("svd", 8, "none", 0.01, 0.25)
    badam = Partition.badam(0.5).settings
    assert (badam.mode, badam.block_order, badam.state_free, badam.density) == ("blocks", "descending", "none", 0.5)
    paper = Partition.paper().settings
    assert (paper.mode, paper.block_order, paper.update_gap, paper.state_free) == (
        "blocks",
        "descending",
        200,
        "signsgd",
    )
    with pytest.raises(ValueError, match="adamw, frugal"):
        baseline_partition("adam")
    # the paper's split set: attention and mlp weights are frugal, everything else stateful
    groups = Partition.paper().param_groups(llama)
    assert [(g["role"], len(g["params"])) for g in groups] == [("frugal", 14), ("stateful", 7)]
    assert [(g["role"], len(g["params"])) for g in Partition.adamw().param_groups(llama)] == [("stateful", 21)]


def test_paper_partition_matches_the_optimizers_paper_param_groups(llama: nn.Module) -> None:
    from frugal_search.optimizer import paper_param_groups

    ours = {g["role"]: g["names"] for g in Partition.paper().param_groups(llama)}
    theirs = {g["role"]: g["names"] for g in paper_param_groups(llama)}
    assert ours == theirs


def test_training_steps_change_weights_by_role(llama: nn.Module) -> None:
    partition = Partition(
        [Rule("frozen", kinds="embedding"), Rule("frugal", kinds=["attention", "mlp"]), Rule("stateful")], update_gap=2
    )
    optimizer = partition.build_optimizer(llama)
    before = {n: p.detach().clone() for n, p in llama.named_parameters()}
    tokens = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(0))
    for _ in range(3):
        optimizer.zero_grad()
        llama(input_ids=tokens, labels=tokens).loss.backward()
        optimizer.step()
    after = dict(llama.named_parameters())
    assert torch.equal(before["model.embed_tokens.weight"], after["model.embed_tokens.weight"])
    assert not torch.equal(before["lm_head.weight"], after["lm_head.weight"])
    assert not torch.equal(before["model.layers.0.mlp.up_proj.weight"], after["model.layers.0.mlp.up_proj.weight"])


def test_freeze_switches_off_gradients_of_frozen_rules_only(llama: nn.Module) -> None:
    partition = Partition([Rule("frozen", kinds=["embedding", "norm"]), Rule("stateful")])
    names = partition.freeze(llama)
    assert names[0] == "model.embed_tokens.weight" and len(names) == 6  # embedding + 5 norms
    frozen = {n for n, p in llama.named_parameters() if not p.requires_grad}
    assert frozen == set(names)


def test_the_baseline_registry_names_aliases_and_words() -> None:
    assert find_baseline("paper") is BASELINES["frugal"] and find_baseline("paper-rho0") is BASELINES["frugal-rho0"]
    assert accepted_baseline_names() == (*BASELINE_NAMES, "paper", "paper-rho0", "paper-finetune")
    assert all(baseline.words for baseline in BASELINES.values())
    assert Partition.baseline("frugal-rho0", density=0.5).settings.density == 0.0  # always rho 0
    assert Partition.baseline("adamw", density=0.5) == Partition.adamw()  # no density to set
    with pytest.raises(ValueError, match="unknown baseline 'adam'; allowed: adamw, frugal, .*, paper, paper-rho0"):
        find_baseline("adam")
