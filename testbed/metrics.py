"""Per-episode driving metrics, summaries and 95% confidence intervals.

Statistics live here; :mod:`testbed.plotting` only draws what this module computes.
Intervals fit the quantity:

- a mean over episodes: percentile bootstrap over episodes (``scipy.stats.bootstrap``, fixed
  generator seed so that a table is reproducible to the last digit), :func:`mean_ci`;
- a rate (crash rate, P(twin error > 1 m), a survival end point): Clopper-Pearson,
  :func:`rate_ci`;
- a mean over clones (training seeds x shared evaluation seeds), a difference of two methods'
  clones and a normalized score: variance components with Student's t,
  :func:`clones_mean_ci`, :func:`combination_ci`, :func:`normalized_score_ci`; a rate over
  clones: :func:`clones_rate_ci`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from imitation.data.types import TrajectoryWithRew

METRICS: dict[str, str] = {
    "return": "Episode return (sum of highway-env rewards)",
    "length": "Decisions taken before the episode ended",
    "crashed": "1 if the ego vehicle crashed, else 0 (its mean is the crash rate)",
    "mean_speed_mps": "Mean ego speed over the episode's decisions [m/s]",
    "distance_m": "Path length driven [m]",
    "lane_changes": "Completed lane changes (lane id changed within a road segment)",
    "right_lane_fraction": "Fraction of decisions ending in the rightmost lane",
}
"""Column name -> meaning, for every per-episode metric of every scenario."""

COST_METRICS: dict[str, str] = {
    "collisions": "Decision steps with a collision (recoverable-cost scenarios: each is charged, the episode goes on)",
    "near_misses": "Decision steps ending with a time headway below the scenario's near_miss_headway_s",
}
"""Column name -> meaning, for the metrics of scenarios with per-step costs (``testbed.recovery``)."""

RATES: frozenset[str] = frozenset({"crashed"})
"""Metrics that are 0/1 per episode: their mean is a rate and gets :func:`rate_ci`."""

CONFIDENCE = 0.95
N_RESAMPLES = 10_000
BOOTSTRAP_SEED = 12345


def episode_metrics(trajectory: TrajectoryWithRew) -> dict[str, float]:
    """Driving metrics of one episode.

    Args:
        trajectory: an episode recorded by :func:`testbed.rollout.run_episode` (its infos
            carry ``speed``, ``crashed``, ``distance_m``, ``lane_change``, ``rightmost``).

    Returns:
        One value per key of :data:`METRICS`.
    """
    assert trajectory.infos is not None
    infos = list(trajectory.infos)
    n = len(trajectory.acts)
    if n == 0 or len(infos) != n:
        raise ValueError("trajectory needs one info dict per action and at least one step")
    costs = {}
    if "collision" in infos[-1]:  # a scenario with per-step costs (testbed.recovery)
        costs = {
            "collisions": float(sum(int(i["collision"]) for i in infos)),
            "near_misses": float(sum(int(i["near_miss"]) for i in infos)),
        }
    return {
        "return": float(np.sum(trajectory.rews, dtype=np.float64)),
        "length": float(n),
        # With recoverable collisions: crashed at least once.
        "crashed": float(bool(costs["collisions"]) if costs else bool(infos[-1]["crashed"])),
        "mean_speed_mps": float(np.mean([i["speed"] for i in infos])),
        "distance_m": float(np.sum([i["distance_m"] for i in infos])),
        "lane_changes": float(np.sum([bool(i["lane_change"]) for i in infos])),
        "right_lane_fraction": float(np.mean([bool(i["rightmost"]) for i in infos])),
        **costs,
    }


@dataclasses.dataclass(frozen=True)
class Interval:
    """A mean and its confidence interval."""

    mean: float
    """The point estimate."""
    low: float
    """Lower end of the interval."""
    high: float
    """Upper end of the interval."""

    def format(self, digits: int = 2) -> str:
        """``mean [low, high]``."""
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"

    def columns(self, name: str) -> dict[str, float]:
        """The table columns ``name``, ``name_ci_low`` and ``name_ci_high``."""
        return {name: self.mean, f"{name}_ci_low": self.low, f"{name}_ci_high": self.high}

    @classmethod
    def from_columns(cls, row: Mapping[str, Any], name: str) -> Interval:
        """Inverse of :meth:`columns`: the interval stored in ``row`` under ``name``."""
        return cls(row[name], row[f"{name}_ci_low"], row[f"{name}_ci_high"])


NAN_INTERVAL = Interval(float("nan"), float("nan"), float("nan"))
"""A missing estimate (a column left empty in a table)."""


def mean_ci(values: Sequence[float] | np.ndarray, *, confidence: float = CONFIDENCE) -> Interval:
    """Mean with a bootstrap confidence interval.

    A sample with no spread (all episodes crash-free, say) has a degenerate interval at its
    mean; a single value likewise. Empty input is an error.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no values")
    mean = float(x.mean())
    if x.size == 1 or np.all(x == x[0]):
        return Interval(mean, mean, mean)
    from scipy import stats

    res = stats.bootstrap(
        (x,),
        np.mean,
        confidence_level=confidence,
        n_resamples=N_RESAMPLES,
        method="percentile",
        random_state=np.random.default_rng(BOOTSTRAP_SEED),
        vectorized=True,
    )
    return Interval(mean, float(res.confidence_interval.low), float(res.confidence_interval.high))


