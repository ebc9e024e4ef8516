"""The ``testbed`` command: collect, train, evaluate, pipeline.

Each subcommand is one dataclass of arguments (its field docstrings are the ``--help``).
User mistakes end in a one-line ``testbed: error: ...`` and exit code 2; outputs are written
to a temporary directory and renamed into place only when complete.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import pathlib
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from typing import Annotated, Any, Literal

import tyro

from testbed import human
from testbed.collect import collect
from testbed.dagger import DAggerConfig, as_demonstrations, train_dagger
from testbed.demos import load_demos, save_demos
from testbed.drift import format_drift, measure_drift, write_drift
from testbed.errors import Interrupted, TestbedError
from testbed.evaluation import check_policies, evaluate, write_evaluation
from testbed.experts import make_expert
from testbed.export import export_policy
from testbed.faults import filesystem_fault
from testbed.leaderboard import format_markdown, run_benchmark, suite_scenarios, write_leaderboard
from testbed.limits import check_frame_skip, check_options, check_panel
from testbed.metrics import format_summary
from testbed.minari_io import dataset_dir, export_minari, read_minari
from testbed.outputs import atomic_output_dir, check_output_dir, check_output_path, write_json
from testbed.pipeline import Pipeline, Repeatable, check_workers, save_summary_plot
from testbed.policies import PolicySpec
from testbed.provenance import git_commit, provenance
from testbed.render import render_comparison
from testbed.reproduce import reproduce, select_steps
from testbed.rl import RLConfig, save_expert, train_expert
from testbed.rollout import RolloutPool
from testbed.runtime import default_workers, signals_as_exceptions
from testbed.scenarios import Scenario, check_spaces, get_scenario, parse_overrides
from testbed.seeds import DAGGER_SEED, EVAL_SEED, episode_seeds
from testbed.training import (
    TENSORBOARD_DIR,
    TrainConfig,
    check_tensorboard,
    parse_net_arch,
    save_clone,
    tensorboard_logging,
    tensorboard_scalars,
    train_bc,
)
from testbed.verify import verify_demos


def _scenario(name: str, settings: Sequence[str]) -> Scenario:
    return get_scenario(name, parse_overrides(settings))


@contextlib.contextmanager
def _tensorboard_scratch(wanted: bool) -> Iterator[pathlib.Path | None]:
    """A temporary folder for TensorBoard event files while the run directory does not exist yet
    (it is written whole at the end, by :func:`testbed.training.save_clone`); None if not wanted."""
    if not wanted:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="testbed-tensorboard-") as scratch:
        yield pathlib.Path(scratch) / TENSORBOARD_DIR


Settings = Annotated[
    tuple[str, ...],
    Repeatable,
    tyro.conf.arg(help="Scenario config override KEY=VALUE (repeatable), e.g. --set vehicles_density=1.5."),
]
"""The ``--set`` option every simulating command shares."""
Overwrite = Annotated[bool, tyro.conf.arg(help="Replace an existing output.")]
"""The ``--overwrite`` option of every command that writes an output."""
Workers = Annotated[int, tyro.conf.arg(help="Worker processes (results do not depend on it).")]
"""The ``--workers`` option of every command that simulates in parallel."""
ScenarioName = Annotated[
    str,
    tyro.conf.arg(
        help="Scenario preset: highway-fast, highway, merge, roundabout or highway-fast-continuous (on highway-env "
        ">= 1.12 also merge-generic, roundabout-generic); a suffix -lidar, -grid or -camera changes what the clone "
        "observes (highway-fast-camera)."
    ),
]
"""The ``--scenario`` option."""


@dataclasses.dataclass
class Collect:
    """Drive an expert on seeded episodes and save them as imitation trajectories."""

    out: str
    """Output directory (refused if it exists, unless --overwrite)."""
    scenario: ScenarioName = "highway-fast"
    expert: str = "scripted"
    """Expert driver."""
    episodes: int = 100
    """Number of episodes; episode i uses seed SEED + i."""
    seed: int = 0
    """First episode seed (evaluation defaults to 10000 onwards, so keep demos below it)."""
    set: Settings = ()
    noise: float = 0.0
    """DART-style noise: probability of applying a random action instead of the expert's;
    the recorded label is always the expert's clean action."""
    workers: Workers = dataclasses.field(default_factory=default_workers)
    overwrite: Overwrite = False

    def run(self) -> None:

        check_options(self)
        scenario = _scenario(self.scenario, self.set)
        make_expert(self.expert)
        episode_seeds(self.seed, self.episodes)
        check_output_dir(self.out, overwrite=self.overwrite)
        start = time.perf_counter()
        if not 0.0 <= self.noise <= 1.0:
            raise TestbedError(f"--noise must be a probability in [0, 1], got {self.noise}")
        demos = collect(
            scenario,
            self.expert,
            n_episodes=self.episodes,
            seed=self.seed,
            n_workers=check_workers(self.workers),
            noise=self.noise,
            progress=True,
        )
        save_demos(demos, self.out, overwrite=self.overwrite)
        m = demos.metadata
        print(
            f"collected {m.n_episodes} episodes ({m.n_transitions} transitions, {m.n_crashed} crashed) "
            f"of expert:{self.expert} on {scenario.name} in {time.perf_counter() - start:.1f} s -> {self.out}"
        )


