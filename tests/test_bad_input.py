"""Every kind of bad input a user (or a hostile file) can give, over every subcommand.

Each case asserts what the README promises: exit code 2, exactly one ``testbed: error:``
line (the last on stderr), no traceback, and nothing written or left behind (no output, no
temporary directory: the working directory's tree is the same before and after). A second
group plants a module that marks a file when imported and proves that no command reading
data from disk (demonstrations, clones, model zips) ever imports it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import struct
import sys
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from testbed.cli import main

PLANTED = "planted_mod"
"""A module that would run code on import; it must never be imported."""
MARKER = "IMPORTED"


@dataclasses.dataclass
class World:
    """A working directory with copies of the session's data to spoil."""

    root: pathlib.Path
    demos_src: pathlib.Path
    clone_src: pathlib.Path
    sb3_src: pathlib.Path | None = None

    @property
    def out(self) -> str:
        return str(self.root / "out")

    def demos(self, meta: dict[str, Any] | None = None, *, trajectories: Callable[[list], list] | None = None) -> str:
        """A copy of the demonstrations with metadata fields replaced (dotted keys) and/or
        the trajectories rewritten."""
        path = self.root / "demos"
        shutil.copytree(self.demos_src, path)
        if meta:
            _patch_json(path / "metadata.json", meta)
        if trajectories is not None:
            from imitation.data import serialize

            trajs = trajectories(list(serialize.load_with_rewards(self.demos_src / "trajectories")))
            shutil.rmtree(path / "trajectories")
            serialize.save(path / "trajectories", trajs)
        return str(path)

    def clone(self, meta: dict[str, Any] | None = None, *, policy: bytes | None = None) -> str:
        path = self.root / "clone"
        shutil.copytree(self.clone_src, path)
        if meta:
            _patch_json(path / "metadata.json", meta)
        if policy is not None:
            (path / "policy.pt").write_bytes(policy)
        return str(path)

    def sb3(self, spoil: Callable[[pathlib.Path], None]) -> str:
        assert self.sb3_src is not None
        path = self.root / "model.zip"
        shutil.copy(self.sb3_src, path)
        spoil(path)
        return str(path)

    def file(self, name: str, text: str) -> str:
        (self.root / name).write_text(text)
        return str(self.root / name)


def _patch_json(path: pathlib.Path, changes: dict[str, Any]) -> None:
    data = json.loads(path.read_text())
    for dotted, value in changes.items():
        *parents, key = dotted.split(".")
        node = data
        for p in parents:
            node = node[p]
        node[key] = value
    path.write_text(json.dumps(data))


def _replace_step(index: int, step: int, *, obs: Any = None, act: Any = None) -> Callable[[list], list]:
    def change(trajs: list) -> list:
        t = trajs[index]
        new_obs, new_acts = t.obs.copy(), t.acts.copy()
        if obs is not None:
            new_obs[step] = obs
        if act is not None:
            new_acts[step] = act
        trajs[index] = dataclasses.replace(t, obs=new_obs, acts=new_acts)
        return trajs

    return change


def _zip_entries(path: pathlib.Path, change: Callable[[dict[str, bytes]], dict[str, bytes]]) -> None:
    with zipfile.ZipFile(path) as archive:
        entries = {n: archive.read(n) for n in archive.namelist()}
    entries = change(entries)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)


def _zip_data(path: pathlib.Path, **changes: Any) -> None:
    def change(entries: dict[str, bytes]) -> dict[str, bytes]:
        data = json.loads(entries["data"])
        for dotted, value in changes.items():
            *parents, key = dotted.split("__")
            node = data
            for p in parents:
                node = node[p]
            node[key] = value
        entries["data"] = json.dumps(data).encode()
        return entries

    _zip_entries(path, change)


def _zip_flags(path: pathlib.Path, *, encrypted: bool = False, method: int | None = None) -> None:
    """Rewrite the local and central headers of every entry: the encryption bit, or a
    compression method zipfile cannot decompress."""
    raw = bytearray(path.read_bytes())
    for signature, flag_at, method_at in ((b"PK\x03\x04", 6, 8), (b"PK\x01\x02", 8, 10)):
        start = 0
        while (i := raw.find(signature, start)) >= 0:
            if encrypted:
                raw[i + flag_at] |= 0x1
            if method is not None:
                raw[i + method_at : i + method_at + 2] = struct.pack("<H", method)
            start = i + 4
    path.write_bytes(bytes(raw))


