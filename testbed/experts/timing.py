"""What an expert costs: milliseconds per decision, measured in this process."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from testbed.policies import PolicySpec, build_agent
from testbed.scenarios import Scenario, make_env


def decision_ms(scenario: Scenario, expert: str, seeds: Sequence[int]) -> np.ndarray:
    """Milliseconds per ``act`` call of ``expert`` over whole episodes of ``seeds``, in this
    process (the simulator's own step is not timed)."""
    env = make_env(scenario)
    agent = build_agent(PolicySpec("expert", expert), scenario)
    times = []
    try:
        for seed in seeds:
            obs, _ = env.reset(seed=seed)
            agent.reset(env.unwrapped, seed)
            done = False
            while not done:
                t0 = time.perf_counter()
                action = agent.act(obs, env.unwrapped)
                times.append(1e3 * (time.perf_counter() - t0))
                obs, _, terminated, truncated, _ = env.step(action)
                done = terminated or truncated
    finally:
        env.close()
    return np.asarray(times)
