"""Compounding-error measures: twin rollouts, on-policy error audit, survival.

Behavioral cloning learns on the expert's state distribution but drives on its own; small
errors take it to states the expert never showed, where it errs more (Ross & Bagnell 2010:
BC's cost can grow as T^2 * eps with horizon T). These measures make that visible:

- **Twin rollouts.** The expert and the policy start from the same seed (identical initial
  scene). Until their first differing action the two runs are identical; after it we track
  the ego position error (longitudinal and lateral in the expert's heading frame), speed
  error and lane mismatch per step.
- **On-policy audit.** While the policy drives, the expert labels every state it visits:
  ``eps_on`` is the disagreement on the policy's own states. ``eps_off`` is the policy's
  disagreement on the expert's states (the expert drives, the policy labels) — the
  open-loop error a validation set measures. ``eps_on > eps_off`` is covariate shift.
- **Survival.** Kaplan-Meier fraction of episodes without a crash by each step.

Both runs of a twin come from one call each to the harness: the policy driving with the
expert labelling, and the expert driving with the policy labelling.

**Continuous actions** (Box action spaces) have no "same action". There the per-step
disagreement is the *action error* ``|a_policy - a_expert| / (high - low)`` averaged over the
action's components (0 = identical, 1 = opposite ends of the range), so ``eps_on`` and
``eps_off`` are mean normalised action errors rather than rates of differing actions; a
twin's first disagreement is the first step whose error exceeds
:data:`CONTINUOUS_TOLERANCE`. The discrete measures are unchanged.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from testbed.metrics import CONFIDENCE, NAN_INTERVAL, Interval, fixed_width, mean_ci, rate_ci, ratio_ci
from testbed.plotting import plot_drift
from testbed.policies import PolicySpec
from testbed.rollout import EpisodeRecord, RolloutPool
from testbed.scenarios import Scenario, describe_spaces

DIVERGENCE_THRESHOLD_M = 1.0
"""Position error [m] past which the twins count as diverged."""

CONTINUOUS_TOLERANCE = 0.02
"""Normalised action error (fraction of the action range, averaged over components) above
which two continuous actions count as different for ``first_disagreement_step``; 0.02 of
highway-fast-continuous's ranges is 0.2 m/s^2 of acceleration or 0.6 deg of steering."""


def action_error(a: np.ndarray, b: np.ndarray, action_range: np.ndarray | None = None) -> np.ndarray:
    """Per-step difference of two action sequences of equal length.

    Discrete actions (shape (T,)): 0/1, 1 where they differ. Continuous actions (shape
    (T, act_dim)): ``mean_i |a_i - b_i| / action_range_i`` in [0, 1].

    Args:
        a: actions (T,) or (T, act_dim).
        b: actions of the same shape.
        action_range: per-component ``high - low`` of the Box (default 2, highway-env's
            [-1, 1]); ignored for discrete actions.
    """
    a_, b_ = np.asarray(a), np.asarray(b)
    if a_.ndim == 1:
        return (a_ != b_).astype(float)
    scale = np.full(a_.shape[1:], 2.0) if action_range is None else np.asarray(action_range, dtype=float)
    return np.mean(np.abs(a_.astype(float) - b_.astype(float)) / scale, axis=tuple(range(1, a_.ndim)))


def _positions(record: EpisodeRecord) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    infos = list(record.infos)
    xy = np.array([[i["x"], i["y"]] for i in infos], dtype=float).reshape(-1, 2)
    speed = np.array([i["speed"] for i in infos], dtype=float)
    heading = np.array([i["heading"] for i in infos], dtype=float)
    lane = np.array([i["lane"] for i in infos], dtype=int)
    return xy, speed, heading, lane


def twin_steps(policy: EpisodeRecord, expert: EpisodeRecord) -> pd.DataFrame:
    """Per-step differences between a policy run and the expert run from the same seed.

    Rows cover the steps both runs reached (step ``k`` is the state after ``k`` decisions,
    ``k >= 1``).

    Returns:
        Columns ``step``, ``position_error_m``, ``longitudinal_error_m`` (signed, positive when
        the policy is ahead along the expert's heading), ``lateral_error_m`` (signed, positive
        to the expert's right in highway-env's y-down frame), ``speed_error_mps`` (policy minus
        expert) and ``lane_mismatch`` (0/1).
    """
    if policy.seed != expert.seed:
        raise ValueError(f"twins must share a seed: {policy.seed} vs {expert.seed}")
    pxy, pspeed, _, plane = _positions(policy)
    exy, espeed, eheading, elane = _positions(expert)
    n = min(len(pxy), len(exy))
    d = pxy[:n] - exy[:n]
    cos, sin = np.cos(eheading[:n]), np.sin(eheading[:n])
    return pd.DataFrame(
        {
            "step": np.arange(1, n + 1),
            "position_error_m": np.hypot(d[:, 0], d[:, 1]),
            "longitudinal_error_m": d[:, 0] * cos + d[:, 1] * sin,
            "lateral_error_m": -d[:, 0] * sin + d[:, 1] * cos,
            "speed_error_mps": pspeed[:n] - espeed[:n],
            "lane_mismatch": (plane[:n] != elane[:n]).astype(float),
        }
    )


def first_index(mask: np.ndarray) -> float:
    """1-based index of the first true entry, or NaN when there is none."""
    hits = np.flatnonzero(mask)
    return float(hits[0] + 1) if hits.size else float("nan")


def twin_episode(
    policy: EpisodeRecord,
    expert: EpisodeRecord,
    *,
    threshold_m: float = DIVERGENCE_THRESHOLD_M,
    action_range: np.ndarray | None = None,
) -> dict[str, float]:
    """Per-episode divergence summary of a twin pair.

    ``first_disagreement_step``: the first decision (1-based) at which the two runs chose
    different actions (NaN if they never did while both ran; continuous actions: an
    :func:`action_error` above :data:`CONTINUOUS_TOLERANCE`). ``divergence_step``: the first
    step at which the position error exceeded ``threshold_m`` (NaN if never).
    """
    steps = twin_steps(policy, expert)
    n = min(len(policy.trajectory.acts), len(expert.trajectory.acts))
    differ = policy.trajectory.acts[:n] != expert.trajectory.acts[:n]
    if np.ndim(policy.trajectory.acts) > 1:
        differ = (
            action_error(policy.trajectory.acts[:n], expert.trajectory.acts[:n], action_range) > CONTINUOUS_TOLERANCE
        )
    return {
        "first_disagreement_step": first_index(differ),
        "divergence_step": first_index(steps["position_error_m"].to_numpy() > threshold_m),
        "max_position_error_m": float(steps["position_error_m"].max()) if len(steps) else 0.0,
        "final_position_error_m": float(steps["position_error_m"].iloc[-1]) if len(steps) else 0.0,
        "steps_compared": float(n),
    }


