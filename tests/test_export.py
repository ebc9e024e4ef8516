"""testbed export-policy: a clone as a plain stable-baselines3 model zip.

The decisive test drives highway-fast-v0 with the export in a subprocess that never imports
the testbed, and compares its actions with the testbed clone's on the same observations.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import zipfile
from importlib.metadata import version

import numpy as np
import pandas as pd
import pytest
from conftest import fails

from testbed.cli import main

# Runs in a fresh interpreter: only gymnasium, highway-env, numpy and stable-baselines3.
PLAIN_SB3 = """
import json, sys
import gymnasium as gym
import highway_env  # registers highway-fast-v0
import numpy as np
from stable_baselines3 import PPO

model_path, scenario_json, out, seed, n_steps = sys.argv[1:6]
scenario = json.loads(scenario_json)
model = PPO.load(model_path, device="cpu")
env = gym.make(scenario["env_id"], config=scenario["config"], max_episode_steps=scenario["max_episode_steps"])
observations, actions = [], []
obs, _ = env.reset(seed=int(seed))
for _ in range(int(n_steps)):
    action, _ = model.predict(obs, deterministic=True)
    observations.append(obs)
    actions.append(action)
    obs, reward, terminated, truncated, _ = env.step(action)
    if terminated or truncated:
        obs, _ = env.reset()
np.savez(out, obs=np.asarray(observations), actions=np.asarray(actions))
assert not [m for m in sys.modules if m == "testbed" or m.startswith("testbed.")], "testbed was imported"
print("ok")
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, clone_dir: pathlib.Path) -> pathlib.Path:
    path = tmp_path_factory.mktemp("export") / "policy.zip"
    assert main(["export-policy", str(clone_dir), "--out", str(path)]) == 0
    return path


