"""Model introspection: the kind, block stack and layer index of every parameter of any model.

Partition rules match parameters by *kind* and *layer*, not only by name, so that one partition
means the same thing on a 4-layer proxy and on a 32-layer LLaMA, or on BERT, T5 and ViT. This module
finds those properties from the module tree alone (it works on the ``meta`` device).

How the properties are found:

* **Block stacks.** A stack is an ``nn.ModuleList`` whose children all have the same class and
  have sub-modules of their own (the transformer blocks: ``model.layers``, ``transformer.h``,
  ``encoder.layer``, T5's ``encoder.block`` and ``decoder.block``). Only the outermost such list counts, so the lists
  inside a block (T5's ``layer``, mixture-of-experts ``experts``) do not start a new stack. A
  parameter inside a stack gets its ``stack`` (the list's dotted path), its ``layer`` (index of
  its block, from 0) and ``num_layers`` (length of that stack). Each stack has its own numbering:
  T5's encoder and decoder both start at layer 0.
* **Kinds**, checked in this order (the first that applies wins):

  - ``bias``: every parameter named ``bias`` or ``*_bias`` (norm biases included).
  - ``norm``: a 1-D parameter of a module whose class name contains ``Norm`` (LayerNorm, RMSNorm,
    T5LayerNorm, ...).
  - ``embedding``: the weight of an ``nn.Embedding`` (token, position, token-type embeddings and
    T5's relative attention bias table), and any parameter of a module outside the stacks whose
    path has a segment containing ``embed`` (ViT's patch projection, CLS token and position
    embeddings).
  - ``attention`` / ``mlp``: a parameter with 2 or more dimensions inside a block. It is
    ``attention`` when a module between the block and the parameter has a name or class
    containing ``attn`` or ``attention`` (``self_attn``, ``attention``, T5's ``SelfAttention`` and
    ``EncDecAttention``), otherwise ``mlp`` (the feed-forward part: ``mlp``, BERT's
    ``intermediate`` and ``output``, OPT's ``fc1``/``fc2``, T5's ``DenseReluDense``).
  - ``head``: a parameter with 2 or more dimensions outside the stacks that comes after the
    last block in parameter order (``lm_head``, GPT-NeoX ``embed_out``, ``classifier``, BERT's
    ``pooler`` and ``cls`` transform), or whose module is called
    ``lm_head``, ``embed_out``, ``classifier``, ``score``, ``qa_outputs``, ``head`` or
    ``pooler`` wherever it is.
  - ``other``: everything else (1-D parameters in blocks that are neither norms nor biases, such
    as layer scales; matrices before the first block that are not embeddings; all matrices of a
    model that has no block stack).

* **Tied weights** (a head sharing its tensor with the token embedding) are listed once, under
  the first name ``model.named_parameters()`` gives them (that is the embedding for every Hugging
  Face model), so the shared tensor gets exactly one kind and one role.
"""

from __future__ import annotations

import dataclasses
import re

import torch
from torch import nn

KINDS: tuple[str, ...] = ("embedding", "norm", "head", "attention", "mlp", "bias", "other")
"""Every parameter kind, in the order the docs list them."""

_ATTENTION_PATTERN = re.compile(r"attn|attention", re.IGNORECASE)
_HEAD_MODULE_NAMES = frozenset({"lm_head", "embed_out", "classifier", "score", "qa_outputs", "head", "pooler"})


@dataclasses.dataclass(frozen=True)
class ParamInfo:
    """What a partition rule can match about one parameter."""

    name: str
    """Dotted name, as ``model.named_parameters()`` gives it (first name of a tied tensor)."""
    kind: str
    """One of :data:`KINDS`."""
    layer: int | None
    """Index of the block in its stack (from 0), or None outside every stack."""
    num_layers: int | None
    """Number of blocks in that stack, or None outside every stack."""
    stack: str | None
    """Dotted path of the block stack (``"model.layers"``, ``"encoder.block"``), or None."""
    module_class: str
    """Class name of the module that owns the parameter (``"Linear"``, ``"Conv1D"``, ...)."""
    shape: tuple[int, ...]
    trainable: bool
    """``requires_grad`` of the parameter."""
    param: torch.Tensor = dataclasses.field(repr=False, compare=False)
    """The parameter itself."""

    @property
    def numel(self) -> int:
        """Number of elements."""
        return self.param.numel()


