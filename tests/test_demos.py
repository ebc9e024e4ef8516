"""Demonstrations round-trip through imitation's serialize and are validated on load."""

from __future__ import annotations

import json
import pathlib
import shutil

import numpy as np
import pytest
from conftest import DEMO_EPISODES
from imitation.data import serialize
from imitation.data.types import TrajectoryWithRew

from testbed.collect import collect
from testbed.demos import load_demos
from testbed.errors import TestbedError
from testbed.scenarios import get_scenario, parse_overrides


def test_plain_imitation_load_reads_dataset(demos_dir: pathlib.Path) -> None:
    trajectories = serialize.load(demos_dir / "trajectories")
    assert len(trajectories) == DEMO_EPISODES
    traj = trajectories[0]
    assert isinstance(traj, TrajectoryWithRew)
    info = traj.infos[0]
    for key in ("speed", "crashed", "lane", "x", "y"):
        assert key in info


def test_metadata_records_provenance(demos_dir: pathlib.Path, scenario) -> None:
    meta = json.loads((demos_dir / "metadata.json").read_text())
    assert meta["scenario"] == scenario.to_dict()
    assert meta["expert"]["name"] == "scripted" and isinstance(meta["expert"]["params"], dict)
    assert meta["seeds"] == list(range(DEMO_EPISODES))
    assert meta["n_transitions"] == sum(len(t.acts) for t in serialize.load(demos_dir / "trajectories"))
    prov = meta["provenance"]
    assert prov["packages"]["imitation"] == "1.0.1" and prov["git_commit"] and prov["created_utc"]


def test_round_trip_equals_collected(demos_dir: pathlib.Path, scenario) -> None:
    again = collect(scenario, "scripted", n_episodes=3, seed=0)
    loaded = load_demos(demos_dir, scenario=scenario)
    for a, b in zip(again.trajectories, loaded.trajectories[:3]):
        assert np.array_equal(a.obs, b.obs) and np.array_equal(a.acts, b.acts)
        assert np.array_equal(a.rews, b.rews) and list(a.infos) == list(b.infos)


def test_other_observation_is_refused(demos_dir: pathlib.Path) -> None:
    other = get_scenario("highway-fast", parse_overrides(["observation.vehicles_count=7"]))
    with pytest.raises(TestbedError, match="different observation space"):
        load_demos(demos_dir, scenario=other)
    roundabout = get_scenario("roundabout")  # same shapes, absolute coordinates
    with pytest.raises(TestbedError, match="observation config differs"):
        load_demos(demos_dir, scenario=roundabout)


def test_missing_and_corrupt(tmp_path: pathlib.Path, demos_dir: pathlib.Path) -> None:
    with pytest.raises(TestbedError, match="not found"):
        load_demos(tmp_path / "nope")
    broken = tmp_path / "broken"
    shutil.copytree(demos_dir, broken)
    (broken / "metadata.json").write_text("{not json")
    with pytest.raises(TestbedError, match="corrupt"):
        load_demos(broken)
    shutil.rmtree(broken)
    shutil.copytree(demos_dir, broken)
    for f in (broken / "trajectories").glob("*.arrow"):
        f.write_bytes(b"garbage")
    with pytest.raises(TestbedError, match="cannot read demonstrations"):
        load_demos(broken)


def test_first_transitions_cuts_the_last_episode() -> None:
    import numpy as np
    from imitation.data.types import TrajectoryWithRew

    from testbed.demos import DemoMetadata, Demonstrations

    def traj(n: int) -> TrajectoryWithRew:
        return TrajectoryWithRew(
            obs=np.zeros((n + 1, 2), np.float32),
            acts=np.arange(n),
            infos=np.array([{}] * n),
            terminal=True,
            rews=np.ones(n, np.float32),
        )

    meta = DemoMetadata({}, {}, {}, {"name": "scripted"}, seeds=[0, 1, 2], n_episodes=3, n_transitions=15)
    demos = Demonstrations([traj(5), traj(5), traj(5)], meta)
    cut = demos.first_transitions(7)
    assert cut.n_transitions == 7 and [len(t.acts) for t in cut.trajectories] == [5, 2]
    assert cut.trajectories[1].terminal is False and cut.seeds == [0, 1]
    assert (cut.metadata.n_episodes, cut.metadata.n_transitions) == (2, 7)  # the record counts what is kept


def test_provenance_names_the_scripts_checkout_when_it_is_another(tmp_path, monkeypatch) -> None:
    """A script run from a second checkout imports the installed package: both commits are kept."""
    import subprocess
    import sys

    from testbed import provenance as prov

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    script = tmp_path / "experiments" / "x.py"
    script.parent.mkdir()
    script.write_text("")
    monkeypatch.setattr(sys, "argv", [str(script)])
    # A git checkout that is not one of this project (a console script in a git-installed Python).
    assert "script_git_commit" not in prov.provenance()
    (tmp_path / "testbed").mkdir()
    (tmp_path / "testbed" / "__init__.py").write_text("")
    assert prov.provenance()["script_git_commit"] == "unknown"  # a checkout without a commit
    monkeypatch.setattr(sys, "argv", [str(prov.pathlib.Path(prov.__file__))])
    assert "script_git_commit" not in prov.provenance()


def test_provenance_names_the_cpu(tmp_path) -> None:
    """Float32 training differs between CPUs: the record says which one ran, and its kernels' features."""
    import os

    from testbed import provenance as prov

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Some CPU 9000\nflags\t\t: fpu sse2 avx2 fma\n\n")
    assert prov.cpu(cpuinfo) == f"Some CPU 9000; {os.cpu_count()} cores; avx2 fma"
    assert prov.cpu(tmp_path / "none").endswith(f"; {os.cpu_count()} cores")  # no cpuinfo: what platform knows
    assert prov.provenance()["cpu"] == prov.cpu()