def disagreement(record: EpisodeRecord, *, action_range: np.ndarray | None = None) -> np.ndarray:
    """Per-step 0/1 disagreement between the driver's actions and the labeller's (for
    continuous actions the normalised :func:`action_error`)."""
    if record.labels is None:
        raise ValueError("record has no labels: run it with a labeller")
    if np.ndim(record.trajectory.acts) > 1:
        return action_error(record.trajectory.acts, record.labels, action_range)
    return (record.labels != record.trajectory.acts).astype(float)


def off_policy_errors(policy: Any, record: EpisodeRecord) -> np.ndarray:
    """``policy``'s argmax disagreement (0/1 per step) with the actions of ``record`` on
    ``record``'s own observations: eps_off computed offline on an expert episode, with no
    second rollout."""
    import torch

    obs = np.asarray(record.trajectory.obs[:-1])
    with torch.no_grad():
        predicted = policy._predict(torch.as_tensor(obs), deterministic=True).cpu().numpy()
    return (predicted != np.asarray(record.trajectory.acts)).astype(np.float64)


def errors_text(errors: np.ndarray) -> str:
    """Per-step 0/1 errors as a compact string (``"0010"``), one CSV cell per episode."""
    return "".join(str(int(e)) for e in errors)


def errors_from_text(text: object) -> np.ndarray:
    """Inverse of :func:`errors_text`; an empty cell (pandas reads NaN) is no step."""
    return np.frombuffer(text.encode(), dtype=np.uint8) - ord("0") if isinstance(text, str) else np.zeros(0)


def pooled_scores(numerators: np.ndarray, denominators: np.ndarray) -> np.ndarray:
    """Per-episode scores whose row means are the pooled ratios of each row.

    A rate pooled over steps (errors / steps over all of a clone's episodes) is a ratio, not a
    mean of per-episode rates (which would overweight short, crashed episodes). With
    ``numerators[t][e]`` and ``denominators[t][e]`` the sums of clone ``t``'s episode ``e``,
    the linearised scores ``z = r_t + (num - r_t * den) / mean_e(den_t)`` have row mean exactly
    ``r_t = sum(num_t) / sum(den_t)`` and the ratio estimator's first-order variance, so
    :func:`testbed.metrics.clones_mean_ci` of them is an interval for the mean pooled rate.

    Raises:
        ValueError: shapes differ, or a row has no steps.
    """
    num, den = (
        np.atleast_2d(np.asarray(numerators, dtype=np.float64)),
        np.atleast_2d(np.asarray(denominators, dtype=np.float64)),
    )
    if num.shape != den.shape or (den.sum(axis=1) <= 0).any():
        raise ValueError(f"need matching tables with steps in every row, got {num.shape} and {den.shape}")
    ratio = num.sum(axis=1, keepdims=True) / den.sum(axis=1, keepdims=True)
    return ratio + (num - ratio * den) / den.mean(axis=1, keepdims=True)


def same_step_difference(on: np.ndarray, off: np.ndarray) -> tuple[float, int]:
    """``(sum of on[t] - off[t], number of steps t)`` over the steps both episodes reached.

    ``on`` is a policy's per-step error on its own episode from a seed, ``off`` its error on
    the expert's episode from the same seed: compared at the same time step, so that a
    policy whose episodes end early (crashes) is not credited with the expert's late, easy
    steps. Pooled over episodes (``sum / sum`` of the pairs, :func:`pooled_scores`) this is the
    covariate-shift term eps_on(t) - eps_off(t) at equal t.
    """
    n = min(len(on), len(off))
    return float(np.sum(np.asarray(on[:n], dtype=np.float64) - np.asarray(off[:n], dtype=np.float64))), n


def fit_horizon_cost(horizons: Sequence[float], costs: Sequence[float]) -> tuple[float, float]:
    """Least-squares ``(a, b)`` of ``C(T) = a T + b T^2`` through the origin.

    A constant per-step cost gives ``b = 0``; errors that compound (a per-step cost growing
    with the time already driven) give ``b > 0``. ``costs[i]`` is the mean episode cost at
    horizon ``horizons[i]``; needs at least two distinct horizons.
    """
    t = np.asarray(horizons, dtype=np.float64)
    c = np.asarray(costs, dtype=np.float64)
    if t.ndim != 1 or t.shape != c.shape or len(np.unique(t)) < 2:
        raise ValueError("need one cost per horizon and at least two distinct horizons")
    design = np.column_stack([t, t**2])
    (a, b), *_ = np.linalg.lstsq(design, c, rcond=None)
    return float(a), float(b)


def horizon_fit_ci(
    per_horizon: Mapping[int, np.ndarray], *, n_boot: int = 2000, seed: int = 0, confidence: float = CONFIDENCE
) -> dict[str, float]:
    """``a`` and ``b`` of :func:`fit_horizon_cost` with percentile-bootstrap intervals.

    ``per_horizon[T]`` is a table (training seeds x episodes) of episode costs at horizon T,
    from *independent* episodes per horizon (fresh seeds, not prefixes of longer runs), with
    the same training seeds (rows) at every horizon: a resample draws training seeds once,
    jointly for every horizon, and episodes independently within each horizon. One row (an
    expert, a control) resamples episodes only.
    """
    tables = {int(t): np.atleast_2d(np.asarray(v, dtype=np.float64)) for t, v in per_horizon.items()}
    horizons = sorted(tables)
    n_rows = {tables[t].shape[0] for t in horizons}
    if len(n_rows) != 1:
        raise ValueError("every horizon needs the same training seeds")
    rows = n_rows.pop()
    point = fit_horizon_cost(horizons, [tables[t].mean() for t in horizons])
    rng = np.random.default_rng(seed)
    boots = np.empty((n_boot, 2))
    for k in range(n_boot):
        r = rng.integers(rows, size=rows) if rows > 1 else np.zeros(1, dtype=int)
        means = []
        for t in horizons:
            y = tables[t][r]
            means.append(y[:, rng.integers(y.shape[1], size=y.shape[1])].mean())
        boots[k] = fit_horizon_cost(horizons, means)
    tail = (1 - confidence) / 2 * 100
    (a_lo, b_lo), (a_hi, b_hi) = np.percentile(boots, tail, axis=0), np.percentile(boots, 100 - tail, axis=0)
    return {"a": point[0], "a_ci_low": a_lo, "a_ci_high": a_hi, "b": point[1], "b_ci_low": b_lo, "b_ci_high": b_hi}


