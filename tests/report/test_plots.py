"""Each plot renders to a PNG of the expected pixel size, with data and when there is none."""

from __future__ import annotations

import io
import struct

import pytest

from frugal_search.report import (
    draw_curves,
    draw_hypervolume,
    draw_importance,
    draw_pareto,
    eval_curves,
    hypervolume_history,
    hypervolume_reference_point,
    objective_importances,
    pareto_front,
    trials_table,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which a valid PNG has first."""
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def render(draw, *args, **kwargs) -> bytes:
    buffer = io.BytesIO()
    draw(*args, buffer, **kwargs)
    return buffer.getvalue()


@pytest.fixture
def mixed_study(make_study, fill_random):
    study = make_study()
    fill_random(study, count=40, seed=2)
    return study


def test_pareto_png_with_every_kind_of_trial(mixed_study) -> None:
    table = trials_table(mixed_study)
    data = render(draw_pareto, table, pareto_front(table), memory_budget_mib=3.5, adamw_state_mib=8.0)
    assert png_size(data) == (1080, 600)  # 9 x 5 inches at 120 dpi
    assert len(data) > 20_000  # axes, labels, markers: far more than a blank canvas


@pytest.mark.parametrize("kind", ["empty", "failed-only"])
def test_pareto_png_without_a_front(make_study, add_trial_to, kind: str) -> None:
    study = make_study()
    if kind == "failed-only":
        add_trial_to(study, outcome="diverged", state_bytes=2**20, eval_loss=float("nan"))
        add_trial_to(study, outcome="infeasible", state_bytes=2**22)
        add_trial_to(study, outcome="error", state_bytes=None)
    table = trials_table(study)
    data = render(draw_pareto, table, pareto_front(table))
    assert png_size(data) == (1080, 600)


def test_curves_importance_hypervolume_pngs(mixed_study) -> None:
    table = trials_table(mixed_study)
    front = pareto_front(table)
    curves = render(draw_curves, eval_curves(mixed_study, front))
    importance = render(draw_importance, objective_importances(mixed_study))
    reference = hypervolume_reference_point(table)
    hypervolume = render(draw_hypervolume, hypervolume_history(table), reference_point=reference)
    assert png_size(curves) == (900, 600)
    assert png_size(importance) == (1080, 540)
    assert png_size(hypervolume) == (840, 480)
    assert min(len(curves), len(importance), len(hypervolume)) > 15_000


def test_empty_data_still_draws(make_study) -> None:
    study = make_study()
    table = trials_table(study)
    assert png_size(render(draw_curves, [])) == (900, 600)
    assert png_size(render(draw_importance, objective_importances(study))) == (1080, 540)
    assert png_size(render(draw_hypervolume, hypervolume_history(table), reference_point=None)) == (840, 480)


def test_labels_of_close_baselines_are_stacked_not_overprinted() -> None:
    import pandas as pd

    from frugal_search.report._plots import LABEL_STEP_POINTS, _label_lifts

    # two baselines of equal state and nearly equal loss (badam, frugal at 2.02 MiB), one far away
    points = [(2.02, 2.27), (2.02, 2.28), (6.5, 2.25), (2.05, 2.275)]
    xs, ys = pd.Series([0.0, 6.5]), pd.Series([1.5, 3.5])
    assert _label_lifts(points, xs, ys) == [0.0, LABEL_STEP_POINTS, 0.0, 2 * LABEL_STEP_POINTS]