@dataclasses.dataclass
class Train:
    """Clone an expert with imitation's BC trainer (from demonstrations) or DAgger (online)."""

    out: str
    """Run directory for policy.pt, train_log.csv and metadata.json."""
    demos: str | None = None
    """Demonstration directory written by `testbed collect` (BC only)."""
    algo: Literal["bc", "dagger"] = "bc"
    """bc: supervised on the demonstrations. dagger: the expert labels the states the learner
    visits, round after round (imitation's DAggerTrainer)."""
    epochs: int = 100
    """BC: passes over the training episodes."""
    batch_size: int = 64
    """Samples per gradient step."""
    net_arch: str = "256,256"
    """Hidden layer sizes, comma-separated."""
    learning_rate: float = 1e-3
    """Adam learning rate."""
    l2_weight: float = 0.0
    """L2 penalty weight on the policy's parameters."""
    ent_weight: float = 1e-3
    """Entropy bonus weight."""
    seed: int = 0
    """Seed of torch (initialisation, batch order) and of the validation split."""
    val_fraction: float = 0.2
    """BC: fraction of episodes held out for validation accuracy."""
    torch_threads: int = 1
    """Torch intra-op threads (1 is fastest for small MLPs on few cores)."""
    eval_every: int = 10
    """BC: epochs between full train/validation evaluations in the log (the last is always evaluated)."""
    scenario: str = "highway-fast"
    """DAgger: scenario preset to drive in."""
    expert: str = "scripted"
    """DAgger: the labelling expert."""
    set: Annotated[tuple[str, ...], Repeatable] = ()
    """DAgger: scenario config override KEY=VALUE (repeatable)."""
    rounds: int = 5
    """DAgger: rounds of collect-aggregate-retrain (round 0 is the expert driving)."""
    labels_per_round: int = 500
    """DAgger: expert labels collected per round, exactly (the episode in progress when the
    count is reached is cut there)."""
    beta_schedule: Literal["expert-first", "linear"] = "expert-first"
    """DAgger: probability beta that the expert's action is applied. expert-first: 1 in round 0,
    0 after (Ross et al. 2011). linear: falls from 1 to 0 over --rampdown-rounds rounds."""
    rampdown_rounds: int = 3
    """DAgger, --beta-schedule linear: rounds over which beta falls linearly from 1 to 0."""
    sample_learner: bool = False
    """DAgger: the learner samples its actions while collecting (imitation's default) instead
    of taking its most likely action, as it is evaluated."""
    epochs_per_round: int = 20
    """DAgger, --dagger-training continue: BC epochs over the aggregate after each round."""
    dagger_training: Literal["continue", "scratch"] = "continue"
    """DAgger: continue training the same network after each round (imitation's), or train a fresh one for
    --epochs epochs on the aggregate, as BC would on that data (equal gradient steps at equal labels)."""
    first_seed: int = DAGGER_SEED
    """DAgger: round r's env is seeded with FIRST_SEED + r (within the DAgger seed range 5000..9999)."""
    tensorboard: bool = False
    """Also write TensorBoard event files to OUT/tensorboard: imitation's bc/* batch statistics, and BC's
    per-epoch train/val evaluations or DAgger's per-round table (dagger_round/*); view with tensorboard --logdir OUT."""
    overwrite: Overwrite = False

    def config(self) -> TrainConfig:
        """The BC hyperparameters these arguments describe (validated)."""
        config = TrainConfig(
            n_epochs=self.epochs,
            batch_size=self.batch_size,
            net_arch=parse_net_arch(self.net_arch),
            learning_rate=self.learning_rate,
            l2_weight=self.l2_weight,
            ent_weight=self.ent_weight,
            val_fraction=self.val_fraction,
            seed=self.seed,
            torch_threads=self.torch_threads,
            eval_every=self.eval_every,
        )
        config.validate()
        return config

    def run(self) -> None:

        check_options(self)
        config = self.config()
        if self.tensorboard:
            check_tensorboard()
        if self.algo == "dagger":
            return self._run_dagger(config)

        if self.demos is None:
            raise TestbedError("--demos is required with --algo bc")
        check_output_dir(self.out, overwrite=self.overwrite)
        demos = load_demos(self.demos)
        # The demos' own scenario record must still describe the spaces stored beside it.
        check_spaces(
            demos.metadata.to_dict(),
            Scenario.from_dict(demos.metadata.scenario),
            what=f"demonstrations at {self.demos}",
        )
        start = time.perf_counter()
        with _tensorboard_scratch(self.tensorboard) as tensorboard:
            with tensorboard_logging(tensorboard) if tensorboard else contextlib.nullcontext():
                result = train_bc(demos, config, progress=True)
            save_clone(
                self.out,
                result,
                demos=demos,
                demos_path=self.demos,
                config=config,
                overwrite=self.overwrite,
                tensorboard_dir=tensorboard,
            )
        last = result.log.iloc[-1]
        fit = "accuracy" if "train/accuracy" in last else "action_mae"  # action_mae: continuous actions
        print(
            f"trained BC for {config.n_epochs} epochs on {len(result.train_episodes)} episodes in "
            f"{time.perf_counter() - start:.1f} s: train {fit.replace('_', ' ')} {last[f'train/{fit}']:.3f}, "
            f"validation {fit.replace('_', ' ')} {last[f'val/{fit}']:.3f} -> {self.out}"
        )

    def _run_dagger(self, config: TrainConfig) -> None:

        if self.demos is not None:
            raise TestbedError("--demos is for --algo bc; DAgger collects its own data (round 0 is the expert driving)")
        scenario = _scenario(self.scenario, self.set)
        make_expert(self.expert)
        dagger = DAggerConfig(
            n_rounds=self.rounds,
            labels_per_round=self.labels_per_round,
            beta_schedule=self.beta_schedule,
            rampdown_rounds=self.rampdown_rounds,
            epochs_per_round=self.epochs_per_round,
            training=self.dagger_training,
            first_seed=self.first_seed,
            sample_learner=self.sample_learner,
        )
        dagger.validate()
        check_output_dir(self.out, overwrite=self.overwrite)
        start = time.perf_counter()
        with _tensorboard_scratch(self.tensorboard) as tensorboard:
            with tensorboard_logging(tensorboard) if tensorboard else contextlib.nullcontext():
                result = train_dagger(scenario, self.expert, config, dagger, progress=True)
            if tensorboard:
                tensorboard_scalars(tensorboard, result.log, step="round", prefix="dagger_round")
            self._save_dagger(result, scenario, dagger, config, tensorboard, start)

    def _save_dagger(
        self,
        result: Any,
        scenario: Scenario,
        dagger: DAggerConfig,
        config: TrainConfig,
        tensorboard: pathlib.Path | None,
        start: float,
    ) -> None:

        # Without a validation set best() is the last iterate; the record says which was kept.
        policy, chosen = result.best()
        scored = not math.isnan(chosen.val_score)
        iterate = {
            "round": chosen.round,
            "n_labels": chosen.n_labels,
            "val_score": chosen.val_score if scored else None,
            "selection": "best validation score" if scored else "last iterate: no validation set",
        }
        data = as_demonstrations(result, scenario, self.expert)
        save_clone(
            self.out,
            dataclasses.replace(result, policy=policy),
            demos=data,
            demos_path="(collected by DAgger)",
            config=config,
            algorithm="dagger",
            extra={"dagger": dataclasses.asdict(dagger), "iterate": iterate},
            overwrite=self.overwrite,
            tensorboard_dir=tensorboard,
        )
        last = result.log.iloc[chosen.round]
        fit = "accuracy" if "train/accuracy" in last else "action_mae"  # action_mae: continuous actions
        print(
            f"trained DAgger for {dagger.n_rounds} rounds ({int(result.log['n_labels'].iloc[-1])} expert labels, "
            f"beta {dagger.beta_schedule}, learner {'sampling' if dagger.sample_learner else 'argmax'}) in "
            f"{time.perf_counter() - start:.1f} s; kept round {chosen.round} ({iterate['selection']}, "
            f"{chosen.n_labels} labels): train {fit.replace('_', ' ')} {last[f'train/{fit}']:.3f} -> {self.out}"
        )


