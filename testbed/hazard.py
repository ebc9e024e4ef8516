"""Hazard ratios against time: Poisson regression of binned collision counts, with intervals
clustered by driver.

A constant hazard and compounding error differ in how a policy's collision rate moves with the
time it has driven, and the expert's own rate moves too (traffic, the scenario's start), so the
question is put as a *ratio*: does a policy's hazard grow relative to the expert's on the same
scenario and seeds? Each episode is cut into bins of decision steps; a row is one (episode,
bin) with its collision count y, the steps driven in it (its exposure) and the mean number of
vehicles in the window around the ego (``nearby_vehicles``, :mod:`testbed.recovery`'s
stationary traffic). The counts are modelled as Poisson with

    log E[y] = log(steps) + log(nearby) + x'beta,

the two logs an *offset* (a rate per vehicle-step: a bin driven among more cars, or for longer,
is expected to see proportionally more collisions), fitted by iteratively reweighted least
squares (:func:`fit_poisson`). Two models per policy group g, each on g's rows and the
reference's (the expert's) only:

- **per bin** (:func:`hazard_ratios`): ``alpha_b + theta_b [g]``, a cell per (group, bin);
  exp(theta_b) is the hazard ratio g / expert in bin b (the ratio of the two pooled rates);
- **trend** (:func:`hazard_trends`): ``alpha + beta s + gamma [g] + delta [g] s`` with
  ``s = (t - tbar) / 100``: the reference's log hazard linear in t (its shape bin by bin is
  the per-bin model's; per-bin baselines run off to infinity when the reference's few events
  and the group's fall in different bins), delta the slope of the log hazard ratio per 100
  decisions: delta > 0 is a hazard that grows relative to the expert's with the time driven
  (compounding), delta = 0 a constant ratio. A fit without a finite maximum gives NaN.

Intervals. Rows are not independent: a clone's episodes share its weights (one clone may be
bad everywhere), so the interval is cluster-robust, the sandwich ``B (sum_c s_c s_c') B`` with
``B`` the inverse Fisher information and ``s_c`` the score summed over cluster c, the driver
unit: a clone (its training seed), or, for a policy that is one fixed driver (the expert, the
iid-error control), the episode. Clusters are nested in groups; each group's clusters get the
small-sample factor G/(G-1) (CR1 within the group), and the 95% interval uses a Student t
quantile with Satterthwaite's degrees of freedom for the contrast (each group's share of the
variance on G - 1 degrees of freedom): with 5 clones a group has 4, where a normal quantile
would cover too rarely (Cameron and Miller 2015, "A practitioner's guide to cluster-robust
inference", sec. VI). The model-based (naive) standard error is reported beside it.

A bin in which g or the expert had no collision has no finite log ratio: its row carries the
counts and NaN. Rows with no steps, or no vehicle nearby, carry no exposure and are dropped.
numpy and pandas only (no statsmodels, no scipy.stats).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence

import numpy as np
import pandas as pd

CONFIDENCE = 0.95
TREND_PER = 100
"""The trend's slope is per this many decisions."""
TREND_COLUMNS = (
    "hr_trend", "hr_trend_ci_low", "hr_trend_ci_high", "hr_trend_se", "hr_trend_se_naive", "hr_trend_df",
    "hr_overall", "hr_overall_ci_low", "hr_overall_ci_high",
)  # fmt: skip
"""The columns of :func:`hazard_trends` after ``group``."""
RATIO_COLUMNS = (
    "group", "step_lo", "step_hi", "events", "steps", "vehicle_steps", "clusters", "ref_events", "ref_steps",
    "ref_vehicle_steps", "ref_clusters", "hazard_ratio", "hazard_ratio_ci_low", "hazard_ratio_ci_high",
    "log_hr_se", "log_hr_se_naive", "df",
)  # fmt: skip
"""The columns of :func:`hazard_ratios`."""


