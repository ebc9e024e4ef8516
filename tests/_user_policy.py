"""Policies a user might write, named in tests as ``_user_policy:NAME`` (MODULE:FUNCTION specs).

Not a test module (no ``test_`` prefix); pytest puts ``tests/`` on ``sys.path``, so it imports
as ``_user_policy`` in the test process and in spawned rollout workers.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

LANE_LEFT, IDLE, LANE_RIGHT, FASTER, SLOWER = range(5)


def keep_right(obs: np.ndarray) -> int:
    """A plain function of the observation: always move towards the right lane."""
    return LANE_RIGHT


class _Predictor:
    """SB3-style: ``predict(obs, deterministic=...) -> (action, state)``."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (5, 5), np.float32)
    action_space = gym.spaces.Discrete(5)

    def predict(self, obs: np.ndarray, state: Any = None, episode_start: Any = None, deterministic: bool = False):
        return np.array(FASTER if deterministic else SLOWER), state


def make_predictor() -> _Predictor:
    """A factory returning an object with ``predict`` (and declared spaces that fit highway-fast)."""
    return _Predictor()


class _Agent:
    """A full Agent (``reset(env, seed)``/``act(obs, env)``) that reads the simulator."""

    def reset(self, env: Any, seed: int) -> None:
        self.steps = 0

    def act(self, obs: np.ndarray, env: Any) -> int:
        self.steps += 1
        return SLOWER if env.vehicle.speed > 25 else IDLE


def make_agent() -> _Agent:
    return _Agent()


class _ThreeActions:
    action_space = gym.spaces.Discrete(3)

    def predict(self, obs: np.ndarray) -> int:
        return 0


def three_actions() -> _ThreeActions:
    """Declares a 3-action space: fits no shipped scenario."""
    return _ThreeActions()


def out_of_range(obs: np.ndarray) -> int:
    """Returns an action that does not exist."""
    return 7


not_callable = 42


def gentle_brake(obs: np.ndarray) -> np.ndarray:
    """A continuous policy (``highway-fast-continuous``): a little braking, straight ahead."""
    return np.array([-0.2, 0.0], dtype=np.float32)


def steer_too_hard(obs: np.ndarray) -> list[float]:
    """A continuous action outside the Box [-1, 1]^2."""
    return [0.0, 3.0]


def three_components(obs: np.ndarray) -> list[float]:
    """A continuous action of the wrong shape."""
    return [0.0, 0.0, 0.0]


class _DividesByZero:
    """A full Agent whose third decision of every episode raises (a user's bug)."""

    def reset(self, env: Any, seed: int) -> None:
        self.steps = 0

    def act(self, obs: np.ndarray, env: Any) -> int:
        self.steps += 1
        if self.steps == 3:
            return int(1 / 0)
        return IDLE


def divide_by_zero() -> _DividesByZero:
    """A factory of an agent that raises ZeroDivisionError at step 2 of every episode."""
    return _DividesByZero()


def returns_text(obs: np.ndarray) -> str:
    """Returns a string, not an action."""
    return "left"


def broken_factory() -> Any:
    """A factory that raises before any episode."""
    raise ValueError("no weights here")
