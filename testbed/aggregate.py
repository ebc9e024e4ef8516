"""Aggregate scores across scenarios and seeds, as rliable reports them (Agarwal et al. 2021,
"Deep reinforcement learning at the edge of the statistical precipice").

A **run** is one (scenario, seed) episode of a policy; its score is normalized per scenario
between the references, ``(return - mean return of random) / (mean return of the expert -
mean return of random)``, so that runs of different scenarios can be pooled. From the pooled
runs of each policy:

- the **interquartile mean** (IQM: the mean of the middle 50% of runs), robust to the few
  crashed or outlying episodes that move a mean, and more efficient than the median;
- the mean and the median;
- the **performance profile**: the fraction of runs whose score exceeds tau, for a grid of tau;
- the **probability of improvement** P(X > Y) of one policy over another: per scenario the
  probability that a run of X beats a run of Y (ties count half; the Mann-Whitney U statistic
  over n x m pairs, on returns: scale-free), averaged over the scenarios both ran.

Intervals: 95% percentile intervals from a **stratified bootstrap**: within each scenario the
seeds are resampled, jointly for every policy and both references (the policies drove the same
seeds, and the references' means are recomputed in every resample, so the normalization's own
noise is carried), independently across scenarios. A policy that did not run on a scenario
(unfit for its spaces) is aggregated over the scenarios it ran on (``n_scenarios``).

**Clones of one policy** (the same recipe trained with several training seeds) count as one
policy whose runs are every clone's episodes: ``T`` clones on ``n`` seeds give ``T n`` runs per
scenario. Each resample then also draws the clones, with replacement, once for every scenario
(the same clones drove them all), so the intervals carry the training seeds' noise as well as
the seeds'; with as few as 3 clones such a bootstrap understates that part (a percentile
interval over few units is narrow), and the Student's t intervals of
:func:`testbed.metrics.clones_normalized_score_ci` are the ones to read for the mean.

A small implementation of our own: rliable's repository is archived, and its functions take
fixed normalized score matrices, not references that are resampled with the runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from testbed.metrics import BOOTSTRAP_SEED, CONFIDENCE, N_RESAMPLES

N_TAUS = 101
"""Points of the performance profiles' tau grid."""


@dataclasses.dataclass(frozen=True)
class Aggregates:
    """Aggregate scores of every policy (see the module docstring)."""

    scores: pd.DataFrame
    """One row per policy: ``policy``, ``n_scenarios``, ``n_runs``, and ``iqm``, ``mean``,
    ``median`` each with ``_ci_low``/``_ci_high``."""
    profiles: pd.DataFrame
    """One row per (policy, tau): ``fraction`` of runs with normalized score > tau, with CI."""
    improvement: pd.DataFrame
    """One row per ordered pair of policies (X, Y), X != Y: ``p_improvement`` = P(X > Y) with
    CI and ``n_scenarios`` (those both ran)."""


