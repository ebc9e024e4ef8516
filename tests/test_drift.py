"""Drift measures on constructed cases with known answers, and the expert's self-twin."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from imitation.data.types import TrajectoryWithRew

from testbed.drift import (
    disagreement,
    first_index,
    fit_horizon_cost,
    hazard_curve,
    horizon_fit_ci,
    kaplan_meier,
    measure_drift,
    pooled_scores,
    same_step_difference,
    twin_episode,
    twin_steps,
)
from testbed.policies import PolicySpec
from testbed.rollout import EpisodeRecord, RolloutPool


def _record(xs, ys, acts, *, labels=None, seed=0, heading=0.0, speeds=None, lanes=None, crashed=False) -> EpisodeRecord:
    n = len(acts)
    speeds = speeds if speeds is not None else [25.0] * n
    lanes = lanes if lanes is not None else [0] * n
    infos = [
        {"x": x, "y": y, "speed": s, "heading": heading, "lane": lane, "crashed": crashed and i == n - 1}
        for i, (x, y, s, lane) in enumerate(zip(xs, ys, speeds, lanes))
    ]
    traj = TrajectoryWithRew(
        obs=np.zeros((n + 1, 1), dtype=np.float32),
        acts=np.asarray(acts),
        infos=np.asarray(infos, dtype=object),
        terminal=crashed,
        rews=np.zeros(n, dtype=np.float32),
    )
    return EpisodeRecord("p", seed, traj, labels=None if labels is None else np.asarray(labels))


def test_identical_runs_have_zero_divergence() -> None:
    a = _record([10, 20, 30], [0, 0, 0], [1, 1, 3])
    steps = twin_steps(a, a)
    assert (steps.drop(columns="step").to_numpy() == 0).all()
    ep = twin_episode(a, a)
    assert math.isnan(ep["first_disagreement_step"]) and math.isnan(ep["divergence_step"])
    assert ep["max_position_error_m"] == 0.0


def test_known_offsets_in_heading_frame() -> None:
    expert = _record([10, 20, 30], [0, 0, 0], [1, 1, 1], speeds=[25, 25, 25], lanes=[0, 0, 0])
    policy = _record([10, 23, 34], [0, 4, 4], [1, 2, 1], speeds=[25, 27, 20], lanes=[0, 1, 1])
    steps = twin_steps(policy, expert)
    assert steps["longitudinal_error_m"].tolist() == [0, 3, 4]
    assert steps["lateral_error_m"].tolist() == [0, 4, 4]
    assert steps["position_error_m"].tolist() == [0, 5, pytest.approx(math.hypot(4, 4))]
    assert steps["speed_error_mps"].tolist() == [0, 2, -5]
    assert steps["lane_mismatch"].tolist() == [0, 1, 1]
    ep = twin_episode(policy, expert, threshold_m=1.0)
    assert ep["first_disagreement_step"] == 2 and ep["divergence_step"] == 2
    # Rotated frame: heading pi/2 (driving along +y), the same offset is longitudinal.
    e2 = _record([0, 0], [0, 10], [1, 1], heading=math.pi / 2)
    p2 = _record([0, 0], [0, 13], [1, 1])
    s2 = twin_steps(p2, e2)
    assert s2["longitudinal_error_m"].iloc[1] == pytest.approx(3.0)
    assert s2["lateral_error_m"].iloc[1] == pytest.approx(0.0, abs=1e-12)


def test_twins_of_different_lengths_compare_common_steps() -> None:
    short = _record([10], [0], [1], crashed=True)
    long = _record([10, 20, 30], [0, 0, 0], [1, 1, 1])
    assert len(twin_steps(short, long)) == 1
    with pytest.raises(ValueError):
        twin_steps(_record([1], [0], [1], seed=1), long)


def test_disagreement_extremes() -> None:
    always = _record([0, 0, 0, 0], [0] * 4, [0, 1, 2, 3], labels=[4, 4, 4, 4])
    never = _record([0, 0], [0, 0], [1, 3], labels=[1, 3])
    assert disagreement(always).mean() == 1.0
    assert disagreement(never).mean() == 0.0
    with pytest.raises(ValueError):
        disagreement(_record([0], [0], [1]))
    assert first_index(np.array([False, False, True])) == 3.0
    assert math.isnan(first_index(np.array([False])))


def test_kaplan_meier_known_values() -> None:
    # 4 episodes: crashes at steps 2 and 3, two survive to the end at 5.
    km = kaplan_meier([2, 3, np.nan, np.nan], [2, 3, 5, 5], horizon=5)
    assert km["survival"].tolist() == [1.0, 1.0, 0.75, 0.5, 0.5, 0.5]
    assert km["at_risk"].tolist() == [4, 4, 4, 3, 2, 2]
    assert (km["ci_low"] <= km["survival"]).all() and (km["survival"] <= km["ci_high"]).all()
    # Censoring: an episode that ends early without a crash leaves the risk set.
    km2 = kaplan_meier([np.nan, 3], [1, 3], horizon=3)
    assert km2["survival"].tolist() == [1.0, 1.0, 1.0, 0.0]


def test_expert_self_twin_is_exactly_zero(scenario) -> None:
    with RolloutPool(1) as pool:
        result = measure_drift(scenario, [PolicySpec.parse("expert:scripted")], [10_000, 10_001], pool=pool)
    assert (result.twin_steps["position_error_m"] == 0).all()
    assert (result.twin_steps["speed_error_mps"] == 0).all()
    row = result.summary.iloc[0]
    assert row["eps_on"] == 0 and row["eps_off"] == 0 and row["p_diverged"] == 0


def test_idle_policy_diverges_and_disagrees(scenario) -> None:
    with RolloutPool(1) as pool:
        result = measure_drift(scenario, [PolicySpec.parse("idle")], [10_000, 10_001, 10_002], pool=pool)
    row = result.summary.iloc[0]
    assert row["eps_on"] > 0 and row["eps_off"] > 0
    assert set(result.survival["policy"]) == {"idle", "expert:scripted"}
    assert isinstance(result.twin_episodes, pd.DataFrame) and len(result.twin_episodes) == 3


def test_pooled_scores_weigh_steps_not_episodes() -> None:
    # One clone: a 2-step episode with 2 errors and an 8-step one with none. Pooled over steps
    # the rate is 2/10, not the per-episode mean (1 + 0) / 2.
    z = pooled_scores(np.array([[2.0, 0.0]]), np.array([[2.0, 8.0]]))
    assert z.mean() == pytest.approx(0.2)
    # Every row's mean is its own pooled ratio, whatever the lengths.
    rng = np.random.default_rng(0)
    den = rng.integers(1, 30, size=(4, 50)).astype(float)
    num = rng.binomial(den.astype(int), 0.3).astype(float)
    assert np.allclose(pooled_scores(num, den).mean(axis=1), num.sum(axis=1) / den.sum(axis=1))
    with pytest.raises(ValueError, match="steps in every row"):
        pooled_scores(np.zeros((1, 2)), np.zeros((1, 2)))


def test_same_step_difference_compares_only_steps_both_reached() -> None:
    # The policy crashed after 3 steps; the expert drove 6. Only steps 0..2 are compared.
    on, off = np.array([0, 1, 1]), np.array([0, 0, 1, 1, 1, 1])
    assert same_step_difference(on, off) == (1.0, 3)
    assert same_step_difference(off, on) == (-1.0, 3)


def test_horizon_fit_recovers_known_a_and_b() -> None:
    horizons = [20, 40, 80, 160]
    assert fit_horizon_cost(horizons, [0.05 * t + 0.001 * t**2 for t in horizons]) == pytest.approx((0.05, 0.001))
    # Noisy episodes (Poisson costs) around C(T) = 0.02 T + 0.0005 T^2: the interval covers the truth.
    rng = np.random.default_rng(1)
    tables = {t: rng.poisson(0.02 * t + 0.0005 * t**2, size=(5, 200)) for t in horizons}
    fit = horizon_fit_ci(tables, n_boot=400)
    assert fit["a_ci_low"] < 0.02 < fit["a_ci_high"] and fit["b_ci_low"] < 0.0005 < fit["b_ci_high"]
    # A constant hazard gives b compatible with 0.
    flat = horizon_fit_ci({t: rng.poisson(0.03 * t, size=(1, 300)) for t in horizons}, n_boot=400)
    assert flat["b_ci_low"] < 0 < flat["b_ci_high"]
    with pytest.raises(ValueError, match="two distinct horizons"):
        fit_horizon_cost([10, 10], [1.0, 1.0])


def test_hazard_curve_counts_steps_at_risk() -> None:
    # Episode 0: 10 steps, events at 2 and 7; episode 1: crashed at step 3 (4 steps driven).
    curve = hazard_curve([[2, 7], [3]], [10, 4], bin_steps=5)
    assert list(curve["steps_at_risk"]) == [9, 5] and list(curve["events"]) == [2, 1]
    assert curve["hazard"].tolist() == pytest.approx([2 / 9, 1 / 5])
    assert (curve["hazard_ci_low"] <= curve["hazard"]).all() and (curve["hazard"] <= curve["hazard_ci_high"]).all()


def test_binned_errors_cluster_by_clone() -> None:
    """Episodes of one clone share its errors: with clones whose error rates differ widely, the
    interval clustered by clone is wider than the one treating episodes as independent, and
    both agree on the pooled point estimate; a single clone falls back to episodes."""
    from testbed.drift import binned_error_rows

    rng = np.random.default_rng(0)
    rates = (0.05, 0.5, 0.1, 0.6, 0.2)
    on = [(rng.random(10) < r).astype(float) for r in rates for _ in range(20)]
    off = [(rng.random(10) < 0.05).astype(float) for _ in on]
    clones = [c for c in range(len(rates)) for _ in range(20)]
    flat = binned_error_rows(on, off, bin_steps=10, horizon=10)[0]
    clustered = binned_error_rows(on, off, bin_steps=10, horizon=10, clones=clones)[0]
    assert clustered["n_clones"] == len(rates)
    for name in ("eps_on", "shift"):
        assert clustered[name] == pytest.approx(flat[name])
        width = clustered[f"{name}_ci_high"] - clustered[f"{name}_ci_low"]
        assert width > 2 * (flat[f"{name}_ci_high"] - flat[f"{name}_ci_low"]), name
    assert binned_error_rows(on, off, bin_steps=10, horizon=10, clones=[0] * len(on)) == [flat]
    with pytest.raises(ValueError, match="same seeds"):
        binned_error_rows(on[:-1], off[:-1], bin_steps=10, horizon=10, clones=clones[:-1])


def test_binned_value_gap_rows_pool_scored_steps_per_bin() -> None:
    # Two clones x two episodes, 4 steps, bins of 2; NaN = unscored. Clone 0 loses 1.0 on every
    # scored step of bin 0, clone 1 nothing: the pooled gap is their mean; bin 1 is all zeros.
    from testbed.drift import binned_value_gap_rows, gaps_from_text, gaps_text

    nan = np.nan
    gaps = [
        np.array([1.0, nan, 0.0, 0.0]),
        np.array([1.0, 1.0, 0.0, nan]),
        np.array([0.0, nan, 0.0, 0.0]),
        np.array([0.0, 0.0, 0.0, 0.0]),
    ]
    rows = binned_value_gap_rows(gaps, bin_steps=2, horizon=4, clones=[0, 0, 1, 1])
    assert [r["n_scored"] for r in rows] == [6, 7]
    assert rows[0]["value_gap"] == pytest.approx(0.5) and rows[0]["costly"] == pytest.approx(0.5)
    assert rows[1]["value_gap"] == 0.0 and rows[1]["costly"] == 0.0
    assert 0.0 <= rows[0]["value_gap_ci_low"] <= 0.5 <= rows[0]["value_gap_ci_high"]
    # Unclustered: every scored step pooled, 3 of 6 lost 1.0.
    (flat,) = binned_value_gap_rows(gaps, bin_steps=4, horizon=4)
    assert flat["value_gap"] == pytest.approx(3 / 13) and flat["n_scored"] == 13
    # A bin nobody reached has no estimate; the text form round-trips, NaN included.
    (empty,) = binned_value_gap_rows([np.array([nan])], bin_steps=1, horizon=1)
    assert empty["n_scored"] == 0 and np.isnan(empty["value_gap"])
    np.testing.assert_array_equal(gaps_from_text(gaps_text(gaps[1])), gaps[1])
    assert len(gaps_from_text(float("nan"))) == 0
