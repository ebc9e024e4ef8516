"""RL experts: `testbed train-expert` writes a loadable SB3 model; `expert:sb3:PATH` serves any
SB3 DQN/PPO/A2C zip deterministically, checks spaces, and never unpickles the file."""

from __future__ import annotations

import base64
import io
import json
import os
import pathlib
import pickle
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import fails

from testbed.cli import main
from testbed.errors import TestbedError
from testbed.experts import make_expert
from testbed.experts.sb3 import SB3Expert, load_sb3_model
from testbed.policies import PolicySpec
from testbed.rl import DQN_DEFAULTS, RLConfig, train_expert
from testbed.rollout import rollouts
from testbed.scenarios import Scenario, get_scenario, make_env
from testbed.seeds import RL, range_of

pytestmark = pytest.mark.slow  # end-to-end: every test here runs a whole command or script

N_TIMESTEPS = 250
"""Past DQN's learning_starts (200), so a few gradient steps change the weights."""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("rl") / "dqn"
    assert (
        main(["train-expert", "--algo", "dqn", "--timesteps", str(N_TIMESTEPS), "--seed", "3", "--out", str(out)]) == 0
    )
    return out


def test_training_leaves_no_sb3_log_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    # SB3 makes an (empty) log folder, SB3_LOGDIR or /tmp/SB3-<time>, unless given a logger.
    monkeypatch.setenv("SB3_LOGDIR", str(tmp_path / "sb3"))
    train_expert(get_scenario("highway-fast", {"duration": 5}), RLConfig(algo="dqn", n_timesteps=20, seed=0))
    assert not (tmp_path / "sb3").exists()


def test_train_expert_writes_model_metadata_and_curve(tiny_run: pathlib.Path) -> None:
    meta = json.loads((tiny_run / "metadata.json").read_text())
    assert meta["algorithm"] == "dqn" and meta["n_timesteps"] == N_TIMESTEPS
    assert meta["hyperparameters"] == DQN_DEFAULTS
    assert meta["scenario"]["name"] == "highway-fast"
    assert meta["observation_space"]["shape"] == [5, 5] and meta["action_space"]["n"] == 5
    assert meta["seeds"]["algorithm"] == 3 and meta["seeds"]["first"] == RL.first + 3
    assert "git_commit" in meta["provenance"] and meta["provenance"]["packages"]["stable-baselines3"] == "2.2.1"
    curve = pd.read_csv(tiny_run / "training_curve.csv")
    assert list(curve.columns) == ["episode", "seed", "timesteps", "return", "length", "crashed"]
    assert len(curve) == meta["seeds"]["n_episodes"] > 0
    assert curve["seed"].tolist() == [RL.first + 3 + k for k in range(len(curve))]  # the RL range
    assert all(range_of(int(s)) is RL for s in curve["seed"])
    assert curve["timesteps"].is_monotonic_increasing and curve["timesteps"].iloc[-1] <= N_TIMESTEPS
    assert (curve["timesteps"].diff().fillna(curve["timesteps"].iloc[0]) == curve["length"]).all()
    model = load_sb3_model(tiny_run / "model.zip")
    assert model.algorithm == "dqn" and model.sha256 == meta["model_sha256"]


def test_training_is_deterministic_and_reload_is_faithful(tiny_run: pathlib.Path) -> None:
    result = train_expert(get_scenario("highway-fast"), RLConfig(algo="dqn", n_timesteps=N_TIMESTEPS, seed=3))
    curve = pd.read_csv(tiny_run / "training_curve.csv")
    pd.testing.assert_frame_equal(result.curve, curve, check_dtype=False)
    served = load_sb3_model(tiny_run / "model.zip").policy.state_dict()
    trained = result.model.policy.state_dict()
    assert served.keys() == trained.keys()
    assert all(torch.equal(served[k], trained[k]) for k in served)
    # The rebuilt policy acts as the in-memory SB3 model does.
    obs = np.random.default_rng(0).normal(size=(256, 5, 5)).astype(np.float32)
    rebuilt, _ = load_sb3_model(tiny_run / "model.zip").policy.predict(obs, deterministic=True)
    original, _ = result.model.predict(obs, deterministic=True)
    np.testing.assert_array_equal(rebuilt, original)


