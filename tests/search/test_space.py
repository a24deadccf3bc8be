"""The search space: what a trial samples, what it leaves out, and the partition it becomes."""

from __future__ import annotations

import optuna
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from frugal_search.search.space import parse_space, partition_from_settings, sample_partition, sample_settings


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    config = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=4, num_attention_heads=2
    )
    with torch.device("meta"):
        return LlamaForCausalLM(config)


def roles_by_name(partition, model) -> dict[str, str]:
    roles = {}
    for group in partition.param_groups(model):
        for name in group["names"]:
            roles[name] = group["role"]
    return roles


def test_fixed_dimensions_are_not_sent_to_optuna() -> None:
    space = parse_space({"density": [0.1, 0.4]})
    trial = optuna.create_study().ask()
    values = sample_settings(trial, space)
    assert set(trial.params) == {"density"}  # only what varies is a parameter of the trial
    assert 0.1 <= values["density"] <= 0.4
    assert (
        values["mode"] == "blocks" and values["update_gap"] == 200 and values["block_order"] == "descending"
    )


def test_block_order_only_for_blocks() -> None:
    space = parse_space({"mode": ["blocks", "svd"], "block_order": ["random", "mirror"]})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen_modes = set()
    for _ in range(12):
        trial = study.ask()
        values = sample_settings(trial, space)
        seen_modes.add(values["mode"])
        assert ("block_order" in trial.params) == (values["mode"] == "blocks")
        study.tell(trial, 0.0)
    assert seen_modes == {"blocks", "svd"}


def test_no_frugal_role_means_no_split_settings() -> None:
    space = parse_space({"attention_role": ["stateful"], "mlp_role": ["state_free"], "density": [0.1, 0.5]})
    trial = optuna.create_study().ask()
    values = sample_settings(trial, space)
    assert "density" not in values and "mode" not in values and "update_gap" not in values
    assert values["state_free"] == "signsgd"  # the state-free rule still applies to the MLP


def test_partition_rules_give_each_kind_its_role(model: torch.nn.Module) -> None:
    values = {
        "lr": 2e-3,
        "embedding_norm_head_lr_scale": 4.0,
        "head_role": "stateful",
        "embedding_role": "state_free",
        "norm_role": "stateful",
        "attention_role": "frugal",
        "mlp_role": "state_free",
        "stateful_first_layers": 0.25,
        "stateful_last_layers": 0.0,
        "mode": "blocks",
        "density": 0.5,
        "update_gap": 7,
        "block_order": "ascending",
        "state_free": "sgd",
        "state_free_lr_scale": 0.5,
        "split_lr_scale": 0.8,
        "reset_state": True,
    }
    partition = partition_from_settings(values, name="t")
    roles = roles_by_name(partition, model)
    assert roles["lm_head.weight"] == "stateful"
    assert roles["model.embed_tokens.weight"] == "state_free"
    assert roles["model.norm.weight"] == "stateful"
    # first quarter of 4 layers = layer 0: its blocks stay stateful
    assert roles["model.layers.0.self_attn.q_proj.weight"] == "stateful"
    assert roles["model.layers.0.mlp.up_proj.weight"] == "stateful"
    assert roles["model.layers.1.self_attn.q_proj.weight"] == "frugal"
    assert roles["model.layers.3.mlp.down_proj.weight"] == "state_free"
    settings = partition.settings
    assert (settings.lr, settings.mode, settings.density, settings.update_gap) == (2e-3, "blocks", 0.5, 7)
    assert (settings.block_order, settings.state_free, settings.split_lr_scale) == ("ascending", "sgd", 0.8)
    # the lr scale reaches the embedding/norm/head groups only
    groups = partition.param_groups(model)
    head_group = next(group for group in groups if "lm_head.weight" in group["names"])
    attention_group = next(
        group for group in groups if "model.layers.1.self_attn.q_proj.weight" in group["names"]
    )
    assert head_group["lr"] == pytest.approx(4.0 * 2e-3)
    assert attention_group.get("lr", 2e-3) == pytest.approx(2e-3)


