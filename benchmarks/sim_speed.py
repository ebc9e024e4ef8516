"""Speed of the accelerated simulation (:mod:`testbed.sim`) against stock highway-env.

Usage: ``python benchmarks/sim_speed.py [--steps N] [--pairs P] [--scenarios a,b,...]``

For each scenario and action mode (IDLE, random) this times ``env.step`` in one process,
alternating stock and accelerated blocks of ``N`` steps (same seeds in both, so both simulate
the same trajectory; the order within a pair alternates to cancel drift), and reports the
median seconds per step of each and their ratio. The CPU may be shared, so expect noise;
more pairs give a steadier median.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import testbed.sim as sim
from testbed.scenarios import get_scenario, make_env

DEFAULT_SCENARIOS = ("highway-fast", "highway", "merge", "roundabout")
IDLE = 1  # DiscreteMetaAction index of IDLE


def _block(scenario_name: str, n_steps: int, seed: int, mode: str) -> float:
    """Seconds spent in ``env.step`` over ``n_steps`` steps (resets excluded)."""
    env = make_env(get_scenario(scenario_name))
    try:
        env.reset(seed=seed)
        env.action_space.seed(seed)
        elapsed = 0.0
        episode = 0
        for _ in range(n_steps):
            action: Any = IDLE if mode == "idle" else env.action_space.sample()
            start = time.perf_counter()
            _, _, terminated, truncated, _ = env.step(action)
            elapsed += time.perf_counter() - start
            if terminated or truncated:
                episode += 1
                env.reset(seed=seed + 1000 * episode)
        return elapsed
    finally:
        env.close()


def measure(scenario_name: str, n_steps: int, n_pairs: int) -> dict[str, Any]:
    """Time stock against accelerated ``env.step`` on one scenario.

    Args:
        scenario_name: a :func:`testbed.scenarios.get_scenario` name.
        n_steps: steps per timed block.
        n_pairs: stock/accelerated block pairs per action mode (seeds 0..n_pairs-1).

    Returns:
        ``{"scenario", "n_steps", "n_pairs", "modes": {mode: {"stock_s_per_step",
        "accelerated_s_per_step", "speedup"}}}`` for mode in ("idle", "random"), where the
        per-step times are medians over the pairs and ``speedup`` is stock / accelerated
        (so 3.0 means the accelerated sim takes a third of the time). If the accelerated sim
        cannot be enabled (``TESTBED_STOCK_SIM=1``, other highway-env version) both columns
        time the stock code and ``"accelerated_active"`` is False.
    """
    was_enabled = sim.is_enabled()
    active = sim.enable()
    modes: dict[str, dict[str, float]] = {}
    try:
        for mode in ("idle", "random"):
            stock_times: list[float] = []
            fast_times: list[float] = []
            for pair in range(n_pairs):
                for accelerated in (pair % 2 == 1, pair % 2 == 0):
                    if accelerated:
                        fast_times.append(_block(scenario_name, n_steps, pair, mode))
                    else:
                        with sim.stock():
                            stock_times.append(_block(scenario_name, n_steps, pair, mode))
            stock_s = statistics.median(stock_times) / n_steps
            fast_s = statistics.median(fast_times) / n_steps
            modes[mode] = {
                "stock_s_per_step": stock_s,
                "accelerated_s_per_step": fast_s,
                "speedup": stock_s / fast_s if fast_s > 0 else float("nan"),
            }
    finally:
        if not was_enabled:
            sim.disable()
    return {
        "scenario": scenario_name,
        "n_steps": n_steps,
        "n_pairs": n_pairs,
        "accelerated_active": active,
        "modes": modes,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="env steps per timed block (default 20)")
    parser.add_argument("--pairs", type=int, default=3, help="stock/accelerated block pairs (default 3)")
    parser.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS), help="comma-separated scenario names")
    args = parser.parse_args(argv)
    print(f"{'scenario':<16} {'actions':<7} {'stock ms/step':>13} {'accel ms/step':>13} {'speedup':>8}")
    for name in args.scenarios.split(","):
        result = measure(name, args.steps, args.pairs)
        if not result["accelerated_active"]:
            print(f"{name}: accelerated sim not active (TESTBED_STOCK_SIM=1 or unsupported highway-env)")
        for mode, row in result["modes"].items():
            print(
                f"{name:<16} {mode:<7} {1000 * row['stock_s_per_step']:>13.1f} "
                f"{1000 * row['accelerated_s_per_step']:>13.1f} {row['speedup']:>7.2f}x",
                flush=True,
            )


if __name__ == "__main__":
    main()