@dataclasses.dataclass
class Evaluate:
    """Run policies on the same evaluation seeds (development range by default); per-episode CSV
    and summary with 95% CIs."""

    out: str
    """Output directory for episodes.csv, summary.csv, summary.json and config.json."""
    policy: Annotated[tuple[str, ...], Repeatable] = ()
    """Policy spec (repeatable): expert:scripted, clone:RUN_DIR, idle or random. Differences
    are reported against the first."""
    scenario: ScenarioName = "highway-fast"
    episodes: int = 100
    """Episodes per policy."""
    seed: int = EVAL_SEED
    """First evaluation seed (must not overlap a clone's demonstration seeds)."""
    set: Settings = ()
    workers: Workers = dataclasses.field(default_factory=default_workers)
    plot: bool = True
    """Also write summary.png."""
    overwrite: Overwrite = False

    def run(self) -> None:

        check_options(self)
        scenario = _scenario(self.scenario, self.set)
        specs = [PolicySpec.parse(p) for p in self.policy]
        check_output_dir(self.out, overwrite=self.overwrite)
        evaluation = evaluate(
            scenario,
            specs,
            n_episodes=self.episodes,
            seed=self.seed,
            n_workers=check_workers(self.workers),
            progress=True,
        )
        with atomic_output_dir(self.out, overwrite=self.overwrite) as tmp:
            write_evaluation(evaluation, tmp)
            if self.plot:
                save_summary_plot(evaluation.summary, tmp / "summary.png", scenario.name)
        print(f"{scenario.name}, {self.episodes} paired episodes from seed {self.seed}; mean [95% CI]")
        print(format_summary(evaluation.summary))
        print(f"-> {self.out}")


