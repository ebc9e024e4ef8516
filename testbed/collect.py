"""Collect expert demonstrations through the rollout harness (with optional DART noise)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from testbed.demos import DemoMetadata, Demonstrations
from testbed.errors import TestbedError
from testbed.experts import make_expert
from testbed.policies import PolicySpec, check_expert_fits
from testbed.rollout import EpisodeRecord, RolloutPool, rollouts
from testbed.scenarios import Scenario
from testbed.seeds import episode_seeds


def noise_record(noise: float, *, continuous: bool) -> dict[str, object] | None:
    """How ``noise`` was injected, as recorded in :attr:`DemoMetadata.noise` (None: no noise)."""
    if noise <= 0:
        return None
    if continuous:
        return {"type": "Gaussian, std = noise * (high - low) per component, clipped (DART-style)", "noise": noise}
    return {"type": "uniform random action (DART-style)", "probability": noise}


def collect(
    scenario: Scenario,
    expert: str,
    *,
    n_episodes: int,
    seed: int,
    n_workers: int = 1,
    pool: RolloutPool | None = None,
    noise: float = 0.0,
    progress: bool = False,
) -> Demonstrations:
    """Drive ``n_episodes`` episodes with an expert and keep them as demonstrations.

    Args:
        scenario: where the expert drives.
        expert: expert name (``scripted``).
        n_episodes: number of episodes; episode ``i`` uses seed ``seed + i``.
        seed: first episode seed.
        n_workers: rollout worker processes (results do not depend on it).
        pool: an open :class:`testbed.rollout.RolloutPool` to use instead.
        noise: DART-style noise injection: with this probability a uniformly random action
            is applied instead of the expert's, while the recorded label stays the expert's
            clean action (the applied one is in each step's ``applied_action`` info). In a
            continuous-action scenario every applied action gets Gaussian noise of standard
            deviation ``noise`` times the action range instead (clipped to the Box).
        progress: show a progress bar.
    """
    spec = PolicySpec.parse(f"expert:{expert}")
    seeds = episode_seeds(seed, n_episodes)
    if not 0.0 <= noise <= 1.0:
        raise TestbedError(f"--noise must be a probability in [0, 1], got {noise}")
    driver = make_expert(expert)
    check_expert_fits(driver, scenario)
    continuous = scenario.config["action"]["type"] == "ContinuousAction"
    records = rollouts(
        scenario, spec, seeds, n_workers=n_workers, pool=pool, noise=noise, progress=progress, desc="collect"
    )
    trajectories = [r.trajectory for r in records]
    metadata = DemoMetadata.describe(
        scenario,
        trajectories,
        seeds,
        expert={"name": expert, "params": driver.params()},
        noise=noise_record(noise, continuous=continuous),
    )
    return Demonstrations(trajectories, metadata)


def collect_transitions(
    scenario: Scenario,
    expert: str,
    n_transitions: int,
    *,
    seed: int,
    pool: RolloutPool,
    noise: float = 0.0,
    progress: bool = False,
) -> Demonstrations:
    """Demonstrations holding exactly ``n_transitions`` (observation, action) pairs: episodes
    seeded ``seed, seed + 1, ...`` are collected until there are enough, and the last one used
    is cut (:meth:`Demonstrations.first_transitions`).

    The first batch is the fewest full-length episodes that could hold ``n_transitions`` (a
    5 Hz continuous episode is 150 decisions, a highway-fast one 30); later batches top up from
    the observed mean length, so few episodes are simulated only to be cut away. ``noise`` is
    :func:`collect`'s.
    """
    if n_transitions < 1:
        raise TestbedError(f"need at least 1 transition, got {n_transitions}")
    full = scenario.config.get("duration", 25) * scenario.policy_frequency_hz
    first = max(2, int(np.ceil(n_transitions / max(full, 1.0))))
    demos = collect(scenario, expert, n_episodes=first, seed=seed, pool=pool, noise=noise, progress=progress)
    while demos.n_transitions < n_transitions:
        per_episode = demos.n_transitions / len(demos.trajectories)
        more = int(np.ceil((n_transitions - demos.n_transitions) / max(per_episode, 1.0) * 1.2)) + 1
        start = seed + len(demos.trajectories)
        demos = demos.concatenate(
            collect(scenario, expert, n_episodes=more, seed=start, pool=pool, noise=noise, progress=progress)
        )
    return demos.first_transitions(n_transitions)


def demonstrations_from(
    scenario: Scenario, records: Sequence[EpisodeRecord], driver: Mapping[str, Any]
) -> Demonstrations:
    """Any driver's episodes from the harness as demonstrations (imitation trajectories and
    their record): e.g. a clone driving with its argmax as a realizable teacher. ``driver`` is
    recorded as the demonstrations' expert (``{"name": ..., "params": ...}``)."""
    trajectories = [r.trajectory for r in records]
    meta = DemoMetadata.describe(scenario, trajectories, [r.seed for r in records], expert=driver)
    return Demonstrations(trajectories, meta)
