"""Hazard ratios by Poisson regression: known ratios recovered, the offset, clustered intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from testbed.hazard import bin_rows, fit_poisson, hazard_ratios, hazard_trends, t_quantile

BINS = 4
BIN_STEPS = 20


def _simulate(
    rng: np.random.Generator,
    *,
    ratio: tuple[float, ...] = (2.0,) * BINS,
    base_rate: float = 0.004,
    clusters: int = 30,
    episodes: int = 5,
    frailty_var: float = 0.0,
    ref_steps: int = BIN_STEPS,
    nearby: float = 10.0,
) -> pd.DataFrame:
    """Binned rows of a reference group (one cluster per episode, as the expert) and a group
    "g" (``clusters`` drivers of ``episodes`` episodes each, a gamma frailty per driver of
    variance ``frailty_var``) whose hazard per vehicle-step is ``ratio[b]`` times the
    reference's in bin b."""
    rows = []
    for group, n_clusters, per in (("expert", clusters * episodes, 1), ("g", clusters, episodes)):
        for c in range(n_clusters):
            frailty = rng.gamma(1 / frailty_var, frailty_var) if frailty_var > 0 else 1.0
            for e in range(per):
                for b in range(BINS):
                    steps = ref_steps if group == "expert" else BIN_STEPS
                    rate = base_rate * (ratio[b] if group == "g" else 1.0) * frailty
                    rows.append(
                        {
                            "group": group,
                            "cluster": f"{group}/{c}",
                            "episode": e,
                            "step_lo": b * BIN_STEPS,
                            "step_hi": (b + 1) * BIN_STEPS,
                            "t": b * BIN_STEPS + (BIN_STEPS - 1) / 2,
                            "steps": steps,
                            "nearby": nearby,
                            "events": int(rng.poisson(rate * steps * nearby)),
                        }
                    )
    return pd.DataFrame(rows)


def test_t_quantiles_match_the_tables() -> None:
    assert t_quantile(0.975, 1) == pytest.approx(12.7062, abs=1e-3)
    assert t_quantile(0.975, 4) == pytest.approx(2.7764, abs=1e-4)
    assert t_quantile(0.975, 30) == pytest.approx(2.0423, abs=1e-4)
    assert t_quantile(0.975, float("inf")) == pytest.approx(1.95996, abs=1e-5)


def test_bin_rows_count_events_steps_and_nearby_per_bin() -> None:
    rows = bin_rows([[0, 5, 21], []], [25, 10], bin_steps=10, nearby=[np.arange(25), np.full(10, 3)])
    assert rows[["episode", "step_lo", "steps", "events"]].values.tolist() == [
        [0, 0, 10, 2],
        [0, 10, 10, 0],
        [0, 20, 5, 1],
        [1, 0, 10, 0],
    ]
    assert rows["t"].tolist() == [4.5, 14.5, 22.0, 4.5]
    assert rows["nearby"].tolist() == [4.5, 14.5, 22.0, 3.0]
    assert bin_rows([[1]], [3], bin_steps=2)["nearby"].isna().all()  # no count: the steps alone


def test_a_known_rate_ratio_and_trend_are_recovered() -> None:
    rng = np.random.default_rng(0)
    ratios = (1.0, 1.5, 2.25, 3.375)  # log ratio grows by log(1.5) per 20 decisions
    rows = _simulate(rng, ratio=ratios, base_rate=0.01, clusters=40, episodes=10)
    table = hazard_ratios(rows)
    assert np.allclose(np.log(table["hazard_ratio"]), np.log(ratios), atol=0.15), table
    hr = table["hazard_ratio"]
    assert ((table["hazard_ratio_ci_low"] < hr) & (hr < table["hazard_ratio_ci_high"])).all()
    # The per-bin estimate is the ratio of the pooled rates (the model's likelihood equations).
    pooled = (table["events"] / table["vehicle_steps"]) / (table["ref_events"] / table["ref_vehicle_steps"])
    assert np.allclose(table["hazard_ratio"], pooled)
    trend = hazard_trends(rows).iloc[0]
    truth = np.log(1.5) * 100 / BIN_STEPS
    assert trend["hr_trend_ci_low"] < truth < trend["hr_trend_ci_high"]
    assert abs(trend["hr_trend"] - truth) < 0.25
    # A constant ratio: the trend is compatible with 0.
    flat = hazard_trends(_simulate(rng, base_rate=0.01, clusters=40, episodes=10)).iloc[0]
    assert flat["hr_trend_ci_low"] < 0 < flat["hr_trend_ci_high"]


def test_the_offset_takes_exposure_and_density_out_of_the_ratio() -> None:
    rows = _simulate(np.random.default_rng(1), base_rate=0.01)
    base = hazard_ratios(rows)["hazard_ratio"].to_numpy()
    # The reference drove twice the steps and saw twice the collisions: the same rate.
    doubled = rows.copy()
    ref = doubled["group"] == "expert"
    doubled.loc[ref, "steps"] *= 2
    doubled.loc[ref, "events"] *= 2
    assert np.allclose(hazard_ratios(doubled)["hazard_ratio"], base)
    # The group met twice the traffic for the same collisions: half the rate per vehicle.
    denser = rows.copy()
    denser.loc[denser["group"] == "g", "nearby"] *= 2
    assert np.allclose(hazard_ratios(denser)["hazard_ratio"], base / 2)


