"""Continuous control: the highway-fast-continuous preset, expert:continuous, and the whole
pipeline (collect, BC on Box actions, evaluate, drift) with float actions."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pandas as pd
import pytest
from conftest import fails

from testbed.cli import main
from testbed.errors import TestbedError
from testbed.policies import PolicySpec, build_agent
from testbed.rollout import run_episode
from testbed.scenarios import get_scenario, make_env

SCENARIO = "highway-fast-continuous"
TUNING_SEEDS = [20_000, 20_001, 20_002]


@pytest.fixture(scope="module")
def scenario():
    return get_scenario(SCENARIO, {"duration": 20})


@pytest.fixture(scope="module")
def env(scenario):
    env = make_env(scenario)
    yield env
    env.close()


def _episode(env, scenario, spec: str, seed: int, **kwargs):
    parsed = PolicySpec.parse(spec)
    return run_episode(env, build_agent(parsed, scenario), seed, policy_label=parsed.label, **kwargs)


def test_env_contract(scenario) -> None:
    from gymnasium.utils.env_checker import check_env

    config = scenario.config
    assert config["action"]["type"] == "ContinuousAction" and config["offroad_terminal"] is True
    assert config["policy_frequency"] == 5
    env = make_env(get_scenario(SCENARIO, {"duration": 2}))
    try:
        check_env(env.unwrapped, skip_render_check=True)
        assert (
            env.action_space.shape == (2,) and np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)
        )
        obs, _ = env.reset(seed=3)
        expert = build_agent(PolicySpec("expert", "continuous"), scenario)
        expert.reset(env.unwrapped, 3)
        for _ in range(10):
            action = expert.act(obs, env.unwrapped)
            assert isinstance(action, np.ndarray) and action.dtype == np.float32 and env.action_space.contains(action)
            obs, *_ = env.step(action)
            assert env.observation_space.contains(obs)
    finally:
        env.close()


def test_expert_keeps_lane_and_beats_baselines(env, scenario) -> None:
    runs = {p: [_episode(env, scenario, p, s) for s in TUNING_SEEDS] for p in ("expert:continuous", "idle", "random")}
    for record in runs["expert:continuous"]:
        infos = list(record.trajectory.infos)
        assert not infos[-1]["crashed"] and all(i["on_road"] for i in infos)
        # 20 s at 5 Hz, to the time limit (highway-env sums 0.2 s steps: 100 or 101 decisions).
        assert len(record.trajectory.acts) >= 100
    returns = {p: np.array([r.trajectory.rews.sum() for r in rs]) for p, rs in runs.items()}
    assert returns["expert:continuous"].min() > returns["random"].max() + 20
    # The zero action drives straight at 25 m/s and only loses by crashing; random leaves the road.
    assert all(r.trajectory.infos[-1]["crashed"] for r in runs["random"])
    assert returns["expert:continuous"].mean() > returns["idle"].mean() - 1.0


def test_expert_tracks_lane_centre(env, scenario) -> None:
    obs, _ = env.reset(seed=TUNING_SEEDS[0])
    base = env.unwrapped
    agent = build_agent(PolicySpec("expert", "continuous"), scenario)
    agent.reset(base, TUNING_SEEDS[0])
    offsets = []
    for _ in range(100):
        obs, _, terminated, truncated, _ = env.step(agent.act(obs, base))
        lane = base.road.network.get_lane(base.vehicle.lane_index)
        offsets.append(abs(float(lane.local_coordinates(base.vehicle.position)[1])))
        if terminated or truncated:
            break
    offsets = np.array(offsets)
    # Half a lane is 2 m; mid lane-change offsets approach it, lane keeping stays near 0.
    assert offsets.max() < 2.1 and np.median(offsets) < 0.1


def test_determinism_and_noise(env, scenario) -> None:
    idle = build_agent(PolicySpec("idle"), scenario)
    a = _episode(env, scenario, "expert:continuous", 11, labeller=idle)
    b = _episode(env, scenario, "expert:continuous", 11, labeller=idle)
    np.testing.assert_array_equal(a.trajectory.acts, b.trajectory.acts)
    np.testing.assert_array_equal(a.trajectory.obs, b.trajectory.obs)
    assert a.trajectory.acts.dtype == np.float32 and a.trajectory.acts.shape == (len(a.trajectory.rews), 2)
    assert a.labels is not None and a.labels.shape == a.trajectory.acts.shape and not a.labels.any()
    r1, r2 = (_episode(env, scenario, "random", 12) for _ in range(2))
    np.testing.assert_array_equal(r1.trajectory.acts, r2.trajectory.acts)
    assert np.abs(r1.trajectory.acts).max() <= 1 and r1.trajectory.acts.std() > 0.3
    n1, n2 = (_episode(env, scenario, "expert:continuous", 13, noise=0.1) for _ in range(2))
    np.testing.assert_array_equal(n1.executed, n2.executed)
    assert n1.executed is not None and np.abs(n1.executed).max() <= 1
    # Applied = clean + Gaussian noise of std 0.1 * range (0.2 here), clipped.
    diff = (n1.executed - n1.trajectory.acts)[np.abs(n1.executed).max(axis=1) < 1]
    assert 0.1 < diff.std() < 0.3
    assert n1.trajectory.infos[0]["applied_action"] == [float(x) for x in n1.executed[0]]


def test_mismatched_expert_is_refused(scenario) -> None:
    from testbed.collect import collect

    with pytest.raises(TestbedError, match="ContinuousAction"):
        collect(scenario, "scripted", n_episodes=1, seed=0)
    with pytest.raises(TestbedError, match="DiscreteMetaAction"):
        collect(get_scenario("highway-fast"), "continuous", n_episodes=1, seed=0)


def test_action_error() -> None:
    from testbed.drift import action_error

    np.testing.assert_array_equal(action_error(np.array([0, 1, 2]), np.array([0, 2, 2])), [0.0, 1.0, 0.0])
    a = np.array([[0.0, 0.0], [1.0, -1.0]], dtype=np.float32)
    b = np.array([[0.0, 0.5], [-1.0, -1.0]], dtype=np.float32)
    np.testing.assert_allclose(action_error(a, b, np.array([2.0, 2.0])), [0.125, 0.5])


@pytest.mark.slow
def test_cli_end_to_end(capsys, tmp_path: pathlib.Path) -> None:
    demos, clone = tmp_path / "demos", tmp_path / "clone"
    short = ["--scenario", SCENARIO, "--set", "duration=4", "--workers", "1"]
    assert main(["collect", "--out", str(demos), "--expert", "continuous", "--episodes", "3", *short]) == 0
    meta = json.loads((demos / "metadata.json").read_text())
    assert meta["action_space"]["type"] == "Box" and meta["expert"]["name"] == "continuous"
    assert main(["train", "--demos", str(demos), "--out", str(clone), "--epochs", "3", "--batch-size", "16"]) == 0
    assert "action mae" in capsys.readouterr().out
    log = pd.read_csv(clone / "train_log.csv")
    assert {"train/action_mae", "val/action_mae"} <= set(log.columns) and "train/accuracy" not in log.columns
    assert log["train/action_mae"].between(0, 2).all()

    from testbed.clone_io import load_clone

    policy = load_clone(clone, scenario=get_scenario(SCENARIO, {"duration": 4}))
    assert type(policy.action_dist).__name__ == "DiagGaussianDistribution"

    ev = tmp_path / "ev"
    assert (
        main(
            [
                "evaluate",
                "--out",
                str(ev),
                "--policy",
                f"clone:{clone}",
                "--policy",
                "idle",
                "--episodes",
                "2",
                "--no-plot",
                *short,
            ]
        )
        == 0
    )
    episodes = pd.read_csv(ev / "episodes.csv")
    assert len(episodes) == 4 and (episodes["length"] >= 1).all()

    dr = tmp_path / "drift"
    assert (
        main(
            [
                "drift",
                "--out",
                str(dr),
                "--expert",
                "continuous",
                "--policy",
                "expert:continuous",
                "--policy",
                f"clone:{clone}",
                "--episodes",
                "2",
                *short,
            ]
        )
        == 0
    )
    summary = pd.read_csv(dr / "drift_summary.csv").set_index("policy")
    assert summary.loc["expert:continuous", "eps_on"] == 0.0
    assert summary.loc["expert:continuous", "max_position_error_m"] == 0.0
    assert 0.0 < summary.loc[f"clone:{clone}", "eps_off"] < 1.0
    assert summary.loc[f"clone:{clone}", "first_disagreement_step"] >= 1

    # DAgger with the continuous expert labelling the learner's states.
    dg = tmp_path / "dg"
    assert (
        main(
            [
                "train",
                "--algo",
                "dagger",
                "--out",
                str(dg),
                "--scenario",
                SCENARIO,
                "--expert",
                "continuous",
                "--rounds",
                "2",
                "--labels-per-round",
                "12",
                "--epochs-per-round",
                "2",
                "--batch-size",
                "8",
                "--set",
                "duration=4",
            ]
        )
        == 0
    )
    log = pd.read_csv(dg / "train_log.csv")
    assert list(log["round"]) == [0, 1] and list(log["n_labels"]) == [12, 24]
    assert (log["train/action_mae"] > 0).all()
    assert (
        main(
            [
                "evaluate",
                "--out",
                str(tmp_path / "dg_ev"),
                "--policy",
                f"clone:{dg}",
                "--episodes",
                "1",
                "--no-plot",
                *short,
            ]
        )
        == 0
    )
    # The discrete expert cannot label continuous states.
    assert (
        main(
            [
                "train",
                "--algo",
                "dagger",
                "--out",
                str(tmp_path / "dg2"),
                "--scenario",
                SCENARIO,
                "--expert",
                "scripted",
                "--set",
                "duration=4",
            ]
        )
        == 2
    )
    assert "ContinuousAction" in capsys.readouterr().err


def test_python_policy_drives_a_continuous_scenario(env, scenario, capsys, tmp_path: pathlib.Path) -> None:
    agent = build_agent(PolicySpec.parse("_user_policy:gentle_brake"), scenario)
    record = run_episode(env, agent, 3, policy_label="brake")
    acts = record.trajectory.acts
    assert acts.dtype == np.float32 and acts.shape == (len(record.trajectory.rews), 2)
    assert np.all(acts == np.array([-0.2, 0.0], dtype=np.float32))
    out = tmp_path / "ev"
    args = ["evaluate", "--scenario", "highway-fast-continuous", "--set", "duration=3", "--episodes", "2"]
    assert main([*args, "--policy", "_user_policy:gentle_brake", "--workers", "1", "--out", str(out)]) == 0
    assert pd.read_csv(out / "summary.csv")["policy"].tolist() == ["_user_policy:gentle_brake"]
    capsys.readouterr()
    for name, fragment in (("steer_too_hard", "outside Box"), ("three_components", "expected (2,)")):
        for workers in ("1", "2"):
            bad = tmp_path / f"{name}-{workers}"
            fails(
                capsys, [*args, "--policy", f"_user_policy:{name}", "--workers", workers, "--out", str(bad)], fragment
            )
            assert not bad.exists()