def hazard_curve(
    event_steps: Sequence[Sequence[int]], lengths: Sequence[int], *, bin_steps: int, confidence: float = CONFIDENCE
) -> pd.DataFrame:
    """Binned per-step hazard of a cost event: events in a bin / steps driven in it.

    ``event_steps[e]`` lists the steps (0-based) of episode ``e``'s events (one for a
    terminating crash, any number when collisions are recoverable or for near misses) and
    ``lengths[e]`` its number of steps. The interval is Clopper-Pearson on (events, steps at
    risk), treating steps as independent trials: a rate's interval, not a cluster-robust one.
    """
    lengths_ = np.asarray(lengths, dtype=np.int64)
    if len(event_steps) != len(lengths_) or bin_steps < 1:
        raise ValueError("need one length per episode and bin_steps >= 1")
    horizon = int(lengths_.max()) if len(lengths_) else 0
    rows = []
    for lo in range(0, horizon, bin_steps):
        hi = lo + bin_steps
        at_risk = int(np.clip(lengths_ - lo, 0, bin_steps).sum())
        events = sum(sum(lo <= s < hi for s in steps) for steps in event_steps)
        ci = rate_ci(min(events, at_risk), at_risk, confidence=confidence)
        rows.append({"step_lo": lo, "step_hi": hi, "steps_at_risk": at_risk, "events": events, **ci.columns("hazard")})
    return pd.DataFrame(rows)


def kaplan_meier(event_steps: Sequence[float], end_steps: Sequence[float], *, horizon: int) -> pd.DataFrame:
    """Kaplan-Meier survival (no crash yet) by step, with a 95% interval that stays honest at
    the edges.

    The interval is Clopper-Pearson at Dorey and Korn's effective sample size
    ``S (1 - S) / var_Greenwood(S)`` (the number at risk while no episode has crashed, so that
    an all-survive curve over 100 episodes reads [0.964, 1], not Greenwood's [1, 1]). Without
    censoring before a step it is exactly the binomial interval of the survivors.

    Args:
        event_steps: per episode, the step of the crash, or NaN if it did not crash.
        end_steps: per episode, its last step (censoring time for crash-free episodes).
        horizon: last step to report.

    Returns:
        Columns ``step`` (0..horizon), ``survival``, ``ci_low``, ``ci_high``, ``at_risk``.
    """
    from scipy import stats

    events = np.asarray(event_steps, dtype=float)
    ends = np.asarray(end_steps, dtype=float)
    alpha = 1 - CONFIDENCE
    s, var_sum, n_eff = 1.0, 0.0, float(len(ends))
    rows = []
    for t in range(0, horizon + 1):
        at_risk = int(np.sum(ends >= t)) if t > 0 else int(len(ends))
        deaths = int(np.sum(events == t)) if t > 0 else 0
        if at_risk > 0 and deaths > 0:
            s *= 1.0 - deaths / at_risk
            if at_risk > deaths:
                var_sum += deaths / (at_risk * (at_risk - deaths))
        if 0 < s < 1 and var_sum > 0:
            n_eff = (1 - s) / (s * var_sum)
        elif s == 1:
            n_eff = float(at_risk) if at_risk > 0 else n_eff
        x = s * n_eff  # effective survivors
        low = 0.0 if x <= 0 else float(stats.beta.ppf(alpha / 2, x, n_eff - x + 1))
        high = 1.0 if x >= n_eff else float(stats.beta.ppf(1 - alpha / 2, x + 1, n_eff - x))
        rows.append({"step": t, "survival": s, "ci_low": low, "ci_high": high, "at_risk": at_risk})
    return pd.DataFrame(rows)


def crash_step(record: EpisodeRecord) -> float:
    """Step of the crash, or NaN if the episode ended without one."""
    return float(len(record.trajectory.acts)) if record.infos[-1]["crashed"] else float("nan")


def step_curve(frame: pd.DataFrame, column: str, *, by: str = "step") -> pd.DataFrame:
    """Mean of ``column`` at each value of ``by`` with a 95% CI and the count: Clopper-Pearson
    where the column is 0/1 (a disagreement rate), else a bootstrap over the rows."""
    rows = []
    for step, group in frame.groupby(by, sort=True):
        values = group[column].to_numpy(dtype=np.float64)
        binary = np.isin(values, (0.0, 1.0)).all()
        ci = rate_ci(int(values.sum()), len(values)) if binary else mean_ci(values)
        rows.append({by: step, "mean": ci.mean, "ci_low": ci.low, "ci_high": ci.high, "n": len(group)})
    return pd.DataFrame(rows)


@dataclasses.dataclass
class DriftResult:
    """Everything :func:`measure_drift` computes, as tables."""

    twin_steps: pd.DataFrame
    """Per (policy, seed, step) twin differences (:func:`twin_steps` columns)."""
    twin_episodes: pd.DataFrame
    """Per (policy, seed) :func:`twin_episode` summary plus ``eps_on``, ``eps_off``, ``crashed``."""
    audit_steps: pd.DataFrame
    """Per (policy, seed, step) on-policy disagreement (0/1)."""
    survival: pd.DataFrame
    """Kaplan-Meier curves per policy, with the expert as ``expert:NAME``."""
    summary: pd.DataFrame
    """Per policy: means with 95% CIs of eps_on, eps_off, first disagreement and divergence steps."""


