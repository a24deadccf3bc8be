"""Sequence-classification proxies: scores, task kinds, models from configs and directories, bad inputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from frugal_search.proxy import (
    ModelSpec,
    ProxyBudget,
    TaskSpec,
    build_labelled_data,
    build_model,
    classification_scores,
    run_proxy,
)

SMALL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}


@pytest.fixture
def tiny_budget() -> ProxyBudget:
    return ProxyBudget(steps=6, batch_size=4, seq_len=48, eval_every=3, eval_batches=3, log_every=2)


def test_scores_match_hand_computed_accuracy_and_macro_f1() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    predictions = np.array([0, 0, 0, 1, 1, 0, 2, 3])
    accuracy, macro_f1 = classification_scores(predictions, labels)
    assert accuracy == 5 / 8
    # per class: 0: P 3/4 R 3/4 -> 0.75; 1: P 1/2 R 1/2 -> 0.5; 2: P 1 R 1/2 -> 2/3; 3 (predicted only): 0
    assert macro_f1 == pytest.approx((0.75 + 0.5 + 2 / 3 + 0.0) / 4)
    with pytest.raises(ValueError, match="equal, non-empty"):
        classification_scores(np.array([0]), np.array([0, 1]))


def test_builtin_task_run_reports_loss_accuracy_macro_f1_and_is_reproducible(tiny_budget: ProxyBudget) -> None:
    model = ModelSpec("tiny-llama", overrides=SMALL)
    first = run_proxy(model, "stdlib-packages", "adamw", tiny_budget, seed=1)
    again = run_proxy(model, "stdlib-packages", "adamw", tiny_budget, seed=1, task="sequence-classification")
    assert first.task == "sequence-classification" and first.steps == 6 and not first.diverged
    assert first.eval_curve == again.eval_curve and first.accuracy_curve == again.accuracy_curve
    assert [step for step, _ in first.accuracy_curve] == [0, 3, 6] == [step for step, _ in first.macro_f1_curve]
    # 12 classes: a fresh head guesses near uniformly, so the first loss is near ln 12
    assert first.first_eval_loss == pytest.approx(math.log(12), abs=0.3)
    assert first.accuracy == first.accuracy_curve[-1][1] and first.macro_f1 == first.macro_f1_curve[-1][1]
    assert 0.0 <= first.macro_f1 <= 1.0
    assert first.best_accuracy == max(a for _, a in first.accuracy_curve)
    payload = first.to_dict()
    json.dumps(payload, allow_nan=False)
    assert {"eval_loss", "state_bytes", "corpus_fingerprint"} <= set(payload)  # the old fields stay
    assert payload["accuracy"] == first.accuracy and payload["task"] == "sequence-classification"
    # the causal-lm result keeps its old shape, with the new fields empty
    lm = run_proxy(model, "stdlib", "adamw", ProxyBudget(steps=2, batch_size=2, seq_len=16, eval_batches=1))
    assert lm.task == "causal-lm" and lm.accuracy is None and lm.accuracy_curve == []


def test_the_eval_rows_do_not_depend_on_the_seed(tiny_budget: ProxyBudget) -> None:
    # equal weights (a built module: the seed does not change them) score equally at step 0
    net = build_model(ModelSpec("tiny-llama", overrides=SMALL), num_labels=12, seed=0)
    one = run_proxy(net, "stdlib-packages", "adamw", tiny_budget, seed=1, task="sequence-classification")
    two = run_proxy(net, "stdlib-packages", "adamw", tiny_budget, seed=2, task="sequence-classification")
    assert one.eval_curve[0] == two.eval_curve[0] and one.accuracy_curve[0] == two.accuracy_curve[0]
    assert one.train_curve != two.train_curve


def test_a_bert_config_with_its_tokenizer_and_text_pairs(tmp_path: Path) -> None:
    tokenizers = pytest.importorskip("tokenizers")
    from transformers import BertConfig, PreTrainedTokenizerFast

    words = ["red", "green", "blue", "sky", "grass", "fire"]
    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, **{w: i + 4 for i, w in enumerate(words)}}
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    backend.post_processor = tokenizers.processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    )
    model_dir = tmp_path / "bert"
    tokenizer.save_pretrained(model_dir)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    torch.manual_seed(0)
    from transformers import BertForMaskedLM

    BertForMaskedLM(config).save_pretrained(model_dir)  # a "pretrained" encoder checkpoint
    pairs = {"sky": "blue", "grass": "green", "fire": "red"}
    rows = [
        {"a": sky, "b": colour, "match": int(pairs[sky] == colour)}
        for sky in pairs
        for colour in ("red", "green", "blue")
        for _ in range(4)
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "pairs.csv", index=False)
    from frugal_search.proxy import LabelledDataSpec

    data = LabelledDataSpec(
        str(tmp_path / "pairs.csv"), text_column="a", text_pair_column="b", label_column="match", validation_fraction=0.5
    )
    budget = ProxyBudget(steps=2, batch_size=4, seq_len=8, eval_every=2, eval_batches=2)
    result = run_proxy(str(model_dir), data, "adamw", budget)
    assert result.task == "sequence-classification" and result.details["model"] == str(model_dir)
    assert result.accuracy is not None
    # the rows were encoded with the directory's tokenizer: [CLS] a [SEP] b [SEP]
    from frugal_search.proxy.classification import SequenceClassification

    encoded = SequenceClassification(build_labelled_data(data), str(model_dir), budget, device=torch.device("cpu"))
    first = build_labelled_data(data).train
    ids = encoded.train_rows[0][0].tolist()
    assert ids[:5] == [2, vocab[first.texts[0]], 3, vocab[first.pairs[0]], 3] and ids[5:] == [0, 0, 0]


def test_a_checkpoint_directory_without_weights_is_a_value_error(tmp_path: Path, tiny_budget: ProxyBudget) -> None:
    model = build_model(ModelSpec("tiny-llama", overrides=SMALL))
    model.config.save_pretrained(tmp_path / "config-only")
    with pytest.raises(ValueError, match="has no weights.*fine-tuning starts from pretrained weights"):
        run_proxy(str(tmp_path / "config-only"), "stdlib-packages", "adamw", tiny_budget)


def test_task_and_data_must_agree(tiny_budget: ProxyBudget) -> None:
    from frugal_search.proxy import DataSpec, LabelledDataSpec

    model = ModelSpec("tiny-llama", overrides=SMALL)
    with pytest.raises(TypeError, match="does not read DataSpec"):
        run_proxy(model, DataSpec("stdlib"), "adamw", tiny_budget, task="sequence-classification")
    with pytest.raises(TypeError, match="does not read LabelledDataSpec"):
        run_proxy(model, LabelledDataSpec(), "adamw", tiny_budget, task=TaskSpec("causal-lm"))
    with pytest.raises(ValueError, match="unknown task kind 'regression'"):
        TaskSpec("regression")
    assert TaskSpec("sequence-classification").metrics == ("eval_loss", "accuracy", "macro_f1")


def test_a_config_file_builds_a_fresh_classifier_and_the_causal_model_is_unchanged(tmp_path: Path) -> None:
    causal = build_model(ModelSpec("tiny-llama", overrides=SMALL), seed=3)
    causal.config.save_pretrained(tmp_path)
    classifier = build_model(str(tmp_path / "config.json"), num_labels=4, seed=3)
    assert type(classifier).__name__ == "LlamaForSequenceClassification" and classifier.config.num_labels == 4
    assert classifier.score.weight.shape == (4, 32)
    # the same seed draws the same backbone as the causal LM (only the head differs)
    torch.testing.assert_close(classifier.model.embed_tokens.weight, causal.model.embed_tokens.weight)
    assert type(build_model(str(tmp_path / "config.json"))).__name__ == "LlamaForCausalLM"
    with pytest.raises(ValueError, match="num_labels must be an integer >= 2"):
        build_model(str(tmp_path / "config.json"), num_labels=1)


def test_a_padded_row_is_scored_as_the_same_row_alone(tiny_budget: ProxyBudget) -> None:
    # right padding with id 0 and the attention mask: the head reads the last real token of each row
    from frugal_search.proxy.classification import SequenceClassification

    data = build_labelled_data("stdlib-packages")
    task = SequenceClassification(data, "tiny-llama", tiny_budget, device=torch.device("cpu"))
    net = task.build_model(ModelSpec("tiny-llama", overrides=SMALL), seed=0).eval()
    assert net.config.pad_token_id == 0
    ids = torch.tensor([[104, 105, 33, 0, 0, 0], [120, 121, 122, 123, 124, 125]])
    mask = (torch.arange(6) < torch.tensor([[3], [6]])).long()
    with torch.no_grad():
        batch = net(input_ids=ids, attention_mask=mask).logits
        alone = net(input_ids=ids[:1, :3]).logits
    torch.testing.assert_close(batch[:1], alone)
    # and the bytes of a text are its ids, cut to seq_len and padded after it
    first = task.train_rows[0][0]
    expected = list(data.train.texts[0].encode("utf-8")[: tiny_budget.seq_len])
    assert first[: len(expected)].tolist() == expected and first[len(expected) :].eq(0).all()
