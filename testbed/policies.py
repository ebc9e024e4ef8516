"""Drivers the rollout harness can run, named by a spec string.

Specs (the same strings the command line takes):

- ``expert:NAME`` — a privileged expert from :mod:`testbed.experts` (``expert:scripted``);
- ``clone:RUN_DIR`` — a policy written by ``testbed train``;
- ``idle`` — always the IDLE meta-action (keep lane and speed); the zero action (no
  acceleration, no steering) in a continuous-action scenario;
- ``random`` — uniform random actions, from a generator seeded by the episode seed.

In scenarios with a Box (continuous) action space agents return float32 arrays of the
space's shape instead of integers.

A spec is a small picklable value; each worker process turns it into an :class:`Agent` once.
Experts read the simulator; clones and baselines read only the observation.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Protocol

import numpy as np

from testbed.errors import TestbedError


class Agent(Protocol):
    """Anything the harness can drive with."""

    def reset(self, env: Any, seed: int) -> None:
        """Start an episode. ``env`` is the unwrapped highway-env env, already reset."""

    def act(self, obs: np.ndarray, env: Any) -> int | np.ndarray:
        """Action for the current step, from the observation and/or the simulator (an
        array for a Box action space)."""


@dataclasses.dataclass(frozen=True)
class PolicySpec:
    """A parsed policy spec."""

    kind: str
    """One of ``expert``, ``clone``, ``idle``, ``random``."""
    arg: str = ""
    """Expert name or clone run directory; empty for baselines."""

    @property
    def label(self) -> str:
        """The spec as written, used as the policy's name in tables."""
        return f"{self.kind}:{self.arg}" if self.arg else self.kind

    @classmethod
    def parse(cls, text: str) -> "PolicySpec":
        """Parse ``expert:NAME``, ``clone:DIR``, ``idle`` or ``random``.

        Raises:
            TestbedError: anything else, or an unknown expert / missing run directory.
        """
        kind, _, arg = text.partition(":")
        if kind in ("idle", "random") and not arg:
            return cls(kind)
        if kind == "expert" and arg:
            from testbed.experts import expert_names

            if arg not in expert_names():
                raise TestbedError(f"unknown expert {arg!r}; choose from: {', '.join(expert_names())}")
            return cls(kind, arg)
        if kind == "clone" and arg:
            if not pathlib.Path(arg).is_dir():
                raise TestbedError(f"clone run directory not found: {arg}")
            return cls(kind, arg)
        raise TestbedError(f"bad policy spec {text!r}; use expert:NAME, clone:RUN_DIR, idle or random")


class ExpertAgent:
    """Drives with a privileged expert."""

    def __init__(self, expert: Any) -> None:
        self.expert = expert

    def reset(self, env: Any, seed: int) -> None:
        self.expert.reset(env)

    def act(self, obs: np.ndarray, env: Any) -> int | np.ndarray:
        action = self.expert.act(env)
        return int(action) if np.ndim(action) == 0 else np.asarray(action, dtype=np.float32)


class IdleAgent:
    """Always IDLE: keeps its lane and target speed."""

    def reset(self, env: Any, seed: int) -> None:
        if _is_box(env.action_space):
            self._idle = np.zeros(env.action_space.shape, dtype=np.float32)
            return
        self._idle = int(env.action_type.actions_indexes["IDLE"])

    def act(self, obs: np.ndarray, env: Any) -> int | np.ndarray:
        return self._idle.copy() if isinstance(self._idle, np.ndarray) else self._idle


class RandomAgent:
    """Uniform random actions (discrete, or uniform in a Box); the generator is seeded by the
    episode seed, so the same seed gives the same actions whatever worker runs it."""

    def reset(self, env: Any, seed: int) -> None:
        # A stream of its own, distinct from the env's (which reset(seed) seeds).
        self._rng = np.random.default_rng([seed, 0x5EED])
        if _is_box(env.action_space):
            self._box = (env.action_space.low.astype(np.float64), env.action_space.high.astype(np.float64))
            return
        self._box = None
        self._n = int(env.action_space.n)

    def act(self, obs: np.ndarray, env: Any) -> int | np.ndarray:
        if self._box is not None:
            return self._rng.uniform(*self._box).astype(np.float32)
        return int(self._rng.integers(self._n))


class ClonePolicyAgent:
    """Drives with a trained policy (deterministic: the most likely action, or the mean of a
    Gaussian policy clipped to the Box)."""

    def __init__(self, policy: Any) -> None:
        self.policy = policy

    def reset(self, env: Any, seed: int) -> None:
        pass

    def act(self, obs: np.ndarray, env: Any) -> int | np.ndarray:
        action, _ = self.policy.predict(obs, deterministic=True)
        if _is_box(self.policy.action_space):
            return np.asarray(action, dtype=np.float32)
        return int(action)


def _is_box(space: Any) -> bool:
    import gymnasium as gym

    return isinstance(space, gym.spaces.Box)


def check_expert_fits(expert: Any, scenario: Any) -> None:
    """Refuse an expert built for another kind of action than the scenario's.

    Experts may declare ``action_types`` (names of highway-env action types they drive
    with); one without it is taken to drive discrete meta-actions.

    Raises:
        TestbedError: naming the expert, the scenario and its action type.
    """
    supported = getattr(expert, "action_types", ("DiscreteMetaAction",))
    kind = dict(scenario.config.get("action", {})).get("type")
    if kind not in supported:
        raise TestbedError(
            f"expert {getattr(expert, 'name', expert)!r} drives with {', '.join(supported)} actions; "
            f"scenario {scenario.name!r} has {kind} actions"
        )


def build_agent(spec: PolicySpec, scenario: Any) -> Agent:
    """Turn a spec into an agent for ``scenario`` (loads clone weights, checks spaces).

    Raises:
        TestbedError: a clone trained for other spaces, or an unreadable policy file.
    """
    if spec.kind == "expert":
        from testbed.experts import make_expert

        expert = make_expert(spec.arg)
        check_expert_fits(expert, scenario)
        return ExpertAgent(expert)
    if spec.kind == "idle":
        return IdleAgent()
    if spec.kind == "random":
        return RandomAgent()
    if spec.kind == "clone":
        from testbed.training import load_clone

        return ClonePolicyAgent(load_clone(spec.arg, scenario=scenario))
    raise TestbedError(f"unknown policy kind {spec.kind!r}")
