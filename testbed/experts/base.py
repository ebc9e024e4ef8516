"""The interface every expert driver shares: the harness's :class:`testbed.policies.Agent`.

An expert is *privileged*: it reads the simulator's true state (``env.unwrapped`` of a
highway-env environment: road, lanes, vehicles, speeds) rather than the observation the clone
sees. Because it needs the live simulator, an expert always runs where the environment lives
(inside a rollout worker); that is also what lets it label states another policy visits
(DAgger, on-policy error audits).
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import numpy as np


class Expert(abc.ABC):
    """A driver that maps the simulator state to an action.

    Implements the harness's agent protocol directly (``reset(env, seed)``,
    ``act(obs, env)``). Subclasses must be deterministic given the simulator state, must not
    mutate the environment, and must be cheap to construct (one is built per worker process).
    """

    name: ClassVar[str]
    """Registry name, used in specs such as ``expert:scripted``."""

    action_types: ClassVar[tuple[str, ...]] = ("DiscreteMetaAction",)
    """highway-env action types the expert drives with."""

    def reset(self, env: Any, seed: int) -> None:
        """Called once after each ``env.reset``; clears any per-episode memory.

        Args:
            env: the highway-env environment (``env.unwrapped``), already reset.
            seed: the episode seed (experts are deterministic and ignore it).
        """
        del env, seed  # nothing to clear by default

    @abc.abstractmethod
    def act(self, obs: np.ndarray | None, env: Any) -> int | np.ndarray:
        """The action to take in the environment's current state.

        Args:
            obs: the observation the env returned (experts read the simulator instead; None
                where a caller labels a state without one at hand).
            env: the highway-env environment (``env.unwrapped``); read, never modified.

        Returns:
            An action of ``env.action_space``: a discrete meta-action index, or a float32
            array for a Box action space.
        """

    def params(self) -> dict[str, Any]:
        """JSON-serialisable parameters, recorded as provenance with every output."""
        return {}

    def decision_identity(self) -> str | None:
        """A name for this expert's decision function when its decisions are worth keeping for
        reuse (:class:`testbed.rollout.DecisionMemo`): it must then be a pure function of the
        simulator state (no per-episode memory, no randomness) and cost far more than reading
        a small file. None (the default): never kept, always asked."""
        return None
