"""Limits of values (issue 25): every number a user gives has bounds, checked before any work.

Values that would exhaust memory, overflow a C integer, crash a native library or run for
centuries are refused the way every bad input is (``tests/test_bad_input.py``): exit code 2,
exactly one ``testbed: error:`` line (the last on stderr) naming the option, the value and the
allowed range, no traceback, and nothing written or left behind.

"Before any work" is tested directly: the functions that do a command's work (collecting,
training, evaluating, rendering, opening a window) are replaced by ones that raise
:class:`WorkStarted`, so a value that slipped past the checks fails at once instead of running
(``--epochs 10**30`` would otherwise train for ever). ``--torch-threads 100000`` crashed the
process outright (a segmentation fault in torch's OpenMP pool), so it runs in a subprocess.
"""

from __future__ import annotations

import dataclasses
import pathlib
import subprocess
import sys
import typing
from collections.abc import Callable

import pytest
from test_bad_input import _tree

from testbed.cli import main
from testbed.runtime import default_workers

BIG = 10**30
"""An integer far beyond every C integer type."""
S63 = 2**63
"""One past the largest int64: too large a seed."""
WORKERS = f"at least 1 and at most {4 * default_workers()}"
"""The range of --workers on this machine: four per core."""


class WorkStarted(Exception):
    """A command started its work although its arguments should have been refused."""


@dataclasses.dataclass
class World:
    """A working directory (the current one during the test) and the session's demonstrations."""

    root: pathlib.Path
    demos: str

    @property
    def out(self) -> str:
        return str(self.root / "out")

    @property
    def gif(self) -> str:
        return str(self.root / "a.gif")


WORK = {
    "testbed.cli": (
        "collect",
        "train_bc",
        "train_dagger",
        "evaluate",
        "measure_drift",
        "verify_demos",
        "reproduce",
        "run_benchmark",
        "render_comparison",
        "train_expert",
    ),
    "testbed.pipeline": ("collect", "train_bc", "evaluate"),
    "testbed.human": ("drive", "PygameWindow"),
}
"""Where each command's work starts."""


