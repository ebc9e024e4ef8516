"""Sensors for the clone: lidar, occupancy grid and camera scenarios are valid envs, are
validated like every other config, and run collect -> train -> evaluate end to end."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
from conftest import fails

from testbed.cli import main
from testbed.errors import TestbedError
from testbed.scenarios import get_scenario, make_env, parse_overrides, sensor_names

SHORT = ["--set", "duration=4"]
"""4 decisions per episode: enough to fill the camera's 4-frame stack."""


@pytest.mark.parametrize("sensor", ["lidar", "grid", "camera"])
def test_sensor_env_contract(sensor: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The usual headless advice; highway-env's viewer would then draw nothing at all.
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    scenario = get_scenario("highway-fast", parse_overrides(["duration=4"]), sensor=sensor)
    assert scenario.name == f"highway-fast-{sensor}" == get_scenario(f"highway-fast-{sensor}").name
    env = make_env(scenario)
    obs, _ = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    frames = [obs]
    for _ in range(4):
        obs, _, terminated, truncated, _ = env.step(1)
        assert env.observation_space.contains(obs), sensor
        frames.append(obs)
        if terminated or truncated:
            break
    env.close()
    frames = np.asarray(frames)
    assert np.ptp(frames) > 0, "the observation never changes"
    if sensor == "camera":
        assert obs.dtype == np.uint8 and obs.shape == (4, 128, 64)
        assert obs[-1].min() < obs[-1].max(), "blank camera frame"
    # The recorded config is the one simulated (JSON form: highway-env needs a tuple shape).
    recorded = scenario.to_dict()["config"]["observation"]
    assert (
        recorded["type"]
        == {"lidar": "LidarObservation", "grid": "OccupancyGrid", "camera": "GrayscaleObservation"}[sensor]
    )


def test_sensor_configs_are_validated() -> None:
    assert sensor_names() == ["kinematics", "lidar", "grid", "camera", "kinrich"]
    assert get_scenario("merge", sensor="kinematics").name == "merge"
    cases = [
        (("highway-fast-sonar", None), "unknown scenario"),
        (("highway-fast", {"observation.type": "LidarObservation"}), "sensor suffix"),
        (("highway-fast-lidar", {"observation.cell": 32}), "observation.cells"),
        (("highway-fast-lidar", {"observation.cells": 0}), "positive integer"),
        (("highway-fast-grid", {"observation.grid_step": [5, 0]}), "grid_step"),
        (("highway-fast-camera", {"observation.observation_shape": [16, 16]}), "at least 36"),
        (("highway-fast-camera", {"observation.stack_size": "4"}), "observation.stack_size"),
        (
            ("highway-fast-camera", {"observation": {"type": "GrayscaleObservation", "stack": 4}}),
            "unknown observation key",
        ),
        (("highway-fast", {"observation": {"type": "LidarObservation", "cells": 8}}), "suffix"),
    ]
    for (name, overrides), fragment in cases:
        with pytest.raises(TestbedError, match=fragment):
            get_scenario(name, overrides)
    with pytest.raises(TestbedError, match="unknown sensor"):
        get_scenario("highway-fast", sensor="radar")
    with pytest.raises(TestbedError, match="has sensor"):
        get_scenario("highway-fast-grid", sensor="lidar")
    assert get_scenario("highway-fast-lidar", {"observation.cells": 32}).config["observation"]["cells"] == 32


def test_constant_features_are_not_amplified() -> None:
    from testbed.training import observation_statistics

    obs = np.zeros((10, 3))
    obs[:, 1] = np.arange(10)
    obs[:5, 2] = 1e-5
    _, std = observation_statistics(obs)
    assert std[0] == 1.0  # never changed: a later non-zero value passes through unscaled
    assert std[1] == pytest.approx(np.arange(10).std())
    assert std[2] == 1e-3  # tiny but real variation keeps the floor


def _collect(out: pathlib.Path, sensor: str, n: int = 3, extra: list[str] | None = None) -> pathlib.Path:
    args = ["collect", "--scenario", f"highway-fast-{sensor}", *SHORT, "--episodes", str(n), "--workers", "1"]
    assert main([*args, *(extra or []), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def camera_demos(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return _collect(tmp_path_factory.mktemp("camera") / "demos", "camera")


@pytest.mark.parametrize("sensor", ["lidar", "grid", "camera"])
@pytest.mark.slow
def test_collect_train_evaluate(
    sensor: str, tmp_path: pathlib.Path, tmp_path_factory: pytest.TempPathFactory, camera_demos: pathlib.Path
) -> None:
    from testbed.clone_io import load_clone
    from testbed.demos import load_demos

    demos_dir = camera_demos if sensor == "camera" else _collect(tmp_path / "demos", sensor)
    demos = load_demos(demos_dir)
    space = json.loads((demos_dir / "metadata.json").read_text())["observation_space"]
    assert demos.trajectories[0].obs.shape[1:] == tuple(space["shape"])
    assert demos.trajectories[0].obs.dtype == np.dtype(space["dtype"])
    run = tmp_path / "run"
    assert main(["train", "--demos", str(demos_dir), "--out", str(run), "--epochs", "2", "--batch-size", "4"]) == 0
    policy = load_clone(run, scenario=get_scenario(f"highway-fast-{sensor}", parse_overrides(["duration=4"])))
    extractor = type(policy.features_extractor).__name__
    assert extractor == ("NatureCNN" if sensor == "camera" else "StandardizedFlattenExtractor")
    ev = tmp_path / "ev"
    args = ["evaluate", "--scenario", f"highway-fast-{sensor}", *SHORT, "--policy", f"clone:{run}", "--policy", "idle"]
    assert main([*args, "--episodes", "2", "--workers", "1", "--no-plot", "--out", str(ev)]) == 0
    import pandas as pd

    episodes = pd.read_csv(ev / "episodes.csv")
    assert len(episodes) == 4 and set(episodes["policy"]) == {f"clone:{run}", "idle"}


@pytest.mark.slow
def test_camera_clone_refuses_other_sensors(
    capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path, camera_demos: pathlib.Path
) -> None:
    run = tmp_path / "run"
    assert main(["train", "--demos", str(camera_demos), "--out", str(run), "--epochs", "1", "--batch-size", "4"]) == 0
    capsys.readouterr()
    for scenario in ("highway-fast", "highway-fast-lidar"):
        args = ["evaluate", "--scenario", scenario, *SHORT, "--policy", f"clone:{run}", "--episodes", "1"]
        fails(
            capsys,
            [*args, "--workers", "1", "--out", str(tmp_path / "ev")],
            "different observation space",
            only_line=True,
        )
    # Same shapes, different picture: another camera zoom is refused too.
    args = ["evaluate", "--scenario", "highway-fast-camera", *SHORT, "--set", "observation.scaling=3.0"]
    fails(
        capsys,
        [*args, "--policy", f"clone:{run}", "--workers", "1", "--out", str(tmp_path / "ev")],
        "observation config differs",
        only_line=True,
    )
    assert not (tmp_path / "ev").exists()


@pytest.mark.slow
def test_camera_demos_are_deterministic(tmp_path: pathlib.Path, camera_demos: pathlib.Path) -> None:
    from testbed.demos import load_demos

    again = load_demos(_collect(tmp_path / "again", "camera"))
    first = load_demos(camera_demos)
    assert len(first.trajectories) == len(again.trajectories) == 3
    for a, b in zip(first.trajectories, again.trajectories):
        assert a.obs.dtype == np.uint8
        np.testing.assert_array_equal(a.obs, b.obs)
        np.testing.assert_array_equal(a.acts, b.acts)
    # Different seeds see different roads.
    assert not np.array_equal(first.trajectories[0].obs[-1], first.trajectories[1].obs[-1])
