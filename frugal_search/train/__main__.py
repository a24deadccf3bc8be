"""``python -m frugal_search.train`` (under torchrun): the flags are TrainConfig's fields."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

import torch.distributed as dist

from frugal_search.train import TrainConfig, train


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """A TrainConfig from ``--field value`` flags (one per field, dashes for underscores)."""
    parser = argparse.ArgumentParser(prog="python -m frugal_search.train", description=__doc__)
    for field in dataclasses.fields(TrainConfig):
        kind = {"lr": float, "stop_at": int}.get(field.name) or (type(field.default) if field.default is not None else str)
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=kind, default=field.default)
    return TrainConfig(**vars(parser.parse_args(argv)))


def main(argv: list[str] | None = None) -> int:
    """Parse, train, report; 2 on bad input."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        config = parse_args(argv)
        result = train(config)
    except ValueError as error:
        print(f"frugal_search.train: {error}", file=sys.stderr)
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    logging.getLogger(__name__).info("done: steps %d..%d, last loss %.4f", result.start_step, result.steps, result.last_loss)
    return 0


if __name__ == "__main__":
    sys.exit(main())