def _truncate(path: pathlib.Path) -> None:
    path.write_bytes(path.read_bytes()[:200])


def _arrow_file(demos: str) -> pathlib.Path:
    return next((pathlib.Path(demos) / "trajectories").glob("*.arrow"))


def _spoil_arrow(w: World) -> str:
    d = w.demos()
    arrow = _arrow_file(d)
    arrow.write_bytes(arrow.read_bytes()[:1000])
    return d


def _symlink(w: World, target: str, name: str = "out") -> str:
    link = w.root / name
    link.symlink_to(target)
    return str(link)


def _loop(w: World) -> str:
    (w.root / "a").symlink_to(w.root / "b")
    (w.root / "b").symlink_to(w.root / "a")
    return str(w.root / "a")


def _evaluate(w: World, policy: str, *options: str) -> list[str]:
    """``testbed evaluate`` of one policy, two episodes, into the world's output."""
    return [*EVAL, "--policy", policy, *options, "--out", w.out]


def _policy(name: str) -> str:
    return f"_user_policy:{name}"


EVAL = ["evaluate", "--episodes", "2", "--no-plot"]
COLLECT = ["collect", "--episodes", "2", "--workers", "1"]
RENDER = ["render", "--policy", "idle"]


# id -> (args given the world, a fragment of the error line)
CASES: dict[str, tuple[Callable[[World], list[str]], str]] = {
    # --- scenario and --set ---
    "unknown scenario": (lambda w: [*COLLECT, "--scenario", "nope", "--out", w.out], "unknown scenario 'nope'"),
    "unknown --set key": (lambda w: [*COLLECT, "--set", "lanes=3", "--out", w.out], "unknown config key 'lanes'"),
    "--set without =": (lambda w: [*COLLECT, "--set", "lanes_count", "--out", w.out], "expects key=value"),
    "--set wrong type": (lambda w: [*COLLECT, "--set", "vehicles_density=abc", "--out", w.out], "vehicles_density"),
    "--set negative duration": (lambda w: [*COLLECT, "--set", "duration=-5", "--out", w.out], "must be > 0"),
    "--set non-finite": (lambda w: [*COLLECT, "--set", "vehicles_density=NaN", "--out", w.out], "finite"),
    "--set unknown feature": (
        lambda w: [*COLLECT, "--set", 'observation.features=["nope"]', "--out", w.out],
        "observation.features",
    ),
    "--set builtin vehicle class": (
        lambda w: [*COLLECT, "--set", "other_vehicles_type=builtins.print", "--out", w.out],
        "other_vehicles_type",
    ),
    "--set foreign vehicle class": (
        lambda w: [*COLLECT, "--set", f"other_vehicles_type={PLANTED}.Car", "--out", w.out],
        "not one of highway-env's vehicle classes",
    ),
    "--set target speeds a string": (
        lambda w: [*COLLECT, "--set", 'action.target_speeds="abc"', "--out", w.out],
        "action.target_speeds",
    ),
    "--set empty target speeds": (
        lambda w: [*COLLECT, "--set", "action.target_speeds=[]", "--out", w.out],
        "action.target_speeds",
    ),
    "--set zero lanes": (lambda w: [*COLLECT, "--set", "lanes_count=0", "--out", w.out], "lanes_count"),
    "--set huge vehicle count": (
        lambda w: [*COLLECT, "--set", "vehicles_count=100000000", "--out", w.out],
        "vehicles_count",
    ),
    # --- collect ---
    "unknown expert": (lambda w: [*COLLECT, "--expert", "nope", "--out", w.out], "unknown expert 'nope'"),
    "zero episodes": (lambda w: ["collect", "--episodes", "0", "--out", w.out], "--episodes must be at least 1"),
    "noise above 1": (lambda w: [*COLLECT, "--noise", "1.5", "--out", w.out], "--noise must be a probability"),
    "zero workers": (lambda w: ["collect", "--episodes", "2", "--workers", "0", "--out", w.out], "--workers"),
    "negative seed": (lambda w: [*COLLECT, "--seed", "-1", "--out", w.out], "seed"),
    # --- output paths, checked before any work ---
    "output exists": (lambda w: [*COLLECT, "--out", w.demos()], "output directory exists"),
    "output is a file": (lambda w: [*COLLECT, "--out", w.file("out", "x")], "not a directory"),
    "output under a file": (lambda w: [*COLLECT, "--out", w.file("f", "x") + "/sub"], "not a directory"),
    "output dangling symlink": (
        lambda w: [*COLLECT, "--out", _symlink(w, "/nonexistent/target")],
        "dangling symbolic link",
    ),
    "output symlink loop": (lambda w: [*COLLECT, "--out", _loop(w)], "symbolic link"),
    "evaluate output dangling symlink": (
        lambda w: [*EVAL, "--policy", "idle", "--out", _symlink(w, str(w.root / "gone"))],
        "dangling symbolic link",
    ),
    "render output exists": (
        lambda w: [*RENDER, "--out", w.file("a.gif", "x"), "--set", "duration=2"],
        "output file exists",
    ),
    "render output under a file": (
        lambda w: [*RENDER, "--out", w.file("f", "x") + "/a.gif"],
        "not a directory",
    ),
    "render output is a directory": (lambda w: [*RENDER, "--out", w.demos(), "--overwrite"], "is a directory"),
    # --- train ---
    "train missing demos": (lambda w: ["train", "--demos", str(w.root / "none"), "--out", w.out], "not found"),
    "train demos is a file": (lambda w: ["train", "--demos", w.file("d", "x"), "--out", w.out], "not found"),
    "train without demos": (lambda w: ["train", "--out", w.out], "--demos is required"),
    "train zero epochs": (lambda w: ["train", "--demos", w.demos(), "--epochs", "0", "--out", w.out], "epochs"),
    "train bad net arch": (lambda w: ["train", "--demos", w.demos(), "--net-arch", "a,b", "--out", w.out], "net"),
    "train negative learning rate": (
        lambda w: ["train", "--demos", w.demos(), "--learning-rate", "-1", "--out", w.out],
        "learning",
    ),
    "train validation fraction 1": (
        lambda w: ["train", "--demos", w.demos(), "--val-fraction", "1", "--out", w.out],
        "val",
    ),
    "dagger with demos": (lambda w: ["train", "--algo", "dagger", "--demos", w.demos(), "--out", w.out], "--demos"),
    "dagger zero rounds": (lambda w: ["train", "--algo", "dagger", "--rounds", "0", "--out", w.out], "round"),
    "dagger zero labels per round": (
        lambda w: ["train", "--algo", "dagger", "--labels-per-round", "0", "--out", w.out],
        "--labels-per-round",
    ),
    "dagger round smaller than a batch": (
        lambda w: ["train", "--algo", "dagger", "--labels-per-round", "8", "--out", w.out],
        "--batch-size",
    ),
    "dagger rounds beyond the seed range": (
        lambda w: ["train", "--algo", "dagger", "--first-seed", "9998", "--rounds", "3", "--out", w.out],
        "--first-seed",
    ),
    "dagger zero rampdown": (
        lambda w: ["train", "--algo", "dagger", "--beta-schedule", "linear", "--rampdown-rounds", "0", "--out", w.out],
        "--rampdown-rounds",
    ),
    # --- corrupt demonstration metadata ---
    "metadata not JSON": (
        lambda w: ["train", "--demos", _with_file(w.demos(), "metadata.json", "{not json"), "--out", w.out],
        "corrupt",
    ),
    "metadata a list": (
        lambda w: ["train", "--demos", _with_file(w.demos(), "metadata.json", "[1, 2]"), "--out", w.out],
        "not a JSON object",
    ),
    "metadata missing": (
        lambda w: ["train", "--demos", _without(w.demos(), "metadata.json"), "--out", w.out],
        "not found",
    ),
    "metadata seeds an int": (lambda w: ["train", "--demos", w.demos({"seeds": 3}), "--out", w.out], "'seeds'"),
    "metadata seeds strings": (
        lambda w: ["train", "--demos", w.demos({"seeds": ["a"] * 30}), "--out", w.out],
        "'seeds'",
    ),
    "metadata scenario config a string": (
        lambda w: ["train", "--demos", w.demos({"scenario.config": "abc"}), "--out", w.out],
        "scenario.config",
    ),
    "metadata expert a list": (lambda w: ["train", "--demos", w.demos({"expert": [1]}), "--out", w.out], "'expert'"),
    "metadata episode count wrong": (
        lambda w: ["train", "--demos", w.demos({"n_episodes": 7}), "--out", w.out],
        "inconsistent",
    ),
    "metadata unknown env id": (
        lambda w: ["train", "--demos", w.demos({"scenario.env_id": "nope-v0"}), "--out", w.out],
        "env id",
    ),
    "metadata observation space a string": (
        lambda w: ["train", "--demos", w.demos({"observation_space": "box"}), "--out", w.out],
        "observation_space",
    ),
    "metadata unknown config key": (
        lambda w: ["verify-demos", w.demos({"scenario.config.lanes": 3})],
        "unknown config key 'lanes'",
    ),
    "metadata config value crashes highway-env": (
        lambda w: ["verify-demos", w.demos({"scenario.config.observation.features": ["nope"]})],
        "observation.features",
    ),
    # --- corrupt trajectories ---
    "trajectories missing": (
        lambda w: ["train", "--demos", _without(w.demos(), "trajectories"), "--out", w.out],
        "not found",
    ),
    "trajectories truncated": (lambda w: ["train", "--demos", _spoil_arrow(w), "--out", w.out], "cannot read"),
    "NaN observation": (
        lambda w: ["train", "--demos", w.demos(trajectories=_replace_step(2, 5, obs=np.nan)), "--out", w.out],
        "episode 2, step 5",
    ),
    "infinite observation": (
        lambda w: ["verify-demos", w.demos(trajectories=_replace_step(0, 0, obs=np.inf))],
        "episode 0, step 0",
    ),
    "action outside the space": (
        lambda w: ["train", "--demos", w.demos(trajectories=_replace_step(1, 3, act=7)), "--out", w.out],
        "episode 1, step 3",
    ),
    "negative action": (
        lambda w: ["train", "--demos", w.demos(trajectories=_replace_step(4, 0, act=-1)), "--out", w.out],
        "episode 4, step 0",
    ),
    "observation of another shape": (
        lambda w: ["train", "--demos", w.demos({"observation_space.shape": [7, 5]}), "--out", w.out],
        "shape",
    ),
    # --- policies ---
    "bad policy spec": (lambda w: _evaluate(w, "nonsense"), "bad policy spec"),
    "missing clone": (lambda w: _evaluate(w, f"clone:{w.root / 'none'}"), "not found"),
    "clone policy file corrupt": (
        lambda w: _evaluate(w, f"clone:{w.clone(policy=b'garbage')}"),
        "not a loadable policy file",
    ),
    "clone metadata corrupt": (
        lambda w: _evaluate(w, f"clone:{_with_file(w.clone(), 'metadata.json', '{')}"),
        "corrupt",
    ),
    "clone train seeds a string": (
        lambda w: _evaluate(w, f"clone:{w.clone({'demos.train_seeds': 'abc'})}"),
        "train_seeds",
    ),
    "clone for another scenario": (
        lambda w: _evaluate(w, f"clone:{w.clone()}", "--scenario", "highway-fast-lidar"),
        "different observation space",
    ),
    "evaluation seeds overlap the training seeds": (
        lambda w: _evaluate(w, f"clone:{w.clone()}", "--seed", "3"),
        "overlap",
    ),
    "policy module missing": (lambda w: _evaluate(w, "no_such_mod:f"), "no module named"),
    "policy function missing": (lambda w: _evaluate(w, _policy("nope")), "has no 'nope'"),
    "policy raises": (
        lambda w: _evaluate(w, _policy("divide_by_zero"), "--workers", "1"),
        "policy _user_policy:divide_by_zero raised ZeroDivisionError: division by zero at episode seed 10000, step 2",
    ),
    "policy raises in a worker": (
        lambda w: _evaluate(w, _policy("divide_by_zero"), "--workers", "2"),
        "raised ZeroDivisionError: division by zero at episode seed 1000",
    ),
    "policy returns nonsense": (
        lambda w: _evaluate(w, _policy("returns_text"), "--workers", "2"),
        "not a discrete action at episode seed 1000",
    ),
    "policy action out of range": (
        lambda w: _evaluate(w, _policy("steer_too_hard"), "--scenario", "highway-fast-continuous"),
        "outside Box",
    ),
    "policy factory raises": (lambda w: _evaluate(w, _policy("broken_factory")), "raised"),
    # --- SB3 model zips ---
    "sb3 zip missing": (lambda w: _evaluate(w, f"expert:sb3:{w.root / 'm.zip'}"), "not found"),
    "sb3 not a zip": (lambda w: _evaluate(w, f"expert:sb3:{w.file('m.zip', 'x')}"), "SB3"),
    "sb3 zip truncated": (lambda w: _evaluate(w, f"expert:sb3:{w.sb3(_truncate)}"), "SB3"),
    "sb3 zip encrypted": (
        lambda w: _evaluate(w, f"expert:sb3:{w.sb3(lambda p: _zip_flags(p, encrypted=True))}"),
        "encrypted",
    ),
    "sb3 zip unsupported compression": (
        lambda w: _evaluate(w, f"expert:sb3:{w.sb3(lambda p: _zip_flags(p, method=98))}"),
        "compression",
    ),
    "sb3 zero-sized action space": (
        lambda w: _evaluate(w, f"expert:sb3:{w.sb3(lambda p: _zip_data(p, action_space__n=0))}"),
        "action space",
    ),
    "sb3 huge observation space": (
        lambda w: _evaluate(
            w, f"expert:sb3:{w.sb3(lambda p: _zip_data(p, observation_space___shape=[100000, 100000]))}"
        ),
        "observation space",
    ),
    "sb3 huge action space": (
        lambda w: _evaluate(w, f"expert:sb3:{w.sb3(lambda p: _zip_data(p, action_space__n=10**12))}"),
        "action space",
    ),
    "sb3 string where a dict belongs": (
        lambda w: _evaluate(w, f"expert:sb3:{w.sb3(lambda p: _zip_data(p, policy_kwargs='abc'))}"),
        "policy_kwargs",
    ),
    "sb3 net arch a string": (
        lambda w: _evaluate(w, f"expert:sb3:{w.sb3(lambda p: _zip_data(p, policy_kwargs={'net_arch': 'abc'}))}"),
        "net_arch",
    ),
    "sb3 weights not tensors": (
        lambda w: _evaluate(
            w, f"expert:sb3:{w.sb3(lambda p: _zip_entries(p, lambda e: {**e, 'policy.pth': b'junk'}))}"
        ),
        "policy.pth",
    ),
    # --- the other commands ---
    "drift zero threshold": (
        lambda w: ["drift", "--policy", "idle", "--threshold-m", "0", "--episodes", "2", "--out", w.out],
        "--threshold-m",
    ),
    "drift unknown expert": (
        lambda w: ["drift", "--policy", "idle", "--expert", "x", "--out", w.out],
        "unknown expert",
    ),
    "render zero scale": (lambda w: [*RENDER, "--out", str(w.root / "a.gif"), "--scale", "0"], "scale"),
    "render zero fps": (lambda w: [*RENDER, "--out", str(w.root / "a.gif"), "--fps", "0"], "fps"),
    "benchmark unknown suite": (lambda w: ["benchmark", "--suite", "nope", "--out", w.out], "suite"),
    "benchmark unknown scenario": (lambda w: ["benchmark", "--scenarios", "nope", "--out", w.out], "nope"),
    "benchmark zero episodes": (lambda w: ["benchmark", "--episodes", "0", "--out", w.out], "--episodes"),
    "verify missing directory": (lambda w: ["verify-demos", str(w.root / "none")], "not found"),
    "reproduce unknown step": (lambda w: ["reproduce", "--only", "nope", "--out-root", w.out], "nope"),
    "reproduce plot-only on nothing": (
        lambda w: ["reproduce", "--plot-only", "--only", "data_scaling", "--out-root", w.out],
        "not found",
    ),
    "train-expert zero timesteps": (lambda w: ["train-expert", "--timesteps", "0", "--out", w.out], "timesteps"),
    "train-expert bad gamma": (lambda w: ["train-expert", "--gamma", "2", "--out", w.out], "gamma"),
    "pipeline zero episodes": (lambda w: ["pipeline", "--demo-episodes", "0", "--out", w.out], "episodes"),
    "export-policy missing clone": (
        lambda w: ["export-policy", str(w.root / "none"), "--out", str(w.root / "p.zip")],
        "not found",
    ),
    "export-policy output not a zip": (
        lambda w: ["export-policy", w.clone(), "--out", str(w.root / "p.pt")],
        "must name a .zip file",
    ),
    "export-policy output exists": (
        lambda w: ["export-policy", w.clone(), "--out", w.file("p.zip", "x")],
        "output file exists",
    ),
    "export-policy corrupt clone": (
        lambda w: ["export-policy", w.clone(policy=b"junk"), "--out", str(w.root / "p.zip")],
        "not a loadable policy",
    ),
}