def rate_ci(successes: int, n: int, *, confidence: float = CONFIDENCE) -> Interval:
    """A rate (crash rate, P(twin error > 1 m), ...) with its Clopper-Pearson interval.

    A bootstrap of 0/1 values collapses to ``[0, 0]`` when no episode crashed; a binomial
    interval does not (0/100 gives [0, 0.036], 0/30 gives [0, 0.116]). Clopper-Pearson rather
    than Wilson: Wilson's coverage dips below nominal for rates near 0 or 1, the rates a good
    driver's crash rate has (exactly 0.921 at p = 0.01, n = 100 and 0.860 at p = 0.005,
    n = 30), whereas Clopper-Pearson's never falls below it (``tests/test_intervals.py``
    computes both exactly). Computed by ``scipy.stats.binomtest``.

    Raises:
        ValueError: ``n < 1`` or ``successes`` outside ``0..n``.
    """
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"a rate needs 0 <= successes <= n and n >= 1, got {successes}/{n}")
    from scipy import stats

    ci = stats.binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="exact")
    return Interval(successes / n, float(ci.low), float(ci.high))


def clones_mean_ci(values: Sequence[Sequence[float]] | np.ndarray, *, confidence: float = CONFIDENCE) -> Interval:
    """The mean of a metric over clones and evaluation episodes, with an interval that carries
    both sources of noise: which training seeds the clones had, and which evaluation seeds
    they were all run on.

    ``values[t][e]`` is the metric of the clone trained with seed ``t`` on evaluation seed
    ``e`` (every clone on the same seeds). Model: ``y = mu + a_t + b_e + noise`` with random
    training-seed, evaluation-seed and residual effects. The variance of the grand mean,
    ``var(a)/T + var(b)/E + var(noise)/(T E)``, is estimated from the two-way ANOVA mean squares
    as ``(MS_train + MS_eval) / (T E)`` (``MS_eval`` only where it exceeds the residual mean
    square, i.e. where evaluation seeds differ at all), and the interval uses Student's t with
    Satterthwaite's degrees of freedom. With 5 training seeds that t quantile matters: a
    percentile bootstrap over 5 clone means covers about 85% where it claims 95%; this
    interval covered 94-97% in every setting of ``tests/test_intervals.py`` (simulated data
    with known truth, 2000 experiments each).

    Raises:
        ValueError: fewer than 2 training seeds, no evaluation seed, or not a full table.
    """
    y = np.asarray(values, dtype=np.float64)
    if y.ndim != 2 or y.shape[0] < 2 or y.shape[1] < 1 or not np.isfinite(y).all():
        raise ValueError(f"need a finite table of >= 2 training seeds x >= 1 evaluation seeds, got shape {y.shape}")
    from scipy import stats

    n_train, n_eval = y.shape
    grand = float(y.mean())
    by_train, by_eval = y.mean(axis=1), y.mean(axis=0)
    ms_train = n_eval * float(((by_train - grand) ** 2).sum()) / (n_train - 1)
    parts = [(ms_train / (n_train * n_eval), n_train - 1)]
    if n_eval > 1:
        ms_eval = n_train * float(((by_eval - grand) ** 2).sum()) / (n_eval - 1)
        resid = y - by_train[:, None] - by_eval[None, :] + grand
        ms_resid = float((resid**2).sum()) / ((n_train - 1) * (n_eval - 1))
        if ms_eval > ms_resid:
            # Not subtracting MS_resid (the unbiased estimate would) overstates the variance
            # by var(noise) / (T E), a small price for a stable, never-negative estimate.
            parts.append((ms_eval / (n_train * n_eval), n_eval - 1))
    var = sum(c for c, _ in parts)
    if var <= 0:
        return Interval(grand, grand, grand)
    # Satterthwaite's degrees of freedom, but never more than the training seeds' own when
    # they carry most of the variance: with 5 clones Satterthwaite alone covers ~93%.
    df = var**2 / sum(c**2 / d for c, d in parts)
    if parts[0][0] >= var / 2:
        df = float(n_train - 1)
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * var**0.5
    return Interval(grand, grand - half, grand + half)


