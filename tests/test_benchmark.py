"""The leaderboard: normalized scores by construction, ranking, user policies, n/a scenarios,
bad specs, determinism. Tiny runs: 2 episodes of 5 s per scenario."""

from __future__ import annotations

import math
import pathlib
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
from conftest import fails

from testbed.cli import main
from testbed.errors import TestbedError
from testbed.leaderboard import normalized_score, run_benchmark, suite_scenarios, with_references
from testbed.policies import PolicySpec, PythonAgent
from testbed.rollout import RolloutPool

QUICK = ["--episodes", "2", "--set", "duration=5", "--workers", "1"]


# --- normalized score: pure ------------------------------------------------------------------


def test_normalized_score_by_construction() -> None:
    rng = np.random.default_rng(0)
    expert, random = rng.normal(20, 3, 30), rng.normal(5, 3, 30)
    assert normalized_score([expert], [random], [expert]).mean == 1.0
    assert normalized_score([random], [random], [expert]).mean == 0.0
    one = normalized_score([expert], [random], [expert])
    zero = normalized_score([random], [random], [expert])
    assert (one.low, one.high) == (1.0, 1.0) and (zero.low, zero.high) == (0.0, 0.0)


def test_normalized_score_known_values_and_interval() -> None:
    # Scenario A: (6 - 2) / (10 - 2) = 0.5; scenario B: (4 - 0) / (8 - 0) = 0.5 -> 0.5 ... and 1.0 below.
    a = normalized_score([[5.0, 7.0]], [[1.0, 3.0]], [[9.0, 11.0]])
    assert a.mean == pytest.approx(0.5) and a.low <= 0.5 <= a.high
    two = normalized_score([[5.0, 7.0], [8.0, 8.0]], [[1.0, 3.0], [0.0, 0.0]], [[9.0, 11.0], [8.0, 8.0]])
    assert two.mean == pytest.approx(0.75)
    noisy = normalized_score([np.arange(20.0)], [np.zeros(20)], [np.full(20, 19.0)])
    assert noisy.low < noisy.mean < noisy.high
    # Expert not better than random: the scale is undefined.
    assert math.isnan(normalized_score([[1.0]], [[2.0]], [[2.0]]).mean)


def test_suite_and_references() -> None:
    names = [e.name for e in suite_scenarios("standard")]
    assert names == ["highway-fast", "highway-fast-dense", "merge", "roundabout"]
    assert suite_scenarios("standard")[1].resolve().config["vehicles_density"] == 1.5
    assert [e.name for e in suite_scenarios("standard", ["merge"])] == ["merge"]
    with pytest.raises(TestbedError, match="no scenario"):
        suite_scenarios("standard", ["highway"])
    with pytest.raises(TestbedError, match="unknown suite"):
        suite_scenarios("nope")
    labels = [s.label for s in with_references([PolicySpec("idle"), PolicySpec("random")], "scripted")]
    assert labels == ["idle", "random", "expert:scripted"]


# --- MODULE:FUNCTION policies ----------------------------------------------------------------


def test_python_policy_forms() -> None:
    env = SimpleNamespace(action_space=gym.spaces.Discrete(5), vehicle=SimpleNamespace(speed=30.0))
    obs = np.zeros((5, 5), dtype=np.float32)
    expected = {"_user_policy:keep_right": 2, "_user_policy:make_predictor": 3, "_user_policy:make_agent": 4}
    for text, action in expected.items():
        spec = PolicySpec.parse(text)
        assert spec.kind == "python" and spec.label == text
        agent = PythonAgent(text)
        agent.reset(env, 0)
        assert agent.act(obs, env) == action, text
    bad = PythonAgent("_user_policy:out_of_range")
    bad.reset(env, 0)
    with pytest.raises(TestbedError, match="outside Discrete"):
        bad.act(obs, env)
    with pytest.raises(TestbedError, match="not callable"):
        PolicySpec.parse("_user_policy:not_callable")


# --- the command -----------------------------------------------------------------------------