@pytest.fixture
def world(tmp_path: pathlib.Path, demos_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> World:
    root = tmp_path / "work"
    root.mkdir()
    monkeypatch.chdir(root)

    def started(*args: object, **kwargs: object) -> None:
        raise WorkStarted("the command started working on arguments it should have refused")

    for module, names in WORK.items():
        for name in names:
            monkeypatch.setattr(f"{module}.{name}", started)
    return World(root, str(demos_dir))


def _assert_one_line(code: int, stderr: str, fragment: str) -> str:
    err = stderr.strip().splitlines()
    assert code == 2, err
    errors = [line for line in err if "testbed: error:" in line]
    assert len(errors) == 1 and err[-1] == errors[0] and err[-1].startswith("testbed: error: "), err
    assert fragment in err[-1], err[-1]
    assert not any("Traceback" in line for line in err), err
    return err[-1]


def assert_refused(capsys: pytest.CaptureFixture[str], args: list[str], fragment: str, root: pathlib.Path) -> str:
    """Exit code 2, one ``testbed: error:`` line (the last) containing ``fragment``, no
    traceback, and the tree under ``root`` unchanged; returns the line."""
    before = _tree(root)
    code = main(args)
    line = _assert_one_line(code, capsys.readouterr().err, fragment)
    assert _tree(root) == before, f"left behind: {_tree(root) ^ before}"
    return line


def _collect(w: World, *options: str) -> list[str]:
    return ["collect", "--episodes", "2", "--workers", "1", *options, "--out", w.out]


def _train(w: World, *options: str) -> list[str]:
    return ["train", "--demos", w.demos, *options, "--out", w.out]


def _dagger(w: World, *options: str) -> list[str]:
    return ["train", "--algo", "dagger", *options, "--out", w.out]


def _render(w: World, *options: str) -> list[str]:
    return ["render", "--policy", "idle", *options, "--out", w.gif]


COMMANDS: dict[str, Callable[[World], list[str]]] = {
    "collect": lambda w: ["collect", "--episodes", "2", "--out", w.out],
    "train": lambda w: ["train", "--demos", w.demos, "--out", w.out],
    "train-dagger": lambda w: ["train", "--algo", "dagger", "--out", w.out],
    "evaluate": lambda w: ["evaluate", "--policy", "idle", "--episodes", "2", "--no-plot", "--out", w.out],
    "drift": lambda w: ["drift", "--policy", "idle", "--episodes", "2", "--out", w.out],
    "drive": lambda w: ["drive", "--out", w.out],
    "benchmark": lambda w: ["benchmark", "--episodes", "2", "--out", w.out],
    "render": lambda w: ["render", "--policy", "idle", "--out", w.gif],
    "train-expert": lambda w: ["train-expert", "--out", w.out],
    "pipeline": lambda w: ["pipeline", "--demo-episodes", "2", "--eval-episodes", "2", "--out", w.out],
    "reproduce": lambda w: ["reproduce", "--only", "pipeline", "--out-root", w.out],
}
"""Each command with the least it needs, and its output in the world."""

# (command, option, value, the allowed range the message states)
SWEEP: list[tuple[str, str, str, str]] = [
    ("collect", "--episodes", "1000001", "at least 1 and at most 1000000"),
    ("collect", "--seed", str(S63), "at least 0 and at most 9223372036854775807"),
    ("collect", "--workers", "1000000", WORKERS),
    ("train", "--epochs", "100001", "at least 1 and at most 100000"),
    ("train", "--batch-size", "65537", "at least 1 and at most 65536"),
    ("train", "--learning-rate", "2", "> 0 and at most 1"),
    ("train", "--l2-weight", "1e9", "at least 0 and at most 1000"),
    ("train", "--ent-weight", "1e9", "at least 0 and at most 1000"),
    ("train", "--seed", str(S63), "at least 0 and at most 9223372036854775807"),
    ("train", "--torch-threads", "257", "at least 1 and at most 256"),
    ("train", "--eval-every", str(BIG), "at least 1 and at most 100000"),
    ("train-dagger", "--rounds", str(BIG), "at least 1 and at most 5000"),
    ("train-dagger", "--labels-per-round", "10000000", "at least 1 and at most 1000000"),
    ("train-dagger", "--rampdown-rounds", str(BIG), "at least 1 and at most 5000"),
    ("train-dagger", "--epochs-per-round", str(BIG), "at least 1 and at most 100000"),
    ("evaluate", "--episodes", "10000000", "at least 1 and at most 1000000"),
    ("evaluate", "--seed", str(S63), "at least 0 and at most 9223372036854775807"),
    ("evaluate", "--workers", "1000000", WORKERS),
    ("drift", "--episodes", str(BIG), "at least 1 and at most 1000000"),
    ("drift", "--seed", str(S63), "at least 0 and at most 9223372036854775807"),
    ("drift", "--threshold-m", "inf", "> 0 and at most 10000"),
    ("drift", "--threshold-m", "1e9", "> 0 and at most 10000"),
    ("drift", "--workers", "1000000", WORKERS),
    ("drive", "--episodes", str(BIG), "at least 1 and at most 1000000"),
    ("drive", "--seed", str(S63), "at least 0 and at most 9223372036854775807"),
    ("drive", "--accel-rate-per-s", "inf", "> 0 and at most 1000"),
    ("drive", "--steer-rate-per-s", "1e9", "> 0 and at most 1000"),
    ("benchmark", "--episodes", str(BIG), "at least 1 and at most 1000000"),
    ("benchmark", "--horizon-s", "inf", "> 0 and at most 3600"),
    ("benchmark", "--horizon-s", "1e9", "> 0 and at most 3600"),
    ("benchmark", "--workers", "1000000", WORKERS),
    ("render", "--seed", str(S63), "at least 0 and at most 9223372036854775807"),
    ("render", "--threshold-m", "1e9", "> 0 and at most 10000"),
    ("render", "--scale", "1000", "> 0 and at most 10"),
    ("render", "--scale", "inf", "> 0 and at most 10"),
    ("render", "--frame-skip", str(BIG), "at least 1 and at most 100000"),
    ("render", "--fps", "1e-9", "at least 0.01 and at most 100"),
    ("render", "--fps", "1000", "at least 0.01 and at most 100"),
    ("render", "--fps", "nan", "at least 0.01 and at most 100"),
    ("train-expert", "--timesteps", str(BIG), "at least 1 and at most 10000000"),
    ("train-expert", "--learning-rate", "10", "> 0 and at most 1"),
    ("train-expert", "--torch-threads", "257", "at least 1 and at most 256"),
    ("pipeline", "--demo-episodes", str(BIG), "at least 1 and at most 1000000"),
    ("pipeline", "--eval-episodes", str(BIG), "at least 1 and at most 1000000"),
    ("pipeline", "--demo-seed", str(S63), "at least 0 and at most 9223372036854775807"),
    ("pipeline", "--eval-seed", str(S63), "at least 0 and at most 9223372036854775807"),
    ("pipeline", "--epochs", str(BIG), "at least 1 and at most 100000"),
    ("pipeline", "--batch-size", str(BIG), "at least 1 and at most 65536"),
    ("pipeline", "--train-seed", str(S63), "at least 0 and at most 9223372036854775807"),
    ("pipeline", "--workers", "1000000", WORKERS),
    ("reproduce", "--workers", "1000000", WORKERS),
]


@pytest.mark.parametrize("command, option, value, allowed", SWEEP, ids=[f"{c} {o} {v}" for c, o, v, _ in SWEEP])
def test_every_numeric_option_is_bounded(
    command: str, option: str, value: str, allowed: str, world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    line = assert_refused(
        capsys, [*COMMANDS[command](world), option, value], f"{option} must be {allowed}, got ", world.root
    )
    assert line.endswith((f"got {value}", f"got {float(value)}")), line  # the value, as parsed


# id -> (args given the world, a fragment of the error line): one or more per family of issue 25
CASES: dict[str, tuple[Callable[[World], list[str]], str]] = {
    # --- counts beyond C limits ---
    "--episodes beyond C": (
        lambda w: _collect(w, "--episodes", str(BIG)),
        f"--episodes must be at least 1 and at most 1000000, got {BIG}",
    ),
    "--epochs beyond C": (
        lambda w: _train(w, "--epochs", str(BIG)),
        f"--epochs must be at least 1 and at most 100000, got {BIG}",
    ),
    "render --frame-skip beyond C": (
        lambda w: _render(w, "--frame-skip", str(BIG)),
        f"--frame-skip must be at least 1 and at most 100000, got {BIG}",
    ),
    "render --frame-skip beyond the episode": (
        lambda w: _render(w, "--frame-skip", "1001"),
        "--frame-skip must be at least 1 and at most 1000, got 1001",
    ),
    "seeds past int64": (
        lambda w: _collect(w, "--seed", str(S63 - 10), "--episodes", "100"),
        "episode seeds must be at most 9223372036854775807",
    ),
    # --- render ---
    "tiny --fps": (lambda w: _render(w, "--fps", "1e-300"), "--fps must be at least 0.01 and at most 100, got 1e-300"),
    "huge --scale": (lambda w: _render(w, "--scale", "1e300"), "--scale must be > 0 and at most 10, got 1e+300"),
    "--scale past the largest panel": (
        lambda w: _render(w, "--set", "screen_width=4096", "--set", "screen_height=4096", "--scale", "4"),
        "a panel side must be at most 8192 px",
    ),
    # --- network size ---
    "huge --net-arch": (
        lambda w: _train(w, "--net-arch", "100000000,100000000"),
        "--net-arch layer sizes must be at least 1 and at most 65536, got 100000000,100000000",
    ),
    "--net-arch of too many weights": (
        lambda w: _train(w, "--net-arch", "20000,20000"),
        "--net-arch 20000,20000 has 400040000 hidden weights; at most 100000000",
    ),
    "--net-arch too deep": (
        lambda w: _train(w, "--net-arch", ",".join(["4"] * 65)),
        "--net-arch must have at least 1 and at most 64 hidden layers, got 65",
    ),
    "train-expert huge --net-arch": (
        lambda w: ["train-expert", "--net-arch", "100000000,100000000", "--out", w.out],
        "--net-arch layer sizes must be at least 1 and at most 65536",
    ),
    "pipeline huge --net-arch": (
        lambda w: ["pipeline", "--net-arch", "100000,100000", "--out", w.out],
        "--net-arch layer sizes must be at least 1 and at most 65536",
    ),
    # --- non-finite --set values, nested ---
    "--set list holding 1e400": (
        lambda w: _collect(w, "--set", "reward_speed_range=[20,1e400]"),
        "--set reward_speed_range must hold only finite numbers, got [20, Infinity] ([1] is not finite)",
    ),
    "--set NaN": (
        lambda w: _collect(w, "--set", "vehicles_density=NaN"),
        "--set vehicles_density must hold only finite numbers, got nan",
    ),
    "--set -Infinity in a nested object": (
        lambda w: _collect(w, "--set", 'observation.features_range={"x": [-Infinity, 100], "y": [-10, 10]}'),
        "--set observation.features_range must hold only finite numbers",
    ),
    "--set NaN in an action list": (
        lambda w: _collect(w, "--set", "action.target_speeds=[20, NaN, 30]"),
        "--set action.target_speeds must hold only finite numbers, got [20, NaN, 30] ([1] is not finite)",
    ),
    "benchmark --set 1e400": (
        lambda w: ["benchmark", "--episodes", "2", "--set", "reward_speed_range=[1e400,30]", "--out", w.out],
        "--set reward_speed_range must hold only finite numbers",
    ),
    "dagger --set -1e400": (
        lambda w: _dagger(w, "--set", "collision_reward=-1e400"),
        "--set collision_reward must hold only finite numbers, got -inf",
    ),
    # --- --set values that size memory or time ---
    "--set a camera image too large": (
        lambda w: _collect(
            w, "--scenario", "highway-fast-camera", "--set", "observation.observation_shape=[2048,2048]"
        ),
        "each side of config key 'observation.observation_shape' must be at least 36 and at most 1024, got 2048",
    ),
    "--set a grid of too many cells": (
        lambda w: _collect(w, "--scenario", "highway-fast-grid", "--set", "observation.grid_step=[0.001,0.001]"),
        "cells per axis (observation.grid_size / grid_step) must be at least 1 and at most 255, got 80000",
    ),
    "--set a zero-pixel screen": (
        lambda w: _collect(w, "--set", "screen_width=0"),
        "config key 'screen_width' must be at least 1 and at most 4096, got 0",
    ),
    "--set a huge rendering scale": (
        lambda w: _collect(w, "--set", "scaling=1e9"),
        "config key 'scaling' must be > 0 and at most 100, got 1000000000.0",
    ),
    "--set a huge camera scale": (
        lambda w: _collect(w, "--scenario", "highway-fast-camera", "--set", "observation.scaling=1e9"),
        "config key 'observation.scaling' must be > 0 and at most 100",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_out_of_bounds_is_one_line_and_leaves_nothing(
    case: str, world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    make_args, fragment = CASES[case]
    assert_refused(capsys, make_args(world), fragment, world.root)


def test_a_record_with_an_infinite_value_is_refused(scenario) -> None:
    """Scenario records read from disk (demonstrations, clones) are held to the same limits."""
    from testbed.errors import TestbedError
    from testbed.scenarios import Scenario

    record = scenario.to_dict()
    record["config"] = {**record["config"], "reward_speed_range": [20, float("inf")]}
    with pytest.raises(TestbedError, match=r"config key 'reward_speed_range' must hold only finite numbers"):
        Scenario.from_dict(record)


# --- torch threads: this crashed the process, so it runs in one of its own ---------------------


@pytest.mark.parametrize(
    "command",
    [
        lambda w: ["train", "--demos", w.demos, "--batch-size", "8", "--epochs", "1", "--torch-threads", "100000"],
        lambda w: ["train-expert", "--timesteps", "1", "--torch-threads", "100000"],
    ],
    ids=["train", "train-expert"],
)
def test_torch_threads_beyond_the_limit_do_not_crash(
    command: Callable[[World], list[str]], tmp_path: pathlib.Path, demos_dir: pathlib.Path
) -> None:
    root = tmp_path / "work"
    root.mkdir()
    w = World(root, str(demos_dir))
    before = _tree(root)
    try:
        run = subprocess.run(
            [sys.executable, "-m", "testbed", *command(w), "--out", w.out],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=300,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("--torch-threads 100000 was not refused within 300 s")
    _assert_one_line(run.returncode, run.stderr, "--torch-threads must be at least 1 and at most 256, got 100000")
    assert _tree(root) == before, f"left behind: {_tree(root) ^ before}"


# --- the table itself ----------------------------------------------------------------------------


def _numeric_fields(cls: type) -> list[str]:
    hints = typing.get_type_hints(cls, include_extras=True)
    numeric = []
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        while typing.get_origin(hint) is typing.Annotated:
            hint = typing.get_args(hint)[0]
        kinds = set(typing.get_args(hint)) or {hint}
        if kinds & {int, float} and bool not in kinds:
            numeric.append(field.name)
    return numeric


def test_every_numeric_field_of_every_command_has_bounds() -> None:
    from testbed import cli, limits
    from testbed.cli import COMMANDS as CLI_COMMANDS

    assert pathlib.Path(limits.__file__).parent == pathlib.Path(cli.__file__).parent  # the same checkout's table
    fields = {name for cls in CLI_COMMANDS.values() for name in _numeric_fields(cls)}
    assert len(fields) >= 30, fields
    missing = sorted(fields - set(limits.OPTIONS))
    assert not missing, f"numeric options without limits: {missing}"
    for name, bound in limits.OPTIONS.items():
        assert bound.reason, name
        low = bound.low if bound.integer else float(bound.low)
        assert bound.contains(low) != bound.low_open and bound.contains(bound.high) != bound.high_open, name
        assert not bound.contains(float("nan")) and not bound.contains(float("inf")), name


def test_every_default_is_within_bounds() -> None:
    """No default changes: every command's defaults pass the checks."""
    from testbed import cli, limits
    from testbed.cli import COMMANDS as CLI_COMMANDS

    assert pathlib.Path(limits.__file__).parent == pathlib.Path(cli.__file__).parent  # the same checkout's table
    for cls in CLI_COMMANDS.values():
        required = {
            f.name: "x"
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        limits.check_options(cls(**required))
