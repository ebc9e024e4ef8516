"""Minari export and import: the real minari package reads what the testbed writes, and the
round trip export -> import -> BC trains exactly as on the original demonstrations."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from conftest import fails

from testbed.cli import main

minari = pytest.importorskip("minari", reason='minari is not installed (pip install -e ".[minari]")')

DATASET_ID = "highway-fast/scripted-v0"

# A fresh interpreter with only minari (and what it imports): the user's view of the files.
LOAD_WITH_MINARI = """
import json, sys
import minari
dataset = minari.load_dataset(sys.argv[1])
episode = next(dataset.iterate_episodes())
print(json.dumps({
    "total_episodes": dataset.total_episodes,
    "total_steps": dataset.total_steps,
    "env_id": dataset.spec.env_spec.id,
    "config": dataset.spec.env_spec.kwargs["config"],
    "max_episode_steps": dataset.spec.env_spec.max_episode_steps,
    "obs_shape": list(episode.observations.shape),
    "actions": episode.actions.tolist(),
    "rewards": episode.rewards.tolist(),
    "terminations": episode.terminations.tolist(),
    "truncations": episode.truncations.tolist(),
    "speed": episode.infos["speed"].tolist(),
    "seed": int(next(iter(dataset.storage.get_episode_metadata([0])))["seed"]),
    "testbed": dataset.storage.metadata["testbed"]["demonstrations"]["expert"],
    "testbed_imported": [m for m in sys.modules if m == "testbed" or m.startswith("testbed.")],
}))
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, demos_dir: pathlib.Path) -> pathlib.Path:
    root = tmp_path_factory.mktemp("minari")
    assert main(["export-minari", str(demos_dir), "--dataset-id", DATASET_ID, "--out", str(root)]) == 0
    return root


def test_the_real_minari_loads_the_export(exported: pathlib.Path, demos_dir: pathlib.Path, tmp_path) -> None:
    import os

    from testbed.demos import load_demos

    demos = load_demos(demos_dir)
    done = subprocess.run(
        [sys.executable, "-c", LOAD_WITH_MINARI, DATASET_ID],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "MINARI_DATASETS_PATH": str(exported)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    first = demos.trajectories[0]
    assert seen["testbed_imported"] == []
    assert (seen["total_episodes"], seen["total_steps"]) == (len(demos.trajectories), demos.n_transitions)
    assert seen["env_id"] == "highway-fast-v0" and seen["config"] == demos.metadata.scenario["config"]
    assert seen["max_episode_steps"] == demos.metadata.scenario["max_episode_steps"]
    assert seen["obs_shape"] == list(first.obs.shape)
    assert seen["actions"] == first.acts.tolist() and seen["rewards"] == first.rews.tolist()
    assert seen["terminations"][-1] == bool(first.terminal) and seen["truncations"][-1] == (not first.terminal)
    assert not any(seen["terminations"][:-1]) and not any(seen["truncations"][:-1])
    assert seen["speed"] == [info["speed"] for info in first.infos]
    assert seen["seed"] == demos.seeds[0] and seen["testbed"]["name"] == "scripted"


def test_minari_recovers_the_recorded_environment(exported: pathlib.Path, monkeypatch) -> None:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(exported))
    dataset = minari.load_dataset(DATASET_ID)
    env = dataset.recover_environment()
    try:
        assert env.unwrapped.config["vehicles_count"] == dataset.spec.env_spec.kwargs["config"]["vehicles_count"]
        assert env.observation_space.shape == dataset.observation_space.shape
    finally:
        env.close()


def test_round_trip_trains_identically(exported: pathlib.Path, demos_dir: pathlib.Path, tmp_path) -> None:
    import pandas as pd

    from testbed.demos import load_demos
    from testbed.training import TrainConfig, train_bc

    back = tmp_path / "back"
    assert main(["import-minari", DATASET_ID, "--root", str(exported), "--out", str(back)]) == 0
    original, imported = load_demos(demos_dir), load_demos(back)
    assert imported.seeds == original.seeds
    for a, b in zip(original.trajectories, imported.trajectories):
        np.testing.assert_array_equal(a.obs, b.obs)
        assert a.obs.dtype == b.obs.dtype and a.acts.dtype == b.acts.dtype
        np.testing.assert_array_equal(a.acts, b.acts)
        np.testing.assert_array_equal(a.rews, b.rews)
        assert a.terminal == b.terminal
        assert [list(i) for i in a.infos] == [list(i) for i in b.infos] and list(a.infos) == list(b.infos)
    original_record = original.metadata.to_dict()
    imported_record = imported.metadata.to_dict()
    assert "imported from the Minari dataset" in imported_record.pop("note")
    assert imported_record == original_record
    config = TrainConfig(n_epochs=3, batch_size=32, net_arch=(32, 32), seed=1, eval_every=1)
    first, second = train_bc(original, config), train_bc(imported, config)
    pd.testing.assert_frame_equal(first.log, second.log)
    for key, value in first.policy.state_dict().items():
        assert np.array_equal(value.numpy(), second.policy.state_dict()[key].numpy()), key


