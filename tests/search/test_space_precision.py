"""How the moments are stored, as dimensions of the search space: off unless ``[space]`` lists them,
sampled where they apply, carried to the partition and its optimizer, counted in its memory."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from frugal_search.search.config import StudyConfigError, load_study_config
from frugal_search.search.space import SpaceError, parse_space, partition_from_settings, sample_settings


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2)
    torch.manual_seed(0)
    return LlamaForCausalLM(config)


def _trials(space, count: int = 16):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(count):
        trial = study.ask()
        yield trial, sample_settings(trial, space)
        study.tell(trial, 0.0)


def test_the_storage_is_off_unless_the_space_lists_it() -> None:
    space = parse_space({"density": [0.1, 0.4]})
    trial = optuna.create_study().ask()
    values = sample_settings(trial, space)
    assert (values["state_dtype"], values["second_moment"]) == ("fp32", "full")
    assert not {"state_dtype", "second_moment"} & set(trial.params)
    partition = partition_from_settings(values)
    assert (partition.settings.state_dtype, partition.settings.second_moment) == ("fp32", "full")
    assert not {"state_dtype", "second_moment"} & set(partition.to_dict()["settings"])  # the split file as before


def test_listed_storage_is_sampled_as_categories_and_reaches_the_optimizer(model: torch.nn.Module) -> None:
    space = parse_space({"state_dtype": ["fp32", "bf16", "int8"], "second_moment": ["full", "factored"]})
    seen = set()
    for trial, values in _trials(space, 24):
        assert trial.params["state_dtype"] == values["state_dtype"] and trial.params["second_moment"] == values["second_moment"]
        seen.add((values["state_dtype"], values["second_moment"]))
        partition = partition_from_settings(values)
        assert partition == type(partition).from_dict(partition.to_dict())  # the split file carries them
        optimizer = partition.build_optimizer(model)
        for p in model.parameters():
            p.grad = torch.ones_like(p)
        optimizer.step()
        embedding = optimizer.state[model.model.embed_tokens.weight]
        factored = values["second_moment"] == "factored"
        assert ("exp_avg_sq_row" in embedding) == factored
        expected = {"fp32": torch.float32, "bf16": torch.bfloat16, "int8": torch.int8}[values["state_dtype"]]
        assert embedding["exp_avg"].dtype == expected
    assert len(seen) == 6  # every pair was drawn


def test_second_moment_is_sampled_only_for_adamw() -> None:
    space = parse_space({"stateful_rule": ["adamw", "lion", "sgdm"], "second_moment": ["full", "factored"]})
    rules = set()
    for trial, values in _trials(space, 20):
        rules.add(values["stateful_rule"])
        assert ("second_moment" in trial.params) == (values["stateful_rule"] == "adamw")
        partition_from_settings(values)  # never factored with a rule that keeps no second moment
    assert rules == {"adamw", "lion", "sgdm"}


def test_no_tensor_with_state_means_no_storage_dimension() -> None:
    roles = {f"{kind}_role": "state_free" for kind in ("head", "embedding", "norm", "attention", "mlp")}
    space = parse_space({**roles, "state_dtype": ["bf16", "int8"], "second_moment": ["full", "factored"]})
    trial = optuna.create_study().ask()
    values = sample_settings(trial, space)
    assert "state_dtype" not in values and "second_moment" not in values and not trial.params


def test_the_memory_objective_counts_each_storage(model: torch.nn.Module) -> None:
    space = parse_space({"state_dtype": ["fp32", "bf16", "int8"], "second_moment": ["full", "factored"]})
    point = sample_settings(optuna.create_study().ask(), space)
    bytes_of = {
        (dtype, moment): partition_from_settings({**point, "state_dtype": dtype, "second_moment": moment}).state_bytes(model)
        for dtype in ("fp32", "bf16", "int8")
        for moment in ("full", "factored")
    }
    full = bytes_of[("fp32", "full")]
    assert bytes_of[("bf16", "full")] == full // 2  # every moment in 2 bytes instead of 4
    assert full // 4 < bytes_of[("int8", "full")] < full // 4 * 1.02  # 1 byte a value and a 4-byte scale per 256
    # factored: exp_avg whole (half of fp32's state) plus row and column vectors, and 1-D tensors' full v
    assert bytes_of[("int8", "factored")] < bytes_of[("bf16", "factored")] < bytes_of[("fp32", "factored")] < full
    assert bytes_of[("fp32", "factored")] > full // 2
    budget = (full + bytes_of[("int8", "full")]) // 2  # a budget the fp32 split misses and the int8 one fits
    assert bytes_of[("int8", "full")] <= budget < full


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"state_dtype": ["fp32", "fp16"]}, "state_dtype: 'fp16' is not allowed; allowed: fp32 | bf16 | int8"),
        ({"second_moment": "rank-1"}, "second_moment: 'rank-1' is not allowed; allowed: full | factored"),
        ({"state_dtype": [0.0, 1.0]}, "state_dtype: 0.0 is not allowed"),
    ],
)
def test_a_bad_storage_entry_names_the_key_and_the_allowed_values(entry, message, tmp_path: Path) -> None:
    with pytest.raises(SpaceError, match=message):
        parse_space(entry)
    key, value = next(iter(entry.items()))
    toml_value = "[" + ", ".join(f'"{v}"' if isinstance(v, str) else repr(v) for v in value) + "]" if isinstance(value, list) else f'"{value}"'
    study = tmp_path / "study.toml"
    study.write_text(f'[model]\nsource = "tiny-llama"\n[proxy]\nsteps = 2\n[space]\n{key} = {toml_value}\n', encoding="utf-8")
    with pytest.raises(StudyConfigError, match=rf"study.toml.*\[space\] {message}"):
        load_study_config(study)