def test_small_layer_share_selects_no_layer(model: torch.nn.Module) -> None:
    values = {f"{kind}_role": "stateful" for kind in ("head", "embedding", "norm")}
    values.update(lr=1e-3, attention_role="frugal", mlp_role="frugal", stateful_last_layers=0.1)
    # 0.1 of 4 layers: no layer's middle ((i + 0.5) / 4) lies in the last tenth
    roles = roles_by_name(partition_from_settings(values), model)
    assert roles["model.layers.3.self_attn.q_proj.weight"] == "frugal"
    values["stateful_last_layers"] = 0.5
    roles = roles_by_name(partition_from_settings(values), model)
    assert roles["model.layers.3.self_attn.q_proj.weight"] == "stateful"
    assert roles["model.layers.2.mlp.gate_proj.weight"] == "stateful"
    assert roles["model.layers.1.mlp.gate_proj.weight"] == "frugal"


def test_layer_shares_snap_to_whole_proxy_layers(model: torch.nn.Module) -> None:
    values = {f"{kind}_role": "stateful" for kind in ("head", "embedding", "norm")}
    values.update(lr=1e-3, attention_role="frugal", mlp_role="frugal", stateful_first_layers=0.1)
    # 0.1 of 4 layers rounds to no layer: no rule at all, so the split file says nothing it does not do
    partition = partition_from_settings(values, num_layers=4)
    assert [rule.layers for rule in partition.rules if rule.layers is not None] == []
    # 0.3 of 4 layers rounds to one layer, written as the share 0.25 so a deeper model keeps the share
    values["stateful_first_layers"] = 0.3
    partition = partition_from_settings(values, num_layers=4)
    assert [rule.layers for rule in partition.rules if rule.layers is not None] == ["0-0.25"]
    roles = roles_by_name(partition, model)
    assert roles["model.layers.0.self_attn.q_proj.weight"] == "stateful"
    assert roles["model.layers.1.self_attn.q_proj.weight"] == "frugal"


def test_sampled_partition_memory_follows_density(model: torch.nn.Module) -> None:
    space = parse_space({"density": [0.0, 1.0]})
    low = sample_partition(optuna.trial.FixedTrial({"density": 0.0}), space)
    high = sample_partition(optuna.trial.FixedTrial({"density": 1.0}), space)
    # blocks at density 1 keep state for every block tensor: the difference is 2 fp32 moments each
    block_elements = sum(
        parameter.numel()
        for name, parameter in model.named_parameters()
        if ".layers." in name and name.endswith("proj.weight")
    )
    assert high.state_bytes(model) - low.state_bytes(model) == 2 * 4 * block_elements


def test_schedules_are_off_unless_the_space_lists_them() -> None:
    trial = optuna.create_study().ask()
    values = sample_settings(trial, parse_space({"density": [0.1, 0.4]}))
    assert values["density_end_share"] == 1.0 and values["update_gap_growth"] == 1.0
    assert "loss_plateau" not in values  # no growth, no plateau to sample
    settings = partition_from_settings(values, schedule_steps=150).settings
    assert settings.density_end is None and settings.update_gap_growth == 1.0


def test_a_sampled_rho_schedule_decays_to_its_share_over_the_proxy_steps(model: torch.nn.Module) -> None:
    space = parse_space({"density": 0.4, "density_end_share": [0.1, 0.9], "mode": "blocks"})
    trial = optuna.create_study().ask()
    values = sample_settings(trial, space)
    share = trial.params["density_end_share"]
    settings = partition_from_settings(values, schedule_steps=150).settings
    assert settings.density_end == pytest.approx(0.4 * share)
    assert settings.density_steps == 150
    with pytest.raises(ValueError, match="schedule_steps"):
        partition_from_settings(values)
    # the memory objective is the schedule's peak: never below the constant density's state
    constant = partition_from_settings({**values, "density_end_share": 1.0})
    scheduled = partition_from_settings(values, schedule_steps=150)
    assert scheduled.state_bytes(model) >= constant.state_bytes(model)


def test_rank_modes_take_no_rho_schedule() -> None:
    space = parse_space({"mode": "svd", "rank": [2, 8], "density_end_share": [0.1, 0.9]})
    trial = optuna.create_study().ask()
    values = sample_settings(trial, space)
    assert "density_end_share" not in trial.params and "density" not in values
    assert partition_from_settings(values).settings.density_end is None


def test_a_sampled_t_growth_samples_its_plateau_and_reaches_the_optimizer() -> None:
    space = parse_space({"update_gap_growth": [1.5, 3.0], "loss_plateau": [0.01, 0.1]})
    trial = optuna.create_study().ask()
    values = sample_settings(trial, space)
    assert {"update_gap_growth", "loss_plateau"} <= set(trial.params)
    settings = partition_from_settings(values).settings
    assert settings.update_gap_growth == trial.params["update_gap_growth"]
    assert settings.loss_plateau == trial.params["loss_plateau"]
