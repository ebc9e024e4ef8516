"""Experiment scripts run end to end in their --fast preset."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import shutil
from typing import Any

import pandas as pd
import pytest
from conftest import load_experiment

from testbed.errors import TestbedError

pytestmark = pytest.mark.slow  # end-to-end: every test here runs a whole command or script


def _load(name: str) -> Any:
    return load_experiment(name)


def test_expert_quality_fast(tmp_path: pathlib.Path) -> None:
    module = _load("expert_quality")
    out = tmp_path / "eq"
    summary = module.main(module.Args(fast=True, out=str(out), workers=1))
    assert set(summary["case"]) == {c for c, _, _ in module.CASES}
    assert set(summary["policy"]) == {"expert:scripted", "expert:scripted-v1", "expert:planner", "idle"}
    planner = summary["policy"] == "expert:planner"
    assert (summary.loc[~planner, "n_episodes"] == 4).all() and (summary.loc[planner, "n_episodes"] == 2).all()
    episodes = pd.read_csv(out / "episodes.csv")
    assert len(episodes) == len(module.CASES) * (3 * 4 + 2)
    # Every teacher timed (idle is no teacher), with an interval.
    teachers = summary[summary["policy"] != "idle"]
    assert (
        teachers["ms_per_decision"].gt(0).all()
        and summary.loc[~summary.index.isin(teachers.index), "ms_per_decision"].isna().all()
    )
    assert (teachers["ms_per_decision_ci_low"] <= teachers["ms_per_decision"]).all()
    assert (out / "expert_quality.png").stat().st_size > 0
    config = json.loads((out / "config.json").read_text())
    assert config["seeds"]["range"] == "test" and config["seeds"]["first_used"] == 1_000_000
    assert config["cases"][3]["scenario"]["config"]["vehicles_density"] == 1.5


def test_compounding_error_fast(tmp_path: pathlib.Path) -> None:
    module = _load("compounding_error")
    out = tmp_path / "ce"
    tables = module.main(module.Args(fast=True, out=str(out), workers=2))
    methods = tables["methods"].set_index(["method", "budget"])
    clones = tables["clones"]
    assert set(clones["method"]) == set(module.METHODS) and len(clones) == 4 * 2 * 2
    # Equal labels: every method uses exactly the budget; all but DAgger's on-policy choice train on it.
    plain = clones[clones["method"] != "dagger-onpolicy"]
    assert (plain["n_train_labels"] == plain["budget"]).all() and (clones["n_labels_used"] == clones["budget"]).all()
    assert (clones["n_train_labels"] <= clones["budget"]).all()
    dart = clones[clones["method"] == "dart"]
    assert (dart["noise"] == (dart["eps_hat"] * 5 / 4).clip(upper=1.0)).all()
    for col in ("return", "crash_rate", "eps_on", "eps_off", "shift"):
        rows = methods.loc[list(module.METHODS)]
        assert ((rows[f"{col}_ci_low"] <= rows[col]) & (rows[col] <= rows[f"{col}_ci_high"])).all(), col
    assert (methods.loc["bc", "return_vs_bc"] == 0).all()
    # DAgger's on-policy pick repeats one of its iterates: the correlation counts each clone once.
    per_budget = tables["open_vs_closed"].set_index("budget")["n_clones"]
    assert (per_budget.drop("within-budget mean") == 3 * 2).all()
    episodes = pd.read_csv(out / "episodes.csv")
    assert set(episodes["seed"]) == {1_000_000, 1_000_001, 1_000_002}
    # eps_off is the clone on the expert's own episodes: every step of the expert is scored.
    assert (episodes.groupby("seed")["off_steps"].nunique() == 1).all()
    config = json.loads((out / "config.json").read_text())
    assert config["seeds"]["eval"]["range"] == "test" and config["provenance"]["git_commit"]
    assert config["seeds"]["dagger_selection"]["range"] == "development" and "selects nothing" in config["labels"]
    pngs = {p: (out / p).read_bytes() for p in ("methods.png", "steps.png", "open_vs_closed.png")}
    module.replot(out)
    assert {p: (out / p).read_bytes() for p in pngs} == pngs
    with pytest.raises(TestbedError, match="sealed test range"):
        module.main(module.Args(fast=True, out=str(tmp_path / "x"), eval_seed=10_000))


def test_compounding_fast(tmp_path: pathlib.Path) -> None:
    module = _load("compounding")
    out = tmp_path / "cmp"
    # Every 2nd step of the recoverable variant's longest horizon valued by the planner (the
    # episodes are those of a run without it: tests/test_rollout.py, Scoring).
    args = module.Args(fast=True, out=str(out), workers=2, value_gap_every=2)
    tables = module.main(args)
    fits = tables["fits"]
    assert set(fits["group"]) == {"expert", "bc", "dagger", "iid-errors", "realizable"}
    assert set(fits["variant"]) == {"terminating", "recoverable"}
    assert ((fits["b_ci_low"] <= fits["b"]) & (fits["b"] <= fits["b_ci_high"])).all()
    # Each group's own hazard slope; ratios and their trends to the expert and the iid control
    # (NaN here where a side has too few collisions: the tiny run's expert never collides).
    assert {"h_slope", "h_slope_ci_low", "h_slope_ci_high"} <= set(fits.columns)
    trends = pd.read_csv(out / "trends.csv")
    assert set(trends["reference"]) == {"expert", "iid-errors"} and "hr_trend" in trends
    ratio, density = pd.read_csv(out / "hazard_ratio.csv"), pd.read_csv(out / "density.csv")
    assert not (ratio["group"] == ratio["reference"]).any() and len(density) > 0
    episodes = pd.read_csv(out / "episodes.csv")
    # Recoverable episodes run to their horizon; independent seeds per horizon, all in the test range.
    rec = episodes[episodes["variant"] == "recoverable"]
    assert (rec["length"] == rec["T"]).all()
    blocks = episodes.groupby(["variant", "T"])["seed"].apply(frozenset)
    assert len(set(blocks)) == len(blocks) and all(s >= 1_000_000 for b in blocks for s in b)
    config = json.loads((out / "config.json").read_text())
    assert all(r["range"] == "test" for r in config["seeds"]["test"].values())
    assert config["valuation"]["params"]["rescue_continuations"] == ["brake"]  # the scorer's own parameters
    # The cost-weighted error per group and bin, on the recoverable variant only.
    gaps = pd.read_csv(out / "value_gaps.csv")
    assert set(gaps["group"]) == {"expert", "bc", "dagger", "iid-errors", "realizable"}
    assert set(gaps["variant"]) == {"recoverable"}
    longest = max(args.resolved().horizons)
    per_group = gaps.groupby("group")["n_scored"].sum()
    # Every 2nd step of each episode (expert and iid: 2 x 3 episodes; the 2 clones of a group: 3 each).
    assert (per_group > 0).all() and per_group.max() <= 6 * (longest // 2)
    assert ((gaps["value_gap"] >= 0) & (gaps["costly"].between(0, 1))).all()
    pngs = {p: (out / p).read_bytes() for p in ("horizon.png", "hazard.png", "hazard_ratio.png", "value_gap.png")}
    module.replot(out)
    assert {p: (out / p).read_bytes() for p in pngs} == pngs
    # A run without the cost-weighted error (--value-gap-every 0) redraws its other figures.
    off = tmp_path / "off"
    off.mkdir()
    for name in ["config.json", *(f.name for f in out.glob("*.csv"))]:
        if name != "value_gaps.csv":
            shutil.copy(out / name, off / name)
    module.replot(off)
    assert sorted(p.name for p in off.glob("*.png")) == ["hazard.png", "hazard_ratio.png", "horizon.png"]
    assert all((off / p).read_bytes() == pngs[p] for p in ("horizon.png", "hazard.png", "hazard_ratio.png"))


def test_distribution_shift_cases_load_back() -> None:
    """Every case's scenario record passes the validation clone records go through (the
    fast preset trains no labelled case, so the full run is the only other check)."""
    from testbed.scenarios import Scenario

    module = _load("distribution_shift")
    for case in module.CASES:
        scenario = module.case_scenario(case)
        assert Scenario.from_dict(scenario.to_dict()).to_dict() == scenario.to_dict(), case


def test_distribution_shift_fast(tmp_path: pathlib.Path) -> None:
    module = _load("distribution_shift")
    out = tmp_path / "ds"
    cells = module.main(module.Args(fast=True, out=str(out), workers=2))
    assert len(cells) == 2 * 3
    assert set(cells["train_case"]) == {"highway-fast", "merge"}
    assert cells["in_distribution"].sum() == 2
    # The expert reference is the same in every row of a column (same seeds, same scenario).
    assert (cells.groupby("test_case")["expert_return"].nunique() == 1).all()
    assert (out / "distribution_shift.png").stat().st_size > 0
    episodes = pd.read_csv(out / "episodes.csv")
    assert len(episodes) == 3 * (1 + 2 * 2) * 3  # test cases x (expert + 2 cases x 2 clones) x episodes
    # Clones are named by where they ended up, not by the temporary directory they were made in.
    assert {p for p in episodes["policy"] if p.startswith("clone:")} == {
        f"clone:{out}/runs/{c}/seed{s}" for c in ("highway-fast", "merge") for s in (0, 1)
    }
    config = json.loads((out / "config.json").read_text())
    # Every case observes the same way, so every clone fits every column.
    observations = {
        json.dumps(c["scenario"]["config"]["observation"], sort_keys=True) for c in config["cases"].values()
    }
    assert len(observations) == 1
    assert config["seeds"]["eval"]["range"] == "test" and config["seeds"]["eval"]["n_used"] == 3
    _check_seeded_clones(out, cells, [(out / "runs" / c, (0, 1)) for c in ("highway-fast", "merge")], config)


def _check_seeded_clones(
    out: pathlib.Path, rows: pd.DataFrame, clone_dirs: list[tuple[pathlib.Path, tuple[int, ...]]], config: dict
) -> None:
    """The fast preset's 2 training seeds: 2 clones per case, on disjoint blocks of demonstration
    seeds (seed 0 on the first, as the one clone of earlier versions) with initialisation seed s;
    a row's clone intervals are the variance-components intervals of its clones' episodes."""
    from testbed.metrics import Interval, clone_table, clones_mean_ci, clones_rate_ci

    blocks = config["seeds"]["demonstrations"] if "seeds" in config else config["demo_seeds"]
    assert blocks["block"] == 500 and set(blocks["first_last_by_train_seed"]) == {"0", "1"}
    for directory, seeds in clone_dirs:
        used = {}
        for s in seeds:
            meta = json.loads((directory / f"seed{s}" / "metadata.json").read_text())
            assert meta["config"]["seed"] == s
            used[s] = set(meta["demos"]["train_seeds"]) | set(meta["demos"]["val_seeds"])
            assert sorted(used[s]) == list(range(500 * s, 500 * s + len(used[s])))
        assert not used[0] & used[1]
    assert (rows["n_clones"] == 2).all()
    assert len(pd.read_csv(out / "clones.csv")) == 2 * len(rows)
    episodes = pd.read_csv(out / "episodes.csv")
    row = rows.iloc[-1]
    where = "test_case" if "test_case" in row else "sensor"  # the episodes the row's clones and expert drove
    mine = episodes[episodes[where] == row[where]]
    clones = mine[mine["train_seed"].notna()]
    if "train_case" in row:
        clones = clones[clones["train_case"] == row["train_case"]]
    assert Interval.from_columns(row, "clone_return") == clones_mean_ci(clone_table(clones, "return"))
    assert Interval.from_columns(row, "clone_crashed") == clones_rate_ci(clone_table(clones, "crashed"))
    expert = mine[mine["policy"] == "expert:scripted"].set_index("seed")["return"]
    diff = clones.assign(d=clones["return"].to_numpy() - expert.loc[clones["seed"]].to_numpy())
    direct = clones_mean_ci(clone_table(diff, "d"))
    assert [row["return_diff"], row["return_diff_ci_low"], row["return_diff_ci_high"]] == pytest.approx(
        [direct.mean, direct.low, direct.high]
    )


def test_experts_fast(tmp_path: pathlib.Path) -> None:
    module = _load("experts")
    out = tmp_path / "ex"
    cells = module.main(module.Args(fast=True, out=str(out), workers=2))
    assert list(cells["scenario"]) == ["highway-fast", "merge"]
    # Every clone saw exactly the same number of demonstration pairs.
    assert (cells["n_transitions"] == 60).all()
    assert (cells["expert_ms_per_decision"] > 0).all()
    for role in ("expert", "clone"):
        assert (
            (cells[f"{role}_crashed_ci_low"] <= cells[f"{role}_crashed"])
            & (cells[f"{role}_crashed"] <= cells[f"{role}_crashed_ci_high"])
        ).all()
    assert len(pd.read_csv(out / "episodes.csv")) == 2 * 2 * 3
    assert (out / "experts.png").stat().st_size > 0
    config = json.loads((out / "config.json").read_text())
    assert config["seeds"]["eval"]["range"] == "test" and config["provenance"]["git_commit"]


def test_leaderboard_fast(tmp_path: pathlib.Path) -> None:
    module = _load("leaderboard")
    out = tmp_path / "lb"
    ranking = module.main(module.Args(fast=True, out=str(out), workers=2))
    assert set(ranking["policy"]) == {"expert:scripted", "random", "idle"}
    assert list(ranking["rank"]) == [1, 2, 3]
    for f in ("leaderboard.md", "leaderboard.csv", "leaderboard.png", "config.json"):
        assert (out / f).is_file(), f
    config = json.loads((out / "config.json").read_text())
    assert config["seeds"]["range"] == "test" and config["seeds"]["test"]["first_used"] == 1_000_000
    assert "2 test seeds" in (out / "leaderboard.md").read_text()  # the markdown names the range
    png = (out / "leaderboard.png").read_bytes()
    (out / "leaderboard.png").unlink()
    module.replot(out)
    assert (out / "leaderboard.png").read_bytes() == png


def test_leaderboard_fast_clones(tmp_path: pathlib.Path) -> None:
    """The clones' row: training seed 0's clone given, seed 1 repeats its recipe on its own
    demonstration seeds; the row's normalized score is the clones' variance-components one."""
    from testbed import kit
    from testbed.collect import collect
    from testbed.metrics import Interval, clones_mean_ci, clones_normalized_score_ci, policy_table
    from testbed.scenarios import get_scenario
    from testbed.training import TrainConfig

    seed0 = tmp_path / "clone"
    demos = collect(get_scenario("highway-fast", {"duration": 5}), "scripted", n_episodes=3, seed=0)
    kit.train_clone(seed0, demos, TrainConfig(n_epochs=2, batch_size=4))
    module = _load("leaderboard")
    out = tmp_path / "lb"
    ranking = module.main(module.Args(fast=True, out=str(out), workers=2, clone=str(seed0)))
    group = f"clone:{seed0} (train seeds 0,1)"
    assert set(ranking["policy"]) == {"expert:scripted", "random", "idle", group}
    clones = pd.read_csv(out / "clones.csv")
    members = [f"clone:{seed0}", f"clone:{out}/clones/seed1"]
    assert list(clones.sort_values("train_seed")["policy"]) == members and set(clones["group"]) == {group}
    seed1 = json.loads((out / "clones" / "seed1" / "metadata.json").read_text())
    assert seed1["config"] == {**json.loads((seed0 / "metadata.json").read_text())["config"], "seed": 1}
    assert set(seed1["demos"]["train_seeds"] + seed1["demos"]["val_seeds"]) == {500, 501, 502}
    episodes = pd.read_csv(out / "episodes.csv")
    seeds = sorted(set(episodes["seed"]))
    references = (["random"], ["expert:scripted"])
    table, random, expert = (policy_table(episodes, p, "return", seeds) for p in (members, *references))
    row = ranking.set_index("policy").loc[group]
    assert Interval.from_columns(row, "normalized_score") == clones_normalized_score_ci([table], [random], [expert])
    scenario = pd.read_csv(out / "scenarios.csv").set_index("policy").loc[group]
    assert Interval.from_columns(scenario, "return") == clones_mean_ci(table) and scenario["n_clones"] == 2
    aggregate = pd.read_csv(out / "aggregate.csv").set_index("policy")
    assert aggregate.loc[group, "n_runs"] == 2 * 2 and aggregate.loc["idle", "n_runs"] == 2
    assert "the mean of 2 clones" in (out / "leaderboard.md").read_text()
    assert module.replot(out) == [out / "leaderboard.png", out / "aggregate.png"]


def test_data_scaling_fast(tmp_path: pathlib.Path) -> None:
    module = _load("data_scaling")
    out = tmp_path / "ds"
    args = module.Args(fast=True, out=str(out), workers=1)
    res = module.main(args)
    fast = args.resolved()
    cells = res["cells"]
    assert sorted(zip(cells["n_demo_episodes"], cells["train_seed"])) == [(1, 0), (1, 1), (3, 0), (3, 1)]
    summary = res["summary"].set_index("policy")
    assert summary.loc["expert:scripted", "normalized_score"] == 1 and summary.loc["random", "normalized_score"] == 0
    ref = res["baselines"].set_index("policy")["return"]
    expected = (cells["return"] - ref["random"]) / (ref["expert:scripted"] - ref["random"])
    assert list(cells["normalized_score"]) == list(expected)
    # Subsets: training seeds draw different episodes; all demonstration seeds are below the
    # held-out evaluation seeds, and validation episodes are never trained on.
    seeds = {
        (r["n_demo_episodes"], r["train_seed"]): r["demo_seeds"]
        for r in (json.loads(p.read_text()) for p in out.glob("sweep/cells/kind=bc*/result.json"))
    }
    assert set(seeds[(1, 0)]) <= set(seeds[(3, 0)]) and set(seeds[(1, 1)]) <= set(seeds[(3, 1)])
    assert all(max(s) < fast.pool_episodes for s in seeds.values())
    assert module.subset_indices(200, 10, 0) != module.subset_indices(200, 10, 1)
    assert set(module.subset_indices(200, 10, 0)) < set(module.subset_indices(200, 20, 0))
    episodes = pd.read_csv(out / "episodes.csv")
    assert set(episodes["seed"]) == {1_000_000, 1_000_001, 1_000_002} and len(episodes) == (3 + 4) * 3
    for f in ("cells.csv", "baselines.csv", "summary.csv", "data_scaling.png", "config.json"):
        assert (out / f).is_file(), f
    config = json.loads((out / "config.json").read_text())
    assert config["seeds"]["eval"]["first_used"] == 1_000_000 and config["seeds"]["eval"]["last_used"] == 1_000_002
    assert config["provenance"]["git_commit"]
    # Rerunning resumes (every cell done) and reproduces the same tables.
    again = module.main(args)
    pd.testing.assert_frame_equal(again["summary"], res["summary"])
    png = (out / "data_scaling.png").read_bytes()
    module.replot(out)
    assert (out / "data_scaling.png").read_bytes() == png
    with pytest.raises(TestbedError, match="different sweep config"):
        module.main(dataclasses.replace(args, set=("duration=20",)))
    # Cells made by other code are not resumed.
    config_path = out / "sweep" / "config.json"
    sweep_config = json.loads(config_path.read_text())
    assert sweep_config["sweep"]["config"]["code"] == config["provenance"]["git_commit"]
    sweep_config["sweep"]["config"]["code"] = "0" * 40
    config_path.write_text(json.dumps(sweep_config))
    with pytest.raises(TestbedError, match="different sweep config"):
        module.main(args)


def test_sensors_fast(tmp_path: pathlib.Path) -> None:
    module = _load("sensors")
    out = tmp_path / "se"
    summary = module.main(module.Args(fast=True, out=str(out), workers=1))
    assert list(summary["sensor"]) == ["kinematics", "lidar", "grid", "camera", "kinrich"]
    # The expert is privileged: every sensor's demonstrations and reference are the same driving.
    assert summary["expert_return"].nunique() == 1
    assert summary.set_index("sensor").loc["camera", "obs_dtype"] == "uint8"
    assert (summary["env_step_ms"] > 0).all()
    png = (out / "sensors.png").read_bytes()
    module.replot(out)
    assert (out / "sensors.png").read_bytes() == png
    assert not (out / "camera" / "demos" / "seed0" / "trajectories").exists()
    assert (out / "camera" / "demos" / "seed1" / "metadata.json").is_file()
    assert f"clone:{out}/camera/clones/seed1" in set(pd.read_csv(out / "episodes.csv")["policy"])
    config = json.loads((out / "config.json").read_text())
    sensors = [(out / s / "clones", (0, 1)) for s in summary["sensor"]]
    _check_seeded_clones(out, summary, sensors, config)


def test_divergence_gif_fast(tmp_path: pathlib.Path) -> None:
    from PIL import Image

    module = _load("divergence_gif")
    out = tmp_path / "gif"
    info = module.main(module.Args(fast=True, out=str(out)))
    with Image.open(out / "expert_vs_clone.gif") as gif:
        assert gif.n_frames == info["n_frames"] > 1
    record = json.loads((out / "render.json").read_text())
    assert record["args"]["policy"] == "idle" and record["provenance"]["git_commit"]


def test_rl_expert_fast_trains_evaluates_and_replots(tmp_path: pathlib.Path) -> None:
    module = _load("rl_expert")
    out = tmp_path / "rl"
    summary = module.main(module.Args(fast=True, out=str(out), workers=1))
    model = out / module.MODEL_DIR / "model.zip"
    assert list(summary["policy"]) == ["expert:scripted", f"expert:sb3:{model}"]  # the final path, not a temp one
    assert (summary["n_episodes"] == 2).all()
    curve = pd.read_csv(out / module.MODEL_DIR / "training_curve.csv")
    bins = pd.read_csv(out / "training_bins.csv")
    assert bins["n_episodes"].sum() == len(curve) and (bins["timesteps_to"] <= 300 + 100).all()
    config = json.loads((out / "config.json").read_text())
    assert config["rl_config"]["n_timesteps"] == 300 and config["provenance"]["git_commit"]
    assert ".tmp-" not in (out / "eval" / "config.json").read_text()
    # The model serves as an expert from where it was written.
    from testbed.policies import PolicySpec, build_agent
    from testbed.scenarios import get_scenario

    build_agent(PolicySpec.parse(f"expert:sb3:{model}"), get_scenario("highway-fast"))
    for png in module.replot(out):
        assert png.stat().st_size > 0