def iqm(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Interquartile mean along ``axis``: the mean of the values between the 25th and 75th
    percentiles, fractional end points weighted (rliable's ``scipy.stats.trim_mean(x, 0.25)``
    drops whole values instead; they agree when the count is a multiple of 4)."""
    x = np.sort(np.asarray(values, dtype=np.float64), axis=axis)
    x = np.moveaxis(x, axis, -1)
    n = x.shape[-1]
    if n == 0:
        raise ValueError("iqm of no values")
    # Weight of each sorted value: the length of its [i, i + 1) cell inside [n/4, 3n/4].
    edges = np.arange(n + 1, dtype=np.float64)
    weights = np.clip(np.minimum(edges[1:], 0.75 * n) - np.maximum(edges[:-1], 0.25 * n), 0.0, None)
    return (x * weights).sum(axis=-1) / weights.sum()


def _percentile_ci(samples: np.ndarray, point: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of bootstrap ``samples`` (resamples on axis 0); a statistic that does
    not vary (a reference's mean) gets its point as both ends."""
    alpha = (1.0 - CONFIDENCE) / 2.0
    low, high = np.quantile(samples, [alpha, 1.0 - alpha], axis=0)
    constant = np.ptp(samples, axis=0) <= 1e-12 * np.maximum(1.0, np.abs(point))  # rounding only
    return np.where(constant, point, low), np.where(constant, point, high)


def aggregate_scores(
    returns: Mapping[str, Mapping[str, np.ndarray]],
    *,
    expert: str,
    random: str,
    taus: np.ndarray | None = None,
    n_resamples: int = N_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Aggregates:
    """IQM, mean, median, performance profiles and probabilities of improvement, with
    stratified-bootstrap intervals.

    Args:
        returns: ``returns[policy][scenario]``: episode returns ordered by seed; within a
            scenario every policy drove the same seeds (equal lengths). Must hold ``expert``
            and ``random`` on every scenario any policy ran on. A policy made of clones gives
            a (clones, seeds) table instead, the same clones in every scenario (see the module
            docstring).
        expert, random: the reference policies (normalized score 1 and 0 in the mean).
        taus: the performance profiles' thresholds (default: :data:`N_TAUS` points spanning
            every policy's run scores).
        n_resamples: bootstrap resamples.
        seed: of the bootstrap's generator (fixed: the same data give the same intervals).

    Raises:
        ValueError: a scenario without both references, unequal lengths within a scenario, or
            an expert that does not beat random on mean return there (no scale).
    """
    scenarios = list(dict.fromkeys(s for by_scenario in returns.values() for s in by_scenario))
    # One clone's (1, seeds) table is a policy of one row.
    data = {p: {s: _squeezed(np.asarray(r, dtype=np.float64)) for s, r in by.items()} for p, by in returns.items()}
    for name in scenarios:
        if name not in returns.get(expert, {}) or name not in returns.get(random, {}):
            raise ValueError(f"scenario {name!r} lacks a reference policy's returns")
        lengths = {by[name].shape[-1] for by in data.values() if name in by}
        if len(lengths) != 1 or 0 in lengths:
            raise ValueError(f"scenario {name!r}: policies drove different numbers of seeds {sorted(lengths)}")
        if np.mean(returns[expert][name]) <= np.mean(returns[random][name]):
            raise ValueError(f"scenario {name!r}: the expert does not beat random, so there is no scale")
    rows = {p: {r.shape[0] if r.ndim == 2 else 1 for r in by.values()} for p, by in data.items()}
    if any(len(n) != 1 for n in rows.values()) or rows[expert] != {1} or rows[random] != {1}:
        raise ValueError("a policy of clones needs the same clones in every scenario, and a reference one row")
    policies = list(data)
    rng = np.random.default_rng(seed)
    # Row 0: the data themselves; rows 1..: the resamples, one index draw per scenario.
    index = {
        s: np.vstack([np.arange(n := len(data[expert][s])), rng.integers(0, n, size=(n_resamples, n))])
        for s in scenarios
    }
    # Clones are drawn after the seeds (the seeds' draws do not depend on whether there are clones).
    clones = {
        p: np.vstack([np.arange(t), rng.integers(0, t, size=(n_resamples, t))]) for p, (t,) in rows.items() if t > 1
    }

    def run_scores(policy: str) -> np.ndarray:
        """(1 + n_resamples, n_runs) normalized scores of ``policy``'s runs, scenarios pooled."""
        parts = []
        for s in (s for s in scenarios if s in data[policy]):
            idx = index[s]
            low = data[random][s][idx].mean(axis=1, keepdims=True)
            high = data[expert][s][idx].mean(axis=1, keepdims=True)
            runs = data[policy][s]
            if policy in clones:  # (1 + n_resamples, clones, seeds): the drawn clones on the drawn seeds
                runs = runs[clones[policy][:, :, None], idx[:, None, :]].reshape(len(idx), -1)
            else:
                runs = runs[idx]
            parts.append((runs - low) / (high - low))
        return np.concatenate(parts, axis=1)

    pooled = {p: run_scores(p) for p in policies}
    # How often each seed is drawn, per resample, as a fraction: (1 + n_resamples, n).
    weights = {s: _frequencies(idx) for s, idx in index.items()}
    clone_weights = {p: _frequencies(draws) for p, draws in clones.items()}
    if taus is None:
        every = np.concatenate([pooled[p][0] for p in policies])
        taus = np.linspace(every.min(), every.max(), N_TAUS)

    score_rows, profile_rows = [], []
    for p in policies:
        s = pooled[p]
        row: dict[str, Any] = {
            "policy": p,
            "n_scenarios": sum(1 for name in scenarios if name in data[p]),
            "n_runs": s.shape[1],
        }
        for name, statistic in (("iqm", iqm(s, axis=1)), ("mean", s.mean(axis=1)), ("median", np.median(s, axis=1))):
            low, high = _percentile_ci(statistic[1:], statistic[0])
            row.update({name: float(statistic[0]), f"{name}_ci_low": float(low), f"{name}_ci_high": float(high)})
        score_rows.append(row)
        fractions = np.stack([(s > tau).mean(axis=1) for tau in taus], axis=1)  # (1 + B, n_taus)
        low, high = _percentile_ci(fractions[1:], fractions[0])
        profile_rows += [
            {
                "policy": p,
                "tau": float(t),
                "fraction": float(f),
                "fraction_ci_low": float(lo),
                "fraction_ci_high": float(hi),
            }
            for t, f, lo, hi in zip(taus, fractions[0], low, high)
        ]

    improvement_rows = []
    for x in policies:
        for y in policies:
            if x == y:
                continue
            shared = [s for s in scenarios if s in data[x] and s in data[y]]
            if not shared:
                continue
            if x in clones or y in clones:
                by_clone = (clone_weights.get(x), clone_weights.get(y))
                p = np.mean([_p_greater_clones(data[x][s], data[y][s], weights[s], *by_clone) for s in shared], axis=0)
            else:
                p = np.mean([_p_greater(data[x][s], data[y][s], weights[s]) for s in shared], axis=0)
            low, high = _percentile_ci(p[1:], p[0])
            improvement_rows.append(
                {
                    "policy_x": x,
                    "policy_y": y,
                    "n_scenarios": len(shared),
                    "p_improvement": float(p[0]),
                    "p_improvement_ci_low": float(low),
                    "p_improvement_ci_high": float(high),
                }
            )
    return Aggregates(
        scores=pd.DataFrame(score_rows), profiles=pd.DataFrame(profile_rows), improvement=pd.DataFrame(improvement_rows)
    )


def _p_greater(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """P(a run of X beats a run of Y), ties counting half, for each resample.

    A resample that takes seed i ``c_i`` times has the U statistic over its n x n pairs
    ``w @ C @ w``, with ``C[i, j] = [x_i > y_j] + [x_i = y_j] / 2`` and ``w = c / n`` (a row of
    ``weights``): no pair is formed per resample.
    """
    wins = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
    return np.einsum("ri,ij,rj->r", weights, wins, weights)


def _squeezed(returns: np.ndarray) -> np.ndarray:
    """A (1, seeds) table as the seeds' vector; anything else as it is."""
    return returns[0] if returns.ndim == 2 and returns.shape[0] == 1 else returns


def _frequencies(draws: np.ndarray) -> np.ndarray:
    """How often each of ``n`` units is drawn in each row of ``draws`` (rows x n indices), as a
    fraction: rows x n."""
    return (draws[:, :, None] == np.arange(draws.shape[1])).sum(axis=1) / draws.shape[1]


def _p_greater_clones(
    x: np.ndarray, y: np.ndarray, weights: np.ndarray, x_clones: np.ndarray | None, y_clones: np.ndarray | None
) -> np.ndarray:
    """:func:`_p_greater` where X or Y is clones (a clones x seeds table): every run of X against
    every run of Y, the clones weighted by how often each resample drew them (``*_clones``:
    resamples x clones fractions; None for a policy of one row)."""
    x2, y2 = np.atleast_2d(x), np.atleast_2d(y)
    ones = np.ones((len(weights), 1))
    u = ones if x_clones is None else x_clones
    v = ones if y_clones is None else y_clones
    a, b = x2[:, :, None, None], y2[None, None, :, :]
    wins = (a > b) + 0.5 * (a == b)  # (clones of X, seeds, clones of Y, seeds)
    return np.einsum("ra,ri,aibj,rb,rj->r", u, weights, wins, v, weights, optimize=True)


def returns_by_scenario(episodes: pd.DataFrame, policies: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
    """``returns[policy][scenario]`` ordered by seed, from a leaderboard's ``episodes`` table
    (columns ``scenario``, ``policy``, ``seed``, ``return``), for the scenarios each ran."""
    out: dict[str, dict[str, np.ndarray]] = {p: {} for p in policies}
    for (scenario, policy), group in episodes.groupby(["scenario", "policy"], sort=False):
        if policy in out:
            out[str(policy)][str(scenario)] = group.sort_values("seed")["return"].to_numpy(dtype=np.float64)
    return out
