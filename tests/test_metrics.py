"""Metrics and statistics on hand-made data with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from imitation.data.types import TrajectoryWithRew

from testbed.metrics import (
    METRICS,
    Interval,
    clone_table,
    clones_mean_ci,
    clones_normalized_score_ci,
    clones_rate_ci,
    episode_metrics,
    format_summary,
    mean_ci,
    normalized_score_ci,
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


def _scenario(rng: np.random.Generator, n_clones: int, n_seeds: int, level: float) -> tuple[np.ndarray, ...]:
    """A clones x seeds table of returns with training-seed and seed effects, and the references."""
    seed_effect = rng.normal(size=n_seeds)
    clones = level + rng.normal(size=(n_clones, 1)) + seed_effect + 0.5 * rng.normal(size=(n_clones, n_seeds))
    return clones, seed_effect + 0.3 * rng.normal(size=n_seeds), 20 + seed_effect + 0.3 * rng.normal(size=n_seeds)


def test_clones_normalized_score_ci_over_one_scenario_is_normalized_score_ci() -> None:
    clones, random, expert = _scenario(np.random.default_rng(0), 3, 30, 8.0)
    one = clones_normalized_score_ci([clones], [random], [expert])
    direct = normalized_score_ci(clones, random, expert)
    np.testing.assert_allclose([one.mean, one.low, one.high], [direct.mean, direct.low, direct.high], rtol=1e-12)
    single = clones_normalized_score_ci([clones[:1]], [random], [expert])  # one clone: evaluation noise only
    direct = normalized_score_ci(clones[:1], random, expert)
    np.testing.assert_allclose([single.mean, single.low, single.high], [direct.mean, direct.low, direct.high])


def test_clones_normalized_score_ci_over_scenarios() -> None:
    rng = np.random.default_rng(1)
    a, b = _scenario(rng, 3, 30, 5.0), _scenario(rng, 3, 30, 15.0)
    both = clones_normalized_score_ci([a[0], b[0]], [a[1], b[1]], [a[2], b[2]])
    each = [normalized_score_ci(*s) for s in (a, b)]
    assert both.mean == pytest.approx(np.mean([e.mean for e in each]))
    assert both.low < both.mean < both.high
    # The same clones in both scenarios: their training-seed effect does not average out over scenarios.
    assert both.high - both.low > 0.5 * np.mean([e.high - e.low for e in each])
    no_scale = (a[0], a[1], a[1] - 1.0)  # the expert below random
    assert np.isnan(clones_normalized_score_ci([a[0], no_scale[0]], [a[1], no_scale[1]], [a[2], no_scale[2]]).mean)
    with pytest.raises(ValueError, match="same clones"):
        clones_normalized_score_ci([a[0], b[0][:2]], [a[1], b[1]], [a[2], b[2]])


def test_clones_vs_expert_intervals_come_from_the_clone_intervals() -> None:
    from testbed.kit import clone_vs_expert, clones_vs_expert, each_clone_vs_expert

    rng = np.random.default_rng(2)
    seeds = list(range(100, 120))
    expert = _episodes("expert", seeds, list(20 + rng.normal(size=20)), list(rng.random(20) < 0.1))
    clones = pd.concat(
        [
            _episodes(f"clone{t}", seeds, list(10 + t + 3 * rng.normal(size=20)), list(rng.random(20) < 0.5)).assign(
                train_seed=t
            )
            for t in range(3)
        ],
        ignore_index=True,
    )
    row = clones_vs_expert(clones, expert)
    assert row["n_clones"] == 3
    ret = clones_mean_ci(clone_table(clones, "return"))
    assert (row["clone_return"], row["clone_return_ci_low"], row["clone_return_ci_high"]) == (
        ret.mean,
        ret.low,
        ret.high,
    )
    crash = clones_rate_ci(clone_table(clones, "crashed"))
    assert Interval.from_columns(row, "clone_crashed") == crash
    diff = clones_mean_ci(clone_table(clones, "return") - expert.sort_values("seed")["return"].to_numpy()[None, :])
    assert row["return_diff"] == pytest.approx(diff.mean)
    assert (row["return_diff_ci_low"], row["return_diff_ci_high"]) == pytest.approx((diff.low, diff.high))
    assert row["expert_return_ci_low"] == mean_ci(expert["return"]).low
    # One clone: exactly the numbers of a single clone beside the expert (intervals over episodes).
    alone = clones[clones["train_seed"] == 1]
    summary = summarize(pd.concat([expert, alone.drop(columns="train_seed")]))
    single = clones_vs_expert(alone, expert)
    assert {k: single[k] for k in single if k != "n_clones"} == clone_vs_expert(summary, "clone1", "expert")
    per_clone = each_clone_vs_expert(clones, expert)
    assert [r["train_seed"] for r in per_clone] == [0, 1, 2]
    assert {k: per_clone[1][k] for k in per_clone[1] if k != "train_seed"} == {
        k: v for k, v in single.items() if not k.startswith(("expert_", "n_"))
    }


def test_clones_normalized_score_ci_covers_the_truth_over_scenarios() -> None:
    """3 clones whose training-seed effect is shared by the scenarios they drive, 3 scenarios of
    30 shared seeds, references with seed effects of their own: coverage near 95% (0.963 over
    1000 such experiments)."""
    rng = np.random.default_rng(7)
    levels, hits, n = (5.0, 10.0, 15.0), 0, 300
    truth = np.mean(levels) / 20
    for _ in range(n):
        training = 2 * rng.normal(size=(3, 1))
        tables = []
        for level in levels:
            seed = 2 * rng.normal(size=30)
            clones = level + training + seed + 3 * rng.normal(size=(3, 30))
            tables.append((clones, seed + 2 * rng.normal(size=30), 20 + seed + rng.normal(size=30)))
        ci = clones_normalized_score_ci(*zip(*tables))
        hits += ci.low <= truth <= ci.high
    assert hits / n >= 0.92