def _with_file(directory: str, name: str, text: str) -> str:
    (pathlib.Path(directory) / name).write_text(text)
    return directory


def _without(directory: str, name: str) -> str:
    path = pathlib.Path(directory) / name
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    return directory


def _tree(root: pathlib.Path) -> set[str]:
    """Every path under ``root`` (symlinks listed, not followed)."""
    found = set()
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            found.add(os.path.relpath(os.path.join(directory, name), root))
    return found


@pytest.fixture(scope="module")
def sb3_zip(tmp_path_factory: pytest.TempPathFactory, scenario) -> pathlib.Path:
    """An untrained SB3 DQN model file that fits highway-fast."""
    from stable_baselines3 import DQN

    from testbed.scenarios import make_env

    env = make_env(scenario)
    path = tmp_path_factory.mktemp("sb3") / "model.zip"
    DQN("MlpPolicy", env, learning_starts=10**9, seed=0, device="cpu").save(path)
    env.close()
    return path


@pytest.fixture
def world(tmp_path: pathlib.Path, demos_dir, clone_dir, sb3_zip, monkeypatch: pytest.MonkeyPatch) -> World:
    root = tmp_path / "work"
    root.mkdir()
    monkeypatch.chdir(root)
    return World(root, demos_dir, clone_dir, sb3_zip)