def test_sb3_expert_drives_deterministically_from_the_observation(tiny_run: pathlib.Path) -> None:
    scenario = get_scenario("highway-fast", {"duration": 8})
    spec = PolicySpec.parse(f"expert:sb3:{tiny_run / 'model.zip'}")
    first = rollouts(scenario, spec, [10_000, 10_001])
    second = rollouts(scenario, spec, [10_000, 10_001])
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a.trajectory.acts, b.trajectory.acts)
    # It acted on exactly the observations the env returned.
    policy = load_sb3_model(tiny_run / "model.zip").policy
    for record in first:
        acts, _ = policy.predict(record.trajectory.obs[:-1], deterministic=True)
        np.testing.assert_array_equal(acts, record.trajectory.acts)
    # As a labeller it gives the same actions it drives with.
    labelled = rollouts(scenario, PolicySpec("idle"), [10_000], labeller=spec)[0]
    acts, _ = policy.predict(labelled.trajectory.obs[:-1], deterministic=True)
    np.testing.assert_array_equal(labelled.labels, acts)


def test_checked_envs_are_held_weakly(tiny_run: pathlib.Path) -> None:
    """An env is checked once while it lives; once freed, it leaves no mark that another env
    made at its address would pass unchecked (kept steps make and free envs all the time)."""
    import gc

    expert = make_expert(f"sb3:{tiny_run / 'model.zip'}")
    assert isinstance(expert, SB3Expert)
    env = make_env(get_scenario("highway-fast", {"duration": 2}))
    obs, _ = env.reset(seed=10_000)
    expert.act(obs, env.unwrapped)
    expert.act(obs, env.unwrapped)
    assert len(expert._checked) == 1
    del env
    gc.collect()
    assert len(expert._checked) == 0


