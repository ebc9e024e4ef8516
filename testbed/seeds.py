"""Named seed ranges: the one place the testbed's default seeds are defined.

Demonstrations, DAgger rounds, tuning and evaluation draw from disjoint ranges, so training
and evaluation seeds never overlap unless a user asks for it (and then they are refused).
"""

from __future__ import annotations

from testbed.errors import TestbedError

DEMO_SEED = 0
"""First seed of demonstration episodes (``testbed collect``, the pipeline)."""
DAGGER_SEED = 5_000
"""First DAgger round seed (round r uses DAGGER_SEED + r)."""
EVAL_SEED = 10_000
"""First evaluation seed (``testbed evaluate``, drift, the leaderboard, the experiments)."""
TUNING_SEED = 20_000
"""First seed of the range experts and defaults are tuned on."""


def episode_seeds(seed: int, n_episodes: int) -> list[int]:
    """The seeds of ``n_episodes`` consecutive episodes starting at ``seed``.

    Raises:
        TestbedError: ``n_episodes < 1`` or a negative seed.
    """
    if n_episodes < 1:
        raise TestbedError(f"--episodes must be at least 1, got {n_episodes}")
    if seed < 0:
        raise TestbedError(f"--seed must be non-negative, got {seed}")
    return list(range(seed, seed + n_episodes))
