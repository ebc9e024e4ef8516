"""What each sensor costs and what a BC clone does with it, on highway-fast.

For every sensor (kinematics, lidar, grid, camera, kinrich): bare ``env.step`` time [ms]
(IDLE, no policy), demonstration size on disk [MB per episode], and BC clones of the scripted
expert, one per training seed (seed s: DEMO_EPISODES episodes from demonstration seed s * 500,
initialisation s; :mod:`testbed.kit.seeded`), evaluated on sealed test seeds (1000000..). The
expert is privileged, so its demonstrations are the same driving for every sensor; only what the
clone sees changes. A sensor's row averages its clones (intervals over training and test seeds);
clones.csv has one row per clone. Writes results/sensors/: summary.csv, clones.csv, config.json,
episodes.csv, sensors.png and one subdirectory per sensor (demos' metadata and clone per training
seed, evaluation). The expert drives the same test seeds as the reference.

    python experiments/sensors.py            # 50 demos per clone, 30 eval seeds per sensor
    python experiments/sensors.py --fast     # 2 demos, 2 eval seeds, short episodes, for tests
"""

from __future__ import annotations

import dataclasses
import pathlib
import shutil
import time
from typing import Any

import numpy as np
import pandas as pd

from testbed import kit
from testbed.evaluation import evaluate, write_evaluation
from testbed.outputs import atomic_output_dir
from testbed.policies import PolicySpec
from testbed.rollout import RolloutPool, fresh_episodes
from testbed.scenarios import get_scenario, make_env, parse_overrides, sensor_names
from testbed.seeds import TEST_SEED, TUNING_SEED, check_test_seeds, episode_seeds
from testbed.training import TrainConfig

TIMING_SEED = TUNING_SEED
"""First tuning seed of the timed IDLE episodes and of the pool warm-up (never an evaluation seed)."""


@dataclasses.dataclass
class Args(kit.SeedsArgs):
    """Measure step time, demonstration size and clone quality for every sensor."""

    scenario: str = "highway-fast"
    """Base scenario preset."""
    sensors: tuple[str, ...] = tuple(sensor_names())
    """Sensors to measure."""
    demo_episodes: int = 50
    """Expert demonstration episodes per clone (training seed s: from s * 500)."""
    eval_episodes: int = 30
    """Evaluation episodes (sealed test seeds from ``eval_seed``)."""
    eval_seed: int = TEST_SEED
    """First evaluation seed (in the sealed test range, :data:`testbed.seeds.TEST`)."""
    epochs: int = 100
    """BC epochs for the vector sensors (MLP)."""
    camera_epochs: int = 20
    """BC epochs for the camera (CNN; ~10 s per epoch on one busy core at 50 episodes)."""
    timing_steps: int = 30
    """env.step calls timed per sensor and round (IDLE, seeds 20000..; 3 rounds)."""
    set: tuple[str, ...] = ()
    """Scenario config overrides KEY=VALUE."""
    expert: str = "scripted"
    """Expert that demonstrates (privileged: the same driving whatever the sensor)."""
    out: str = "results/sensors"
    """Output directory (replaced)."""

    def resolved(self) -> Args:
        """The fast preset: 2 training seeds of 2 demonstrations, 2 evaluation seeds, 4 s episodes, 1-2 epochs."""
        return kit.fast_preset(
            self,
            demo_episodes=2,
            eval_episodes=2,
            epochs=2,
            camera_epochs=1,
            timing_steps=4,
            set=(*self.set, "duration=4"),
            train_seeds=(0, 1),
        )