def test_minari_bad_inputs(capsys, tmp_path: pathlib.Path, demos_dir: pathlib.Path, exported: pathlib.Path) -> None:
    root = str(tmp_path / "root")
    fails(capsys, ["export-minari", str(demos_dir), "--dataset-id", "no spaces allowed", "--out", root], "Minari id")
    fails(capsys, ["export-minari", str(tmp_path / "none"), "--dataset-id", DATASET_ID, "--out", root], "not found")
    fails(
        capsys,
        ["export-minari", str(demos_dir), "--dataset-id", DATASET_ID, "--out", str(exported)],
        "Minari dataset exists",
        only_line=True,
    )
    out = str(tmp_path / "demos")
    fails(capsys, ["import-minari", "nowhere/none-v0", "--root", root, "--out", out], "not found", only_line=True)
    # A Minari dataset made elsewhere carries no scenario.
    from minari.data_collector import EpisodeBuffer

    from testbed.spaces import space_from_dict

    foreign_root = tmp_path / "foreign"
    buffer = EpisodeBuffer(
        observations=np.zeros((3, 5, 5), np.float32),
        actions=np.array([1, 1]),
        rewards=[0.0, 1.0],
        terminations=[False, True],
        truncations=[False, False],
    )
    import os

    os.environ["MINARI_DATASETS_PATH"] = str(foreign_root)
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            minari.create_dataset_from_buffers(
                "foreign-v0",
                [buffer],
                observation_space=space_from_dict(
                    {"type": "Box", "shape": [5, 5], "dtype": "float32", "low": -1.0, "high": 1.0}
                ),
                action_space=space_from_dict({"type": "Discrete", "n": 5, "start": 0}),
            )
    finally:
        del os.environ["MINARI_DATASETS_PATH"]
    fails(capsys, ["import-minari", str(foreign_root / "foreign-v0"), "--out", out], "no 'testbed' record")
    # A corrupt HDF5 file.
    import shutil

    spoiled = tmp_path / "spoiled"
    shutil.copytree(exported / DATASET_ID, spoiled)
    (spoiled / "data" / "main_data.hdf5").write_bytes(b"not hdf5")
    fails(capsys, ["import-minari", str(spoiled), "--out", out], "cannot read Minari dataset", only_line=True)
    assert not pathlib.Path(out).exists() and not pathlib.Path(root).exists()


def test_missing_minari_is_one_line(capsys, tmp_path: pathlib.Path, demos_dir: pathlib.Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "minari", None)  # import minari -> ImportError
    args = ["export-minari", str(demos_dir), "--dataset-id", DATASET_ID, "--out", str(tmp_path / "r")]
    fails(capsys, args, 'pip install -e ".[minari]"', only_line=True)


def test_a_hostile_record_never_imports_code(
    capsys, tmp_path: pathlib.Path, exported: pathlib.Path, monkeypatch
) -> None:
    """The record's scenario is validated like any demonstration record, and the env spec's entry
    point is never imported (the testbed does not recover the environment)."""
    import shutil

    marker = tmp_path / "IMPORTED"
    (tmp_path / "planted_minari.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('imported')\nclass Car:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    hostile = tmp_path / "hostile"
    shutil.copytree(exported / DATASET_ID, hostile)
    meta_path = hostile / "data" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["testbed"]["demonstrations"]["scenario"]["config"]["other_vehicles_type"] = "planted_minari.Car"
    spec = json.loads(meta["env_spec"])
    spec["entry_point"] = "planted_minari:Car"
    meta["env_spec"] = json.dumps(spec)
    meta_path.write_text(json.dumps(meta))
    fails(capsys, ["import-minari", str(hostile), "--out", str(tmp_path / "d")], "other_vehicles_type")
    assert not marker.exists() and "planted_minari" not in sys.modules
    assert not (tmp_path / "d").exists()


def test_a_dataset_card_is_written_with_the_dataset(exported: pathlib.Path, demos_dir: pathlib.Path) -> None:
    from testbed.demos import load_demos

    meta = load_demos(demos_dir).metadata
    text = (exported / DATASET_ID / "README.md").read_text()
    assert text.startswith(f"# Dataset card: `{DATASET_ID}`")
    assert f"{meta.n_episodes} episodes, {meta.n_transitions} transitions, {meta.n_crashed} ending in a crash" in text
    assert f"Seeds: {meta.n_episodes} seeds, {min(meta.seeds)}–{max(meta.seeds)} (demonstrations range)" in text
    assert f'minari.load_dataset("{DATASET_ID}")' in text and str(demos_dir) in text