def bin_rows(
    event_steps: Sequence[Sequence[int]],
    lengths: Sequence[int],
    *,
    bin_steps: int,
    nearby: Sequence[Sequence[float] | np.ndarray] | None = None,
) -> pd.DataFrame:
    """One row per (episode, bin of ``bin_steps`` decisions) the episode reached.

    Args:
        event_steps: per episode, the (0-based) steps of its events (collisions).
        lengths: per episode, its number of steps.
        bin_steps: decisions per bin (bin k holds steps ``k * bin_steps`` to ``(k + 1) * bin_steps - 1``).
        nearby: per episode, the vehicles near the ego at each step (length ``lengths[e]``);
            None: no count (the ``nearby`` column is NaN and the offset is the steps alone).

    Returns:
        Columns ``episode`` (index into the inputs), ``step_lo``, ``step_hi``, ``t`` (the mean
        step index driven in the bin), ``steps``, ``events``, ``nearby`` (mean over the bin's steps).
    """
    if bin_steps < 1 or len(event_steps) != len(lengths) or (nearby is not None and len(nearby) != len(lengths)):
        raise ValueError("need one length (and nearby series) per episode and bin_steps >= 1")
    rows = []
    for e, (events, n) in enumerate(zip(event_steps, lengths)):
        steps = np.asarray(events, dtype=np.int64)
        counts = None if nearby is None else np.asarray(nearby[e], dtype=np.float64)
        if counts is not None and len(counts) != n:
            raise ValueError(f"episode {e}: {len(counts)} nearby counts for {n} steps")
        for lo in range(0, int(n), bin_steps):
            hi = min(lo + bin_steps, int(n))
            rows.append(
                {
                    "episode": e,
                    "step_lo": lo,
                    "step_hi": lo + bin_steps,
                    "t": (lo + hi - 1) / 2,
                    "steps": hi - lo,
                    "events": int(((steps >= lo) & (steps < hi)).sum()),
                    "nearby": float(counts[lo:hi].mean()) if counts is not None else np.nan,
                }
            )
    return pd.DataFrame(rows, columns=["episode", "step_lo", "step_hi", "t", "steps", "events", "nearby"])


def steps_from_text(text: object) -> list[int]:
    """Integers from space-separated text (``"3 17"``; NaN or empty: none)."""
    return [int(s) for s in text.split()] if isinstance(text, str) else []