def _find_stacks(model: nn.Module) -> dict[str, int]:
    """Return ``{dotted path of each outermost block stack: number of blocks}``."""
    stacks: dict[str, int] = {}
    for path, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        if any(path == outer or path.startswith(outer + ".") for outer in stacks):
            continue  # a list inside a block (T5 "layer", MoE "experts") does not start a stack
        if len({type(child) for child in module}) != 1:
            continue
        if not any(True for _ in module[0].children()):
            continue  # a list of leaf layers (Linear, ...) is not a list of blocks
        if not any(True for _ in module.parameters()):
            continue
        stacks[path] = len(module)
    return stacks


def _split_stack(param_name: str, stacks: dict[str, int]) -> tuple[str | None, int | None, list[str]]:
    """Return (stack, layer, path segments below the block) for a parameter name."""
    for stack in stacks:
        prefix = stack + "." if stack else ""
        if param_name.startswith(prefix):
            rest = param_name[len(prefix) :].split(".")
            if rest and rest[0].isdigit():
                return stack, int(rest[0]), rest[1:]
    return None, None, []


def introspect(model: nn.Module) -> list[ParamInfo]:
    """Return a :class:`ParamInfo` for every parameter of ``model``, in ``named_parameters`` order.

    Tied tensors appear once (see the module docstring). Works on any ``nn.Module``; the kinds
    are tuned for transformer models (Hugging Face or a custom one with its blocks in an
    ``nn.ModuleList``).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"introspect needs a torch.nn.Module, got {type(model).__name__}")
    stacks = _find_stacks(model)
    named = list(model.named_parameters())
    # index (in parameter order) of the last parameter inside any stack: matrices after it are heads
    last_block_index = max((i for i, (n, _) in enumerate(named) if _split_stack(n, stacks)[0]), default=None)
    infos = []
    for index, (name, param) in enumerate(named):
        module_path, _, attr = name.rpartition(".")
        owner = model.get_submodule(module_path) if module_path else model
        stack, layer, inner = _split_stack(name, stacks)
        if stack is None:
            kind = _outer_kind(
                attr, module_path, owner, param, after_blocks=last_block_index is not None and index > last_block_index
            )
        else:
            kind = _block_kind(attr, model, stack, layer, inner, owner, param)
        infos.append(
            ParamInfo(
                name=name,
                kind=kind,
                layer=layer,
                num_layers=stacks[stack] if stack is not None else None,
                stack=stack,
                module_class=type(owner).__name__,
                shape=tuple(param.shape),
                trainable=param.requires_grad,
                param=param,
            )
        )
    return infos


def _is_bias(attr: str) -> bool:
    return attr == "bias" or attr.endswith("_bias")  # nn.MultiheadAttention has in_proj_bias


def _is_norm(owner: nn.Module, param: torch.Tensor) -> bool:
    return param.dim() == 1 and "norm" in type(owner).__name__.lower()


def _outer_kind(attr: str, module_path: str, owner: nn.Module, param: torch.Tensor, *, after_blocks: bool) -> str:
    """Kind of a parameter outside every block stack."""
    if _is_bias(attr):
        return "bias"
    if _is_norm(owner, param):
        return "norm"
    segments = module_path.split(".") if module_path else []
    if isinstance(owner, nn.Embedding) or any("embed" in s.lower() for s in segments if s != "embed_out"):
        return "embedding"
    if param.dim() >= 2 and (after_blocks or any(s in _HEAD_MODULE_NAMES for s in segments)):
        return "head"
    return "other"


def _block_kind(
    attr: str, model: nn.Module, stack: str, layer: int, inner: list[str], owner: nn.Module, param: torch.Tensor
) -> str:
    """Kind of a parameter inside block ``layer`` of ``stack``; ``inner`` is its path below the block."""
    if _is_bias(attr):
        return "bias"
    if _is_norm(owner, param):
        return "norm"
    if isinstance(owner, nn.Embedding):
        return "embedding"
    if param.dim() < 2:
        return "other"
    # walk the modules from the block down to the owner, looking at names and classes
    module = model.get_submodule(f"{stack}.{layer}" if stack else str(layer))
    for segment in inner[:-1]:
        module = getattr(module, segment)
        if _ATTENTION_PATTERN.search(segment) or _ATTENTION_PATTERN.search(type(module).__name__):
            return "attention"
    return "mlp"