def step_ms(scenarios: dict[str, Any], n_steps: int, *, rounds: int = 3) -> dict[str, float]:
    """Median over ``rounds`` of the mean wall time of one ``env.step`` (IDLE) [ms] per
    sensor, resets excluded. Sensors take turns within each round, so a changing load on the
    machine hits them alike."""
    envs = {name: make_env(scenario) for name, scenario in scenarios.items()}
    per_round: dict[str, list[float]] = {name: [] for name in envs}
    for _ in range(rounds):
        for name, env in envs.items():
            total, n, seed = 0.0, 0, TIMING_SEED
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
    args = args.resolved()
    start_all = time.perf_counter()
    test_seeds = check_test_seeds(episode_seeds(args.eval_seed, args.eval_episodes), "sensors")
    kit.check_train_seeds(args.train_seeds, args.demo_episodes)
    scenarios = {s: get_scenario(args.scenario, parse_overrides(args.set), sensor=s) for s in args.sensors}
    timing = step_ms(scenarios, args.timing_steps)
    rows, per_clone, episodes = [], [], []
    # Collection and evaluation costs per step are measurements: every episode is simulated here,
    # none is taken from an earlier step of ``testbed reproduce``.
    with atomic_output_dir(args.out, overwrite=True) as out, RolloutPool(args.workers) as pool, fresh_episodes():
        # Start the workers (imports, first env) before anything is timed: one IDLE episode per
        # worker on tuning seeds, so that the first sensor does not pay the pool's start-up.
        pool.run(scenarios[args.sensors[0]], PolicySpec("idle"), [TIMING_SEED + i for i in range(pool.n_workers)])
        for sensor in args.sensors:
            scenario = scenarios[sensor]
            config = TrainConfig(
                n_epochs=args.camera_epochs if sensor == "camera" else args.epochs, batch_size=4 if args.fast else 64
            )
            jobs = kit.seeded_demos(
                out / sensor / "clones",
                scenario,
                args.expert,
                args.train_seeds,
                n_episodes=args.demo_episodes,
                config=config,
                pool=pool,
                demos_dir=out / sensor / "demos",
            )
            demo_dirs = [out / sensor / "demos" / f"seed{s}" for s in args.train_seeds]
            traj_mb = sum(f.stat().st_size for d in demo_dirs for f in (d / "trajectories").iterdir()) / 1e6
            meta_mb = float(np.mean([(d / "metadata.json").stat().st_size for d in demo_dirs])) / 1e6
            # One clone after the other in this process: train_s is each one's own wall time.
            clones = kit.train_seeded(jobs, workers=1)
            specs = [PolicySpec("expert", args.expert), *(c.spec for c in clones)]
            times: dict[str, float] = {}
            with kit.timed(times, "evaluate"):
                evaluation = evaluate(
                    scenario, specs, n_episodes=args.eval_episodes, seed=args.eval_seed, pool=pool, progress=True
                )
            write_evaluation(evaluation, out / sensor / "eval")
            # The trajectories are rebuildable with this script; keep only their record.
            for d in demo_dirs:
                shutil.rmtree(d / "trajectories")
            seeded = kit.seeded_episodes(evaluation.episodes, clones)
            episodes.append(evaluation.episodes.assign(sensor=sensor, train_seed=seeded["train_seed"]))
            clones_row, each = kit.seeded_summary(evaluation.episodes, clones, specs[0].label)
            fits = {c.train_seed: _fit(c) for c in clones}
            per_clone += [{"sensor": sensor, **r, **fits[r["train_seed"]]} for r in each]
            obs = np.asarray(jobs[0].demos.trajectories[0].obs)
            rows.append(
                {
                    "sensor": sensor,
                    "scenario": scenario.name,
                    "obs_shape": "x".join(map(str, obs.shape[1:])),
                    "obs_dtype": str(obs.dtype),
                    "env_step_ms": round(timing[sensor], 1),
                    "collect_ms_per_step": round(
                        1000 * sum(j.collect_s for j in jobs) / sum(j.demos.n_transitions for j in jobs), 1
                    ),
                    "demo_mb_per_episode": round(traj_mb / (args.demo_episodes * len(jobs)), 3),
                    "metadata_mb": round(meta_mb, 3),
                    "epochs": config.n_epochs,
                    **{k: round(float(np.mean([f[k] for f in fits.values()])), _FIT[k]) for k in _FIT},
                    "eval_ms_per_step": round(1000 * times["evaluate"] / evaluation.episodes["length"].sum(), 1),
                    **clones_row,
                }
            )
            print(pd.DataFrame(rows).tail(1).to_string(index=False), flush=True)
        summary = pd.DataFrame(rows)
        record = kit.experiment_record(
            args,
            scenarios={k: v.to_dict() for k, v in scenarios.items()},
            demo_seeds=kit.seeds_record(args.train_seeds, args.demo_episodes),
            eval_seeds=test_seeds,
            timing_seeds={"first": TIMING_SEED},
            statistics=f"{kit.STATISTICS}; train_s, train_accuracy, val_accuracy: means over the clones",
            notes="env_step_ms: bare env.step (IDLE) in one process, median of 3 interleaved rounds; train_s: one "
            "clone's training in the main process (the clones one after the other)",
            wall_time_s=round(time.perf_counter() - start_all, 1),
        )
        tables = {
            "summary": summary,
            "clones": pd.DataFrame(per_clone),
            "episodes": pd.concat(episodes, ignore_index=True),
        }
        kit.write_results(out, tables, record)
        replot(out)
    print(summary.to_string(index=False))
    return summary


_FIT = {"train_s": 1, "train_accuracy": 3, "val_accuracy": 3}
"""Columns of :func:`_fit` (and their decimals), averaged over the clones in a sensor's row."""


def _fit(clone: kit.SeededClone) -> dict[str, float]:
    """A clone's training time [s] and last-epoch training and validation accuracy."""
    last = clone.log.iloc[-1]
    assert clone.train_s is not None  # trained in this process
    values = {"train_s": clone.train_s, "train_accuracy": last["train/accuracy"], "val_accuracy": last["val/accuracy"]}
    return {k: round(float(v), _FIT[k]) for k, v in values.items()}


def replot(out: str | pathlib.Path) -> list[pathlib.Path]:
    """Draw the figure from ``summary.csv`` and ``config.json`` of a run in ``out`` (``main``
    draws it so too)."""
    from testbed.outputs import read_args
    from testbed.plotting import plot_sensors

    args = read_args(pathlib.Path(out) / "config.json", Args)
    fig = plot_sensors(
        pd.read_csv(pathlib.Path(out) / "summary.csv"),
        title=f"{args.scenario}: BC from each sensor ({len(args.train_seeds)} clones of {args.demo_episodes} expert "
        f"episodes; {args.eval_episodes} seeds; 95% CIs over both)",
    )
    return [kit.save_laid_out_figure(fig, pathlib.Path(out) / "sensors.png")]


if __name__ == "__main__":
    kit.run_script(main, Args)
