"""Fixtures of the command-line tests: the hand-made studies of the report tests."""

from __future__ import annotations

from ..report.conftest import add_trial_to  # noqa: F401  (a fixture, found by pytest by name)
