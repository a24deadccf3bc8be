"""``python -m frugal_search.train`` (under torchrun): the flags are TrainConfig's fields.

Exit status: 0 after a finished run, 2 on bad input, 1 after any other error (its traceback is
logged). The process group is left once, in :func:`main`, after ``train`` has returned and its model,
optimizer and DDP / FSDP2 wrappers are gone (``close_process_group``: collect, barrier, destroy).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import traceback

from frugal_search.proxy import close_process_group
from frugal_search.train import TrainConfig, train

logger = logging.getLogger(__name__)


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """A TrainConfig from ``--field value`` flags (one per field, dashes for underscores)."""
    parser = argparse.ArgumentParser(prog="python -m frugal_search.train", description=__doc__)
    for field in dataclasses.fields(TrainConfig):
        kind = {"lr": float, "stop_at": int}.get(field.name) or (type(field.default) if field.default is not None else str)
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=kind, default=field.default)
    return TrainConfig(**vars(parser.parse_args(argv)))


def main(argv: list[str] | None = None) -> int:
    """Parse, train, leave the process group, report; 0 done, 2 bad input, 1 another error."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        config = parse_args(argv)
        result = train(config)
    except ValueError as error:
        print(f"frugal_search.train: {error}", file=sys.stderr)
        status = 2
    except Exception as error:  # a dead peer's collective, a full disk: logged, then the group left
        logger.error("frugal_search.train failed:\n%s", "".join(traceback.format_exception(error)).rstrip())
        status = 1
    else:
        status = 0
    # Out here the traceback of an error is gone, and with it the frames that held train()'s model
    # and optimizer. After an error no barrier: the other ranks may be dead or inside a collective
    # (torchrun ends them).
    close_process_group(barrier=status == 0)
    if status == 0:
        logger.info("done: steps %d..%d, last loss %.4f", result.start_step, result.steps, result.last_loss)
    return status


if __name__ == "__main__":
    sys.exit(main())