def assert_refused(capsys: pytest.CaptureFixture[str], args: list[str], fragment: str, root: pathlib.Path) -> None:
    """Exit code 2, one ``testbed: error:`` line (the last) containing ``fragment``, no
    traceback, and the tree under ``root`` unchanged."""
    before = _tree(root)
    code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    errors = [line for line in err if "testbed: error:" in line]
    assert len(errors) == 1 and err[-1] == errors[0] and err[-1].startswith("testbed: error: "), err
    assert fragment in err[-1], err[-1]
    assert not any("Traceback" in line for line in err), err
    assert _tree(root) == before, f"left behind: {_tree(root) ^ before}"


def test_there_are_at_least_forty_kinds() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_leaves_nothing(case: str, world: World, capsys) -> None:
    make_args, fragment = CASES[case]
    args = make_args(world)
    assert_refused(capsys, args, fragment, world.root)


def test_debug_shows_the_policy_traceback(world: World, capsys) -> None:
    args = [*EVAL, "--policy", _policy("divide_by_zero"), "--workers", "2", "--out", world.out, "--debug"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "1 / 0" in err and "_user_policy.py" in err
    assert err.strip().splitlines()[-1].startswith("testbed: error: policy _user_policy:divide_by_zero raised")


# --- data must never run code -------------------------------------------------------------


def _plant(root: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    """Put an importable module on sys.path whose import writes a marker file."""
    marker = root / MARKER
    (root / f"{PLANTED}.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('imported')\nclass Car:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(root))
    sys.modules.pop(PLANTED, None)
    return marker


def _hostile_infos(w: World) -> str:
    """Demonstrations whose first info is a jsonpickle object of the planted module's class,
    which imitation's own loader (``jsonpickle.decode``) would import to rebuild."""
    import datasets

    path = pathlib.Path(w.demos()) / "trajectories"
    dataset = datasets.load_from_disk(str(path))
    infos = [list(row) for row in dataset["infos"]]
    infos[0][0] = json.dumps({"speed": 1.0, "applied_action": {"py/object": f"{PLANTED}.Car"}})
    spoiled = dataset.remove_columns("infos").add_column("infos", infos, feature=dataset.features["infos"])
    spoiled.save_to_disk(str(path) + ".new")
    del dataset, spoiled
    shutil.rmtree(path)
    pathlib.Path(str(path) + ".new").rename(path)
    return str(path.parent)


VEHICLE = {"scenario.config.other_vehicles_type": f"{PLANTED}.Car"}
ENV_ID = {"scenario.env_id": f"{PLANTED}:Env-v0"}

HOSTILE: dict[str, Callable[[World], list[str]]] = {
    "verify-demos, vehicle class in metadata": lambda w: ["verify-demos", w.demos(VEHICLE)],
    "verify-demos, env id in metadata": lambda w: ["verify-demos", w.demos(ENV_ID)],
    "verify-demos, jsonpickle infos": lambda w: ["verify-demos", _hostile_infos(w)],
    "train, vehicle class in metadata": lambda w: ["train", "--demos", w.demos(VEHICLE), "--out", w.out],
    "train, jsonpickle infos": lambda w: ["train", "--demos", _hostile_infos(w), "--out", w.out],
    "evaluate, vehicle class in clone metadata": lambda w: _evaluate(w, f"clone:{w.clone(VEHICLE)}"),
    "evaluate, env id in clone metadata": lambda w: _evaluate(w, f"clone:{w.clone(ENV_ID)}"),
    "drift, vehicle class in clone metadata": lambda w: [
        "drift",
        "--policy",
        f"clone:{w.clone(VEHICLE)}",
        "--episodes",
        "2",
        "--out",
        w.out,
    ],
    "render, vehicle class in clone metadata": lambda w: [
        "render",
        "--policy",
        f"clone:{w.clone(VEHICLE)}",
        "--out",
        str(w.root / "a.gif"),
    ],
    "benchmark, vehicle class in clone metadata": lambda w: [
        "benchmark",
        "--policy",
        f"clone:{w.clone(VEHICLE)}",
        "--episodes",
        "2",
        "--out",
        w.out,
    ],
    "evaluate, class in a clone's policy file": lambda w: _evaluate(w, f"clone:{w.clone(policy=_pickled_class())}"),
    "export-policy, vehicle class in clone metadata": lambda w: [
        "export-policy",
        w.clone(VEHICLE),
        "--out",
        str(w.root / "p.zip"),
    ],
    "export-policy, class in a clone's policy file": lambda w: [
        "export-policy",
        w.clone(policy=_pickled_class()),
        "--out",
        str(w.root / "p.zip"),
    ],
    "collect, --set vehicle class": lambda w: [*COLLECT, "--set", f"other_vehicles_type={PLANTED}.Car", "--out", w.out],
}


def _pickled_class() -> bytes:
    """A torch file whose unpickling would import the planted module (pickle's GLOBAL opcode)."""
    # protocol 2: GLOBAL 'planted_mod Car', then an empty tuple and REDUCE.
    return b"\x80\x02c" + PLANTED.encode() + b"\nCar\nq\x00)\x81q\x01."


def test_the_planted_data_would_run_code_elsewhere(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The controls: the planted module runs when imported, and imitation's own loader or
    highway-env given the hostile config imports it."""
    import importlib

    from highway_env import utils
    from imitation.data import serialize

    marker = _plant(world.root, monkeypatch)
    importlib.import_module(PLANTED)
    assert marker.read_text() == "imported"
    for load in (
        lambda: serialize.load(pathlib.Path(_hostile_infos(world)) / "trajectories")[0].infos[0],
        lambda: utils.class_from_path(f"{PLANTED}.Car"),
    ):
        marker.unlink()
        sys.modules.pop(PLANTED, None)
        load()
        assert marker.exists()
    sys.modules.pop(PLANTED, None)


@pytest.mark.parametrize("case", list(HOSTILE))
def test_data_never_imports_code(case: str, world: World, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = _plant(world.root, monkeypatch)
    args = HOSTILE[case](world)
    before = _tree(world.root)
    code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert not marker.exists() and PLANTED not in sys.modules, f"{case}: the planted module was imported"
    assert code == 2, err
    assert err[-1].startswith("testbed: error: ") and not any("Traceback" in line for line in err), err
    assert _tree(world.root) == before
