"""Metrics and statistics on hand-made data with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from imitation.data.types import TrajectoryWithRew

from testbed.metrics import (
    METRICS,
    episode_metrics,
    format_summary,
    mean_ci,
    paired_difference,
    summarize,
)


def _traj(speeds, lanes_rightmost, lane_changes, distances, rews, crashed_last=False) -> TrajectoryWithRew:
    n = len(speeds)
    infos = [
        {
            "speed": s,
            "crashed": crashed_last and i == n - 1,
            "rightmost": r,
            "lane_change": c,
            "distance_m": d,
        }
        for i, (s, r, c, d) in enumerate(zip(speeds, lanes_rightmost, lane_changes, distances))
    ]
    return TrajectoryWithRew(
        obs=np.zeros((n + 1, 2), dtype=np.float32),
        acts=np.ones(n, dtype=np.int64),
        infos=np.asarray(infos, dtype=object),
        terminal=crashed_last,
        rews=np.asarray(rews, dtype=np.float32),
    )


def test_episode_metrics_known_values() -> None:
    traj = _traj(
        speeds=[20.0, 25.0, 30.0, 25.0],
        lanes_rightmost=[True, False, True, True],
        lane_changes=[False, True, False, True],
        distances=[20.0, 25.0, 30.0, 25.0],
        rews=[0.5, 1.0, 1.0, 0.25],
        crashed_last=True,
    )
    m = episode_metrics(traj)
    assert set(m) == set(METRICS)
    assert m["return"] == pytest.approx(2.75)
    assert m["length"] == 4
    assert m["crashed"] == 1.0
    assert m["mean_speed_mps"] == pytest.approx(25.0)
    assert m["distance_m"] == pytest.approx(100.0)
    assert m["lane_changes"] == 2
    assert m["right_lane_fraction"] == pytest.approx(0.75)


def test_episode_without_crash() -> None:
    m = episode_metrics(_traj([25.0], [False], [False], [25.0], [0.8]))
    assert m["crashed"] == 0.0 and m["right_lane_fraction"] == 0.0


def test_mean_ci_contains_mean_and_shrinks_with_n() -> None:
    rng = np.random.default_rng(0)
    small = mean_ci(rng.normal(5.0, 1.0, size=20))
    large = mean_ci(rng.normal(5.0, 1.0, size=2000))
    assert small.low < small.mean < small.high
    assert large.low < 5.0 < large.high
    assert (large.high - large.low) < (small.high - small.low) / 5


def test_mean_ci_coverage_is_about_95_percent() -> None:
    rng = np.random.default_rng(1)
    hits = sum((ci := mean_ci(rng.exponential(2.0, size=60))).low <= 2.0 <= ci.high for _ in range(200))
    assert 0.88 <= hits / 200 <= 0.99


def test_mean_ci_degenerate_and_errors() -> None:
    ci = mean_ci([0.0] * 50)
    assert (ci.mean, ci.low, ci.high) == (0.0, 0.0, 0.0)
    assert mean_ci([3.0]).mean == 3.0
    with pytest.raises(ValueError):
        mean_ci([])


def test_mean_ci_is_reproducible() -> None:
    x = np.random.default_rng(2).normal(size=30)
    assert mean_ci(x) == mean_ci(x)


def test_paired_difference_removes_shared_noise() -> None:
    rng = np.random.default_rng(3)
    shared = rng.normal(0, 10, size=50)
    a, b = shared + 1.0, shared
    diff = paired_difference(a, b)
    assert diff.mean == pytest.approx(1.0)
    assert diff.low == diff.high == pytest.approx(1.0)  # constant difference: no spread
    with pytest.raises(ValueError):
        paired_difference([1.0, 2.0], [1.0])


def _episodes(policy: str, seeds, returns, crashed) -> pd.DataFrame:
    rows = []
    for seed, r, c in zip(seeds, returns, crashed):
        rows.append({"policy": policy, "seed": seed, **{k: 0.0 for k in METRICS}, "return": r, "crashed": c})
    return pd.DataFrame(rows)


def test_summarize_paired_against_first_policy() -> None:
    df = pd.concat(
        [
            _episodes("expert", [1, 2, 3, 4], [10.0, 12.0, 11.0, 13.0], [0, 0, 0, 1]),
            # listed in another seed order: pairing must go by seed, not by row
            _episodes("clone", [4, 3, 2, 1], [10.0, 9.0, 10.0, 8.0], [1, 1, 0, 0]),
        ]
    )
    summary = summarize(df)
    assert list(summary["policy"]) == ["expert", "clone"]
    expert, clone = summary.iloc[0], summary.iloc[1]
    assert expert["return"] == pytest.approx(11.5)
    assert expert["crashed"] == pytest.approx(0.25)
    assert clone["crashed"] == pytest.approx(0.5)
    assert expert["return_diff"] == 0.0
    # clone - expert by seed: (8-10) + (10-12) + (9-11) + (10-13) = -9 over 4
    assert clone["return_diff"] == pytest.approx(-2.25)
    assert clone["return_diff_ci_high"] < 0
    table = format_summary(summary)
    assert "expert" in table and "-2.25" in table


def test_summarize_refuses_unpaired_seeds() -> None:
    df = pd.concat([_episodes("a", [1, 2], [1.0, 2.0], [0, 0]), _episodes("b", [1, 3], [1.0, 2.0], [0, 0])])
    with pytest.raises(ValueError, match="same seeds"):
        summarize(df)