def clone_table(frame: pd.DataFrame, column: str) -> np.ndarray:
    """``column`` as the table the clone intervals take: training seeds (``train_seed``, rows)
    x evaluation seeds (``seed``, columns), both sorted."""
    wide = frame.pivot(index="train_seed", columns="seed", values=column)
    return wide.sort_index().sort_index(axis=1).to_numpy(float)


def clones_rate_ci(values: Sequence[Sequence[float]] | np.ndarray, *, confidence: float = CONFIDENCE) -> Interval:
    """A rate (0/1 per episode) averaged over clones: the hull of :func:`clones_mean_ci` (training
    and evaluation noise) and the Clopper-Pearson interval of the pooled count (which keeps the
    edges honest: no clone crashing in 5 x 200 episodes is [0, 0.004], not [0, 0]).

    Raises:
        ValueError: values other than 0 and 1, or a table :func:`clones_mean_ci` refuses.
    """
    y = np.asarray(values, dtype=np.float64)
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("a rate needs 0/1 values per episode")
    hierarchical = clones_mean_ci(y, confidence=confidence)
    pooled = rate_ci(int(y.sum()), int(y.size), confidence=confidence)
    low, high = min(hierarchical.low, pooled.low), max(hierarchical.high, pooled.high)
    return Interval(hierarchical.mean, max(low, 0.0), min(high, 1.0))  # a rate stays in [0, 1]