def test_benchmark_ranks_user_policy(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "lb"
    args = [
        "benchmark",
        "--out",
        str(out),
        "--policy",
        "idle",
        "--policy",
        "_user_policy:keep_right",
        "--scenarios",
        "highway-fast",
        *QUICK,
    ]
    assert main(args) == 0
    ranking = pd.read_csv(out / "leaderboard.csv")
    scenarios = pd.read_csv(out / "scenarios.csv")
    episodes = pd.read_csv(out / "episodes.csv")
    policies = {"idle", "_user_policy:keep_right", "expert:scripted", "random"}
    assert set(ranking["policy"]) == policies and len(ranking) == 4
    assert list(ranking.columns) == [
        "rank",
        "policy",
        "n_scenarios",
        "normalized_score",
        "normalized_score_ci_low",
        "normalized_score_ci_high",
        "normalized_score/highway-fast",
    ]
    assert list(ranking["rank"]) == [1, 2, 3, 4]
    assert ranking["normalized_score"].is_monotonic_decreasing
    by_policy = ranking.set_index("policy")
    assert by_policy.loc["expert:scripted", "normalized_score"] == 1.0
    assert by_policy.loc["random", "normalized_score"] == 0.0
    # The score is the documented ratio of mean returns, recomputed from the episodes.
    mean = episodes.groupby("policy")["return"].mean()
    for policy in ("idle", "_user_policy:keep_right"):
        expected = (mean[policy] - mean["random"]) / (mean["expert:scripted"] - mean["random"])
        assert by_policy.loc[policy, "normalized_score"] == pytest.approx(expected)
    assert len(episodes) == 4 * 2 and set(episodes["seed"]) == {10000, 10001}
    assert (episodes.loc[episodes["policy"] == "expert:scripted", "twin_error_m"] == 0).all()
    assert (episodes.loc[episodes["policy"] == "idle", "twin_error_m"] > 1).all()
    assert len(scenarios) == 4 and (scenarios["status"] == "ok").all()
    for column in ("return", "crash_rate_ci_low", "twin_error_m_ci_high", "normalized_score"):
        assert column in scenarios.columns
    markdown = (out / "leaderboard.md").read_text()
    ranked_lines = [line for line in markdown.splitlines() if line.startswith("| 1 ") or line.startswith("| 4 ")]
    assert "`expert:scripted`" in ranked_lines[0] and "`random`" in ranked_lines[1]
    assert "_user_policy:keep_right" in markdown and "## highway-fast" in markdown
    # Aggregates over scenarios and seeds: the mean of pooled runs is the ranking's score.
    aggregate = pd.read_csv(out / "aggregate.csv").set_index("policy")
    assert set(aggregate.index) == policies and (aggregate["n_runs"] == 2).all()
    for policy in policies:
        assert aggregate.loc[policy, "mean"] == pytest.approx(by_policy.loc[policy, "normalized_score"])
        assert (
            aggregate.loc[policy, "iqm_ci_low"] <= aggregate.loc[policy, "iqm"] <= aggregate.loc[policy, "iqm_ci_high"]
        )
    assert set(pd.read_csv(out / "profiles.csv")["policy"]) == policies
    assert len(pd.read_csv(out / "improvement.csv")) == 4 * 3
    assert "## Aggregate over scenarios and seeds" in markdown


@pytest.fixture(scope="module")
def tiny_clone(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A highway-fast clone (3 short demonstrations, 1 epoch): only its spaces matter here."""
    from testbed.collect import collect
    from testbed.scenarios import get_scenario
    from testbed.training import TrainConfig, save_clone, train_bc

    demos = collect(get_scenario("highway-fast", {"duration": 5}), "scripted", n_episodes=3, seed=0, n_workers=1)
    config = TrainConfig(n_epochs=1, batch_size=8, seed=0)
    result = train_bc(demos, config)
    return save_clone(tmp_path_factory.mktemp("runs") / "clone", result, demos=demos, demos_path="-", config=config)


def test_unfit_scenario_is_na(tmp_path: pathlib.Path, tiny_clone: pathlib.Path) -> None:
    out = tmp_path / "lb"
    spec = f"clone:{tiny_clone}"
    args = [
        "benchmark",
        "--out",
        str(out),
        "--policy",
        spec,
        "--scenarios",
        "highway-fast",
        "roundabout",
        *QUICK,
        "--episodes",
        "1",
    ]
    assert main(args) == 0
    scenarios = pd.read_csv(out / "scenarios.csv").set_index(["scenario", "policy"])
    assert scenarios.loc[("roundabout", spec), "status"] == "unfit"
    assert "observation config differs" in scenarios.loc[("roundabout", spec), "note"]
    assert scenarios.loc[("highway-fast", spec), "status"] == "ok"
    ranking = pd.read_csv(out / "leaderboard.csv").set_index("policy")
    assert ranking.loc[spec, "n_scenarios"] == 1
    assert math.isnan(ranking.loc[spec, "normalized_score/roundabout"])
    assert ranking.loc[spec, "normalized_score"] == ranking.loc[spec, "normalized_score/highway-fast"]
    episodes = pd.read_csv(out / "episodes.csv")
    assert not ((episodes["scenario"] == "roundabout") & (episodes["policy"] == spec)).any()
    assert "n/a: `" + spec + "` on roundabout" in (out / "leaderboard.md").read_text()


def test_benchmark_bad_inputs(capsys, tmp_path: pathlib.Path) -> None:
    out = str(tmp_path / "lb")
    base = ["benchmark", "--out", out, "--scenarios", "highway-fast", *QUICK]
    fails(capsys, [*base, "--policy", "wizard"], "bad policy spec")
    fails(capsys, [*base, "--policy", "no_such_module:act"], "no module named 'no_such_module'")
    fails(capsys, [*base, "--policy", "_user_policy:missing"], "has no 'missing'")
    fails(capsys, [*base, "--policy", "_user_policy:three_actions"], "cannot run on any scenario")
    fails(capsys, [*base, "--suite", "nope"], "unknown suite")
    fails(capsys, [*base, "--scenarios", "higway"], "has no scenario")
    fails(capsys, [*base, "--episodes", "0"], "--episodes")
    fails(capsys, [*base, "--horizon-s", "0"], "--horizon-s")
    fails(capsys, [*base, "--expert", "nobody"], "unknown expert")
    fails(capsys, [*base, "--policy", "_user_policy:out_of_range"], "outside Discrete")
    assert not any(tmp_path.iterdir()), "a failed command left output behind"


def test_benchmark_is_deterministic() -> None:
    entries = suite_scenarios("standard", ["highway-fast"])
    specs = [PolicySpec("idle"), PolicySpec.parse("_user_policy:make_agent")]
    boards = []
    for _ in range(2):
        with RolloutPool(1) as pool:
            boards.append(run_benchmark(entries, specs, n_episodes=2, overrides={"duration": 3}, pool=pool))
    a, b = boards
    pd.testing.assert_frame_equal(a.ranking, b.ranking)
    pd.testing.assert_frame_equal(a.scenarios, b.scenarios)
    pd.testing.assert_frame_equal(a.episodes, b.episodes)


def test_user_sb3_model_file_is_ranked_next_to_ours(tmp_path: pathlib.Path) -> None:
    """A model a user trained with plain stable-baselines3 and saved with model.save ranks beside
    our expert, clone baselines and references."""
    from stable_baselines3 import PPO

    from testbed.scenarios import get_scenario, make_env

    env = make_env(get_scenario("highway-fast", {"duration": 5}))
    model = PPO("MlpPolicy", env, n_steps=32, batch_size=16, n_epochs=1, seed=0, policy_kwargs={"net_arch": [16]})
    model.learn(64)
    model.save(tmp_path / "users_model")
    env.close()
    out = tmp_path / "board"
    spec = f"expert:sb3:{tmp_path / 'users_model.zip'}"
    args = ["benchmark", "--scenarios", "highway-fast", "--policy", spec, "--policy", "idle", "--out", str(out), *QUICK]
    assert main(args) == 0
    ranking = pd.read_csv(out / "leaderboard.csv")
    assert set(ranking["policy"]) == {spec, "idle", "expert:scripted", "random"}
    row = ranking.set_index("policy").loc[spec]
    assert row["n_scenarios"] == 1 and np.isfinite(row["normalized_score"])
    assert sorted(ranking["rank"]) == [1, 2, 3, 4]
    assert spec in (out / "leaderboard.md").read_text()