def measure_drift(
    scenario: Scenario,
    specs: Sequence[PolicySpec],
    seeds: Sequence[int],
    *,
    expert: str = "scripted",
    pool: RolloutPool,
    threshold_m: float = DIVERGENCE_THRESHOLD_M,
    progress: bool = False,
) -> DriftResult:
    """Twin rollouts, on/off-policy disagreement and survival of each policy against the expert.

    For every policy two batches of episodes run on ``seeds``: the policy driving with the
    expert labelling (on-policy audit, policy twin) and the expert driving with the policy
    labelling (off-policy error, expert twin).
    """
    expert_spec = PolicySpec("expert", expert)
    action_range = _action_range(scenario)
    twin_rows, episode_rows, audit_rows = [], [], []
    survival = []
    expert_runs: list[EpisodeRecord] | None = None
    for spec in specs:
        on = pool.run(scenario, spec, seeds, labeller=expert_spec, progress=progress, desc=f"{spec.label} drives")
        off = pool.run(
            scenario, expert_spec, seeds, labeller=spec, progress=progress, desc=f"expert, {spec.label} labels"
        )
        expert_runs = expert_runs or off
        for p, e in zip(on, off):
            steps = twin_steps(p, e).assign(policy=spec.label, seed=p.seed)
            twin_rows.append(steps)
            eps = disagreement(p, action_range=action_range)
            eps_expert = disagreement(e, action_range=action_range)
            shift_sum, shift_steps = same_step_difference(eps, eps_expert)
            audit_rows.append(
                pd.DataFrame(
                    {"policy": spec.label, "seed": p.seed, "step": np.arange(1, len(eps) + 1), "disagree": eps}
                )
            )
            episode_rows.append(
                {
                    "policy": spec.label,
                    "seed": p.seed,
                    **twin_episode(p, e, threshold_m=threshold_m, action_range=action_range),
                    "eps_on": float(eps.mean()),
                    "eps_off": float(eps_expert.mean()),
                    "on_steps": len(eps),
                    "off_steps": len(eps_expert),
                    "shift_sum": shift_sum,
                    "shift_steps": shift_steps,
                    "crashed": float(p.infos[-1]["crashed"]),
                    "return": float(np.sum(p.trajectory.rews)),
                }
            )
        horizon = max(len(r.trajectory.acts) for r in [*on, *off])
        survival.append(
            kaplan_meier([crash_step(r) for r in on], [len(r.trajectory.acts) for r in on], horizon=horizon).assign(
                policy=spec.label
            )
        )
    if expert_runs is not None:
        horizon = max(len(r.trajectory.acts) for r in expert_runs)
        survival.append(
            kaplan_meier(
                [crash_step(r) for r in expert_runs], [len(r.trajectory.acts) for r in expert_runs], horizon=horizon
            ).assign(policy=expert_spec.label)
        )
    episodes = pd.DataFrame(episode_rows)
    return DriftResult(
        twin_steps=pd.concat(twin_rows, ignore_index=True),
        twin_episodes=episodes,
        audit_steps=pd.concat(audit_rows, ignore_index=True),
        survival=pd.concat(survival, ignore_index=True),
        summary=summarize_drift(episodes),
    )


def _action_range(scenario: Scenario) -> np.ndarray | None:
    """``high - low`` of a Box action space, None for a discrete one."""

    if scenario.config.get("action", {}).get("type") != "ContinuousAction":
        return None
    space = describe_spaces(scenario)["action_space"]
    return np.asarray(space["high"], dtype=float) - np.asarray(space["low"], dtype=float)


def summarize_drift(episodes: pd.DataFrame) -> pd.DataFrame:
    """Per-policy means with 95% CIs of the per-episode drift measures.

    ``eps_on`` and ``eps_off`` are pooled over steps (errors / steps over all episodes, so a
    short crashed episode weighs its few steps, not a whole episode); ``eps_gap`` is
    ``eps_on(t) - eps_off(t)`` on the same seed at the same step, pooled over the steps both
    runs reached (:func:`same_step_difference`). Their intervals bootstrap the linearised
    per-episode scores of :func:`pooled_scores`. ``first_disagreement_step`` and
    ``divergence_step`` are averaged over the episodes where they happened; ``p_diverged`` is
    the fraction of episodes where the position error ever passed the threshold.
    """
    rows = []
    for policy, df in episodes.groupby("policy", sort=False):
        row: dict[str, float | str | int] = {"policy": policy, "n_episodes": len(df)}

        def pooled(num: pd.Series, den: pd.Series) -> pd.Series:
            return pd.Series(pooled_scores(num.to_numpy(float)[None], den.to_numpy(float)[None])[0])

        measures = {
            "eps_on": pooled(df["eps_on"] * df["on_steps"], df["on_steps"]),
            "eps_off": pooled(df["eps_off"] * df["off_steps"], df["off_steps"]),
            "eps_gap": pooled(df["shift_sum"], df["shift_steps"]),
            "p_diverged": df["divergence_step"].notna().astype(float),
            "first_disagreement_step": df["first_disagreement_step"].dropna(),
            "divergence_step": df["divergence_step"].dropna(),
            "max_position_error_m": df["max_position_error_m"],
            "crashed": df["crashed"],
        }
        for name, values in measures.items():
            if name in ("p_diverged", "crashed"):  # rates: 0/1 per episode
                ci = rate_ci(int(values.sum()), len(values))
                row.update(ci.columns(name))
            elif len(values):
                row.update(mean_ci(values.to_numpy()).columns(name))
            else:
                row.update(NAN_INTERVAL.columns(name))
        rows.append(row)
    return pd.DataFrame(rows)


def drift_curves(result: DriftResult) -> dict[str, pd.DataFrame]:
    """Per-policy step curves (mean and 95% CI) of twin position error and on-policy
    disagreement, over the episodes still running at each step."""
    position = [
        step_curve(g, "position_error_m").assign(policy=p) for p, g in result.twin_steps.groupby("policy", sort=False)
    ]
    disagree = [step_curve(g, "disagree").assign(policy=p) for p, g in result.audit_steps.groupby("policy", sort=False)]
    return {"position": pd.concat(position, ignore_index=True), "disagreement": pd.concat(disagree, ignore_index=True)}


def write_drift(result: DriftResult, directory, *, title: str = "") -> dict[str, pd.DataFrame]:
    """Write the drift tables as CSVs and ``drift.png`` into ``directory``; returns the curves."""
    import matplotlib.pyplot as plt

    curves = drift_curves(result)
    result.twin_steps.to_csv(directory / "twin_steps.csv", index=False)
    result.twin_episodes.to_csv(directory / "drift_episodes.csv", index=False)
    result.audit_steps.to_csv(directory / "audit_steps.csv", index=False)
    result.survival.to_csv(directory / "survival.csv", index=False)
    result.summary.to_csv(directory / "drift_summary.csv", index=False)
    curves["position"].to_csv(directory / "twin_position_curve.csv", index=False)
    curves["disagreement"].to_csv(directory / "disagreement_curve.csv", index=False)
    fig = plot_drift(curves, result.survival, result.summary, title=title)
    fig.savefig(directory / "drift.png", dpi=120)
    plt.close(fig)
    return curves


