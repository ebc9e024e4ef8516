"""Intervals that fit the quantity: binomial intervals for rates, checked by exact coverage
and at the edges."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from testbed.metrics import clones_mean_ci, mean_ci, rate_ci

RATES = [0.002, 0.005, 0.01, 0.02, 0.05, 0.2, 0.5, 0.8, 0.97, 0.995]


def test_zero_of_n_has_a_real_upper_bound() -> None:
    assert rate_ci(0, 100).low == 0.0 and rate_ci(0, 100).high == pytest.approx(0.036, abs=5e-4)
    assert rate_ci(0, 30).high == pytest.approx(0.116, abs=5e-4)
    assert rate_ci(30, 30).low == pytest.approx(1 - 0.116, abs=5e-4) and rate_ci(30, 30).high == 1.0
    assert rate_ci(6, 100).mean == 0.06
    # The bootstrap over 0/1 values, which this replaces for rates, collapses there.
    assert (mean_ci(np.zeros(100)).low, mean_ci(np.zeros(100)).high) == (0.0, 0.0)


def _bounds(n: int, method: str = "testbed") -> tuple[np.ndarray, np.ndarray]:
    """The 95% interval computed from every count k = 0..n."""
    if method == "testbed":
        cis = [rate_ci(k, n) for k in range(n + 1)]
    else:
        cis = [stats.binomtest(k, n).proportion_ci(method=method) for k in range(n + 1)]
    return np.array([c.low for c in cis]), np.array([c.high for c in cis])


def _coverage(n: int, p: float, bounds: tuple[np.ndarray, np.ndarray]) -> float:
    """Exact coverage: the probability, over k ~ Binomial(n, p), that the interval from k
    contains p."""
    low, high = bounds
    return float(stats.binom.pmf(np.arange(n + 1), n, p)[(low <= p) & (p <= high)].sum())


@pytest.mark.parametrize("n", [30, 100, 500])
def test_rate_intervals_never_cover_less_than_nominal(n: int) -> None:
    bounds = _bounds(n)
    assert min(_coverage(n, p, bounds) for p in RATES) >= 0.95 - 1e-9


def test_wilson_would_undercover_small_rates() -> None:
    """Why not Wilson: at a 1% rate over 100 episodes it covers 92%."""
    assert _coverage(100, 0.01, _bounds(100, "wilson")) == pytest.approx(0.921, abs=1e-3)


def test_simulated_coverage_with_known_truth() -> None:
    """The same on simulated crash counts: 1000 experiments of 100 episodes at a 6% rate."""
    low, high = _bounds(100)
    counts = np.random.default_rng(0).binomial(100, 0.06, 1000)
    assert np.mean((low[counts] <= 0.06) & (0.06 <= high[counts])) >= 0.93


@pytest.mark.parametrize(("k", "n"), [(-1, 10), (11, 10), (0, 0)])
def test_nonsense_counts_are_refused(k: int, n: int) -> None:
    with pytest.raises(ValueError):
        rate_ci(k, n)


def _simulate(rng: np.random.Generator, sd_train: float, sd_eval: float, sd_noise: float, t: int, e: int) -> np.ndarray:
    return rng.normal(0, sd_train, (t, 1)) + rng.normal(0, sd_eval, (1, e)) + rng.normal(0, sd_noise, (t, e))


@pytest.mark.parametrize(
    ("sd_train", "sd_eval", "sd_noise", "n_train", "n_eval"),
    [
        (1.0, 1.0, 1.0, 5, 100),  # every source matters
        (1.0, 0.0, 1.0, 5, 100),  # clones differ, seeds do not
        (0.0, 1.0, 1.0, 5, 100),  # seeds differ, clones do not
        (0.2, 3.0, 3.0, 5, 30),  # evaluation noise dominates, few episodes
        (2.0, 0.5, 0.5, 3, 200),  # training noise dominates, three clones
        (0.0, 0.0, 1.0, 5, 100),  # only episode noise
    ],
)
def test_mean_over_clones_covers_with_known_truth(
    sd_train: float, sd_eval: float, sd_noise: float, n_train: int, n_eval: int
) -> None:
    """1000 simulated experiments per setting; the true mean is 0."""
    rng = np.random.default_rng(1)
    hits = []
    for _ in range(1000):
        ci = clones_mean_ci(_simulate(rng, sd_train, sd_eval, sd_noise, n_train, n_eval))
        hits.append(ci.low <= 0.0 <= ci.high)
    assert np.mean(hits) >= 0.93


def test_a_bootstrap_over_five_clone_means_undercovers() -> None:
    """Why not the percentile bootstrap over clone means: with 5 training seeds it covers ~85%."""
    rng = np.random.default_rng(2)
    hits = []
    for _ in range(300):
        ci = mean_ci(_simulate(rng, 1.0, 0.0, 0.1, 5, 20).mean(axis=1))
        hits.append(ci.low <= 0.0 <= ci.high)
    assert np.mean(hits) < 0.9


def test_mean_over_clones_refuses_a_single_clone() -> None:
    with pytest.raises(ValueError):
        clones_mean_ci(np.zeros((1, 10)))
