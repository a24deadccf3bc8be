"""Shared test fixtures."""

from __future__ import annotations

import torch

# Tests are small; more threads than cores only adds contention on a 2-core CI machine.
torch.set_num_threads(min(2, torch.get_num_threads()))
