"""The set-up check a search runs once, before it opens the storage or starts any worker.

Each mistake of the set-up (a device this machine lacks, a model that cannot be built, data the
proxy cannot read, a storage that cannot be opened) is one :class:`SetupError` naming what to
change, and the storage is left as it was: a study with WAITING baselines is never created for a
run that could not start.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from frugal_search.search.objective import build_memory_model
from frugal_search.search.storage import check_storage

if TYPE_CHECKING:
    from torch import nn

    from frugal_search.search.config import StudyConfig

logger = logging.getLogger(__name__)


class SetupError(ValueError):
    """A study that cannot start: the message is one line saying what is wrong and what to do."""


def check_setup(config: StudyConfig) -> nn.Module:
    """Check the device, the model, the data and the storage of ``config``; raise :class:`SetupError`.

    The model is built on the ``meta`` device (or on the CPU when it cannot be), the data is opened
    and checked against the model's vocabulary and the proxy's sequence length, and the storage is
    reached without writing to it, in that order. Returns the model built for the check (on
    ``meta`` where possible), for callers that need its size.
    """
    from frugal_search.proxy import METHODS, build_labelled_data, check_data, model_vocab_size, resolve_device

    try:
        device = resolve_device(config.proxy.device)  # e.g. cuda asked for on a machine without it
    except ValueError as error:
        raise SetupError(str(error)) from None
    if device.type == "cuda" and config.proxy.nproc > 1:
        import torch

        nproc, first, gpus = config.proxy.nproc, device.index or 0, torch.cuda.device_count()
        if first + nproc > gpus:
            raise SetupError(
                f"[proxy] nproc = {nproc} on {config.proxy.device} needs GPUs {first}..{first + nproc - 1}, "
                f"this machine has {gpus}; lower nproc or use device 'cpu' ({nproc} CPU processes)"
            )
    source = config.model.source
    for name in config.study.baselines:  # a method baseline whose package is missing: one line naming the extra
        missing = METHODS[name].missing() if name in METHODS else None
        if missing:
            raise SetupError(f"[study] baselines: {missing} (or drop {name!r})")
    if config.is_classification:
        try:  # the labels are read first: the classifier's head needs their number
            build_labelled_data(config.data)
        except (ValueError, OSError) as error:
            raise SetupError(f"[data] {first_line(error)}") from None
    try:
        model = build_memory_model(config)
    except Exception as error:  # a factory or checkpoint may raise anything: say which model
        raise SetupError(f"[model] {source!r} cannot be built: {first_line(error)}") from None
    if not config.is_classification:
        try:
            check_data(config.data, seq_len=config.proxy.run_budget.seq_len, vocab_size=model_vocab_size(model))
        except (ValueError, OSError) as error:
            raise SetupError(f"[data] {first_line(error)}") from None
    try:
        check_storage(config.study.storage)
    except ValueError as error:
        raise SetupError(str(error)) from None
    _say_missing_kinds(model)
    logger.debug("set-up of study %r checked: model %r, data and storage usable", config.study.name, source)
    return model


def _say_missing_kinds(model: nn.Module) -> None:
    """Say once, for the whole search, which kinds the space names that this model does not have
    (a head tied to the embedding has no head parameter of its own): their role dimension does
    nothing here, and the workers keep quiet about the rules that match nothing."""
    from frugal_search.partition import introspect
    from frugal_search.search.space import ROLE_KINDS

    present = {info.kind for info in introspect(model)}
    missing = [kind for kind in ROLE_KINDS if kind not in present]
    if missing:
        logger.info(
            "this model has no %s parameters of its own (a tied head is listed as the embedding): "
            "[space] %s does nothing on it",
            " / ".join(missing),
            ", ".join(f"{kind}_role" for kind in missing),
        )


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message (its type's name when it has none): one line for a user."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


__all__ = ["SetupError", "check_setup", "first_line"]
