"""Fidelity summary, selection of trials to re-run, the resumable store and the plot."""

from __future__ import annotations

import io
import json
import math

import pytest
from scipy import stats as scipy_stats

from frugal_search.validate.plot import plot_fidelity
from frugal_search.validate.selection import Candidate, select_for_fidelity, spread_indices
from frugal_search.validate.store import LongRunStore, run_key
from frugal_search.validate.summary import FidelityRow, format_fidelity_markdown, summarize_fidelity


def _rows():
    # memory 1..6 MiB; proxy and long-run losses mostly agree, trial 4 drops out after long training
    return [
        FidelityRow(number=1, group="best", state_mib=1.0, proxy_loss=3.0, long_losses=(2.6, 2.7)),
        FidelityRow(number=2, group="best", state_mib=2.0, proxy_loss=2.8, long_losses=(2.5, 2.4)),
        FidelityRow(number=3, group="other", state_mib=3.0, proxy_loss=2.9, long_losses=(2.55, 2.6)),
        FidelityRow(number=4, group="best", state_mib=4.0, proxy_loss=2.7, long_losses=(2.5, 2.6)),
        FidelityRow(number=5, group="best", state_mib=5.0, proxy_loss=2.5, long_losses=(2.2, 2.25)),
        FidelityRow(number=6, group="other", state_mib=6.0, proxy_loss=2.6, long_losses=(2.3, math.inf)),
    ]


def test_summary_matches_scipy_and_names_front_changes():
    rows = _rows()
    summary = summarize_fidelity(rows, bands=2, settings={"study": "t", "seeds": [0, 1]})
    proxy = [r.proxy_loss for r in rows]
    long_mean = [2.65, 2.45, 2.575, 2.55, 2.225, 1e9]  # trial 6 diverged on one seed: ranks last
    assert summary.overall.spearman == pytest.approx(scipy_stats.spearmanr(proxy, long_mean).statistic)
    assert summary.overall.kendall == pytest.approx(scipy_stats.kendalltau(proxy, long_mean).statistic)
    seed0 = [2.6, 2.5, 2.55, 2.5, 2.2, 2.3]
    seed1 = [2.7, 2.4, 2.6, 2.6, 2.25, 1e9]
    assert summary.ceiling.spearman == pytest.approx(scipy_stats.spearmanr(seed0, seed1).statistic)
    assert summary.per_seed[0].spearman == pytest.approx(scipy_stats.spearmanr(proxy, seed0).statistic)
    # bands: {1,2,3} and {4,5,6}
    assert [(b.low_mib, b.high_mib) for b in summary.bands] == [(1.0, 3.0), (4.0, 6.0)]
    assert summary.bands[0].correlation.spearman == pytest.approx(
        scipy_stats.spearmanr([3.0, 2.8, 2.9], [2.65, 2.45, 2.575]).statistic
    )
    # proxy front (loss vs memory): 1, 2, 4, 5; long front: 1, 2, 5 (4 is dominated by 2)
    assert summary.survival.proxy_front == [1, 2, 4, 5]
    assert summary.survival.long_front == [1, 2, 5]
    assert summary.survival.dropped == [4]
    text = format_fidelity_markdown(summary)
    assert "Dropped out (dominated after long training): [4]" in text
    assert "| 6 | other | 6.000 | 2.600 | 2.300 | diverged | diverged |" in text


def test_plot_writes_a_png():
    buffer = io.BytesIO()
    plot_fidelity(summarize_fidelity(_rows(), bands=2), buffer)
    assert buffer.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"


def test_spread_indices_include_both_ends():
    assert spread_indices(10, 4) == [0, 3, 6, 9]
    assert spread_indices(3, 5) == [0, 1, 2]
    assert spread_indices(5, 1) == [2]


def test_select_front_first_then_others_over_memory():
    candidates = [
        Candidate(number=0, proxy_loss=3.0, state_mib=1.0),  # front
        Candidate(number=1, proxy_loss=2.0, state_mib=2.0),  # front
        Candidate(number=2, proxy_loss=1.0, state_mib=3.0),  # front
        Candidate(number=3, proxy_loss=3.5, state_mib=1.5),  # rank 1
        Candidate(number=4, proxy_loss=2.5, state_mib=2.5),  # rank 1
        Candidate(number=5, proxy_loss=4.0, state_mib=4.0),
        Candidate(number=6, proxy_loss=4.0, state_mib=0.9),  # front (least memory)
        Candidate(number=7, proxy_loss=5.0, state_mib=5.0),
    ]
    best, others = select_for_fidelity(candidates, top=3)
    # front by memory: 6 (0.9), 0, 1, 2 -> three spread along it: ends and one middle
    assert best == [6, 1, 2] or best == [6, 0, 2]
    assert len(others) == 3 and not set(others) & set(best)
    remaining = sorted((c for c in candidates if c.number not in best), key=lambda c: c.state_mib)
    assert others[0] == remaining[0].number and others[-1] == remaining[-1].number
    best_all, _ = select_for_fidelity(candidates, top=6)
    assert set(best_all) == {6, 0, 1, 2, 3, 4}  # the whole front, then the whole next rank


def test_store_survives_reopen(tmp_path):
    path = tmp_path / "runs.json"
    store = LongRunStore(path)
    key = run_key(trial_number=3, seed=1, steps=400)
    store.put(key, {"eval_loss": 2.5})
    again = LongRunStore(path)
    assert key in again and again.get(key) == {"eval_loss": 2.5}
    assert run_key(trial_number=3, seed=1, steps=800) not in again
    # the same trial number with another partition is another run
    split_a, split_b = {"rules": [{"role": "stateful"}]}, {"rules": [{"role": "frozen"}]}
    assert run_key(trial_number=3, seed=1, steps=400, split=split_a) != run_key(
        trial_number=3, seed=1, steps=400, split=split_b
    )
    assert run_key(trial_number=3, seed=1, steps=400, split=split_a) == run_key(
        trial_number=3, seed=1, steps=400, split=dict(reversed(list(split_a.items())))
    )
    path.write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="unknown format"):
        LongRunStore(path)