def format_drift(summary: pd.DataFrame) -> str:
    """Fixed-width table of the headline drift measures."""

    cols = {
        "eps_off": "eps_off",
        "eps_on": "eps_on",
        "eps_gap": "eps_on(t) - eps_off(t)",
        "first_disagreement_step": "1st disagreement",
        "p_diverged": "P(diverged)",
        "crashed": "crash rate",
    }
    header = ["policy", "n", *cols.values()]
    body = []
    for _, r in summary.iterrows():
        cells = [str(r["policy"]), str(int(r["n_episodes"]))]
        for key in cols:
            cells.append("-" if pd.isna(r[key]) else Interval.from_columns(r, key).format(2))
        body.append(cells)
    return fixed_width(header, body)


# --- Same-step pooling of one clone's eps_on and eps_off (experiments/realizability.py) -------


def aligned_steps(on: Mapping[int, np.ndarray], off: Mapping[int, np.ndarray]) -> pd.DataFrame:
    """Per-step disagreements of the clone's run (``on``) and the teacher's run (``off``) of the
    same seeds, on the steps both reached.

    Args:
        on: seed -> 0/1 disagreement with the teacher's label at each decision of the clone's
            own run (T_on,).
        off: seed -> 0/1 disagreement of the clone with the teacher's action at each decision
            of the teacher's run (T_off,).

    Returns:
        Columns ``seed``, ``step`` (1-based decision), ``on``, ``off``: one row per seed and
        step ``1..min(T_on, T_off)``.

    Raises:
        ValueError: the two runs do not cover the same seeds.
    """
    if set(on) != set(off):
        raise ValueError("on- and off-policy runs must share their seeds")
    frames = []
    for seed in on:
        m = min(len(on[seed]), len(off[seed]))
        frames.append(
            pd.DataFrame(
                {
                    "seed": int(seed),
                    "step": np.arange(1, m + 1),
                    "on": np.asarray(on[seed][:m], dtype=float),
                    "off": np.asarray(off[seed][:m], dtype=float),
                }
            )
        )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["seed", "step", "on", "off"])


def pooled_shift(steps: pd.DataFrame) -> dict[str, Any]:
    """``eps_on``, ``eps_off`` and ``shift = eps_on - eps_off`` pooled over all (seed, step) rows
    of ``steps`` (:func:`aligned_steps`), each with a bootstrap interval over seeds
    (:func:`testbed.metrics.ratio_ci`), and the counts ``n_pairs`` and ``n_seeds`` (episodes
    with a pair). One clone's counterpart of :func:`same_step_difference` with
    :func:`pooled_scores`."""
    by_seed = steps.groupby("seed", sort=True).agg(on=("on", "sum"), off=("off", "sum"), n=("on", "size"))
    out: dict[str, Any] = {}
    for name, num in (
        ("eps_on", by_seed["on"]),
        ("eps_off", by_seed["off"]),
        ("shift", by_seed["on"] - by_seed["off"]),
    ):
        out.update(ratio_ci(num.to_numpy(), by_seed["n"].to_numpy()).columns(name))
    out["n_pairs"] = int(by_seed["n"].sum())
    out["n_seeds"] = len(by_seed)
    return out


def step_bins(steps: pd.DataFrame, width: int) -> pd.DataFrame:
    """:func:`pooled_shift` within bins of ``width`` decisions (steps 1..w, w+1..2w, ...); the
    bin's number of (seed, step) pairs is ``n``."""
    bins = (steps["step"] - 1) // width
    rows = []
    for b, group in steps.groupby(bins, sort=True):
        pooled = pooled_shift(group)
        pooled["n"] = pooled.pop("n_pairs")
        rows.append({"step_lo": int(b) * width + 1, "step_hi": (int(b) + 1) * width, **pooled})
    return pd.DataFrame(rows)


@dataclasses.dataclass
class TeacherAndClone:
    """A clone and its teacher on the same test seeds (:func:`teacher_and_clone`): the
    teacher's own episodes, the clone's episodes with the teacher labelling every state it
    visits, and the clone's 0/1 disagreement with the teacher along both."""

    teacher_runs: list[EpisodeRecord]
    """The teacher driving, one episode per seed."""
    clone_runs: list[EpisodeRecord]
    """The clone driving with the teacher labelling, the same seeds in the same order."""
    on: dict[int, np.ndarray]
    """seed -> the clone's disagreement with the teacher's label at each decision of its own
    run (T_on,): :func:`disagreement`."""
    off: dict[int, np.ndarray]
    """seed -> the clone's disagreement with the teacher's action at each decision of the
    teacher's run (T_off,), computed offline from the recorded observations:
    :func:`off_policy_errors`."""

    ROLES = ("teacher", "clone")
    """The roles of :meth:`episodes`, in order."""

    @property
    def seeds(self) -> list[int]:
        """The test seeds, in the clone's run order."""
        return [r.seed for r in self.clone_runs]

    def steps(self) -> pd.DataFrame:
        """Per-step disagreements on the (seed, step) pairs both runs reached
        (:func:`aligned_steps`): the input of :func:`pooled_shift` and :func:`step_bins`."""
        return aligned_steps(self.on, self.off)

    def episodes(self, **labels: Any) -> pd.DataFrame:
        """One row per test episode and role (teacher episodes first): the ``labels`` (e.g.
        ``teacher=..., sensor=...``) as constant columns, ``role``, ``seed``, ``return``,
        ``crashed``, ``length`` and ``n_disagree`` (on the teacher's episodes the clone's
        disagreements offline, on the clone's its on-policy ones)."""
        from testbed.metrics import episodes_table

        frames = []
        for role, records, errors in zip(self.ROLES, (self.teacher_runs, self.clone_runs), (self.off, self.on)):
            ep = episodes_table((role, r.seed, r.trajectory) for r in records)
            ep = ep.assign(**labels, role=role, n_disagree=[errors[s].sum() for s in ep["seed"]])
            frames.append(ep[[*labels, "role", "seed", "return", "crashed", "length", "n_disagree"]])
        return pd.concat(frames, ignore_index=True)

    def columns(self) -> dict[str, Any]:
        """The closed-loop columns of a table row, each with its 95% interval: ``eps_on``,
        ``eps_off`` and ``shift`` with ``n_pairs`` and ``n_seeds`` on the (seed, step) pairs both
        runs reached (:func:`pooled_shift` of :meth:`steps`); ``eps_on_all`` and ``eps_off_all``,
        the same over every step of each run (:func:`testbed.metrics.ratio_ci`);
        ``teacher_return``, ``teacher_crash_rate``, ``clone_return``, ``clone_crash_rate``
        (means: bootstrap over episodes; rates: Clopper-Pearson) and ``return_diff`` (clone
        minus teacher, paired by seed)."""
        from testbed.metrics import paired_difference

        seeds, episodes = self.seeds, self.episodes()
        teacher, clone = (episodes[episodes["role"] == role].set_index("seed").loc[seeds] for role in self.ROLES)
        columns = pooled_shift(self.steps())
        for name, errors in (("eps_on_all", self.on), ("eps_off_all", self.off)):
            columns.update(ratio_ci([errors[s].sum() for s in seeds], [len(errors[s]) for s in seeds]).columns(name))
        for role, ep in zip(self.ROLES, (teacher, clone)):
            columns.update(mean_ci(ep["return"].to_numpy()).columns(f"{role}_return"))
            columns.update(rate_ci(int(ep["crashed"].sum()), len(ep)).columns(f"{role}_crash_rate"))
        diff = paired_difference(clone["return"].to_numpy(), teacher["return"].to_numpy())
        return columns | diff.columns("return_diff")


