"""A leaderboard row made of several clones (training seeds): its aggregates pool the clones'
episodes as runs (:mod:`testbed.aggregate`), on data with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import score_world

from testbed.aggregate import aggregate_scores
from testbed.leaderboard import CloneGroup
from testbed.policies import PolicySpec


def _world(seed: int = 0, n: int = 24) -> dict[str, dict[str, np.ndarray]]:
    return score_world({"a": (0.5, 0.2), "b": (0.4, 0.2)}, {"x": 10.0, "y": 50.0}, n=n, seed=seed)


def test_identical_clones_aggregate_like_the_single_policy() -> None:
    world = _world()
    one = aggregate_scores(world, expert="expert", random="random", n_resamples=300)
    tripled = {**world, "a": {s: np.vstack([r, r, r]) for s, r in world["a"].items()}}
    three = aggregate_scores(tripled, expert="expert", random="random", n_resamples=300)
    # Three copies of the same runs: the same IQM, mean, median and intervals (the clone draws
    # cannot matter), three times the runs; P(improvement) is the same too.
    a1, a3 = one.scores.set_index("policy").loc["a"], three.scores.set_index("policy").loc["a"]
    assert a3["n_runs"] == 3 * a1["n_runs"] == 3 * 2 * 24
    pd.testing.assert_series_equal(a1.drop("n_runs"), a3.drop("n_runs"), check_exact=False, rtol=1e-12)
    np.testing.assert_allclose(three.improvement["p_improvement"], one.improvement["p_improvement"], atol=1e-12)
    np.testing.assert_allclose(three.improvement["p_improvement_ci_low"], one.improvement["p_improvement_ci_low"])
    # Every other policy's numbers do not depend on the clones being there.
    others = ["expert", "random", "b"]
    pd.testing.assert_frame_equal(
        one.scores.set_index("policy").loc[others], three.scores.set_index("policy").loc[others]
    )
    # One clone's (1, seeds) table is the policy itself.
    single = {**world, "a": {s: r[None, :] for s, r in world["a"].items()}}
    pd.testing.assert_frame_equal(
        aggregate_scores(single, expert="expert", random="random", n_resamples=300).scores, one.scores
    )


def test_clones_that_differ_widen_the_intervals() -> None:
    world = _world(seed=1)
    offsets = np.array([-0.15, 0.0, 0.15])[:, None]  # training-seed effects (normalized units)
    spread = {s: r[None, :] + offsets * world["expert"][s].mean() for s, r in world["a"].items()}
    same = aggregate_scores(
        {**world, "a": {s: np.vstack([r] * 3) for s, r in world["a"].items()}},
        expert="expert",
        random="random",
        n_resamples=500,
    )
    apart = aggregate_scores({**world, "a": spread}, expert="expert", random="random", n_resamples=500)
    a_same, a_apart = (agg.scores.set_index("policy").loc["a"] for agg in (same, apart))
    assert a_apart["mean"] == pytest.approx(a_same["mean"])
    assert a_apart["mean_ci_high"] - a_apart["mean_ci_low"] > 1.5 * (a_same["mean_ci_high"] - a_same["mean_ci_low"])


def test_bad_clone_tables() -> None:
    world = _world()
    mixed = {**world, "a": {"x": np.vstack([world["a"]["x"]] * 2), "y": np.vstack([world["a"]["y"]] * 3)}}
    with pytest.raises(ValueError, match="same clones"):
        aggregate_scores(mixed, expert="expert", random="random", n_resamples=10)
    with pytest.raises(ValueError, match="reference"):
        references = {**world, "expert": {s: np.vstack([r, r]) for s, r in world["expert"].items()}}
        aggregate_scores(references, expert="expert", random="random", n_resamples=10)
    with pytest.raises(ValueError, match="one training seed per clone"):
        CloneGroup("clones", (PolicySpec("idle"),), (0, 1))