@dataclasses.dataclass
class Drift:
    """Compounding error against the expert: twin rollouts, eps_on vs eps_off, survival."""

    out: str
    """Output directory for the CSVs, drift.png and config.json."""
    policy: Annotated[tuple[str, ...], Repeatable] = ()
    """Policy spec (repeatable): clone:RUN_DIR, idle, random or expert:NAME (the expert
    against itself must give exactly zero divergence)."""
    scenario: ScenarioName = "highway-fast"
    expert: str = "scripted"
    """The reference expert (twin and labeller)."""
    episodes: int = 100
    """Episodes per policy."""
    seed: int = EVAL_SEED
    """First evaluation seed (must not overlap a clone's demonstration seeds)."""
    threshold_m: float = 1.0
    """Position error [m] past which a twin pair counts as diverged."""
    set: Settings = ()
    workers: Workers = dataclasses.field(default_factory=default_workers)
    overwrite: Overwrite = False

    def run(self) -> None:

        check_options(self)
        scenario = _scenario(self.scenario, self.set)
        make_expert(self.expert)
        specs = [PolicySpec.parse(p) for p in self.policy]
        if not self.threshold_m > 0:
            raise TestbedError(f"--threshold-m must be > 0, got {self.threshold_m}")
        seeds = episode_seeds(self.seed, self.episodes)
        check_policies(scenario, specs, seeds)
        check_output_dir(self.out, overwrite=self.overwrite)
        with RolloutPool(check_workers(self.workers)) as pool:
            result = measure_drift(
                scenario, specs, seeds, expert=self.expert, pool=pool, threshold_m=self.threshold_m, progress=True
            )
        with atomic_output_dir(self.out, overwrite=self.overwrite) as tmp:
            write_drift(
                result,
                tmp,
                title=f"{scenario.name}: compounding error vs expert:{self.expert}, {self.episodes} episodes",
            )
            write_json(
                tmp / "config.json",
                {
                    "args": dataclasses.asdict(self),
                    "scenario": scenario.to_dict(),
                    "seeds": {"first": self.seed, "n_episodes": self.episodes},
                    "statistics": "means with 95% percentile-bootstrap CIs over episodes; survival: Kaplan-Meier "
                    "with Greenwood 95% CI",
                    "provenance": provenance(),
                },
            )
        print(f"{scenario.name}: drift against expert:{self.expert} over {self.episodes} episodes; mean [95% CI]")
        print(format_drift(result.summary))
        print(f"-> {self.out}")