def episode_bins(episodes: pd.DataFrame, units: Sequence[str], *, bin_steps: int) -> pd.DataFrame:
    """:func:`bin_rows` of a per-episode table with ``length``, ``collision_steps`` and
    ``nearby`` as text (:func:`testbed.recovery.cost_columns`; an empty ``nearby`` anywhere: no
    count), each row with the ``cluster`` ``units[e]`` of its episode."""
    counted = all(isinstance(c, str) and c for c in episodes["nearby"])
    rows = bin_rows(
        [steps_from_text(c) for c in episodes["collision_steps"]],
        episodes["length"].tolist(),
        bin_steps=bin_steps,
        nearby=[steps_from_text(c) for c in episodes["nearby"]] if counted else None,
    )
    return rows.assign(cluster=np.asarray(units, dtype=object)[rows["episode"].to_numpy(dtype=np.int64)])


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile (p > 0.5) of Student's t with ``df`` > 0 degrees of freedom (the normal's
    for infinite ``df``): Newton's method on the distribution function (the density integrated
    by Simpson's rule) from the normal quantile, which lies below it (the function is concave
    there, so the steps approach the root from below)."""
    if not 0.5 < p < 1 or not df > 0:
        raise ValueError(f"need 0.5 < p < 1 and df > 0, got p={p}, df={df}")
    x = statistics.NormalDist().inv_cdf(p)
    if math.isinf(df) or df > 1e7:
        return x
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def density(v: np.ndarray) -> np.ndarray:
        return np.exp(log_c - (df + 1) / 2 * np.log1p(v**2 / df))

    for _ in range(100):
        grid = np.linspace(0.0, x, 2001)
        f = density(grid)
        cdf = 0.5 + x / 6000 * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum())
        step = (p - cdf) / f[-1]
        x += step
        if abs(step) < 1e-10 * x:
            break
    return float(x)


@dataclasses.dataclass(frozen=True)
class PoissonFit:
    """A Poisson regression fitted by :func:`fit_poisson`."""

    coef: np.ndarray
    """Coefficients (k,)."""
    cov_naive: np.ndarray
    """Model-based covariance (k, k): the inverse Fisher information."""
    strata_meat: tuple[np.ndarray, ...]
    """Per stratum, its clusters' score outer products summed, times G/(G-1) (k, k)."""
    strata_clusters: tuple[int, ...]
    """Per stratum, its number of clusters G."""
    iterations: int
    """IRLS iterations run."""

    @property
    def cov_robust(self) -> np.ndarray:
        """The cluster-robust (sandwich) covariance (k, k)."""
        meat = np.sum(self.strata_meat, axis=0)
        return self.cov_naive @ meat @ self.cov_naive

    def contrast(self, c: np.ndarray, *, confidence: float = CONFIDENCE) -> dict[str, float]:
        """``c' beta`` with its cluster-robust interval: ``estimate``, ``ci_low``, ``ci_high``,
        ``se``, ``se_naive`` and ``df`` (Satterthwaite over the strata, as the module docstring
        says; NaN interval when a stratum has a single cluster)."""
        c = np.asarray(c, dtype=np.float64)
        a = self.cov_naive @ c
        shares = np.array([a @ m @ a for m in self.strata_meat])
        g = np.array(self.strata_clusters, dtype=np.float64)
        var = float(shares.sum())
        estimate = float(c @ self.coef)
        out = {"estimate": estimate, "se": math.sqrt(var), "se_naive": math.sqrt(float(c @ a))}
        if (g < 2).any() or var <= 0:
            return {**out, "ci_low": np.nan, "ci_high": np.nan, "df": np.nan}
        df = var**2 / float(np.sum(shares**2 / (g - 1)))
        half = t_quantile(0.5 + confidence / 2, df) * out["se"]
        return {**out, "ci_low": estimate - half, "ci_high": estimate + half, "df": df}


def fit_poisson(
    x: np.ndarray,
    y: np.ndarray,
    offset: np.ndarray,
    clusters: Sequence[object],
    *,
    strata: Sequence[object] | None = None,
    max_iter: int = 100,
    tol: float = 1e-10,
) -> PoissonFit:
    """Poisson regression ``log E[y] = offset + x beta`` by IRLS, with the per-stratum cluster
    sums of scores a cluster-robust covariance needs.

    Args:
        x: design (n, k), full column rank.
        y: counts (n,).
        offset: (n,), e.g. log exposure.
        clusters: cluster label of each row (n,); a cluster lies within one stratum.
        strata: stratum of each row (n,) (e.g. the policy group), each corrected by G/(G-1)
            on its own; None: one stratum.

    Raises:
        ValueError: shapes, a rank-deficient design, or no convergence (a coefficient running
            off to infinity: a cell of the design without events).
    """
    x, y, offset = (np.asarray(a, dtype=np.float64) for a in (x, y, offset))
    n, k = x.shape
    if y.shape != (n,) or offset.shape != (n,) or len(clusters) != n:
        raise ValueError("need one count, offset and cluster per row of the design")
    if np.linalg.matrix_rank(x) < k:
        raise ValueError("the design is rank deficient")
    mu = (y + y.mean()) / 2 + 1e-3
    eta = np.log(mu)
    beta, iterations = np.zeros(k), 0
    while True:
        iterations += 1
        z = eta - offset + (y - mu) / mu
        w = np.sqrt(mu)
        new, *_ = np.linalg.lstsq(x * w[:, None], z * w, rcond=None)
        eta = np.clip(offset + x @ new, -700, 700)
        mu = np.exp(eta)
        done = np.max(np.abs(new - beta)) < tol * (1 + np.max(np.abs(new)))
        beta = new
        if done:
            break
        if iterations == max_iter:
            raise ValueError(f"IRLS did not converge in {max_iter} iterations (a cell without events?)")
    info = x.T @ (x * mu[:, None])
    bread = np.linalg.inv(info)
    scores = x * (y - mu)[:, None]
    codes = pd.factorize(pd.Series(list(clusters), dtype=object))[0]
    stratum = np.zeros(n, dtype=np.int64) if strata is None else pd.factorize(pd.Series(list(strata), dtype=object))[0]
    meats, counts = [], []
    for s in range(stratum.max() + 1):
        in_s = stratum == s
        ids = np.unique(codes[in_s])
        sums = np.zeros((len(ids), k))
        np.add.at(sums, np.searchsorted(ids, codes[in_s]), scores[in_s])
        g = len(ids)
        meats.append(sums.T @ sums * (g / (g - 1) if g > 1 else 1.0))
        counts.append(g)
    return PoissonFit(beta, bread, tuple(meats), tuple(counts), iterations)