def teacher_and_clone(
    pool: RolloutPool,
    scenario: Scenario,
    teacher: PolicySpec,
    clone: tuple[PolicySpec, Any],
    seeds: Sequence[int],
    *,
    teacher_runs: Sequence[EpisodeRecord] | None = None,
    desc: str = "",
) -> TeacherAndClone:
    """Drive the teacher and the clone on ``seeds``, the teacher labelling the clone's states,
    and score the clone against the teacher along both runs (:class:`TeacherAndClone`).

    Args:
        pool: the rollout workers.
        scenario: the scenario both drive (the clone's sensor).
        teacher: the teacher as a driver and labeller.
        clone: the clone's spec and its loaded policy (scored offline on the teacher's
            recorded observations, :func:`off_policy_errors`).
        seeds: the test seeds.
        teacher_runs: the teacher's episodes of these seeds, first ones used, when it has
            driven them already (e.g. a teacher that is an earlier clone: its labelled runs);
            otherwise the teacher drives them here.
        desc: progress-bar prefix.
    """
    if teacher_runs is None:
        teacher_runs = pool.run(scenario, teacher, list(seeds), progress=True, desc=f"{desc}: teacher, test")
    spec, policy = clone
    clone_runs = pool.run(scenario, spec, list(seeds), labeller=teacher, progress=True, desc=f"{desc}: clone, test")
    teacher_runs = list(teacher_runs[: len(seeds)])
    on = {r.seed: disagreement(r) for r in clone_runs}
    off = {r.seed: off_policy_errors(policy, r) for r in teacher_runs}
    return TeacherAndClone(teacher_runs, clone_runs, on, off)


# --- Per-episode error strings of clones and controls (experiments/compounding*.py) ---


def applied_errors(record: EpisodeRecord, *, noisy: bool = False) -> np.ndarray:
    """The driver's per-step 0/1 disagreement (float64) with its labeller on its own states;
    with ``noisy`` the applied action (after injected noise) is compared, not the chosen one."""
    if noisy and record.executed is not None:
        return (np.asarray(record.executed) != np.asarray(record.labels)).astype(np.float64)
    return disagreement(record)


def noise_errors(expert: EpisodeRecord, noise: float, scenario: Scenario) -> np.ndarray:
    """Where the expert with injected ``noise`` would have applied another action than the
    expert's along ``expert``'s episode (0/1 per step): the harness's own noise generator for
    that seed (:func:`testbed.rollout.run_episode`), replayed on the recorded actions. The
    eps_off of a noisy expert, with no second rollout."""
    from testbed.rollout import _ActionCodec
    from testbed.spaces import space_from_dict

    space = space_from_dict(describe_spaces(scenario)["action_space"])
    codec = _ActionCodec(space, noise, np.random.default_rng([expert.seed, 0xDA27]))
    return np.array([codec.applied(int(a)) != int(a) for a in expert.trajectory.acts], dtype=np.float64)


def outcome_rows(records: Sequence[EpisodeRecord], *, labelled: bool = True) -> list[dict[str, Any]]:
    """One row per episode: ``seed``, ``return``, ``crashed`` (0/1) and, for ``labelled``
    episodes, ``length`` and the on-policy errors as text (``on_errors``, :func:`errors_text`)."""
    rows = []
    for r in records:
        row: dict[str, Any] = {
            "seed": r.seed,
            "return": float(np.sum(r.trajectory.rews)),
            "crashed": int(bool(r.infos[-1].get("crashed", False))),
        }
        if labelled:
            errors = applied_errors(r)
            row.update(length=len(errors), on_errors=errors_text(errors))
        rows.append(row)
    return rows


def with_off_policy_errors(episodes: pd.DataFrame, policy: Any, reference: Mapping[int, EpisodeRecord]) -> pd.DataFrame:
    """``episodes`` (a clone's rows with ``seed`` and ``on_errors``) with the error sums
    ``on_sum``/``on_steps``, ``off_sum``/``off_steps`` (``policy`` on the reference episode of
    the same seed, :func:`off_policy_errors`), ``shift_sum``/``shift_steps``
    (:func:`same_step_difference`) and ``off_errors`` as text."""
    on = [errors_from_text(t) for t in episodes["on_errors"]]
    off = [off_policy_errors(policy, reference[s]) for s in episodes["seed"]]
    pairs = [same_step_difference(a, b) for a, b in zip(on, off)]
    return episodes.assign(
        on_sum=[a.sum() for a in on],
        on_steps=[len(a) for a in on],
        off_sum=[b.sum() for b in off],
        off_steps=[len(b) for b in off],
        shift_sum=[p[0] for p in pairs],
        shift_steps=[p[1] for p in pairs],
        off_errors=[errors_text(b) for b in off],
    )