def test_clustered_heterogeneity_widens_the_interval_beyond_the_naive_one() -> None:
    rng = np.random.default_rng(2)
    clustered = hazard_trends(_simulate(rng, base_rate=0.01, clusters=20, episodes=10, frailty_var=1.0)).iloc[0]
    assert clustered["hr_trend_se"] > clustered["hr_trend_se_naive"]
    ratios = hazard_ratios(_simulate(rng, base_rate=0.01, clusters=20, episodes=10, frailty_var=1.0))
    assert (ratios["log_hr_se"] > 1.3 * ratios["log_hr_se_naive"]).mean() >= 0.75
    # Without heterogeneity the two agree roughly.
    plain = hazard_ratios(_simulate(rng, base_rate=0.01, clusters=20, episodes=10))
    assert np.all(np.abs(np.log(plain["log_hr_se"] / plain["log_hr_se_naive"])) < 0.4)


def test_the_clustered_interval_covers_at_its_level() -> None:
    """Over 200 simulated studies with drivers of heterogeneous skill, 8 drivers a group
    (few clusters: the t quantile matters), the 95% interval of the per-bin ratio and of the
    trend covers the truth 90-99% of the time."""
    rng = np.random.default_rng(3)
    ratios = (1.0, 1.5, 2.25, 3.375)  # log-linear in t: the trend model holds
    truth_trend = np.log(1.5) * 100 / BIN_STEPS
    hits_ratio, hits_trend, n = 0, 0, 200
    for _ in range(n):
        rows = _simulate(rng, ratio=ratios, base_rate=0.01, clusters=8, episodes=10, frailty_var=0.3)
        b = hazard_ratios(rows).iloc[2]
        hits_ratio += b["hazard_ratio_ci_low"] < ratios[2] < b["hazard_ratio_ci_high"]
        trend = hazard_trends(rows).iloc[0]
        hits_trend += trend["hr_trend_ci_low"] < truth_trend < trend["hr_trend_ci_high"]
    assert 0.9 <= hits_ratio / n <= 0.99, hits_ratio / n
    assert 0.9 <= hits_trend / n <= 0.99, hits_trend / n


def test_fit_poisson_refuses_a_rank_deficient_design_and_empty_cells_give_nan() -> None:
    with pytest.raises(ValueError, match="rank"):
        fit_poisson(np.ones((4, 2)), np.ones(4), np.zeros(4), [0, 1, 2, 3])
    rows = _simulate(np.random.default_rng(4), base_rate=0.01)
    rows.loc[(rows["group"] == "expert") & (rows["step_lo"] == 0), "events"] = 0
    table = hazard_ratios(rows)
    assert np.isnan(table["hazard_ratio"].iloc[0]) and table["ref_events"].iloc[0] == 0
    assert table["hazard_ratio"].iloc[1:].notna().all()


def test_a_trend_survives_events_in_disjoint_bins() -> None:
    """Sparse expert collisions in other bins than the group's made a bin-by-bin baseline
    diverge and the whole study stop. With the linear baseline: the reference's events early,
    the group's late give a finite rising trend; with the reference's events all in the first
    bin no maximum exists (its hazard falls without bound): NaN, not an exception."""
    rows = _simulate(np.random.default_rng(5), base_rate=0.01)
    expert = (rows["group"] == "expert").to_numpy()
    rows.loc[expert & (rows["step_lo"] >= 2 * BIN_STEPS), "events"] = 0
    rows.loc[~expert & (rows["step_lo"] < 2 * BIN_STEPS), "events"] = 0
    trend = hazard_trends(rows).iloc[0]
    assert np.isfinite(trend["hr_trend"]) and trend["hr_trend"] > 0
    rows.loc[expert & (rows["step_lo"] > 0), "events"] = 0
    assert rows.loc[expert, "events"].sum() > 0
    assert np.isnan(hazard_trends(rows).iloc[0]["hr_trend"])


def test_a_groups_own_hazard_slope_is_recovered() -> None:
    """A hazard growing like exp(0.8 t / 100) in group g and constant in the reference: g's own
    slope near 0.8 (interval covering it), the reference's near 0."""
    from testbed.hazard import hazard_slopes

    mids = [b * BIN_STEPS + (BIN_STEPS - 1) / 2 for b in range(BINS)]
    rows = _simulate(np.random.default_rng(6), ratio=tuple(np.exp(0.8 * np.array(mids) / 100)), base_rate=0.01)
    slopes = hazard_slopes(rows).set_index("group")
    g, ref = slopes.loc["g"], slopes.loc["expert"]
    assert g["h_slope_ci_low"] < 0.8 < g["h_slope_ci_high"] and abs(g["h_slope"] - 0.8) < 0.3
    assert ref["h_slope_ci_low"] < 0 < ref["h_slope_ci_high"]
