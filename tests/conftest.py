"""Shared test fixtures."""

from __future__ import annotations

import os

import pytest
import torch

# Nothing downloads at run time: a package that asks the Hugging Face hub on import (bitsandbytes, for a
# CPU kernel, when `kernels` is installed) is told the hub is offline, in the test processes and their children.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Tests are small; more threads than cores only adds contention on a 2-core CI machine.
torch.set_num_threads(min(2, torch.get_num_threads()))

POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The local PostgreSQL server's URL; the test is skipped, saying why, when none answers."""
    try:
        import psycopg2
    except ImportError:
        pytest.skip("psycopg2 is not installed (pip install -e '.[dev]')")
    try:
        psycopg2.connect(
            host="127.0.0.1", port=5432, user="postgres", dbname="test", connect_timeout=3
        ).close()
    except Exception as error:
        pytest.skip(f"no PostgreSQL server answers at 127.0.0.1:5432 (database test, user postgres): {error}")
    return POSTGRES_URL
