"""Drivers the rollout harness can run, named by a spec string.

Specs (the same strings the command line takes):

- ``expert:NAME`` — a privileged expert from :mod:`testbed.experts` (``expert:scripted``);
- ``expert:sb3:PATH`` — a stable-baselines3 model file (DQN, PPO, A2C) driving from the observation;
- ``clone:RUN_DIR`` — a policy written by ``testbed train``;
- ``idle`` — always the IDLE meta-action (keep lane and speed);
- ``random`` — uniform random actions, from a generator seeded by the episode seed.

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

    def act(self, obs: np.ndarray, env: Any) -> int:
        """Action for the current step, from the observation and/or the simulator."""


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
        """Parse ``expert:NAME``, ``expert:sb3:PATH``, ``clone:DIR``, ``idle`` or ``random``.

        Raises:
            TestbedError: anything else, or an unknown expert / missing run directory.
        """
        kind, _, arg = text.partition(":")
        if kind in ("idle", "random") and not arg:
            return cls(kind)
        if kind == "expert" and arg:
            from testbed.experts import SB3_PREFIX, expert_names, make_expert

            if arg.startswith(SB3_PREFIX):
                make_expert(arg)  # fail now, not in a worker, on a missing or corrupt model file
                return cls(kind, arg)
            if arg not in expert_names():
                raise TestbedError(f"unknown expert {arg!r}; choose from: {', '.join(expert_names())} or sb3:MODEL_ZIP")
            return cls(kind, arg)
        if kind == "clone" and arg:
            if not pathlib.Path(arg).is_dir():
                raise TestbedError(f"clone run directory not found: {arg}")
            return cls(kind, arg)
        raise TestbedError(f"bad policy spec {text!r}; use expert:NAME, expert:sb3:MODEL_ZIP, clone:RUN_DIR, idle or random")


class ExpertAgent:
    """Drives with a privileged expert."""

    def __init__(self, expert: Any) -> None:
        self.expert = expert

    def reset(self, env: Any, seed: int) -> None:
        self.expert.reset(env)

    def act(self, obs: np.ndarray, env: Any) -> int:
        return int(self.expert.act(env))


class IdleAgent:
    """Always IDLE: keeps its lane and target speed."""

    def reset(self, env: Any, seed: int) -> None:
        self._idle = int(env.action_type.actions_indexes["IDLE"])

    def act(self, obs: np.ndarray, env: Any) -> int:
        return self._idle


class RandomAgent:
    """Uniform random discrete actions; the generator is seeded by the episode seed, so
    the same seed gives the same actions whatever worker runs it."""

    def reset(self, env: Any, seed: int) -> None:
        # A stream of its own, distinct from the env's (which reset(seed) seeds).
        self._rng = np.random.default_rng([seed, 0x5EED])
        self._n = int(env.action_space.n)

    def act(self, obs: np.ndarray, env: Any) -> int:
        return int(self._rng.integers(self._n))


class ClonePolicyAgent:
    """Drives with a trained policy (deterministic: the most likely action)."""

    def __init__(self, policy: Any) -> None:
        self.policy = policy

    def reset(self, env: Any, seed: int) -> None:
        pass

    def act(self, obs: np.ndarray, env: Any) -> int:
        action, _ = self.policy.predict(obs, deterministic=True)
        return int(action)


def build_agent(spec: PolicySpec, scenario: Any) -> Agent:
    """Turn a spec into an agent for ``scenario`` (loads clone weights, checks spaces).

    Raises:
        TestbedError: a clone trained for other spaces, or an unreadable policy file.
    """
    if spec.kind == "expert":
        from testbed.experts import make_expert

        return ExpertAgent(make_expert(spec.arg))
    if spec.kind == "idle":
        return IdleAgent()
    if spec.kind == "random":
        return RandomAgent()
    if spec.kind == "clone":
        from testbed.training import load_clone

        return ClonePolicyAgent(load_clone(spec.arg, scenario=scenario))
    raise TestbedError(f"unknown policy kind {spec.kind!r}")