def combination_ci(
    tables: Sequence[np.ndarray],
    weights: Sequence[float],
    *,
    confidence: float = CONFIDENCE,
) -> Interval:
    """``sum_i w_i * mean(tables[i])`` with an interval carrying training and evaluation noise.

    ``tables[i][t][e]`` is the metric of policy ``i``'s clone ``t`` on evaluation seed ``e``;
    every table has the same evaluation seeds in the same order (a single row: one policy with
    no training seeds, such as the expert or a baseline, or one clone whose training noise is
    then not measured). The variance of the estimate is the sum of the training parts
    ``w_i^2 var(row means of i) / T_i`` (independent training seeds per policy) and the
    evaluation part ``var_e(sum_i w_i column mean_i[e]) / E`` (the seeds are shared, so their
    effect cancels in a difference as far as the policies agree on it); the residual noise is
    counted in both, a small overstatement. Student's t with Satterthwaite's degrees of
    freedom, limited to the training parts' own where they carry at least half the variance
    (as in :func:`clones_mean_ci`). Used for the paired difference of two methods' clones
    (``weights = (1, -1)``) and, through the delta method, for normalized scores
    (:func:`normalized_score_ci`); ``tests/test_intervals.py`` checks both cover >= 0.93 on
    simulated data with known truth.

    Raises:
        ValueError: no table, a weight per table missing, tables on different numbers of
            evaluation seeds, or non-finite values.
    """
    ys = [np.atleast_2d(np.asarray(t, dtype=np.float64)) for t in tables]
    if not ys or len(ys) != len(weights):
        raise ValueError("need one weight per table and at least one table")
    n_eval = ys[0].shape[1]
    if any(y.ndim != 2 or y.shape[1] != n_eval or y.shape[0] < 1 for y in ys) or n_eval < 1:
        raise ValueError(f"tables must share their evaluation seeds, got shapes {[y.shape for y in ys]}")
    if not all(np.isfinite(y).all() for y in ys):
        raise ValueError("non-finite values")
    from scipy import stats

    estimate = float(sum(w * y.mean() for w, y in zip(weights, ys)))
    train_parts = [
        (w**2 * float(y.mean(axis=1).var(ddof=1)) / y.shape[0], y.shape[0] - 1)
        for w, y in zip(weights, ys)
        if y.shape[0] > 1
    ]
    parts = list(train_parts)
    if n_eval > 1:
        combined = sum(w * y.mean(axis=0) for w, y in zip(weights, ys))
        parts.append((float(np.var(combined, ddof=1)) / n_eval, n_eval - 1))
    parts = [(c, d) for c, d in parts if c > 0]
    var = sum(c for c, _ in parts)
    if var <= 0:
        return Interval(estimate, estimate, estimate)
    df = var**2 / sum(c**2 / d for c, d in parts)
    train_var = sum(c for c, _ in train_parts)
    if train_parts and train_var >= var / 2:
        df = min(df, train_var**2 / sum(c**2 / d for c, d in train_parts if c > 0))
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * var**0.5
    return Interval(estimate, estimate - half, estimate + half)


def normalized_score_ci(
    clones: np.ndarray, random: np.ndarray, expert: np.ndarray, *, confidence: float = CONFIDENCE
) -> Interval:
    """``(mean(clones) - mean(random)) / (mean(expert) - mean(random))`` with an interval that
    carries the noise of all three means: the clones' training and evaluation seeds, and the
    expert's and random's episodes on the same seeds (delta method over
    :func:`combination_ci`; each argument is a table of training seeds x evaluation seeds, a
    single row for the references). NaN when the expert does not beat random."""
    c, r, x = (np.atleast_2d(np.asarray(a, dtype=np.float64)) for a in (clones, random, expert))
    m_c, m_r, m_x = c.mean(), r.mean(), x.mean()
    scale = m_x - m_r
    if scale <= 0:
        return NAN_INTERVAL
    weights = (1 / scale, (m_c - m_x) / scale**2, -(m_c - m_r) / scale**2)
    ci = combination_ci([c, r, x], weights, confidence=confidence)
    point = float((m_c - m_r) / scale)
    # The linearisation is centred on the ratio itself (its constant terms cancel).
    return Interval(point, point - (ci.mean - ci.low), point + (ci.high - ci.mean))


def episode_ci(metric: str, values: Sequence[float] | np.ndarray) -> Interval:
    """The interval that fits a per-episode metric: :func:`rate_ci` for the 0/1 metrics of
    :data:`RATES`, :func:`mean_ci` for the others."""
    if metric in RATES:
        x = np.asarray(values, dtype=np.float64)
        if not np.isin(x, (0.0, 1.0)).all():
            raise ValueError(f"{metric} must be 0 or 1 per episode")
        return rate_ci(int(x.sum()), int(x.size))
    return mean_ci(values)