@dataclasses.dataclass
class Drive:
    """Drive yourself with the arrow keys in a pygame window; each episode is saved as a
    demonstration whose labels are exactly the actions applied (keys drawn on screen)."""

    out: str
    """Output directory (same format as `testbed collect`; refused if it exists, unless --overwrite)."""
    scenario: ScenarioName = "highway-fast"
    episodes: int = 1
    """Episodes to drive; episode i uses seed SEED + i. Esc/Q ends the session early."""
    seed: int = 0
    """First episode seed (keep below the evaluation seeds, 10000..)."""
    set: Settings = ()
    realtime: bool = True
    """Pace decisions at the scenario's policy frequency (--no-realtime: as fast as keys are read)."""
    start_paused: bool = True
    """Each episode waits for P before its first decision."""
    accel_rate_per_s: float = 2.0
    """Continuous: change of the acceleration command per second of holding Up/Down."""
    steer_rate_per_s: float = 1.0
    """Continuous: change of the steering command per second of holding Left/Right."""
    max_steering: float = 0.5
    """Continuous: largest steering command (1 = the env's full steering range)."""
    overwrite: Overwrite = False

    def run(self) -> None:

        params: dict[str, Any] = dict(
            accel_rate_per_s=self.accel_rate_per_s,
            steer_rate_per_s=self.steer_rate_per_s,
            max_steering=self.max_steering,
        )
        human.ContinuousKeyMapper(**params)  # validate before opening a window
        check_options(self)
        scenario = _scenario(self.scenario, self.set)
        seeds = episode_seeds(self.seed, self.episodes)
        check_output_dir(self.out, overwrite=self.overwrite)
        window = human.PygameWindow(int(scenario.config["screen_width"]), int(scenario.config["screen_height"]))
        try:
            demos, episodes = human.drive(
                scenario,
                seeds=seeds,
                events=human.PygameEvents(),
                display=window,
                realtime=self.realtime,
                start_paused=self.start_paused,
                mapper_params=params,
                progress=lambda e: print(
                    f"seed {e.seed}: {e.end} after {0 if e.trajectory is None else len(e.trajectory.acts)} steps"
                    f"{'' if e.keep else ' (dropped)'}"
                ),
            )
        finally:
            window.close()
        if demos is None:
            raise TestbedError("no episode was kept; nothing written")
        save_demos(demos, self.out, overwrite=self.overwrite)
        m = demos.metadata
        print(f"saved {m.n_episodes} episodes ({m.n_transitions} transitions, {m.n_crashed} crashed) -> {self.out}")


@dataclasses.dataclass
class VerifyDemos:
    """Re-simulate every episode of a demonstration directory from its seed and applied
    actions (observations and rewards must match exactly) and check every label: the applied
    action, or for noisy data what the recorded expert does in the replayed state."""

    demos: tyro.conf.Positional[str]
    """Demonstration directory (from `testbed collect` or `testbed drive`)."""

    def run(self) -> None:

        checks = verify_demos(self.demos, progress=lambda c: print(c.line()))
        bad = [c for c in checks if not c.ok]
        if bad:
            raise TestbedError(
                f"{len(bad)} of {len(checks)} episodes in {self.demos} do not replay exactly or have wrong labels "
                f"(first: {bad[0].line()})"
            )
        n_steps = sum(c.n_steps for c in checks)
        print(f"all {len(checks)} episodes replay exactly and their labels check ({n_steps} steps)")


@dataclasses.dataclass
class Reproduce:
    """Rebuild every result under results/ (each experiment script, then its figures)."""

    fast: bool = False
    """Tiny presets of every experiment (minutes, not an hour); writes under runs/reproduce-fast/ unless --out-root."""
    plot_only: bool = False
    """Only redraw the figures from the CSVs already in the output root (offline, seconds)."""
    only: Annotated[tuple[str, ...], Repeatable] = ()
    """Rebuild only this step (repeatable); default: all. Steps: pipeline, divergence_gif, expert_quality, rl_expert,
    experts, compounding_error, compounding_error_planner, compounding, recoverability, realizability,
    data_scaling, distribution_shift, sensors, leaderboard."""
    out_root: str | None = None
    """Root of the result directories (default: results/, or runs/reproduce-fast/ with --fast)."""
    workers: Workers = dataclasses.field(default_factory=default_workers)
    executor: Literal["local", "ray"] = "local"
    """Where the steps run: local worker processes, or Ray tasks (pip install -e ".[ray]")."""
    address: str | None = None
    """--executor ray: the cluster's address (auto, ray://host:10001); default: a local Ray instance of --workers
    CPUs. The output root must be on a filesystem every node sees."""

    def run(self) -> None:

        check_options(self)
        steps = select_steps(self.only)
        root = pathlib.Path(self.out_root or ("runs/reproduce-fast" if self.fast else "results"))
        if self.address is not None and self.executor != "ray":
            raise TestbedError("--address is for --executor ray")
        start = time.perf_counter()
        rebuild = reproduce(
            steps,
            root,
            fast=self.fast,
            plot_only=self.plot_only,
            workers=check_workers(self.workers),
            executor=self.executor,
            address=self.address,
            config={"git_commit": git_commit()},
        )
        elapsed = time.perf_counter() - start
        records = rebuild.steps
        resumed = [k for k, r in records.items() if r.resumed]
        print(
            "wall time: "
            + ", ".join(
                f"{k} {r.wall_time_s:.0f} s" + (" (earlier run)" if r.resumed else "") for k, r in records.items()
            )
            + f"; total {elapsed:.0f} s on {self.workers} worker(s)"
        )
        if not self.only and not self.plot_only:  # a complete rebuild records how long it took
            write_json(
                root / "reproduce.json",
                {
                    "command": "testbed reproduce" + (" --fast" if self.fast else ""),
                    "workers": self.workers,
                    "executor": self.executor,
                    "cpu_count": os.cpu_count(),
                    "wall_time_s": {k: r.wall_time_s for k, r in records.items()},
                    "total_s": round(elapsed, 1),
                    "resumed_steps": resumed,
                    "one_run": not resumed,
                    "kept": rebuild.kept,
                    "provenance": provenance(),
                },
            )


