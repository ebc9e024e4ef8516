"""What each sensor costs and what a BC clone does with it, on highway-fast.

For every sensor (kinematics, lidar, grid, camera): bare ``env.step`` time [ms] (IDLE, no
policy), demonstration size on disk [MB per episode], and a BC clone of the scripted expert
trained on DEMO_EPISODES episodes (seeds 0..) evaluated on held-out seeds (10000..).
The expert is privileged, so its demonstrations are the same driving for every sensor; only
what the clone sees changes. Writes results/sensors/: summary.csv, config.json and one
subdirectory per sensor (demos' metadata, clone, evaluation).

    python experiments/sensors.py                   # 50 demos, 30 eval seeds: ~30 min on a busy 2-core machine
    python experiments/sensors.py --fast            # 2 demos, 2 eval seeds, short episodes, for tests
"""

from __future__ import annotations

import dataclasses
import pathlib
import shutil
import time
from typing import Any

import numpy as np
import pandas as pd
import tyro

from testbed.demos import collect, save_demos
from testbed.evaluation import DEFAULT_EVAL_SEED, evaluate, write_evaluation
from testbed.outputs import write_json
from testbed.policies import PolicySpec
from testbed.provenance import provenance
from testbed.scenarios import get_scenario, make_env, parse_overrides, sensor_names
from testbed.training import TrainConfig, save_clone, train_bc


@dataclasses.dataclass
class Args:
    """Measure step time, demonstration size and clone quality for every sensor."""

    scenario: str = "highway-fast"
    """Base scenario preset."""
    sensors: tuple[str, ...] = tuple(sensor_names())
    """Sensors to measure."""
    demo_episodes: int = 50
    """Expert demonstration episodes (seeds 0..)."""
    eval_episodes: int = 30
    """Held-out evaluation episodes (seeds 10000..)."""
    epochs: int = 100
    """BC epochs for the vector sensors (MLP)."""
    camera_epochs: int = 20
    """BC epochs for the camera (CNN; ~10 s per epoch on one busy core at 50 episodes)."""
    timing_steps: int = 30
    """env.step calls timed per sensor and round (IDLE, seeds 20000..; 3 rounds)."""
    set: tuple[str, ...] = ()
    """Scenario config overrides KEY=VALUE."""
    out: str = "results/sensors"
    """Output directory (rewritten)."""
    fast: bool = False
    """Tiny preset for tests."""


def step_ms(scenarios: dict[str, Any], n_steps: int, *, rounds: int = 3) -> dict[str, float]:
    """Median over ``rounds`` of the mean wall time of one ``env.step`` (IDLE) [ms] per
    sensor, resets excluded. Sensors take turns within each round, so a changing load on the
    machine hits them alike."""
    envs = {name: make_env(scenario) for name, scenario in scenarios.items()}
    per_round: dict[str, list[float]] = {name: [] for name in envs}
    for _ in range(rounds):
        for name, env in envs.items():
            total, n, seed = 0.0, 0, 20_000
            while n < n_steps:
                env.reset(seed=seed)
                seed += 1
                done = False
                while not done and n < n_steps:
                    start = time.perf_counter()
                    _, _, terminated, truncated, _ = env.step(1)
                    total += time.perf_counter() - start
                    n += 1
                    done = terminated or truncated
            per_round[name].append(1000 * total / n)
    for env in envs.values():
        env.close()
    return {name: float(np.median(values)) for name, values in per_round.items()}


def main(args: Args) -> pd.DataFrame:
    if args.fast:
        args = dataclasses.replace(
            args, demo_episodes=2, eval_episodes=2, epochs=2, camera_epochs=1, timing_steps=4,
            set=(*args.set, "duration=4"),
        )
    out = pathlib.Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    scenarios = {s: get_scenario(args.scenario, parse_overrides(args.set), sensor=s) for s in args.sensors}
    timing = step_ms(scenarios, args.timing_steps)
    rows = []
    for sensor in args.sensors:
        scenario = scenarios[sensor]
        ms = timing[sensor]
        start = time.perf_counter()
        demos = collect(scenario, "scripted", n_episodes=args.demo_episodes, seed=0)
        collect_s = time.perf_counter() - start
        demo_dir = save_demos(demos, out / sensor / "demos")
        traj_mb = sum(f.stat().st_size for f in (demo_dir / "trajectories").iterdir()) / 1e6
        meta_mb = (demo_dir / "metadata.json").stat().st_size / 1e6
        config = TrainConfig(
            n_epochs=args.camera_epochs if sensor == "camera" else args.epochs, batch_size=4 if args.fast else 64
        )
        start = time.perf_counter()
        result = train_bc(demos, config)
        train_s = time.perf_counter() - start
        clone = save_clone(out / sensor / "clone", result, demos=demos, demos_path=str(demo_dir), config=config)
        start = time.perf_counter()
        evaluation = evaluate(scenario, [PolicySpec("clone", str(clone))], n_episodes=args.eval_episodes,
                              seed=DEFAULT_EVAL_SEED)
        eval_s = time.perf_counter() - start
        write_evaluation(evaluation, out / sensor / "eval")
        # The trajectories are rebuildable with this script; keep only their record.
        shutil.rmtree(demo_dir / "trajectories")
        s = evaluation.summary.iloc[0]
        last = result.log.iloc[-1]
        rows.append({
            "sensor": sensor, "scenario": scenario.name,
            "obs_shape": "x".join(map(str, demos.trajectories[0].obs.shape[1:])),
            "obs_dtype": str(demos.trajectories[0].obs.dtype),
            "env_step_ms": round(ms, 1),
            "collect_ms_per_step": round(1000 * collect_s / demos.n_transitions, 1),
            "demo_mb_per_episode": round(traj_mb / args.demo_episodes, 3),
            "metadata_mb": round(meta_mb, 3),
            "epochs": config.n_epochs, "train_s": round(train_s, 1),
            "train_accuracy": round(float(last["train/accuracy"]), 3),
            "val_accuracy": round(float(last["val/accuracy"]), 3),
            "eval_ms_per_step": round(1000 * eval_s / evaluation.episodes["length"].sum(), 1),
            **{f"clone_{k}": round(float(s[k]), 3) for k in ("return", "return_ci_low", "return_ci_high",
                                                                "crashed", "crashed_ci_low", "crashed_ci_high")},
        })
        pd.DataFrame(rows).to_csv(out / "summary.csv", index=False)
        print(pd.DataFrame(rows).tail(1).to_string(index=False), flush=True)
    write_json(out / "config.json", {
        "args": dataclasses.asdict(args),
        "demo_seeds": {"first": 0, "n_episodes": args.demo_episodes},
        "eval_seeds": {"first": DEFAULT_EVAL_SEED, "n_episodes": args.eval_episodes},
        "notes": "env_step_ms: bare env.step (IDLE) on this machine while other jobs shared its 2 cores; "
                 "ratios between sensors are the meaningful part",
        "provenance": provenance(),
    })
    return pd.DataFrame(rows)


if __name__ == "__main__":
    from testbed.training import set_torch_threads

    set_torch_threads(1)
    summary = main(tyro.cli(Args))
    print(summary.to_string(index=False))