def paired_difference(a: Sequence[float], b: Sequence[float], *, confidence: float = CONFIDENCE) -> Interval:
    """Mean of ``a - b`` over paired episodes (same seeds), with its bootstrap CI."""
    a_, b_ = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a_.shape != b_.shape:
        raise ValueError(f"paired samples differ in size: {a_.shape} vs {b_.shape}")
    return mean_ci(a_ - b_, confidence=confidence)


def episodes_table(records: Iterable[tuple[str, int, TrajectoryWithRew]]) -> pd.DataFrame:
    """One row per episode: ``policy``, ``seed`` and every metric of :data:`METRICS` (and of
    :data:`COST_METRICS` in scenarios with per-step costs)."""
    rows = [{"policy": policy, "seed": int(seed), **episode_metrics(traj)} for policy, seed, traj in records]
    costs = [m for m in COST_METRICS if any(m in r for r in rows)]
    return pd.DataFrame(rows, columns=["policy", "seed", *METRICS, *costs])


def summarize(episodes: pd.DataFrame, *, reference: str | None = None) -> pd.DataFrame:
    """Per-policy means with 95% CIs (rates: :func:`rate_ci`), and the paired return
    difference to ``reference``.

    Args:
        episodes: output of :func:`episodes_table`; policies must share their seeds for the
            paired difference.
        reference: policy the differences are taken against (default: the first policy).

    Returns:
        One row per policy (in order of first appearance) with columns ``n_episodes``,
        ``<metric>``, ``<metric>_ci_low``, ``<metric>_ci_high`` for each metric, and
        ``return_diff``/``return_diff_ci_low``/``return_diff_ci_high`` (policy minus
        reference, paired by seed).
    """
    policies = list(dict.fromkeys(episodes["policy"]))
    if not policies:
        raise ValueError("no episodes")
    reference = reference or policies[0]
    ref = episodes[episodes["policy"] == reference].set_index("seed")["return"]
    rows = []
    for policy in policies:
        df = episodes[episodes["policy"] == policy]
        row: dict[str, float | str | int] = {"policy": policy, "n_episodes": len(df)}
        for metric in [*METRICS, *(m for m in COST_METRICS if m in episodes)]:
            row.update(episode_ci(metric, df[metric].to_numpy()).columns(metric))
        mine = df.set_index("seed")["return"]
        if set(mine.index) != set(ref.index):
            raise ValueError(f"policy {policy!r} was not run on the same seeds as {reference!r}")
        diff = paired_difference(mine.loc[ref.index].to_numpy(), ref.to_numpy())
        row.update(diff.columns("return_diff"))
        rows.append(row)
    return pd.DataFrame(rows)


def format_summary(summary: pd.DataFrame, *, columns: Mapping[str, str] | None = None) -> str:
    """A fixed-width text table of a :func:`summarize` result: ``mean [95% CI]`` per cell."""
    columns = columns or {
        "return": "return",
        "crashed": "crash rate",
        "mean_speed_mps": "speed [m/s]",
        "distance_m": "distance [m]",
        "right_lane_fraction": "right lane",
        "return_diff": "return vs first (paired)",
    }
    header = ["policy", "n"] + list(columns.values())
    body = []
    for _, row in summary.iterrows():
        cells = [str(row["policy"]), str(int(row["n_episodes"]))]
        for key in columns:
            digits = 1 if key in ("distance_m",) else 2
            cells.append(Interval.from_columns(row, key).format(digits))
        body.append(cells)
    return fixed_width(header, body)