def test_space_and_observation_mismatch(tiny_run: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = PolicySpec.parse(f"expert:sb3:{tiny_run / 'model.zip'}")
    wider = get_scenario("highway-fast", {"observation.vehicles_count": 7, "duration": 2})
    with pytest.raises(TestbedError, match=r"expects observation space Box\(5, 5\) float32 but .* Box\(7, 5\) float32"):
        rollouts(wider, spec, [10_000])
    # Same shape, different meaning: absolute instead of relative coordinates.
    absolute = get_scenario("highway-fast", {"observation.absolute": True, "duration": 2})
    with pytest.raises(TestbedError, match="observation config"):
        rollouts(absolute, spec, [10_000])
    # Both are caught before any simulation, where agents are built (the leaderboard's n/a).
    from testbed.policies import build_agent

    for scenario in (wider, absolute, get_scenario("roundabout")):
        with pytest.raises(TestbedError, match="SB3 model"):
            build_agent(spec, scenario)
    import gymnasium as gym

    expert = make_expert(f"sb3:{tiny_run / 'model.zip'}")
    assert isinstance(expert, SB3Expert)
    with pytest.raises(TestbedError, match=r"expects action space Discrete\(5\) but .* Discrete\(3\)"):
        expert.check_spaces(gym.spaces.Box(-np.inf, np.inf, (5, 5), np.float32), gym.spaces.Discrete(3))
    out = tiny_run.parent / "ev"
    fails(
        capsys,
        [
            "evaluate",
            "--policy",
            f"expert:sb3:{tiny_run / 'model.zip'}",
            "--set",
            "observation.vehicles_count=7",
            "--episodes",
            "1",
            "--workers",
            "1",
            "--out",
            str(out),
        ],
        "expects observation space",
    )
    assert not out.exists()


def test_missing_corrupt_and_unsupported_files_via_cli(
    tiny_run: pathlib.Path, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "ev")
    base = ["evaluate", "--episodes", "1", "--workers", "1", "--out", out, "--policy"]
    fails(capsys, [*base, f"expert:sb3:{tmp_path / 'missing.zip'}"], "SB3 model file not found")
    text = tmp_path / "notes.zip"
    text.write_text("not a zip")
    fails(capsys, [*base, f"expert:sb3:{text}"], "not a loadable SB3 model zip")
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes((tiny_run / "model.zip").read_bytes()[:5000])
    fails(capsys, [*base, f"expert:sb3:{truncated}"], "not a loadable SB3 model zip")
    no_policy = tmp_path / "no_policy.zip"
    with zipfile.ZipFile(tiny_run / "model.zip") as src, zipfile.ZipFile(no_policy, "w") as dst:
        dst.writestr("data", src.read("data"))
    fails(capsys, [*base, f"expert:sb3:{no_policy}"], "no policy.pth entry")
    fails(
        capsys, ["collect", "--expert", f"sb3:{text}", "--episodes", "1", "--out", out], "not a loadable SB3 model zip"
    )
    fails(capsys, ["train-expert", "--timesteps", "0", "--out", out], "--timesteps must be at least 1")
    fails(capsys, ["train-expert", "--seed", "70000", "--out", out], "RL seed range")
    assert not (tmp_path / "ev").exists()


class _Boom:
    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _rewrite_zip(src: pathlib.Path, dst: pathlib.Path, replace: dict[str, bytes]) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            zout.writestr(name, replace.get(name, zin.read(name)))


def test_malicious_pickles_in_a_model_zip_are_never_executed(tiny_run: pathlib.Path, tmp_path: pathlib.Path) -> None:
    marker = tmp_path / "pwned"
    blob = base64.b64encode(pickle.dumps(_Boom(marker))).decode()
    model = tiny_run / "model.zip"
    with zipfile.ZipFile(model) as archive:
        data = json.loads(archive.read("data"))
    for key in ("observation_space", "action_space", "policy_class", "lr_schedule", "exploration_schedule"):
        data[key][":serialized:"] = blob  # what SB3's own load would unpickle
    evil_data = tmp_path / "evil_data.zip"
    _rewrite_zip(model, evil_data, {"data": json.dumps(data).encode()})
    assert load_sb3_model(evil_data).algorithm == "dqn"  # the readable fields suffice
    buffer = io.BytesIO()
    torch.save({"q_net.q_net.0.weight": _Boom(marker)}, buffer)
    evil_weights = tmp_path / "evil_weights.zip"
    _rewrite_zip(model, evil_weights, {"policy.pth": buffer.getvalue()})
    with pytest.raises(TestbedError, match="policy.pth is not a plain state dict"):
        load_sb3_model(evil_weights)
    assert not marker.exists()


@pytest.mark.parametrize("algo", ["ppo", "a2c", "dqn-tanh"])
def test_any_user_sb3_model_loads_and_acts_like_sb3(algo: str, tmp_path: pathlib.Path, scenario: Scenario) -> None:
    from stable_baselines3 import A2C, DQN, PPO

    env = make_env(scenario)
    if algo == "ppo":
        model = PPO("MlpPolicy", env, n_steps=64, batch_size=32, seed=0, device="cpu", policy_kwargs={"net_arch": [32]})
    elif algo == "a2c":
        model = A2C("MlpPolicy", env, seed=0, device="cpu")
    else:  # a non-JSON policy_kwargs entry, which SB3 stores pickled (with a readable str)
        model = DQN(
            "MlpPolicy", env, seed=0, device="cpu", policy_kwargs={"net_arch": [16], "activation_fn": torch.nn.Tanh}
        )
    model.save(tmp_path / "model.zip")
    loaded = load_sb3_model(tmp_path / "model.zip")
    assert loaded.algorithm == algo.split("-")[0]
    obs = np.random.default_rng(1).normal(size=(256, 5, 5)).astype(np.float32)
    ours, _ = loaded.policy.predict(obs, deterministic=True)
    theirs, _ = model.predict(obs, deterministic=True)
    np.testing.assert_array_equal(ours, theirs)