@dataclasses.dataclass
class Benchmark:
    """Leaderboard: policies on a fixed scenario suite and shared evaluation seeds, normalized between
    random (0) and the expert (1), with 95% CIs; writes leaderboard.md/.csv."""

    out: str
    """Output directory for leaderboard.md, leaderboard.csv, scenarios.csv, episodes.csv, config.json."""
    policy: Annotated[tuple[str, ...], Repeatable] = ()
    """Policy spec (repeatable): expert:NAME, clone:RUN_DIR, idle, random or MODULE:FUNCTION.
    random and the reference expert are always added."""
    suite: str = "standard"
    """Scenario suite (standard: highway-fast, highway-fast-dense, merge, roundabout)."""
    scenarios: tuple[str, ...] = ()
    """Run only these scenarios of the suite (default: all)."""
    episodes: int = 100
    """Episodes per policy and scenario (seeds 10000 onwards, the same for every policy)."""
    expert: str = "scripted"
    """Reference expert (normalized score 1; twin of the drift measure)."""
    horizon_s: float = 10.0
    """Time [s] at which the twin position error against the expert is read."""
    set: Settings = ()
    workers: Workers = dataclasses.field(default_factory=default_workers)
    overwrite: Overwrite = False

    def run(self) -> None:

        check_options(self)
        entries = suite_scenarios(self.suite, self.scenarios)
        specs = [PolicySpec.parse(p) for p in self.policy]
        overrides = parse_overrides(self.set)
        workers = check_workers(self.workers)
        check_output_dir(self.out, overwrite=self.overwrite)
        start = time.perf_counter()
        with RolloutPool(workers) as pool:
            board = run_benchmark(
                entries,
                specs,
                n_episodes=self.episodes,
                expert=self.expert,
                horizon_s=self.horizon_s,
                overrides=overrides,
                pool=pool,
                suite=self.suite,
                progress=True,
            )
        board.config["args"] = dataclasses.asdict(self)
        board.config["wall_time_s"] = round(time.perf_counter() - start, 1)
        with atomic_output_dir(self.out, overwrite=self.overwrite) as tmp:
            write_leaderboard(board, tmp)
        print(format_markdown(board).split("\n\n## ")[0])
        print(f"wall time {board.config['wall_time_s']:.0f} s -> {self.out}/leaderboard.md")


@dataclasses.dataclass
class Render:
    """Side-by-side GIF of a reference (the expert) and a policy driving the same seed, the
    policy's panel marked from the moment the two part (orange: actions differ; red: positions
    more than --threshold-m apart) and crash frames marked."""

    policy: str
    """Policy spec: clone:RUN_DIR, idle, random, expert:NAME or MODULE:FUNCTION."""
    out: str
    """Output .gif file (refused if it exists, unless --overwrite)."""
    reference: str = "expert:scripted"
    """Reference policy spec (left panel; the twin the divergence is measured against)."""
    scenario: ScenarioName = "highway-fast"
    seed: int = EVAL_SEED
    """Episode seed (both runs)."""
    set: Settings = ()
    threshold_m: float = 1.0
    """Position error [m] past which the twins count as diverged (as in testbed drift)."""
    scale: float = 0.5
    """Resize factor of highway-env's frames."""
    frame_skip: int = 1
    """Keep every n-th decision frame (the last frame is always kept)."""
    fps: float = 2.0
    """Frames per second of the GIF (one frame per decision: 2.0 plays highway-fast at 2x)."""
    overwrite: Overwrite = False

    def run(self) -> None:

        check_options(self)
        scenario = _scenario(self.scenario, self.set)
        check_frame_skip(self.frame_skip, scenario.max_episode_steps)
        check_panel(self.scale, int(scenario.config["screen_width"]), int(scenario.config["screen_height"]))
        policy, reference = PolicySpec.parse(self.policy), PolicySpec.parse(self.reference)

        check_policies(scenario, [reference, policy], [self.seed])
        out = check_output_path(self.out)
        if out.exists() and not self.overwrite:
            raise TestbedError(f"output file exists: {out} (pass --overwrite to replace it)")
        if out.is_dir():
            raise TestbedError(f"output path is a directory, not a .gif file: {out}")
        if self.seed < 0:
            raise TestbedError(f"--seed must be non-negative, got {self.seed}")
        info = render_comparison(
            scenario,
            policy,
            reference,
            self.seed,
            out,
            threshold_m=self.threshold_m,
            scale=self.scale,
            frame_skip=self.frame_skip,
            fps=self.fps,
        )
        hz = scenario.policy_frequency_hz
        parts = [f"{info['n_frames']} frames"]
        if info["first_disagreement_step"] is not None:
            parts.append(f"actions differ from t={(info['first_disagreement_step'] - 1) / hz:g} s")
        if info["divergence_step"] is not None:
            parts.append(f"diverged >{self.threshold_m:g} m at t={info['divergence_step'] / hz:g} s")
        for who in ("reference", "policy"):
            if info[f"{who}_crashed"]:
                parts.append(f"{who} crashed at t={info[f'{who}_steps'] / hz:g} s")
        print(f"{scenario.name}, seed {self.seed}, {reference.label} vs {policy.label}: {'; '.join(parts)} -> {out}")


