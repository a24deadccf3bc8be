"""The paper's split: Linear weights inside the transformer blocks are FRUGAL, the rest AdamW."""

from __future__ import annotations

from typing import Any

from torch import nn

# transformers' GPT-2 uses Conv1D (a Linear with a transposed weight) for its projections.
_LINEAR_LIKE_CLASS_NAMES = frozenset({"Conv1D"})


def _is_linear_like(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return True
    weight = getattr(module, "weight", None)
    return type(module).__name__ in _LINEAR_LIKE_CLASS_NAMES and isinstance(weight, nn.Parameter) and weight.dim() == 2


def find_transformer_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The model's transformer blocks: the longest ``nn.ModuleList`` whose children share one class.

    Ties go to the list with more parameters. Raises ValueError when the model has none.
    """
    best: tuple[tuple[int, int], str, nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        if len({type(child) for child in module}) != 1:
            continue
        key = (len(module), sum(p.numel() for p in module.parameters()))
        if best is None or key > best[0]:
            best = (key, name, module)
    if best is None:
        raise ValueError(
            f"{type(model).__name__} has no nn.ModuleList of repeated blocks, so the paper's split "
            "(Linear weights inside the transformer blocks) does not apply; build the param groups "
            "by hand, e.g. [{'params': ..., 'role': 'stateful'}, {'params': ..., 'role': 'frugal'}]."
        )
    return best[1], best[2]


def paper_param_groups(model: nn.Module) -> list[dict[str, Any]]:
    """FRUGAL's param groups as in the paper, for any model with its blocks in an nn.ModuleList.

    The weight of every nn.Linear (or GPT-2 Conv1D) inside the transformer blocks goes to one
    ``frugal`` group in module order (so blocks mode schedules them globally, layer 0 first);
    everything else (embeddings, norms, the output head, biases, modules outside the blocks) goes
    to one ``stateful`` group. Only parameters that require grad are included; tied weights
    appear once (under their first name).

    Returns ``[{"params", "names", "role": "stateful"}, {"params", "names", "role": "frugal"}]``.
    """
    _, blocks = find_transformer_blocks(model)
    split_ids = {id(module.weight) for module in blocks.modules() if _is_linear_like(module)}
    stateful: dict[str, list[Any]] = {"params": [], "names": []}
    frugal: dict[str, list[Any]] = {"params": [], "names": []}
    for name, param in model.named_parameters():  # deduplicates tied parameters
        if not param.requires_grad:
            continue
        target = frugal if id(param) in split_ids else stateful
        target["params"].append(param)
        target["names"].append(name)
    return [{**stateful, "role": "stateful"}, {**frugal, "role": "frugal"}]