def _offset(rows: pd.DataFrame) -> np.ndarray:
    nearby = rows["nearby"].to_numpy(dtype=np.float64)
    log_nearby = np.where(np.isnan(nearby), 0.0, np.log(np.where(np.isnan(nearby), 1.0, nearby)))
    return np.log(rows["steps"].to_numpy(dtype=np.float64)) + log_nearby


def _exposed(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows with exposure: steps driven and (where counted) a vehicle nearby."""
    return rows[(rows["steps"] > 0) & ~(rows["nearby"] <= 0)]


def _pairs(rows: pd.DataFrame, reference: str) -> list[tuple[str, pd.DataFrame]]:
    rows = _exposed(rows)
    groups = [g for g in dict.fromkeys(rows["group"]) if g != reference]
    return [(g, rows[rows["group"].isin([g, reference])].reset_index(drop=True)) for g in groups]


def _cells(pair: pd.DataFrame, is_g: np.ndarray) -> dict[int, dict[str, float]]:
    """Per bin: the group's and the reference's (``ref_*``) events, steps, vehicle-steps and clusters."""
    vehicle_steps = pair["steps"] * pair["nearby"].fillna(1.0)
    frame = pair.assign(side=np.where(is_g, "", "ref_"), vehicle_steps=vehicle_steps)
    totals = frame.groupby(["step_lo", "side"]).agg(
        events=("events", "sum"),
        steps=("steps", "sum"),
        vehicle_steps=("vehicle_steps", "sum"),
        clusters=("cluster", "nunique"),
    )
    cells: dict[int, dict[str, float]] = {}
    for b in sorted(set(pair["step_lo"])):
        cell: dict[str, float] = {}
        for side in ("", "ref_"):
            t = totals.loc[(b, side)] if (b, side) in totals.index else None
            for name in ("events", "steps", "vehicle_steps", "clusters"):
                value = 0 if t is None else t[name]
                cell[side + name] = float(value) if name == "vehicle_steps" else int(value)
        cells[int(b)] = cell
    return cells


def hazard_ratios(rows: pd.DataFrame, *, reference: str = "expert", confidence: float = CONFIDENCE) -> pd.DataFrame:
    """The hazard ratio of every group to ``reference`` in every bin (the per-bin model).

    Args:
        rows: :func:`bin_rows` rows with ``group`` and ``cluster`` (the driver unit).

    Returns:
        Per group (other than the reference) and bin: ``group``, ``step_lo``, ``step_hi``, the
        group's and the reference's ``events``, ``steps``, ``vehicle_steps`` and ``clusters``
        (``ref_*``), ``hazard_ratio`` with its interval, ``log_hr_se`` (cluster-robust),
        ``log_hr_se_naive`` and ``df``; NaN where either side had no event.
    """
    out = []
    for g, pair in _pairs(rows, reference):
        is_g = (pair["group"] == g).to_numpy()
        width = int((pair["step_hi"] - pair["step_lo"]).iloc[0])
        cells = _cells(pair, is_g)
        bins = list(cells)
        fitted = [b for b in bins if cells[b]["events"] > 0 and cells[b]["ref_events"] > 0]
        estimates: dict[int, dict[str, float]] = {}
        if fitted:
            keep = pair["step_lo"].isin(fitted).to_numpy()
            sub, sub_g = pair[keep], is_g[keep]
            cell = np.searchsorted(fitted, sub["step_lo"].to_numpy())
            x = np.zeros((len(sub), 2 * len(fitted)))
            x[np.arange(len(sub)), cell] = 1.0
            x[np.arange(len(sub)), len(fitted) + cell] = sub_g
            fit = fit_poisson(x, sub["events"], _offset(sub), sub["cluster"].tolist(), strata=sub["group"].tolist())
            for i, b in enumerate(fitted):
                estimates[b] = fit.contrast(np.eye(2 * len(fitted))[len(fitted) + i], confidence=confidence)
        for b in bins:
            e = estimates.get(b)
            out.append(
                {
                    "group": g,
                    "step_lo": int(b),
                    "step_hi": int(b + width),
                    **cells[b],
                    "hazard_ratio": math.exp(e["estimate"]) if e else np.nan,
                    "hazard_ratio_ci_low": math.exp(e["ci_low"]) if e else np.nan,  # exp(NaN) is NaN
                    "hazard_ratio_ci_high": math.exp(e["ci_high"]) if e else np.nan,
                    "log_hr_se": e["se"] if e else np.nan,
                    "log_hr_se_naive": e["se_naive"] if e else np.nan,
                    "df": e["df"] if e else np.nan,
                }
            )
    return pd.DataFrame(out, columns=RATIO_COLUMNS)


def hazard_trends(
    rows: pd.DataFrame, *, reference: str = "expert", per: int = TREND_PER, confidence: float = CONFIDENCE
) -> pd.DataFrame:
    """The slope over time of every group's log hazard ratio to ``reference`` (the trend model).

    Args:
        rows: :func:`bin_rows` rows with ``group`` and ``cluster``.
        per: decisions the slope is per.

    Returns:
        Per group: ``group``, ``hr_trend`` (slope of the log hazard ratio per ``per`` decisions)
        with its interval, ``hr_trend_se`` (cluster-robust), ``hr_trend_se_naive``,
        ``hr_trend_df``, ``hr_overall`` (exp(gamma): the ratio at the mean step of the fitted
        rows) with its interval; NaN where the group or the reference had events in fewer than
        two bins (no finite maximum: an expert that never collides has no ratio to be taken).
    """
    out = []
    for g, pair in _pairs(rows, reference):
        row: dict[str, object] = {"group": g, **dict.fromkeys(TREND_COLUMNS, np.nan)}
        is_g = (pair["group"] == g).to_numpy()
        if _event_bins(pair[is_g]) < 2 or _event_bins(pair[~is_g]) < 2:
            out.append(row)  # a slope needs events at two times on each side (else no finite fit)
            continue
        # The reference's log hazard linear in t (a bin-by-bin baseline runs off to infinity
        # when the reference's few events and the group's fall in different bins).
        t = (pair["t"].to_numpy() - pair["t"].mean()) / per
        x = np.column_stack([np.ones(len(pair)), t, is_g, is_g * t])
        try:
            fit = fit_poisson(x, pair["events"], _offset(pair), pair["cluster"].tolist(), strata=pair["group"].tolist())
        except ValueError:  # no finite maximum (separation): no trend to report
            out.append(row)
            continue
        slope = fit.contrast(np.eye(x.shape[1])[-1], confidence=confidence)
        level = fit.contrast(np.eye(x.shape[1])[-2], confidence=confidence)
        row.update(
            hr_trend=slope["estimate"],
            hr_trend_ci_low=slope["ci_low"],
            hr_trend_ci_high=slope["ci_high"],
            hr_trend_se=slope["se"],
            hr_trend_se_naive=slope["se_naive"],
            hr_trend_df=slope["df"],
            hr_overall=math.exp(level["estimate"]),
            hr_overall_ci_low=math.exp(level["ci_low"]),  # exp(NaN) is NaN
            hr_overall_ci_high=math.exp(level["ci_high"]),
        )
        out.append(row)
    return pd.DataFrame(out, columns=["group", *TREND_COLUMNS])


SLOPE_COLUMNS = ("h_slope", "h_slope_ci_low", "h_slope_ci_high", "h_slope_se", "h_slope_se_naive", "h_slope_df")
"""The columns of :func:`hazard_slopes` after ``group``."""


def hazard_slopes(rows: pd.DataFrame, *, per: int = TREND_PER, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Every group's own hazard against time: ``log E[y] = offset + alpha + beta (t - tbar) / per``
    on its rows alone (the offset as everywhere: steps and vehicles nearby), beta the slope of the
    log hazard per ``per`` decisions with the cluster-robust interval. On stationary traffic a
    constant hazard has beta = 0; compounding gives beta > 0.

    Returns:
        Per group: ``group`` and :data:`SLOPE_COLUMNS`; NaN with events in fewer than two bins.
    """
    out = []
    for g, own in _exposed(rows).groupby("group", sort=False):
        row: dict[str, object] = {"group": g, **dict.fromkeys(SLOPE_COLUMNS, np.nan)}
        if _event_bins(own) >= 2:
            t = (own["t"].to_numpy() - own["t"].mean()) / per
            x = np.column_stack([np.ones(len(own)), t])
            try:
                fit = fit_poisson(x, own["events"], _offset(own), own["cluster"].tolist())
            except ValueError:
                fit = None
            if fit is not None:
                c = fit.contrast(np.array([0.0, 1.0]), confidence=confidence)
                row.update(
                    zip(SLOPE_COLUMNS, (c["estimate"], c["ci_low"], c["ci_high"], c["se"], c["se_naive"], c["df"]))
                )
        out.append(row)
    return pd.DataFrame(out, columns=["group", *SLOPE_COLUMNS])


def hazard_tables(binned: pd.DataFrame, references: Sequence[str], *, by: str) -> dict[str, pd.DataFrame]:
    """Per value of ``by`` (e.g. the scenario variant): ``slopes`` (:func:`hazard_slopes`),
    ``trends`` and ``ratios`` (:func:`hazard_trends`, :func:`hazard_ratios`) to each of
    ``references``, with the ``by`` column and (trends, ratios) a ``reference`` column."""
    parts = list(binned.groupby(by, sort=False))
    pairs = [(v, b, r) for v, b in parts for r in references]
    return {
        "slopes": pd.concat([hazard_slopes(b).assign(**{by: v}) for v, b in parts], ignore_index=True),
        "trends": pd.concat(
            [hazard_trends(b, reference=r).assign(**{by: v}, reference=r) for v, b, r in pairs], ignore_index=True
        ),
        "ratios": pd.concat(
            [hazard_ratios(b, reference=r).assign(**{by: v}, reference=r) for v, b, r in pairs], ignore_index=True
        ),
    }


def _event_bins(rows: pd.DataFrame) -> int:
    """Bins in which ``rows`` have at least one event."""
    return int(rows.loc[rows["events"] > 0, "step_lo"].nunique())


def density_rows(rows: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Vehicles near the ego per bin: per group of ``by`` and bin, ``nearby`` (mean over the
    steps driven), ``nearby_sd`` (spread of the episodes' bin means), ``nearby_min`` and
    ``nearby_max`` (of those means), ``episodes`` and ``steps``."""
    out = []
    for keys, g in rows.groupby([*by, "step_lo", "step_hi"], sort=True):
        w, v = g["steps"].to_numpy(dtype=np.float64), g["nearby"].to_numpy(dtype=np.float64)
        out.append(
            {
                **dict(zip([*by, "step_lo", "step_hi"], keys)),
                "nearby": float(np.sum(w * v) / w.sum()),
                "nearby_sd": float(np.std(v, ddof=1)) if len(v) > 1 else np.nan,
                "nearby_min": float(v.min()),
                "nearby_max": float(v.max()),
                "episodes": len(g),
                "steps": int(w.sum()),
            }
        )
    return pd.DataFrame(out)