def pooled_error_columns(clones: pd.DataFrame) -> dict[str, float]:
    """``eps_on``, ``eps_off`` and ``shift`` of a group of clones (rows of
    :func:`with_off_policy_errors` with ``train_seed``), each pooled over steps per clone
    (:func:`pooled_scores`) with a variance-components interval over training and test seeds
    (:func:`testbed.metrics.clones_mean_ci`), clipped to the range of a rate ([0, 1]) or of a
    difference of rates ([-1, 1])."""
    from testbed.metrics import clone_table, clones_mean_ci

    columns: dict[str, float] = {}
    for name in ("on", "off", "shift"):
        ci = clones_mean_ci(pooled_scores(clone_table(clones, f"{name}_sum"), clone_table(clones, f"{name}_steps")))
        floor = -1.0 if name == "shift" else 0.0
        ci = Interval(ci.mean, max(ci.low, floor), min(ci.high, 1.0))
        columns.update(ci.columns(f"eps_{name}" if name != "shift" else "shift"))
    return columns


def step_error_rows(episodes: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """eps_on(t) over the episodes alive at step t and eps_off(t) over the reference's, per
    group of ``by`` (columns ``*by``, ``kind``, ``step``, ``n``, ``error`` with its interval).

    Clopper-Pearson per step, treating the step's episodes as independent: a rough band (an
    interval clustered by clone is :func:`pooled_error_columns`'s). ``episodes`` has
    ``on_errors`` and ``off_errors`` as text (:func:`with_off_policy_errors`).
    """
    rows = []
    for keys, g in episodes.groupby(list(by), sort=False):
        for kind in ("on", "off"):
            errors = [errors_from_text(t) for t in g[f"{kind}_errors"]]
            for t in range(max(len(e) for e in errors)):
                at_t = [e[t] for e in errors if len(e) > t]
                ci = rate_ci(int(np.sum(at_t)), len(at_t))
                key = dict(zip(by, keys))
                rows.append({**key, "kind": f"eps_{kind}", "step": t, "n": len(at_t), **ci.columns("error")})
    return pd.DataFrame(rows)


def binned_error_rows(
    on: Sequence[np.ndarray],
    off: Sequence[np.ndarray],
    *,
    bin_steps: int,
    horizon: int,
    clones: Sequence[int] | None = None,
) -> list:
    """Per bin of ``bin_steps`` decisions up to ``horizon``: ``step_lo``, ``step_hi``, eps_on and
    eps_off (errors / steps in the bin; NaN without steps), and ``shift``: the same-step
    difference of each episode pair (``on[e]``, ``off[e]``: the same seed) pooled over episodes
    (:func:`pooled_scores`).

    Without ``clones`` the episodes are independent units: Clopper-Pearson for the rates, a
    bootstrap over episodes for the shift. With ``clones`` (the training seed of the policy
    that drove each episode; every clone on the same seeds in the same order) every measure is
    pooled over steps per clone and its interval is a variance-components interval over
    training and test seeds (:func:`testbed.metrics.clones_mean_ci`), as in
    :func:`pooled_error_columns`: episodes of one clone share its errors, so they are not
    independent units. A clone without steps in a bin is left out of that bin
    (``n_clones``)."""

    rows = []
    by_clone = _episodes_by_clone(clones)
    clustered = bool(by_clone)
    for lo in range(0, horizon, bin_steps):
        row: dict[str, Any] = {"step_lo": lo, "step_hi": lo + bin_steps}
        cut = slice(lo, lo + bin_steps)
        diffs = [same_step_difference(a[cut], b[cut]) for a, b in zip(on, off)]
        sums = {
            "eps_on": [(float(a[cut].sum()), len(a[cut])) for a in on],
            "eps_off": [(float(b[cut].sum()), len(b[cut])) for b in off],
            "shift": [(float(d[0]), d[1]) for d in diffs],
        }
        if clustered:
            for name, pairs in sums.items():
                floor = -1.0 if name == "shift" else 0.0
                ci, n_clones = _pooled_interval(pairs, by_clone, floor, 1.0)
                if ci is None:
                    row[name] = np.nan
                    continue
                row.update(ci.columns(name))
                if name == "shift":
                    row["n_clones"] = n_clones
        else:
            for name in ("eps_on", "eps_off"):
                k, n = int(sum(k for k, _ in sums[name])), int(sum(n for _, n in sums[name]))
                row.update(rate_ci(k, n).columns(name) if n else {name: np.nan})
            ci, _ = _pooled_interval(sums["shift"], {}, -math.inf, math.inf)
            row.update(ci.columns("shift") if ci is not None else {"shift": np.nan})
        rows.append(row)
    return rows


def _episodes_by_clone(clones: Sequence[int] | None) -> dict[int, list[int]]:
    """Clone -> the indices of its episodes, when two or more clones drove (else ``{}``: the
    episodes are the units).

    Raises:
        ValueError: the clones drove different numbers of episodes (each must drive the same seeds).
    """
    by_clone: dict[int, list[int]] = {}
    for e, c in enumerate(clones if clones is not None else ()):
        by_clone.setdefault(int(c), []).append(e)
    if len(by_clone) < 2:
        return {}
    if len({len(v) for v in by_clone.values()}) != 1:
        raise ValueError(
            f"every clone must drive the same seeds, got episode counts {[len(v) for v in by_clone.values()]}"
        )
    return by_clone


def _pooled_interval(
    pairs: Sequence[tuple[float, int]], by_clone: Mapping[int, list[int]], low: float, high: float
) -> tuple[Interval | None, int]:
    """A ratio pooled over steps (``pairs``: per episode, the sum and the number of steps) with
    its interval clipped to [low, high], and the number of clones in it. With ``by_clone``
    (clone -> its episodes, each clone on the same seeds; two or more with steps needed):
    pooled per clone, a variance-components interval over training and test seeds; without:
    the episodes as independent units, a bootstrap over them. ``None`` without steps."""
    from testbed.metrics import clones_mean_ci

    if by_clone:
        table = np.array([[pairs[e] for e in eps] for eps in by_clone.values()])  # clone x episode x 2
        table = table[table[:, :, 1].sum(axis=1) > 0]
        if len(table) < 2:
            return None, len(table)
        ci, n_clones = clones_mean_ci(pooled_scores(table[:, :, 0], table[:, :, 1])), len(table)
    else:
        num, den = np.array([[p[0] for p in pairs]]), np.array([[p[1] for p in pairs]])
        if not den.sum():
            return None, 0
        ci, n_clones = mean_ci(pooled_scores(num, den)[0]), 0
    return Interval(ci.mean, max(ci.low, low), min(ci.high, high)), n_clones


def gaps_text(gaps: np.ndarray) -> str:
    """Per-step value gaps (:class:`testbed.rollout.Scoring`; NaN unscored) as one CSV cell."""
    return " ".join("nan" if np.isnan(g) else repr(float(g)) for g in gaps)


def gaps_from_text(text: object) -> np.ndarray:
    """Inverse of :func:`gaps_text`; an empty cell is no step."""
    return np.array(text.split(), dtype=np.float64) if isinstance(text, str) else np.zeros(0)


def value_gaps(record: Any) -> np.ndarray:
    """The per-step ``value_gap`` of an episode run with a :class:`testbed.rollout.Scoring`
    (NaN where unscored, or where the episode was run without one)."""
    return np.array([i.get("value_gap", np.nan) for i in record.trajectory.infos], dtype=np.float64)


def value_gap_table(
    episodes: pd.DataFrame, *, bin_steps: int, horizon: int, clone_groups: Sequence[str]
) -> pd.DataFrame:
    """:func:`binned_value_gap_rows` per (``variant``, ``group``) of the ``episodes`` rows that
    carry ``value_gaps`` (:func:`gaps_text`), clustered by ``train_seed`` in ``clone_groups``."""
    rows = []
    scored = episodes[episodes["value_gaps"].notna()] if "value_gaps" in episodes else episodes.iloc[:0]
    for (variant, group), g in scored.groupby(["variant", "group"], sort=False):
        gaps = [gaps_from_text(t) for t in g["value_gaps"]]
        clones = g["train_seed"].tolist() if group in clone_groups else None
        for row in binned_value_gap_rows(gaps, bin_steps=bin_steps, horizon=horizon, clones=clones):
            rows.append({"variant": variant, "group": group, **row})
    return pd.DataFrame(rows)


def binned_value_gap_rows(
    gaps: Sequence[np.ndarray],
    *,
    bin_steps: int,
    horizon: int,
    clones: Sequence[int] | None = None,
    tolerance: float = 1e-9,
) -> list[dict[str, Any]]:
    """The cost-weighted error per bin of ``bin_steps`` decisions up to ``horizon``, beside the
    0/1 disagreement of :func:`binned_error_rows`: over the scored steps of each bin (``gaps``:
    per episode, :func:`value_gaps`), ``value_gap`` (the mean value lost by the action applied,
    in the scorer's value units) and ``costly`` (the share of steps that lost more than
    ``tolerance``), each pooled over steps, with ``n_scored``. Intervals as in
    :func:`binned_error_rows` (``clones``: clustered by clone)."""
    by_clone = _episodes_by_clone(clones)
    rows = []
    for lo in range(0, horizon, bin_steps):
        row: dict[str, Any] = {"step_lo": lo, "step_hi": lo + bin_steps}
        cut = [g[lo : lo + bin_steps] for g in gaps]
        scored = [c[~np.isnan(c)] for c in cut]
        row["n_scored"] = int(sum(len(c) for c in scored))
        for name, values, high in (
            ("value_gap", scored, math.inf),
            ("costly", [(c > tolerance).astype(float) for c in scored], 1.0),
        ):
            ci, _ = _pooled_interval([(float(v.sum()), len(v)) for v in values], by_clone, 0.0, high)
            row.update(ci.columns(name) if ci is not None else {name: np.nan})
        rows.append(row)
    return rows


def method_rows(clones: pd.DataFrame, *, reference: str, expert: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per method and budget of ``clones`` (rows of :func:`with_off_policy_errors` with
    ``method``, ``budget``, ``train_seed``, ``n_train_labels``, ``val_accuracy``, ``return``,
    ``crashed``): means over clones with variance-components intervals over training and test
    seeds (:func:`testbed.metrics.clones_mean_ci`, crash rate
    :func:`~testbed.metrics.clones_rate_ci`), eps_on, eps_off and shift
    (:func:`pooled_error_columns`), and ``return_vs_<reference>``,
    ``crash_rate_vs_<reference>``: the difference to the ``reference`` method's clones at the
    same budget, paired by test seed, training seeds independent
    (:func:`~testbed.metrics.combination_ci`). With ``expert`` (its own episodes on the test
    seeds: ``return``, ``crashed``) a last row ``method == "expert"``
    (:func:`~testbed.metrics.outcome_columns`)."""
    from testbed.metrics import clone_table, clones_mean_ci, clones_rate_ci, combination_ci, outcome_columns

    rows = []
    for (method, budget), g in clones.groupby(["method", "budget"], sort=False):
        row: dict[str, Any] = {
            "method": method,
            "budget": int(budget),
            "n_clones": g["train_seed"].nunique(),
            "n_test_seeds": g["seed"].nunique(),
            "n_train_labels_min": int(g["n_train_labels"].min()),
            "n_train_labels_max": int(g["n_train_labels"].max()),
            **clones_mean_ci(clone_table(g, "return")).columns("return"),
            **clones_rate_ci(clone_table(g, "crashed")).columns("crash_rate"),
            **clones_mean_ci(g.groupby("train_seed")["val_accuracy"].first().to_numpy()[:, None]).columns(
                "val_accuracy"
            ),
            **pooled_error_columns(g),
        }
        ref = clones[(clones["method"] == reference) & (clones["budget"] == budget)]
        for col, out in (("return", f"return_vs_{reference}"), ("crashed", f"crash_rate_vs_{reference}")):
            row.update(
                combination_ci([clone_table(g, col), clone_table(ref, col)], (1.0, -1.0)).columns(out)
                if method != reference
                else Interval(0.0, 0.0, 0.0).columns(out)
            )
        rows.append(row)
    if expert is not None:
        rows.append({"method": "expert", "n_test_seeds": len(expert), **outcome_columns(expert)})
    return pd.DataFrame(rows)


def clone_rows(episodes: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """One row per clone (group of ``keys``, in order of appearance) of its episodes' rows
    (:func:`with_off_policy_errors` with ``n_train_labels``, ``val_accuracy``): its
    ``n_train_labels``, ``val_accuracy``, mean ``return`` and ``crash_rate``."""
    return episodes.groupby(list(keys), as_index=False, sort=False).agg(
        n_train_labels=("n_train_labels", "first"),
        val_accuracy=("val_accuracy", "first"),
        **{"return": ("return", "mean")},
        crash_rate=("crashed", "mean"),
    )