def fixed_width(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """Left-aligned text table with a dashed rule under the header."""
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --- Ratio estimators and learning curves (experiments/realizability.py) ---------------------


def ratio_ci(numerators: Sequence[float] | np.ndarray, counts: Sequence[float] | np.ndarray) -> Interval:
    """``sum(numerators) / sum(counts)`` over clusters (episodes), with a percentile bootstrap
    that resamples whole clusters (``scipy.stats.bootstrap``, paired).

    A pooled rate over an episode's steps is a ratio estimator: steps of one episode are not
    independent, so resampling steps would give too narrow an interval; resampling episodes does
    not. ``numerators[i]`` may be a difference (the per-episode sum of ``on - off``).

    One clone's ratio over its episodes. :func:`testbed.drift.pooled_scores` estimates the same
    point for several clones at once (linearised per-episode scores for
    :func:`clones_mean_ci`); its intervals are not this bootstrap's, so each experiment keeps the
    one its committed numbers were made with.

    Raises:
        ValueError: no clusters, mismatched shapes or a non-positive total count.
    """
    num = np.asarray(numerators, dtype=np.float64)
    den = np.asarray(counts, dtype=np.float64)
    if num.ndim != 1 or num.shape != den.shape or num.size == 0 or den.sum() <= 0 or (den < 0).any():
        raise ValueError(f"need matching 1-D numerators and counts with a positive total, got {num.shape}, {den.shape}")
    point = float(num.sum() / den.sum())
    if num.size == 1:
        return Interval(point, point, point)
    from scipy import stats

    def statistic(n: np.ndarray, d: np.ndarray, axis: int = -1) -> np.ndarray:
        return n.sum(axis=axis) / d.sum(axis=axis)

    res = stats.bootstrap(
        (num, den),
        statistic,
        paired=True,
        vectorized=True,
        confidence_level=CONFIDENCE,
        n_resamples=N_RESAMPLES,
        method="percentile",
        random_state=np.random.default_rng(BOOTSTRAP_SEED),
    )
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    # A resampling distribution with no spread (every episode the same ratio): the point itself.
    return Interval(point, min(low, point), max(high, point))


@dataclasses.dataclass(frozen=True)
class ValScore:
    """One clone's predictions on a fixed validation set, per validation episode."""

    n_episodes: int
    """Demonstration episodes the clone trained on."""
    correct: np.ndarray
    """Labels it predicted right, per validation episode (E,)."""
    labels: np.ndarray
    """Labels per validation episode (E,)."""

    def __post_init__(self) -> None:
        if self.correct.shape != self.labels.shape or self.correct.ndim != 1 or (self.correct > self.labels).any():
            raise ValueError("correct and labels must be matching (E,) arrays with correct <= labels")

    @property
    def accuracy(self) -> Interval:
        """Pooled accuracy with its Clopper-Pearson interval."""
        return rate_ci(int(self.correct.sum()), int(self.labels.sum()))


def learning_curve_gaps(scores: Sequence[ValScore], n_actual: int) -> dict[str, Any]:
    """The learning-curve terms of a clone's shortfall (realizability and estimation).

    ``acc_sat`` is the best pooled validation accuracy of any size (ties: the smallest size),
    ``realizability_gap = 1 - acc_sat``, ``estimation_gap = acc_sat - acc(n_actual)`` (bootstrap
    over validation episodes, :func:`ratio_ci`, the two clones scored on the same labels),
    ``last_gain`` the accuracy gained between the two largest sizes (same interval) and
    ``saturated`` whether that gain's interval reaches down to 0 (no detectable gain from the
    last increase in data).

    Raises:
        ValueError: no size ``n_actual``, or scores on different validation sets.
    """
    by_n = {s.n_episodes: s for s in scores}
    if n_actual not in by_n:
        raise ValueError(f"no clone of {n_actual} episodes among {sorted(by_n)}")
    labels = by_n[n_actual].labels
    if any(not np.array_equal(s.labels, labels) for s in scores):
        raise ValueError("every clone must be scored on the same validation set")
    sizes = sorted(by_n)
    acc = {n: by_n[n].accuracy for n in sizes}
    n_sat = max(sizes, key=lambda n: (acc[n].mean, -n))
    sat, actual = acc[n_sat], acc[n_actual]
    out: dict[str, Any] = {"n_saturated": n_sat, "n_actual": n_actual}
    out.update(sat.columns("acc_sat"))
    out.update(actual.columns("acc_actual"))
    out.update(Interval(1 - sat.mean, 1 - sat.high, 1 - sat.low).columns("realizability_gap"))
    out.update(ratio_ci(by_n[n_sat].correct - by_n[n_actual].correct, labels).columns("estimation_gap"))
    if len(sizes) >= 2:
        gain = ratio_ci(by_n[sizes[-1]].correct - by_n[sizes[-2]].correct, labels)
        out.update(gain.columns("last_gain"))
        out["saturated"] = bool(gain.low <= 0)
    else:
        out.update(NAN_INTERVAL.columns("last_gain"))
        out["saturated"] = False
    return out


def markdown_intervals(
    table: pd.DataFrame, intervals: Mapping[str, str], *, plain: Sequence[str] = (), digits: int = 2
) -> str:
    """A markdown table: the ``plain`` columns as they are, then ``mean [low, high]`` of each
    interval column (``intervals``: column -> header)."""
    lines = [
        "| " + " | ".join([*plain, *intervals.values()]) + " |",
        "|---" * (len(plain) + len(intervals)) + "|",
    ]
    for _, r in table.iterrows():
        cells = [str(r[c]) for c in plain] + [Interval.from_columns(r, k).format(digits) for k in intervals]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def percentile_columns(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    """``ci_low``/``ci_high``: the 95% percentile interval of bootstrap ``values`` (non-finite
    ones dropped; NaN when none is left)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    low, high = np.percentile(v, [2.5, 97.5]) if v.size else (np.nan, np.nan)
    return {"ci_low": float(low), "ci_high": float(high)}


def spearman_within_groups(
    units: pd.DataFrame,
    x: str,
    targets: Sequence[str],
    *,
    by: str,
    label: str,
    n_label: str,
    mean_label: str,
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Spearman's rho between ``x`` and each of ``targets`` across the ``units`` (rows) within
    each group of ``by``, and its mean over the groups: correlations within, e.g., a data size,
    not across sizes.

    Intervals are percentile bootstraps over units within the group (stratified by group for
    the mean), drawn from one generator seeded ``seed`` in a fixed order (per target: the mean's
    resamples, then each group's). A resample with one distinct value has no rho: it is left
    out of the mean and of the interval.

    Returns:
        One row per target and group, then the target's mean row (``by`` = ``mean_label``):
        ``label`` (the target), ``by``, ``n_label`` (units), ``spearman_rho``, ``ci_low``,
        ``ci_high``.
    """
    import warnings

    from scipy import stats

    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for target in targets:
        groups = [g for _, g in units.groupby(by, sort=True)]

        def rho(frames: list[pd.DataFrame], target: str = target) -> float:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return float(np.nanmean([stats.spearmanr(f[x], f[target]).statistic for f in frames]))

        def resample(g: pd.DataFrame) -> pd.DataFrame:
            return g.iloc[rng.integers(len(g), size=len(g))]

        boots = [rho([resample(g) for g in groups]) for _ in range(n_boot)]
        for key, g in zip(sorted(units[by].unique()), groups):
            b = [rho([resample(g)]) for _ in range(n_boot)]
            rows.append(
                {label: target, by: int(key), n_label: len(g), "spearman_rho": rho([g]), **percentile_columns(b)}
            )
        rows.append(
            {
                label: target,
                by: mean_label,
                n_label: len(units),
                "spearman_rho": rho(groups),
                **percentile_columns(boots),
            }
        )
    return pd.DataFrame(rows)


def policy_table(episodes: pd.DataFrame, policies: Sequence[str], metric: str, seeds: Sequence[int]) -> np.ndarray:
    """``metric`` of each policy (rows, in ``policies`` order) on each evaluation seed (columns,
    in ``seeds`` order), from an :func:`episodes_table`: the table :func:`clones_mean_ci` takes
    when the policies are clones."""
    wide = episodes[episodes["policy"].isin(policies)].pivot(index="policy", columns="seed", values=metric)
    return wide.loc[list(policies), list(seeds)].to_numpy(dtype=float)


def clones_ci(metric: str, table: np.ndarray) -> Interval:
    """A per-episode metric averaged over clones (``table``: clones x shared evaluation seeds,
    :func:`policy_table`): :func:`clones_mean_ci` (a rate of :data:`RATES`:
    :func:`clones_rate_ci`) over several clones, :func:`episode_ci` over one clone's episodes."""
    y = np.asarray(table, dtype=np.float64)
    if len(y) == 1:
        return episode_ci(metric, y[0])
    return clones_rate_ci(y) if metric in RATES else clones_mean_ci(y)


def outcome_columns(episodes: pd.DataFrame) -> dict[str, float]:
    """``return`` (bootstrap over episodes) and ``crash_rate`` (Clopper-Pearson) of one
    policy's episodes (columns ``return`` and ``crashed``), each with its 95% interval."""
    return {
        **mean_ci(episodes["return"]).columns("return"),
        **episode_ci("crashed", episodes["crashed"]).columns("crash_rate"),
    }


def clones_normalized_score_ci(
    clones: Sequence[np.ndarray],
    random: Sequence[np.ndarray],
    expert: Sequence[np.ndarray],
    *,
    confidence: float = CONFIDENCE,
) -> Interval:
    """The mean over scenarios of a set of clones' normalized scores
    ``(mean(clones_k) - mean(random_k)) / (mean(expert_k) - mean(random_k))``, with an interval
    over training and evaluation seeds.

    ``clones[k]`` is scenario ``k``'s table of training seeds x evaluation seeds (the same clones
    in the same row order in every scenario: a clone's training seed is one unit across the
    scenarios it drives); ``random[k]`` and ``expert[k]`` are the references' values on the same
    evaluation seeds. Every scenario has the same number of evaluation seeds. Each scenario's
    ratio is linearised as in :func:`normalized_score_ci`; the linearised tables are averaged
    over scenarios seed by seed (episode ``i`` of every scenario is one evaluation unit, so the
    scenarios' evaluation noise adds up and any dependence between them is carried) and
    :func:`combination_ci` gives the interval: training parts from the clones' rows, evaluation
    part from the columns. With one scenario it is :func:`normalized_score_ci`. NaN when the
    expert does not beat random on some scenario.

    Raises:
        ValueError: no scenario, or tables of different shapes.
    """
    cs = [np.atleast_2d(np.asarray(a, dtype=np.float64)) for a in clones]
    rs = [np.asarray(a, dtype=np.float64).ravel() for a in random]
    xs = [np.asarray(a, dtype=np.float64).ravel() for a in expert]
    if not cs or not len(cs) == len(rs) == len(xs):
        raise ValueError("need the clones' table and both references for every scenario")
    shape = cs[0].shape
    if any(c.shape != shape for c in cs) or any(a.shape != (shape[1],) for a in rs + xs):
        raise ValueError(f"every scenario needs the same clones x seeds table, got {[c.shape for c in cs]}")
    linearised, points = np.zeros(shape), []
    for c, r, x in zip(cs, rs, xs):
        m_c, m_r, m_x = c.mean(), r.mean(), x.mean()
        scale = m_x - m_r
        if scale <= 0:
            return NAN_INTERVAL
        weights = (1 / scale, (m_c - m_x) / scale**2, -(m_c - m_r) / scale**2)
        linearised += (weights[0] * c + weights[1] * r[None, :] + weights[2] * x[None, :]) / len(cs)
        points.append(float((m_c - m_r) / scale))
    ci = combination_ci([linearised], [1.0], confidence=confidence)
    point = float(np.mean(points))
    return Interval(point, point - (ci.mean - ci.low), point + (ci.high - ci.mean))