def test_plain_sb3_drives_the_export_without_the_testbed(
    exported: pathlib.Path, clone_dir: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    from testbed.clone_io import load_clone, read_clone_metadata

    scenario = read_clone_metadata(clone_dir)["scenario"]
    out = tmp_path / "drive.npz"
    done = subprocess.run(
        [sys.executable, "-c", PLAIN_SB3, str(exported), json.dumps(scenario), str(out), "10000", "40"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,  # not the repository: nothing of the testbed on the path but the install
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
    driven = np.load(out)
    assert len(driven["obs"]) == 40
    clone = load_clone(clone_dir)
    for obs, action in zip(driven["obs"], driven["actions"]):
        assert int(clone.predict(obs, deterministic=True)[0]) == int(action)
    # Not a degenerate policy: it chose more than one meta-action on the way.
    assert len(set(driven["actions"].tolist())) > 1


def test_export_matches_the_clone_on_demonstration_states(
    exported: pathlib.Path, clone_dir: pathlib.Path, demos_dir: pathlib.Path
) -> None:
    from stable_baselines3 import PPO

    from testbed.clone_io import load_clone
    from testbed.demos import load_demos
    from testbed.export import max_disagreement
    from testbed.training import stack_transitions

    obs, _ = stack_transitions(load_demos(demos_dir).trajectories)
    clone, plain = load_clone(clone_dir), PPO.load(exported, device="cpu").policy
    np.testing.assert_array_equal(clone.predict(obs, deterministic=True)[0], plain.predict(obs, deterministic=True)[0])
    assert max_disagreement(clone, plain, obs) < 1e-4
    with zipfile.ZipFile(exported) as archive:
        record = json.loads(archive.read("testbed.json"))
    assert record["clone"]["scenario"]["env_id"] == "highway-fast-v0"
    assert record["export_provenance"]["packages"]["stable-baselines3"] == version("stable-baselines3")


def test_the_testbed_serves_the_export_as_an_sb3_expert(exported: pathlib.Path, clone_dir: pathlib.Path) -> None:
    """The same file through the testbed's own non-unpickling SB3 loader (expert:sb3:)."""
    from testbed.clone_io import load_clone
    from testbed.experts.sb3 import load_sb3_model

    served = load_sb3_model(exported)
    clone = load_clone(clone_dir)
    obs = np.random.default_rng(0).standard_normal((64, 5, 5)).astype(np.float32) * 0.3
    np.testing.assert_array_equal(
        served.policy.predict(obs, deterministic=True)[0], clone.predict(obs, deterministic=True)[0]
    )


def test_fold_is_exact_up_to_float32_rounding() -> None:
    import torch

    from testbed.clone_io import make_policy
    from testbed.export import plain_model
    from testbed.spaces import space_from_dict

    obs_space = space_from_dict({"type": "Box", "shape": [3, 2], "dtype": "float32", "low": -1.0, "high": 1.0})
    act_space = space_from_dict({"type": "Box", "shape": [2], "dtype": "float32", "low": -1.0, "high": 1.0})
    rng = np.random.default_rng(1)
    mean, std = rng.normal(size=6).tolist(), rng.uniform(0.01, 3, size=6).tolist()
    torch.manual_seed(0)
    clone = make_policy(obs_space, act_space, (8, 8), obs_mean=mean, obs_std=std)
    plain = plain_model(clone).policy
    obs = rng.uniform(-1, 1, size=(100, 3, 2)).astype(np.float32)
    with torch.no_grad():
        a = clone.get_distribution(torch.as_tensor(obs)).distribution.mean.numpy()
        b = plain.get_distribution(torch.as_tensor(obs)).distribution.mean.numpy()
        va, vb = clone.predict_values(torch.as_tensor(obs)).numpy(), plain.predict_values(torch.as_tensor(obs)).numpy()
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    np.testing.assert_allclose(va, vb, rtol=0, atol=1e-5)
    assert "features_extractor.mean" not in plain.state_dict()


def test_export_bad_inputs(capsys, tmp_path: pathlib.Path, clone_dir: pathlib.Path) -> None:
    out = str(tmp_path / "p.zip")
    fails(capsys, ["export-policy", str(tmp_path / "none"), "--out", out], "not found", only_line=True)
    fails(capsys, ["export-policy", str(clone_dir), "--out", str(tmp_path / "p.pt")], ".zip", only_line=True)
    (tmp_path / "exists.zip").write_text("mine")
    fails(capsys, ["export-policy", str(clone_dir), "--out", str(tmp_path / "exists.zip")], "exists", only_line=True)
    assert (tmp_path / "exists.zip").read_text() == "mine"
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "metadata.json").write_text((clone_dir / "metadata.json").read_text())
    (fake / "policy.pt").write_bytes(b"not a policy")
    fails(capsys, ["export-policy", str(fake), "--out", out], "not a loadable policy", only_line=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists.zip", "fake"]


def test_a_model_card_is_written_beside_the_export(exported: pathlib.Path, clone_dir: pathlib.Path) -> None:
    from testbed.cards import card_path
    from testbed.clone_io import read_clone_metadata

    card = card_path(exported)
    assert card == exported.with_name("policy.card.md")
    text = card.read_text()
    meta = read_clone_metadata(clone_dir)
    assert text.startswith("# Model card: BC clone of expert `scripted` on `highway-fast`")
    assert 'PPO.load("policy.zip")' in text
    assert f"{meta['demos']['n_episodes']} episodes" in text and f"{meta['demos']['n_train_labels']} labels" in text
    assert f"val/accuracy {meta['final']['val/accuracy']:.3f}" in text  # the recorded metrics
    assert "(demonstrations range)" in text  # the seeds and their range
    assert meta["provenance"]["git_commit"] in text and "torch " in text  # commit and versions
    assert "testbed evaluate --policy clone:" in text  # no closed-loop result beside it: how to get one


def test_the_card_of_a_pipeline_clone_quotes_its_paired_evaluation() -> None:
    import testbed
    from testbed.cards import policy_card
    from testbed.clone_io import read_clone_metadata

    run = pathlib.Path(testbed.__file__).resolve().parent.parent / "results" / "pipeline" / "highway-fast" / "clone"
    text = policy_card(read_clone_metadata(run), run, {"out": "p.zip", "max_disagreement": 0.0, "provenance": {}})
    row = pd.read_csv(run.parent / "eval" / "summary.csv").iloc[1]
    assert str(row["policy"]).startswith("clone:")
    assert f"Closed loop ({row['n_episodes']} episodes" in text
    assert f"crash rate {row['crashed']:.2f} [{row['crashed_ci_low']:.2f}, {row['crashed_ci_high']:.2f}]" in text
