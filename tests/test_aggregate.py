"""Aggregate scores (IQM, performance profiles, probability of improvement) on data with known
answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import score_world
from scipy import stats

from testbed.aggregate import aggregate_scores, iqm, returns_by_scenario
from testbed.leaderboard import normalized_score


def test_iqm_is_the_mean_of_the_middle_half() -> None:
    assert iqm(np.arange(1.0, 9.0)) == pytest.approx(4.5)  # mean of 3..6
    x = np.random.default_rng(0).normal(size=(3, 40))
    np.testing.assert_allclose(iqm(x, axis=1), stats.trim_mean(x, 0.25, axis=1))  # n a multiple of 4
    # Fractional ends: of 1..6, [1.5, 4.5) covers half of 2, all of 3 and 4, half of 5.
    assert iqm(np.array([6.0, 1, 2, 3, 4, 5])) == pytest.approx((0.5 * 2 + 3 + 4 + 0.5 * 5) / 3)
    assert iqm(np.array([1.0, 2.0, 3.0, 1000.0])) == pytest.approx(2.5)  # an outlier does not move it


def _world(n: int = 40, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    return score_world({"good": (0.8, 0.05), "bad": (0.2, 0.05)}, {"a": 10.0, "b": 100.0}, n=n, seed=seed)


def test_mean_equals_the_leaderboard_score_and_references_are_exact() -> None:
    world = _world()
    agg = aggregate_scores(world, expert="expert", random="random", n_resamples=500)
    scores = agg.scores.set_index("policy")
    for p in world:
        expected = normalized_score(
            [world[p]["a"], world[p]["b"]],
            [world["random"]["a"], world["random"]["b"]],
            [world["expert"]["a"], world["expert"]["b"]],
        ).mean
        assert scores.loc[p, "mean"] == pytest.approx(expected)
    assert scores.loc["expert", "mean"] == pytest.approx(1.0)
    assert scores.loc["expert", "mean_ci_low"] == scores.loc["expert", "mean_ci_high"] == pytest.approx(1.0)
    assert scores.loc["good", "iqm_ci_low"] < scores.loc["good", "iqm"] < scores.loc["good", "iqm_ci_high"]
    assert 0.75 < scores.loc["good", "iqm"] < 0.85 and 0.15 < scores.loc["bad", "iqm"] < 0.25
    assert (scores["n_runs"] == 80).all() and (scores["n_scenarios"] == 2).all()


def test_probability_of_improvement() -> None:
    world = _world()
    world["tie"] = {s: r.copy() for s, r in world["good"].items()}
    agg = aggregate_scores(world, expert="expert", random="random", n_resamples=500)
    pi = agg.improvement.set_index(["policy_x", "policy_y"])
    # Disjoint supports: certain, with a degenerate interval.
    assert pi.loc[("good", "bad"), "p_improvement"] == pytest.approx(1.0)
    assert pi.loc[("good", "bad"), "p_improvement_ci_low"] == pytest.approx(1.0)
    assert pi.loc[("bad", "good"), "p_improvement"] == pytest.approx(0.0)
    # Identical runs: ties count half.
    assert pi.loc[("good", "tie"), "p_improvement"] == pytest.approx(0.5)
    # Against a hand count on one scenario, P(X > Y) + P(Y > X) = 1 without ties.
    x, y = world["good"]["a"], world["expert"]["a"]
    only_a = {p: {"a": by["a"]} for p, by in world.items()}
    one = aggregate_scores(only_a, expert="expert", random="random", n_resamples=200).improvement
    one = one.set_index(["policy_x", "policy_y"])["p_improvement"]
    assert one[("good", "expert")] == pytest.approx(np.mean(x[:, None] > y[None, :]))
    assert one[("good", "expert")] + one[("expert", "good")] == pytest.approx(1.0)


def test_profiles_fall_from_one_to_zero_with_intervals_around_them() -> None:
    agg = aggregate_scores(_world(), expert="expert", random="random", n_resamples=500)
    for _, profile in agg.profiles.groupby("policy"):
        f = profile.sort_values("tau")["fraction"].to_numpy()
        assert np.all(np.diff(f) <= 0) and f[0] > 0.95 and f[-1] == 0.0
        assert (profile["fraction_ci_low"] <= profile["fraction"]).all()
        assert (profile["fraction"] <= profile["fraction_ci_high"]).all()
    good = agg.profiles[agg.profiles["policy"] == "good"]
    at_half = good.iloc[np.argmin(np.abs(good["tau"] - 0.5))]
    assert at_half["fraction"] == 1.0  # every run of "good" scores ~0.8


def test_iqm_interval_covers_the_truth() -> None:
    """Stratified-bootstrap IQM intervals on simulated worlds cover the true IQM of the score
    distribution near nominal, and are not vacuously wide."""
    truth = 0.8  # symmetric noise: the IQM of "good"'s scores is its mean, 0.8 of the scale
    hits, widths = 0, []
    for rep in range(60):
        agg = aggregate_scores(_world(n=30, seed=100 + rep), expert="expert", random="random", n_resamples=400)
        row = agg.scores.set_index("policy").loc["good"]
        hits += row["iqm_ci_low"] <= truth <= row["iqm_ci_high"]
        widths.append(row["iqm_ci_high"] - row["iqm_ci_low"])
    assert hits >= 51, hits  # 0.85 of 60: a bootstrap interval may under-cover a little at n = 30
    assert hits <= 60 and np.median(widths) < 0.1


def test_unfit_scenarios_and_bad_input() -> None:
    world = _world()
    del world["bad"]["b"]  # "bad" did not run on b (unfit)
    agg = aggregate_scores(world, expert="expert", random="random", n_resamples=100)
    assert agg.scores.set_index("policy").loc["bad", "n_scenarios"] == 1
    assert agg.improvement.set_index(["policy_x", "policy_y"]).loc[("good", "bad"), "n_scenarios"] == 1
    broken = _world()
    broken["good"]["a"] = broken["good"]["a"][:-1]
    with pytest.raises(ValueError, match="different numbers of seeds"):
        aggregate_scores(broken, expert="expert", random="random", n_resamples=10)
    flipped = _world()
    flipped["expert"], flipped["random"] = flipped["random"], flipped["expert"]
    with pytest.raises(ValueError, match="does not beat random"):
        aggregate_scores(flipped, expert="expert", random="random", n_resamples=10)


def test_returns_by_scenario_orders_by_seed() -> None:
    episodes = pd.DataFrame(
        {
            "scenario": ["s", "s", "s", "s"],
            "policy": ["p", "p", "q", "q"],
            "seed": [2, 1, 1, 2],
            "return": [20.0, 10.0, 1.0, 2.0],
        }
    )
    out = returns_by_scenario(episodes, ["p", "q"])
    np.testing.assert_array_equal(out["p"]["s"], [10.0, 20.0])
    np.testing.assert_array_equal(out["q"]["s"], [1.0, 2.0])