@dataclasses.dataclass
class TrainExpert:
    """Train a stable-baselines3 RL expert (DQN or PPO) on a scenario; serve it as expert:sb3:OUT/model.zip."""

    out: str
    """Run directory for model.zip (SB3's format), training_curve.csv and metadata.json."""
    algo: Literal["dqn", "ppo"] = "dqn"
    """dqn: highway-env's documented DQN setting for highway-fast. ppo: the analogous PPO one."""
    scenario: ScenarioName = "highway-fast"
    set: Settings = ()
    timesteps: int = 20_000
    """Environment steps (decisions) to train for."""
    seed: int = 0
    """Seed of the algorithm and of the first training episode; episode k uses env seed
    the seed-protocol RL range (testbed.seeds.RL), never an evaluation seed."""
    learning_rate: float | None = None
    """Learning rate (default: the algorithm's, 5e-4)."""
    gamma: float | None = None
    """Discount factor (default: 0.8)."""
    net_arch: str | None = None
    """Hidden layer sizes, comma-separated (default: 256,256)."""
    torch_threads: int = 1
    """Torch intra-op threads (1 is fastest for small MLPs on few cores)."""
    overwrite: Overwrite = False

    def run(self) -> None:

        check_options(self)
        scenario = _scenario(self.scenario, self.set)
        config = RLConfig(
            algo=self.algo,
            n_timesteps=self.timesteps,
            seed=self.seed,
            learning_rate=self.learning_rate,
            gamma=self.gamma,
            net_arch=None if self.net_arch is None else parse_net_arch(self.net_arch),
            torch_threads=self.torch_threads,
        )
        config.validate()
        check_output_dir(self.out, overwrite=self.overwrite)
        result = train_expert(scenario, config, progress=True)
        save_expert(self.out, result, scenario=scenario, config=config, overwrite=self.overwrite)
        last = result.curve.tail(100)
        print(
            f"trained {self.algo.upper()} for {self.timesteps} steps ({len(result.curve)} episodes) on {scenario.name} "
            f"in {result.wall_time_s:.1f} s; last {len(last)} training episodes: mean return "
            f"{last['return'].mean():.2f}, crash rate {last['crashed'].mean():.2f} -> {self.out}/model.zip"
        )


@dataclasses.dataclass
class ExportPolicy:
    """Write a clone as a stable-baselines3 model zip that plain SB3 loads with
    stable_baselines3.PPO.load(path) (no testbed import): the input standardisation is folded
    into the first linear layer; a testbed.json entry records where it came from."""

    run_dir: tyro.conf.Positional[str]
    """Clone run directory (from `testbed train` or `testbed pipeline`'s clone/)."""
    out: str
    """Output .zip file (refused if it exists, unless --overwrite)."""
    overwrite: Overwrite = False

    def run(self) -> None:

        record = export_policy(self.run_dir, self.out, overwrite=self.overwrite)
        print(
            f"exported {self.run_dir} as an SB3 PPO model zip (logits within {record['max_disagreement']:.1e} of "
            f"the clone's) -> {self.out}; load it with stable_baselines3.PPO.load({self.out!r})"
        )


