"""Re-simulate demonstrations from their seeds and actions, and check they match exactly.

Every episode of a demonstration directory (human or expert) is a pure function of the
scenario config, its seed and the actions applied. Replaying those actions must give the
recorded observations and rewards bit for bit; anything else means the data were edited,
the labels are not the applied actions, or the simulator differs from the recording one.
Under DART-style noise the label (``acts``) is the expert's clean action and the applied one
is each step's ``applied_action`` info, so the replay uses ``applied_action`` when present.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, cast

import gymnasium as gym
import numpy as np
from imitation.data.types import TrajectoryWithRew

from testbed.demos import load_demos
from testbed.scenarios import Scenario, make_env


@dataclasses.dataclass(frozen=True)
class EpisodeCheck:
    """The verdict on one replayed episode."""

    index: int
    """Position of the episode in the dataset."""
    seed: int
    """Seed it was replayed with."""
    n_steps: int
    """Recorded actions."""
    problem: str | None = None
    """The first mismatch, e.g. ``"step 12: observation differs (max |diff| 0.0123)"``;
    ``None`` if the replay matched exactly."""

    @property
    def ok(self) -> bool:
        """Replay matched exactly."""
        return self.problem is None

    def line(self) -> str:
        """One printable line."""
        head = f"episode {self.index} (seed {self.seed}, {self.n_steps} steps): "
        return head + ("OK" if self.ok else f"MISMATCH at {self.problem}")


def _applied(trajectory: TrajectoryWithRew, t: int, space: gym.Space) -> Any:
    info = trajectory.infos[t] if trajectory.infos is not None else None
    raw = info["applied_action"] if isinstance(info, dict) and "applied_action" in info else trajectory.acts[t]
    if isinstance(space, gym.spaces.Discrete):
        return int(np.asarray(raw).item())
    return np.asarray(raw, dtype=space.dtype).reshape(space.shape)


def _diff(recorded: np.ndarray, replayed: np.ndarray) -> str | None:
    # Datasets hold float32 values (read back as float64, exactly); compare in float32.
    a = np.asarray(recorded, dtype=np.float32)
    b = np.asarray(replayed, dtype=np.float32)
    if a.shape != b.shape:
        return f"shape {a.shape} recorded vs {b.shape} replayed"
    if np.array_equal(a, b, equal_nan=True):
        return None
    return f"max |diff| {float(np.nanmax(np.abs(a.astype(np.float64) - b.astype(np.float64)))):.3g}"


def replay_episode(env: gym.Env, trajectory: TrajectoryWithRew, seed: int, *, index: int = 0) -> EpisodeCheck:
    """Reset ``env`` with ``seed``, apply the recorded actions and compare every step.

    Checks the first observation, then after each action the observation and reward, that
    the episode does not end before the last recorded action, and that it ends (terminated)
    exactly when the recording says so.
    """
    n = len(trajectory.acts)

    def fail(problem: str) -> EpisodeCheck:
        return EpisodeCheck(index=index, seed=int(seed), n_steps=n, problem=problem)

    obs, _ = env.reset(seed=int(seed))
    recorded = cast(np.ndarray, trajectory.obs)  # array observations (the testbed records no dict spaces)
    if (d := _diff(recorded[0], obs)) is not None:
        return fail(f"reset: observation differs ({d})")
    rews = trajectory.rews if isinstance(trajectory, TrajectoryWithRew) else None
    for t in range(n):
        obs, reward, terminated, truncated, _ = env.step(_applied(trajectory, t, env.action_space))
        if (d := _diff(recorded[t + 1], obs)) is not None:
            return fail(f"step {t}: observation differs ({d})")
        if rews is not None and np.float32(rews[t]) != np.float32(reward):
            return fail(f"step {t}: reward {float(rews[t])!r} recorded vs {float(np.float32(reward))!r} replayed")
        if (terminated or truncated) and t < n - 1:
            return fail(f"step {t}: the replay ended, but {n} actions were recorded")
        if t == n - 1 and bool(terminated) != bool(trajectory.terminal):
            return fail(f"step {t}: terminal {bool(trajectory.terminal)} recorded vs {bool(terminated)} replayed")
    return EpisodeCheck(index=index, seed=int(seed), n_steps=n)


def verify_demos(path: str | pathlib.Path, *, progress: Any = None) -> list[EpisodeCheck]:
    """Replay every episode of a demonstration directory with the scenario config it records.

    Args:
        path: a directory written by ``testbed collect`` or ``testbed drive``.
        progress: called with each :class:`EpisodeCheck` as it is made.

    Raises:
        TestbedError: the directory is missing or unreadable (see :func:`testbed.demos.load_demos`).
    """

    demos = load_demos(path)
    scenario = Scenario.from_dict(demos.metadata.scenario)
    env = make_env(scenario)
    checks = []
    try:
        for i, (trajectory, seed) in enumerate(zip(demos.trajectories, demos.seeds)):
            check = replay_episode(env, trajectory, seed, index=i)
            checks.append(check)
            if progress is not None:
                progress(check)
    finally:
        env.close()
    return checks
