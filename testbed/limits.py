"""The limits of every number the testbed takes from a user: the one place they are defined.

Every numeric option of every command (:data:`OPTIONS`, keyed by the dataclass field, so
``episodes`` is ``--episodes`` of every command that has one), the hidden layers of
``--net-arch`` (:func:`check_net_arch`) and every ``--set`` config value that sizes memory or
time (:data:`SETTINGS`, :func:`check_config`) has a lower and an upper bound, each with the
reason for it. A command checks them before any work starts (:func:`check_options` at the top
of its ``run()``), so that a value that would exhaust memory, overflow a C integer, crash a
native library (``--torch-threads 100000`` is a segmentation fault inside OpenMP) or run for
centuries ends in a one-line ``testbed: error: ...`` naming the option, the value and the
allowed range, exit code 2, instead of a traceback or worse. Non-finite numbers (``inf``,
``nan``, JSON's ``1e400``) are refused everywhere, nested lists and objects of ``--set``
values included (:func:`check_finite`).

The bounds are far outside anything the testbed's defaults, README examples, experiments or
committed results use, so no valid run changes; they only turn values that could not have
worked into an error up front.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from testbed.errors import TestbedError
from testbed.runtime import default_workers
from testbed.seeds import DAGGER


@dataclasses.dataclass(frozen=True)
class Bound:
    """The allowed range of one number, and why.

    Whole-number bounds (``integer``) take only ints (not bools); real bounds take ints and
    floats, and never a non-finite one.
    """

    low: float
    """Smallest allowed value (excluded if ``low_open``)."""
    high: float
    """Largest allowed value (excluded if ``high_open``)."""
    reason: str
    """Why these bounds: what goes wrong outside them."""
    integer: bool = True
    """A count (an int) rather than a real number."""
    low_open: bool = False
    """``low`` itself is not allowed (``> 0`` rather than ``>= 0``)."""
    high_open: bool = False
    """``high`` itself is not allowed."""
    what: str = ""
    """What the value is, for the message (``a probability``); empty: just the range."""

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is a number of the right kind, finite and within the bounds."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def interval(self) -> str:
        """``[1, 1000000]``, ``(0, 10]``: the bounds in interval notation."""
        return (
            f"{'(' if self.low_open else '['}{_number(self.low)}, {_number(self.high)}{')' if self.high_open else ']'}"
        )

    def describe(self) -> str:
        """``at least 1 and at most 1000000``, ``> 0 and at most 10``: the bounds in words."""
        if self.what:
            return f"{self.what} in {self.interval()}"
        low = f"> {_number(self.low)}" if self.low_open else f"at least {_number(self.low)}"
        high = f"< {_number(self.high)}" if self.high_open else f"at most {_number(self.high)}"
        return f"{low} and {high}"

    def check(self, name: str, value: Any) -> None:
        """Raise unless ``value`` is within the bounds.

        Args:
            name: what the value is called in the message (``--episodes``, ``config key 'duration'``).
            value: the number to check.

        Raises:
            TestbedError: ``NAME must be at least LOW and at most HIGH, got VALUE``.
        """
        if not self.contains(value):
            kind = "a whole number " if self.integer and not isinstance(value, int) else ""
            raise TestbedError(f"{name} must be {kind}{self.describe()}, got {_shown(value)}")


def _number(x: float) -> str:
    """A bound as written: ``1000000``, ``0.01``."""
    if isinstance(x, int) or (isinstance(x, float) and x.is_integer() and abs(x) < 1e16):
        return str(int(x))
    return repr(x)


def _shown(value: Any) -> str:
    """A value as the user wrote it (JSON for lists and objects: ``[20, Infinity]``)."""
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(value, default=str)
    return str(value)


# --- command-line options -------------------------------------------------------------------

MAX_EPISODES = 10**6
"""Episodes a command may run. A highway-fast episode is ~30 decisions and ~0.05 s per core:
10^6 of them are a day of simulation on a workstation and, as demonstrations, ~3 GB of
observations; a count beyond it (10^30) overflows ``range`` and list sizes (C ``ssize_t``)."""

MAX_SEED = 2**63 - 1
"""Largest episode or training seed (the last seed, ``SEED + EPISODES - 1``, included): seeds
are stored in int64 columns (episode tables, Arrow datasets) and ``torch.manual_seed`` fails
beyond 64 bits. Every range of the seed protocol (:mod:`testbed.seeds`) ends below 2 * 10^6."""

MAX_EPOCHS = 10**5
"""Passes over the data: the defaults are 100 (BC) and 20 per DAgger round; 10^5 epochs of
100 highway-fast episodes are a week of training."""

MAX_WORKERS = 4 * default_workers()
"""Worker processes: four per core of this machine (results never depend on the count). Each
worker is a process with its own torch, gymnasium and highway-env (~200 MB); beyond a few per
core they only add memory and start-up time, and thousands exhaust memory and the process
table before the first episode runs."""

MAX_TORCH_THREADS = 256
"""Torch intra-op threads: 1 is the default and the fastest for the testbed's small MLPs; torch
runs with 256 threads, while 100000 crash its OpenMP pool (a segmentation fault, or an
out-of-memory error from the threads' stacks). A fixed bound, so that a command line valid
on one machine is valid on every machine."""

MAX_TIMESTEPS = 10**7
"""RL training steps (``train-expert --timesteps``): highway-env's documented DQN setting is
2 * 10^4; SB3 trains at ~100 steps/s here, so 10^7 steps are more than a day."""

MAX_EPISODE_STEPS = 100_000
"""Most decisions any episode can have (the hard cap of a scenario record, also the largest
``--frame-skip`` before the scenario is known)."""

OPTIONS: dict[str, Bound] = {
    # How much to run.
    "episodes": Bound(1, MAX_EPISODES, "see MAX_EPISODES"),
    "demo_episodes": Bound(1, MAX_EPISODES, "as --episodes (see MAX_EPISODES)"),
    "eval_episodes": Bound(1, MAX_EPISODES, "as --episodes (see MAX_EPISODES)"),
    "epochs": Bound(1, MAX_EPOCHS, "see MAX_EPOCHS"),
    "epochs_per_round": Bound(1, MAX_EPOCHS, "as --epochs (see MAX_EPOCHS)"),
    "eval_every": Bound(1, MAX_EPOCHS, "an evaluation every more than MAX_EPOCHS epochs is the last one only"),
    "rounds": Bound(1, DAGGER.size, f"every DAgger round has its own seed of the DAgger range ({DAGGER.size} seeds)"),
    "rampdown_rounds": Bound(1, DAGGER.size, "a ramp longer than the most rounds there can be"),
    "labels_per_round": Bound(
        1, MAX_EPISODES, "10^6 expert labels (~30000 highway-fast episodes) per round are hours of simulation"
    ),
    "timesteps": Bound(1, MAX_TIMESTEPS, "see MAX_TIMESTEPS"),
    # Seeds: the last seed of the episodes must fit too (check_options).
    "seed": Bound(0, MAX_SEED, "see MAX_SEED"),
    "demo_seed": Bound(0, MAX_SEED, "see MAX_SEED"),
    "eval_seed": Bound(0, MAX_SEED, "see MAX_SEED"),
    "train_seed": Bound(0, MAX_SEED, "see MAX_SEED"),
    "first_seed": Bound(0, MAX_SEED, "see MAX_SEED (DAgger's own check keeps it in the DAgger range)"),
    # Parallelism.
    "workers": Bound(1, MAX_WORKERS, "see MAX_WORKERS"),
    "torch_threads": Bound(1, MAX_TORCH_THREADS, "see MAX_TORCH_THREADS"),
    # Training hyperparameters.
    "batch_size": Bound(
        1,
        2**16,
        "a batch is held in memory as float32 twice (inputs and gradients): 65536 camera observations are "
        "~17 GB; the defaults are 64 (BC) and 32 (DQN)",
    ),
    "learning_rate": Bound(
        0,
        1,
        "Adam moves each weight by about the learning rate per step; beyond 1 a step is larger than the "
        "weights' whole initial scale and training diverges (defaults 1e-3 and 5e-4)",
        integer=False,
        low_open=True,
    ),
    "l2_weight": Bound(
        0,
        1000,
        "beyond 1000 the penalty outweighs the log-likelihood (order 1) by 10^3: nothing is learned",
        integer=False,
    ),
    "ent_weight": Bound(
        0, 1000, "as --l2-weight: beyond 1000 the entropy bonus is all that is optimised", integer=False
    ),
    "val_fraction": Bound(
        0,
        1,
        "a fraction of the episodes; all of them leave nothing to train on",
        integer=False,
        high_open=True,
        what="a fraction",
    ),
    "gamma": Bound(0, 1, "a discount factor", integer=False, what="a discount factor"),
    "noise": Bound(0, 1, "the probability of a random action", integer=False, what="a probability"),
    # Lengths and times.
    "threshold_m": Bound(
        0, 10_000, "a position error [m]; 10 km is longer than any scenario's road", integer=False, low_open=True
    ),
    "horizon_s": Bound(
        0,
        3600,
        "a time into the episode [s]; no episode lasts more than an hour (duration <= 3600)",
        integer=False,
        low_open=True,
    ),
    # testbed drive's key ramps.
    "accel_rate_per_s": Bound(
        0,
        1000,
        "a change per second of a command in [-1, 1]; 1000/s is a full swing in 2 ms",
        integer=False,
        low_open=True,
    ),
    "steer_rate_per_s": Bound(0, 1000, "as --accel-rate-per-s", integer=False, low_open=True),
    "max_steering": Bound(0, 1, "a fraction of the env's steering range", integer=False, low_open=True),
    # testbed render.
    "scale": Bound(
        0,
        10,
        "resize factor of the frames: 10 x highway-env's default 600 x 150 px screen is 6000 x 1500 px per panel; "
        "the scaled panel must also stay within MAX_PANEL_PX",
        integer=False,
        low_open=True,
    ),
    "frame_skip": Bound(
        1, MAX_EPISODE_STEPS, "every n-th decision frame; at most the scenario's episode length (check_frame_skip)"
    ),
    "fps": Bound(
        0.01,
        100,
        "GIF frame delays are whole centiseconds in 16 bits: above 100 fps the delay rounds to 0 (players then "
        "pick their own speed), below 0.01 fps (100 s a frame) it heads for the 655 s the field holds",
        integer=False,
    ),
}
"""Bounds of every numeric option of every command, by dataclass field name."""

SEED_SPANS: tuple[tuple[str, str], ...] = (
    ("seed", "episodes"),
    ("demo_seed", "demo_episodes"),
    ("eval_seed", "eval_episodes"),
)
"""(first seed, episode count) option pairs: their last seed must not pass :data:`MAX_SEED`."""


def flag(field: str) -> str:
    """The command-line flag of a dataclass field: ``eval_every`` -> ``--eval-every``."""
    return "--" + field.replace("_", "-")


def check_option(field: str, value: Any) -> None:
    """Check one option against :data:`OPTIONS` (None, an unset optional value, passes).

    Raises:
        TestbedError: naming the flag, the value and the allowed range.
    """
    if value is not None:
        OPTIONS[field].check(flag(field), value)


def check_options(args: Any) -> None:
    """Check every numeric option of a command's arguments (a dataclass) against
    :data:`OPTIONS`, and that episode seeds end at or below :data:`MAX_SEED`: called first
    in every command's ``run()``, before anything is read, built or simulated.

    Raises:
        TestbedError: the first option out of bounds.
    """
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(args)}
    for name, value in values.items():
        if name in OPTIONS:
            check_option(name, value)
    for seed, episodes in SEED_SPANS:
        if seed in values and episodes in values and values[seed] + values[episodes] - 1 > MAX_SEED:
            raise TestbedError(
                f"{flag(seed)} {values[seed]} with {flag(episodes)} {values[episodes]} reaches seed "
                f"{values[seed] + values[episodes] - 1}; episode seeds must be at most {MAX_SEED}"
            )


# --- network sizes ---------------------------------------------------------------------------

MAX_LAYERS = 64
"""Hidden layers of ``--net-arch``: the testbed's MLPs have 2; 64 is deeper than plain MLPs train."""
MAX_WIDTH = 2**16
"""Units of one hidden layer: its input weights are (input size x width), and the largest
observations have ~10^4 features, so a wider layer alone would hold ~10^9 weights."""
MAX_HIDDEN_WEIGHTS = 10**8
"""Weights and biases of the hidden layers (``sum(a * b) + sum(widths)``): SB3's actor-critic
builds the hidden layers twice (policy and value) and Adam keeps two moments per weight, so
10^8 of them are ~3 GB of float32; the default 256,256 has 66048."""


def check_net_arch(arch: Sequence[int], *, name: str = "--net-arch") -> None:
    """Check hidden layer sizes: 1 to :data:`MAX_LAYERS` layers of 1 to :data:`MAX_WIDTH`
    units and at most :data:`MAX_HIDDEN_WEIGHTS` hidden weights.

    Raises:
        TestbedError: naming the option, the sizes and the limit exceeded.
    """
    shown = ",".join(str(h) for h in arch)
    if not 1 <= len(arch) <= MAX_LAYERS:
        raise TestbedError(f"{name} must have at least 1 and at most {MAX_LAYERS} hidden layers, got {len(arch)}")
    if not all(isinstance(h, int) and 1 <= h <= MAX_WIDTH for h in arch):
        raise TestbedError(f"{name} layer sizes must be at least 1 and at most {MAX_WIDTH}, got {shown}")
    weights = sum(a * b for a, b in zip(arch, arch[1:])) + sum(arch)
    if weights > MAX_HIDDEN_WEIGHTS:
        raise TestbedError(
            f"{name} {shown} has {weights} hidden weights; at most {MAX_HIDDEN_WEIGHTS} "
            "(about 3 GB to train) are allowed"
        )


# --- testbed render ---------------------------------------------------------------------------

MAX_PANEL_PX = 8192
"""Largest side of a rendered panel (screen size x ``--scale``) [px]: one RGB frame of
8192 x 8192 is 200 MB, and a GIF holds every kept frame of two panels."""


def check_frame_skip(frame_skip: int, max_episode_steps: int) -> None:
    """``--frame-skip`` at most the episode's length in decisions (a longer skip keeps the
    first and last frames only, as the episode's length does).

    Raises:
        TestbedError: naming the option, the value and the range.
    """
    Bound(1, max_episode_steps, "the scenario's episode length").check(flag("frame_skip"), frame_skip)


def check_panel(scale: float, screen_width: int, screen_height: int) -> None:
    """The scaled frames of ``testbed render`` fit :data:`MAX_PANEL_PX`.

    Raises:
        TestbedError: naming ``--scale``, the screen size and the limit.
    """
    w, h = round(screen_width * scale), round(screen_height * scale)
    if max(w, h) > MAX_PANEL_PX:
        raise TestbedError(
            f"--scale {scale} makes {screen_width} x {screen_height} px frames {w} x {h} px; "
            f"a panel side must be at most {MAX_PANEL_PX} px"
        )


# --- scenario config (--set) ----------------------------------------------------------------

SETTINGS: dict[str, Bound] = {
    "vehicles_count": Bound(
        1,
        1000,
        "vehicles simulated (top level) or observed (observation.): highway-env is O(n^2) per step",
        integer=True,
    ),
    "lanes_count": Bound(1, 20, "lanes of the road; each is drawn and searched every step", integer=True),
    "duration": Bound(
        0,
        3600,
        "episode length [s]; an hour at the frequencies below is 3.6 million steps",
        integer=False,
        low_open=True,
    ),
    "simulation_frequency": Bound(1, 1000, "simulation steps per second; 1000 Hz is 1 ms steps", integer=True),
    "policy_frequency": Bound(1, 1000, "decisions per second, at most the simulation frequency", integer=True),
    "vehicles_density": Bound(
        0, 100, "traffic density factor; 100x highway-env's default fills any road", integer=False, low_open=True
    ),
    "screen_width": Bound(1, 4096, "rendered width [px]; one 4096 x 4096 RGB frame is 50 MB", integer=True),
    "screen_height": Bound(1, 4096, "as screen_width", integer=True),
    "scaling": Bound(
        0, 100, "pixels per metre of the rendering; 100 px/m draws a car 500 px long", integer=False, low_open=True
    ),
    "cells": Bound(1, 4096, "lidar rays", integer=True),
    "stack_size": Bound(1, 64, "frames stacked in a camera observation", integer=True),
    "maximum_range": Bound(0, 10_000, "lidar range [m]; longer than any road", integer=False, low_open=True),
}
"""Bounds of the numeric ``--set`` keys that size memory or time, at the top level and in the
``observation.`` and ``action.`` configs (the same key means the same quantity there)."""

IMAGE_SIDE = Bound(
    36, 1024, "camera observation side [px]: SB3's NatureCNN needs 36, and 1024 x 1024 x 64 frames fill 64 MB"
)
"""Each side of ``observation.observation_shape``."""
GRID_AXIS = Bound(
    1,
    255,
    "occupancy-grid cells per axis ((max - min) / step): highway-env stores the grid shape as uint8, so more wraps",
)
"""Cells per axis of an occupancy grid."""
MAX_OBSERVATION_VALUES = 2**20
"""Numbers in one observation: 4 MB as float32, so a 1000-decision episode of them is 4 GB."""


def check_finite(name: str, value: Any) -> None:
    """Refuse a non-finite float anywhere in ``value`` (nested lists and objects included).

    Raises:
        TestbedError: ``NAME must hold only finite numbers, got VALUE (at PATH)``.
    """
    path = _non_finite(value, "")
    if path is not None:
        at = f" ({path.lstrip('.')} is not finite)" if path else ""
        raise TestbedError(f"{name} must hold only finite numbers, got {_shown(value)}{at}")


def _non_finite(value: Any, path: str) -> str | None:
    """Where in ``value`` the first non-finite float is (``[1]``, ``.x[0]``; ``""`` for
    ``value`` itself), or None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else path
    items: Any = ()
    if isinstance(value, Mapping):
        items = ((f"{path}.{k}", v) for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(value))
    for where, item in items:
        found = _non_finite(item, where)
        if found is not None:
            return found
    return None


def check_config(config: Mapping[str, Any], *, where: str) -> None:
    """Check a resolved scenario config: :data:`SETTINGS` at the top level and in the
    observation and action configs, every number finite, and the observation's size
    (camera sides, grid cells, :data:`MAX_OBSERVATION_VALUES`).

    Raises:
        TestbedError: ``WHERE: config key 'KEY' must be ..., got VALUE``.
    """
    for key, value in config.items():
        check_finite(f"{where}: config key {key!r}", value)
    observation = config.get("observation")
    action = config.get("action")
    for prefix, values in (("", config), ("observation.", observation), ("action.", action)):
        if not isinstance(values, Mapping):
            continue
        for key, bound in SETTINGS.items():
            value = values.get(key)
            if value is not None and not isinstance(value, bool) and isinstance(value, (int, float)):
                bound.check(f"{where}: config key {prefix + key!r}", value)
    if isinstance(observation, Mapping):
        _check_observation_size(observation, where=where)


def _check_observation_size(obs: Mapping[str, Any], *, where: str) -> None:
    size: int | None = None
    kind = obs.get("type")
    if kind == "GrayscaleObservation":
        shape = obs.get("observation_shape")
        if isinstance(shape, (list, tuple)):
            for side in shape:
                IMAGE_SIDE.check(f"{where}: each side of config key 'observation.observation_shape'", side)
            size = int(obs.get("stack_size", 1)) * math.prod(int(s) for s in shape)
    elif kind == "OccupancyGrid":
        grid: Any = obs.get("grid_size")
        step: Any = obs.get("grid_step")
        if _pairs(grid) and _numbers(step, 2) and all(s > 0 for s in step):
            axes = [math.floor((hi - lo) / s) for (lo, hi), s in zip(grid, step)]
            for axis in axes:
                GRID_AXIS.check(f"{where}: the grid's cells per axis (observation.grid_size / grid_step)", axis)
            size = len(obs.get("features") or ()) * math.prod(axes)
    elif kind == "Kinematics" and _numbers([obs.get("vehicles_count", 5)], 1):
        size = int(obs.get("vehicles_count", 5)) * len(obs.get("features") or ())
    if size is not None and size > MAX_OBSERVATION_VALUES:
        raise TestbedError(
            f"{where}: the observation would hold {size} numbers; at most {MAX_OBSERVATION_VALUES} "
            f"(4 MB as float32) are allowed"
        )


def _numbers(value: Any, n: int) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) == n
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    )


def _pairs(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 2 and all(_numbers(p, 2) for p in value)