@dataclasses.dataclass
class ExportMinari:
    """Write a demonstration directory as a Minari dataset (HDF5, written by the minari package:
    pip install -e ".[minari]"), with the env spec, the demonstrations' record and provenance in
    its metadata."""

    demos: tyro.conf.Positional[str]
    """Demonstration directory (from `testbed collect` or `testbed drive`)."""
    dataset_id: str
    """Minari dataset id, (namespace/)name-vN, e.g. highway-fast/scripted-v0."""
    out: str | None = None
    """Minari datasets root to write under (default: $MINARI_DATASETS_PATH, else ~/.minari/datasets);
    the dataset lands in OUT/DATASET_ID."""
    overwrite: Overwrite = False

    def run(self) -> None:

        if not pathlib.Path(self.demos).is_dir():
            raise TestbedError(f"demonstration directory not found: {self.demos}")
        demos = load_demos(self.demos)
        path = export_minari(demos, self.dataset_id, root=self.out, source=self.demos, overwrite=self.overwrite)
        root = path.parents[len(pathlib.Path(self.dataset_id).parts) - 1]
        print(
            f"exported {demos.metadata.n_episodes} episodes ({demos.n_transitions} transitions) as the Minari dataset "
            f"{self.dataset_id} -> {path}; load it with MINARI_DATASETS_PATH={root} and "
            f"minari.load_dataset({self.dataset_id!r})"
        )


@dataclasses.dataclass
class ImportMinari:
    """Read a Minari dataset written by `testbed export-minari` back into a demonstration directory
    (the format `testbed train --demos` takes)."""

    dataset: tyro.conf.Positional[str]
    """A Minari dataset id (under --root) or the path of a dataset directory."""
    out: str
    """Demonstration directory to write (refused if it exists, unless --overwrite)."""
    root: str | None = None
    """Minari datasets root for an id (default: $MINARI_DATASETS_PATH, else ~/.minari/datasets)."""
    overwrite: Overwrite = False

    def run(self) -> None:

        check_output_dir(self.out, overwrite=self.overwrite)
        demos = read_minari(self.dataset, root=self.root)
        save_demos(demos, self.out, overwrite=self.overwrite)
        print(
            f"imported {demos.metadata.n_episodes} episodes ({demos.n_transitions} transitions) from "
            f"{dataset_dir(self.dataset, root=self.root)} -> {self.out}"
        )


COMMANDS = {
    "collect": Collect,
    "train": Train,
    "evaluate": Evaluate,
    "drift": Drift,
    "pipeline": Pipeline,
    "drive": Drive,
    "verify-demos": VerifyDemos,
    "reproduce": Reproduce,
    "benchmark": Benchmark,
    "render": Render,
    "train-expert": TrainExpert,
    "export-policy": ExportPolicy,
    "export-minari": ExportMinari,
    "import-minari": ImportMinari,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``testbed`` command.

    ``--debug`` anywhere on the command line also prints the detail behind a one-line error
    (the traceback of a user's own policy function that raised).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    command = tyro.extras.subcommand_cli_from_dict(
        COMMANDS,  # type: ignore[arg-type]  # tyro's stub wants callables; it takes dataclass types
        prog="testbed",
        args=args,
        description="Behavioral-cloning testbed on highway-env. Add --debug to any command to see the "
        "traceback behind an error in your own policy code.",
    )
    try:
        with signals_as_exceptions():
            command.run()
    except TestbedError as e:
        if debug and e.detail:
            print(e.detail.rstrip(), file=sys.stderr)
        print(f"testbed: error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        _after_interruption()
        print(f"testbed: interrupted by {e.signal_name}; partial outputs removed", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:  # a SIGINT that arrived outside the handled block
        _after_interruption()
        print("testbed: interrupted by SIGINT; partial outputs removed", file=sys.stderr)
        return 130
    except Exception as e:
        # A full disk, a read-only mount, a denied or too-long path is the machine's fault, not
        # a bug: one line like a user error (the writers have removed their partial outputs).
        fault = filesystem_fault(e, output=getattr(command, "out", None) or getattr(command, "out_root", None))
        if fault is None:
            raise
        if debug and fault.detail:
            print(fault.detail.rstrip(), file=sys.stderr)
        print(f"testbed: error: {fault}", file=sys.stderr)
        return 2
    return 0


def _after_interruption() -> None:
    """After an interruption, close the progress bars it left open, so that the one-line
    message starts a line of its own, and drop the errors of objects whose construction it
    cut short (tqdm's ``__del__`` on a half-built bar): the process is ending and they say
    nothing the message does not."""
    sys.unraisablehook = lambda unraisable: None
    tqdm = sys.modules.get("tqdm.std")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ())):
        try:
            bar.close()
        except Exception:  # a bar the interruption cut short in its constructor
            pass


if __name__ == "__main__":
    sys.exit(main())
