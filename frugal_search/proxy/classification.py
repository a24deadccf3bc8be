"""Sequence classification for proxy runs: encoding labelled rows, the loss, accuracy and macro-F1.

``SequenceClassification`` is what ``run_proxy`` trains when the task is
``sequence-classification``: it builds the model with a classification head
(:func:`~frugal_search.proxy.models.build_model` with ``num_labels``), encodes the rows once,
draws train batches from the run's generator and scores the fixed validation rows.

Tokens: the tokenizer of the model directory when it holds one (``tokenizer.json`` or
``tokenizer_config.json``, loaded with ``local_files_only=True``), otherwise bytes (the built-in
models' vocabulary of 256): a text is its UTF-8 bytes, a pair is joined by the byte 0x1E, and
rows are cut to ``seq_len`` tokens and right-padded with 0 (a byte ordinary text never holds).
The head reads the model's own pooling (the last non-pad token for decoders, ``[CLS]`` for
BERT-like encoders); ``config.pad_token_id`` is set when the model has none.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from frugal_search.proxy.budget import ProxyBudget
from frugal_search.proxy.labelled_data import LabelledData, LabelledRows
from frugal_search.proxy.models import ModelLike, ModelSpec, build_model, model_vocab_size

logger = logging.getLogger(__name__)

_BYTE_PAD = 0
_BYTE_PAIR_SEPARATOR = b"\x1e"
_BYTE_VOCAB = 256
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
# Fixed seed of the order in which validation rows are scored: the same for every run seed.
_EVAL_ORDER_SEED = 20241113


def classification_scores(predictions: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Return ``(accuracy, macro_f1)`` of predicted against true class indices.

    Macro-F1 is the unweighted mean over the classes that occur in ``labels`` or ``predictions``
    of ``2 * precision * recall / (precision + recall)`` (0 for a class never predicted right),
    as scikit-learn's ``f1_score(average="macro")``.
    """
    predictions = np.asarray(predictions, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    if predictions.shape != labels.shape or labels.size == 0:
        raise ValueError(f"predictions {predictions.shape} and labels {labels.shape} must be equal, non-empty shapes")
    accuracy = float(np.mean(predictions == labels))
    classes = np.union1d(predictions, labels)
    true_positive = np.array([np.sum((predictions == c) & (labels == c)) for c in classes], dtype=np.float64)
    predicted = np.array([np.sum(predictions == c) for c in classes], dtype=np.float64)
    actual = np.array([np.sum(labels == c) for c in classes], dtype=np.float64)
    # F1 = 2 TP / (predicted + actual), which is 0 when TP is 0 and never divides by 0 here
    f1 = 2.0 * true_positive / (predicted + actual)
    return accuracy, float(f1.mean())


class SequenceClassification:
    """Encoded labelled rows and how a proxy run trains and scores a classifier on them."""

    kind = "sequence-classification"

    def __init__(self, data: LabelledData, model: ModelLike, budget: ProxyBudget, *, device: torch.device) -> None:
        self.data = data
        self.budget = budget
        self.device = device
        self.tokenizer = _model_tokenizer(model)
        self.pad_token_id = _pad_token_id(self.tokenizer)
        self.train_rows = _encode(data.train, self.tokenizer, budget.seq_len, self.pad_token_id)
        validation = _encode(data.validation, self.tokenizer, budget.seq_len, self.pad_token_id)
        # a fixed share of the validation rows, in a fixed order that does not depend on the seed
        count = min(len(data.validation), budget.eval_batches * budget.batch_size)
        order = torch.randperm(len(data.validation), generator=torch.Generator().manual_seed(_EVAL_ORDER_SEED))[:count]
        self.eval_rows = tuple(part[order].to(device) for part in validation)

    @property
    def fingerprint(self) -> str:
        return self.data.fingerprint

    @property
    def description(self) -> str:
        return self.data.description

    def build_model(self, model: ModelLike, *, seed: int) -> nn.Module:
        """Build the classifier (a new head of ``num_labels`` outputs) and check its vocabulary."""
        net = build_model(model, seed=seed, num_labels=self.data.num_labels)
        config = getattr(net, "config", None)
        if config is not None and getattr(config, "pad_token_id", None) is None:
            config.pad_token_id = self.pad_token_id
        rows = model_vocab_size(net)
        vocab = len(self.tokenizer) if self.tokenizer is not None else _BYTE_VOCAB
        if rows is not None and vocab > rows:
            raise ValueError(
                f"the tokens of {self.description} go up to id {vocab - 1} but the model's embedding has {rows} rows; "
                "use a model with a larger vocabulary or put its tokenizer in the model directory"
            )
        return net

    def train_loss(self, net: nn.Module, generator: torch.Generator) -> torch.Tensor:
        """Mean cross-entropy of one micro-batch of ``batch_size`` train rows drawn from ``generator``."""
        picked = torch.randint(0, len(self.data.train), (self.budget.batch_size,), generator=generator)
        input_ids, attention_mask, labels = (part[picked].to(self.device, non_blocking=True) for part in self.train_rows)
        return nn.functional.cross_entropy(_logits(net, input_ids, attention_mask), labels)

    def evaluate(self, net: nn.Module) -> tuple[float, dict[str, float]]:
        """Mean loss, accuracy and macro-F1 over the fixed validation rows (call under ``no_grad``)."""
        input_ids, attention_mask, labels = self.eval_rows
        total_loss = torch.zeros((), device=self.device)
        predictions = []
        for start in range(0, len(labels), self.budget.batch_size):
            rows = slice(start, start + self.budget.batch_size)
            logits = _logits(net, input_ids[rows], attention_mask[rows])
            total_loss += nn.functional.cross_entropy(logits, labels[rows], reduction="sum")
            predictions.append(logits.argmax(dim=-1))
        accuracy, macro_f1 = classification_scores(torch.cat(predictions).cpu().numpy(), labels.cpu().numpy())
        return (total_loss / len(labels)).item(), {"accuracy": accuracy, "macro_f1": macro_f1}


def _logits(net: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    # B, L = input_ids.shape; only the columns up to the longest row of the batch are computed
    width = max(1, int(attention_mask.sum(dim=1).max()))
    output = net(input_ids=input_ids[:, :width], attention_mask=attention_mask[:, :width])
    logits = output if isinstance(output, torch.Tensor) else getattr(output, "logits", None)
    if logits is None or logits.dim() != 2:
        raise TypeError(
            f"the classifier's forward returned {type(output).__name__}; return logits of shape (batch, classes) "
            "or an object with .logits"
        )
    return logits.float()  # the loss in fp32 even under bf16 autocast


def _model_tokenizer(model: ModelLike):  # -> transformers.PreTrainedTokenizerBase | None
    source = model.source if isinstance(model, ModelSpec) else model if isinstance(model, str) else None
    if source is None:
        return None
    path = Path(source).expanduser()
    if not (path.is_dir() and any((path / name).is_file() for name in _TOKENIZER_FILES)):
        return None
    from transformers import AutoTokenizer

    logger.debug("classification rows are tokenised with the tokenizer of %s", path)
    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def _pad_token_id(tokenizer) -> int:
    if tokenizer is None:
        return _BYTE_PAD
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


def _encode(rows: LabelledRows, tokenizer, seq_len: int, pad_id: int) -> tuple[torch.Tensor, ...]:
    """(N, seq_len) input ids, (N, seq_len) attention mask and (N,) labels, right-padded."""
    input_ids = torch.full((len(rows), seq_len), pad_id, dtype=torch.int64)
    attention_mask = torch.zeros((len(rows), seq_len), dtype=torch.int64)
    for index, text in enumerate(rows.texts):
        pair = rows.pairs[index] if rows.pairs is not None else None
        if tokenizer is None:
            encoded = text.encode("utf-8") + (_BYTE_PAIR_SEPARATOR + pair.encode("utf-8") if pair is not None else b"")
            ids = list(encoded[:seq_len])
        else:
            ids = tokenizer(text, pair, truncation=True, max_length=seq_len)["input_ids"]
        input_ids[index, : len(ids)] = torch.tensor(ids, dtype=torch.int64)
        attention_mask[index, : len(ids)] = 1
    return input_ids, attention_mask, torch.from_numpy(rows.labels)
