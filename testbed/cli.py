"""The ``testbed`` command: collect, train, evaluate, pipeline.

Each subcommand is one dataclass of arguments (its field docstrings are the ``--help``).
User mistakes end in a one-line ``testbed: error: ...`` and exit code 2; outputs are written
to a temporary directory and renamed into place only when complete.
"""

from __future__ import annotations

import dataclasses
import pathlib
import sys
import time
from typing import Annotated, Literal, Sequence

import tyro

from testbed.errors import TestbedError
from testbed.rollout import default_workers

Repeatable = tyro.conf.UseAppendAction


def _scenario(name: str, settings: Sequence[str]):
    from testbed.scenarios import get_scenario, parse_overrides

    return get_scenario(name, parse_overrides(settings))


def _check_workers(n: int) -> int:
    if n < 1:
        raise TestbedError(f"--workers must be at least 1, got {n}")
    return n


@dataclasses.dataclass
class Collect:
    """Drive an expert on seeded episodes and save them as imitation trajectories."""

    out: str
    """Output directory (refused if it exists, unless --overwrite)."""
    scenario: str = "highway-fast"
    """Scenario preset: highway-fast, highway, merge or roundabout; a suffix -lidar, -grid or
    -camera changes what the clone observes (highway-fast-camera), not how the expert drives."""
    expert: str = "scripted"
    """Expert driver."""
    episodes: int = 100
    """Number of episodes; episode i uses seed SEED + i."""
    seed: int = 0
    """First episode seed (evaluation defaults to 10000 onwards, so keep demos below it)."""
    set: Annotated[tuple[str, ...], Repeatable] = ()
    """Scenario config override KEY=VALUE (repeatable), e.g. --set vehicles_density=1.5."""
    noise: float = 0.0
    """DART-style noise: probability of applying a random action instead of the expert's;
    the recorded label is always the expert's clean action."""
    workers: int = dataclasses.field(default_factory=default_workers)
    """Worker processes (results do not depend on it)."""
    overwrite: bool = False
    """Replace an existing output directory."""

    def run(self) -> None:
        from testbed.demos import collect, episode_seeds, save_demos
        from testbed.experts import make_expert
        from testbed.outputs import check_output_dir

        scenario = _scenario(self.scenario, self.set)
        make_expert(self.expert)
        episode_seeds(self.seed, self.episodes)
        check_output_dir(self.out, overwrite=self.overwrite)
        start = time.perf_counter()
        if not 0.0 <= self.noise <= 1.0:
            raise TestbedError(f"--noise must be a probability in [0, 1], got {self.noise}")
        demos = collect(
            scenario, self.expert, n_episodes=self.episodes, seed=self.seed,
            n_workers=_check_workers(self.workers), noise=self.noise, progress=True,
        )
        save_demos(demos, self.out, overwrite=self.overwrite)
        m = demos.metadata
        print(
            f"collected {m['n_episodes']} episodes ({m['n_transitions']} transitions, {m['n_crashed']} crashed) "
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
    scenario: str = "highway-fast"
    """DAgger: scenario preset to drive in."""
    expert: str = "scripted"
    """DAgger: the labelling expert."""
    set: Annotated[tuple[str, ...], Repeatable] = ()
    """DAgger: scenario config override KEY=VALUE (repeatable)."""
    rounds: int = 5
    """DAgger: rounds of collect-aggregate-retrain (round 0 is the expert driving)."""
    episodes_per_round: int = 20
    """DAgger: episodes collected per round."""
    rampdown_rounds: int = 3
    """DAgger: beta (probability the expert's action is applied) falls linearly from 1 to 0
    over this many rounds."""
    epochs_per_round: int = 20
    """DAgger: BC epochs over the aggregate after each round."""
    first_seed: int = 5_000
    """DAgger: round r's env is seeded with FIRST_SEED + r (keep below evaluation seeds)."""
    overwrite: bool = False
    """Replace an existing run directory."""

    def config(self):
        from testbed.training import TrainConfig, parse_net_arch

        config = TrainConfig(
            n_epochs=self.epochs, batch_size=self.batch_size, net_arch=parse_net_arch(self.net_arch),
            learning_rate=self.learning_rate, l2_weight=self.l2_weight, ent_weight=self.ent_weight,
            val_fraction=self.val_fraction, seed=self.seed, torch_threads=self.torch_threads,
        )
        config.validate()
        return config

    def run(self) -> None:
        from testbed.outputs import check_output_dir

        config = self.config()
        if self.algo == "dagger":
            return self._run_dagger(config)
        from testbed.demos import check_spaces, load_demos
        from testbed.scenarios import Scenario
        from testbed.training import save_clone, train_bc

        if self.demos is None:
            raise TestbedError("--demos is required with --algo bc")
        check_output_dir(self.out, overwrite=self.overwrite)
        demos = load_demos(self.demos)
        # The demos' own scenario record must still describe the spaces stored beside it.
        check_spaces(demos.metadata, Scenario.from_dict(demos.metadata["scenario"]), what=f"demonstrations at {self.demos}")
        start = time.perf_counter()
        result = train_bc(demos, config, progress=True)
        save_clone(self.out, result, demos=demos, demos_path=self.demos, config=config, overwrite=self.overwrite)
        last = result.log.iloc[-1]
        print(
            f"trained BC for {config.n_epochs} epochs on {len(result.train_episodes)} episodes in "
            f"{time.perf_counter() - start:.1f} s: train accuracy {last['train/accuracy']:.3f}, "
            f"validation accuracy {last['val/accuracy']:.3f} -> {self.out}"
        )

    def _run_dagger(self, config) -> None:
        from testbed.dagger import DAggerConfig, as_demonstrations, train_dagger
        from testbed.experts import make_expert
        from testbed.outputs import check_output_dir
        from testbed.training import save_clone

        if self.demos is not None:
            raise TestbedError("--demos is for --algo bc; DAgger collects its own data (round 0 is the expert driving)")
        scenario = _scenario(self.scenario, self.set)
        make_expert(self.expert)
        dagger = DAggerConfig(
            n_rounds=self.rounds, episodes_per_round=self.episodes_per_round, rampdown_rounds=self.rampdown_rounds,
            epochs_per_round=self.epochs_per_round, first_seed=self.first_seed,
        )
        dagger.validate()
        check_output_dir(self.out, overwrite=self.overwrite)
        start = time.perf_counter()
        result = train_dagger(scenario, self.expert, config, dagger, progress=True)
        data = as_demonstrations(result, scenario, self.expert)
        save_clone(
            self.out, result, demos=data, demos_path="(collected by DAgger)", config=config, algorithm="dagger",
            extra={"dagger": dataclasses.asdict(dagger)}, overwrite=self.overwrite,
        )
        last = result.log.iloc[-1]
        print(
            f"trained DAgger for {dagger.n_rounds} rounds ({int(last['n_labels'])} expert labels) in "
            f"{time.perf_counter() - start:.1f} s: train accuracy {last['train/accuracy']:.3f} -> {self.out}"
        )


@dataclasses.dataclass
class Evaluate:
    """Run policies on the same held-out seeds; per-episode CSV and summary with 95% CIs."""

    out: str
    """Output directory for episodes.csv, summary.csv, summary.json and config.json."""
    policy: Annotated[tuple[str, ...], Repeatable] = ()
    """Policy spec (repeatable): expert:scripted, clone:RUN_DIR, idle or random. Differences
    are reported against the first."""
    scenario: str = "highway-fast"
    """Scenario preset."""
    episodes: int = 100
    """Episodes per policy."""
    seed: int = 10_000
    """First evaluation seed (must not overlap a clone's demonstration seeds)."""
    set: Annotated[tuple[str, ...], Repeatable] = ()
    """Scenario config override KEY=VALUE (repeatable)."""
    workers: int = dataclasses.field(default_factory=default_workers)
    """Worker processes (results do not depend on it)."""
    plot: bool = True
    """Also write summary.png."""
    overwrite: bool = False
    """Replace an existing output directory."""

    def run(self) -> None:
        from testbed.evaluation import evaluate, write_evaluation
        from testbed.metrics import format_summary
        from testbed.outputs import atomic_output_dir, check_output_dir
        from testbed.policies import PolicySpec

        scenario = _scenario(self.scenario, self.set)
        specs = [PolicySpec.parse(p) for p in self.policy]
        check_output_dir(self.out, overwrite=self.overwrite)
        evaluation = evaluate(
            scenario, specs, n_episodes=self.episodes, seed=self.seed,
            n_workers=_check_workers(self.workers), progress=True,
        )
        with atomic_output_dir(self.out, overwrite=self.overwrite) as tmp:
            write_evaluation(evaluation, tmp)
            if self.plot:
                _save_summary_plot(evaluation.summary, tmp / "summary.png", scenario.name)
        print(f"{scenario.name}, {self.episodes} paired episodes from seed {self.seed}; mean [95% CI]")
        print(format_summary(evaluation.summary))
        print(f"-> {self.out}")


def _save_summary_plot(summary, path: pathlib.Path, scenario_name: str) -> None:
    import matplotlib.pyplot as plt

    from testbed.plotting import plot_summary

    n = int(summary["n_episodes"].max())
    fig = plot_summary(summary, title=f"{scenario_name}: mean with 95% bootstrap CI over {n} paired episodes")
    fig.savefig(path, dpi=120)
    plt.close(fig)


@dataclasses.dataclass
class Pipeline:
    """Collect -> train -> evaluate (expert, clone, idle, random), print the table, plot it."""

    scenario: str = "highway-fast"
    """Scenario preset."""
    expert: str = "scripted"
    """Expert driver to clone."""
    demo_episodes: int = 100
    """Demonstration episodes (seeds DEMO_SEED ..)."""
    demo_seed: int = 0
    """First demonstration seed."""
    eval_episodes: int = 100
    """Evaluation episodes per policy (seeds EVAL_SEED ..)."""
    eval_seed: int = 10_000
    """First evaluation seed."""
    epochs: int = 100
    """BC epochs."""
    batch_size: int = 64
    """BC batch size."""
    net_arch: str = "256,256"
    """BC policy hidden layers."""
    train_seed: int = 0
    """BC seed."""
    set: Annotated[tuple[str, ...], Repeatable] = ()
    """Scenario config override KEY=VALUE (repeatable)."""
    workers: int = dataclasses.field(default_factory=default_workers)
    """Worker processes."""
    out: str | None = None
    """Output directory (default: results/pipeline/SCENARIO)."""
    overwrite: bool = False
    """Replace an existing output directory."""

    def run(self) -> None:
        from testbed.demos import collect, episode_seeds, save_demos
        from testbed.evaluation import evaluate, write_evaluation
        from testbed.experts import make_expert
        from testbed.metrics import format_summary
        from testbed.outputs import atomic_output_dir, check_output_dir, write_json
        from testbed.policies import PolicySpec
        from testbed.plotting import plot_training_log
        from testbed.provenance import provenance
        from testbed.rollout import RolloutPool
        from testbed.training import TrainConfig, parse_net_arch, save_clone, train_bc

        scenario = _scenario(self.scenario, self.set)
        make_expert(self.expert)
        episode_seeds(self.demo_seed, self.demo_episodes)
        episode_seeds(self.eval_seed, self.eval_episodes)
        demo_range = set(range(self.demo_seed, self.demo_seed + self.demo_episodes))
        if demo_range & set(range(self.eval_seed, self.eval_seed + self.eval_episodes)):
            raise TestbedError("demonstration and evaluation seeds overlap; move --eval-seed or --demo-seed")
        config = TrainConfig(
            n_epochs=self.epochs, batch_size=self.batch_size, net_arch=parse_net_arch(self.net_arch), seed=self.train_seed
        )
        config.validate()
        workers = _check_workers(self.workers)
        out = pathlib.Path(self.out or f"results/pipeline/{scenario.name}")
        check_output_dir(out, overwrite=self.overwrite)
        times: dict[str, float] = {}
        with atomic_output_dir(out, overwrite=self.overwrite) as tmp, RolloutPool(workers) as pool:
            start = time.perf_counter()
            demos = collect(
                scenario, self.expert, n_episodes=self.demo_episodes, seed=self.demo_seed, pool=pool, progress=True
            )
            save_demos(demos, tmp / "demos")
            times["collect_s"] = time.perf_counter() - start
            start = time.perf_counter()
            result = train_bc(demos, config, progress=True)
            save_clone(tmp / "clone", result, demos=demos, demos_path=str(out / "demos"), config=config)
            fig = plot_training_log(result.log, title=f"BC on {self.demo_episodes} expert episodes ({scenario.name})")
            fig.savefig(tmp / "training.png", dpi=120)
            times["train_s"] = time.perf_counter() - start
            start = time.perf_counter()
            specs = [
                PolicySpec("expert", self.expert), PolicySpec("clone", str(tmp / "clone")),
                PolicySpec("idle"), PolicySpec("random"),
            ]
            evaluation = evaluate(
                scenario, specs, n_episodes=self.eval_episodes, seed=self.eval_seed, pool=pool, progress=True
            )
            # Name the clone by its final location, not the temporary one.
            clone_label = f"clone:{out / 'clone'}"
            for frame in (evaluation.episodes, evaluation.summary):
                frame["policy"] = frame["policy"].replace(specs[1].label, clone_label)
            evaluation.config["policies"][1]["spec"] = clone_label
            write_evaluation(evaluation, tmp / "eval")
            _save_summary_plot(evaluation.summary, tmp / "summary.png", scenario.name)
            times["evaluate_s"] = time.perf_counter() - start
            write_json(
                tmp / "config.json",
                {
                    "command": "pipeline",
                    "args": dataclasses.asdict(self),
                    "scenario": scenario.to_dict(),
                    "train_config": config.to_dict(),
                    "demo_seeds": {"first": self.demo_seed, "n_episodes": self.demo_episodes},
                    "eval_seeds": {"first": self.eval_seed, "n_episodes": self.eval_episodes},
                    "wall_time_s": {k: round(v, 1) for k, v in times.items()},
                    "provenance": provenance(),
                },
            )
        print(
            f"\n{scenario.name}: expert:{self.expert} cloned from {self.demo_episodes} episodes "
            f"({demos.n_transitions} transitions); {self.eval_episodes} paired held-out episodes "
            f"from seed {self.eval_seed}; mean [95% CI]"
        )
        print(format_summary(evaluation.summary))
        print(
            f"wall time: collect {times['collect_s']:.0f} s, train {times['train_s']:.0f} s, "
            f"evaluate {times['evaluate_s']:.0f} s -> {out}/ (summary.png, eval/summary.csv)"
        )


@dataclasses.dataclass
class Drift:
    """Compounding error against the expert: twin rollouts, eps_on vs eps_off, survival."""

    out: str
    """Output directory for the CSVs, drift.png and config.json."""
    policy: Annotated[tuple[str, ...], Repeatable] = ()
    """Policy spec (repeatable): clone:RUN_DIR, idle, random or expert:NAME (the expert
    against itself must give exactly zero divergence)."""
    scenario: str = "highway-fast"
    """Scenario preset."""
    expert: str = "scripted"
    """The reference expert (twin and labeller)."""
    episodes: int = 100
    """Episodes per policy."""
    seed: int = 10_000
    """First evaluation seed (must not overlap a clone's demonstration seeds)."""
    threshold_m: float = 1.0
    """Position error [m] past which a twin pair counts as diverged."""
    set: Annotated[tuple[str, ...], Repeatable] = ()
    """Scenario config override KEY=VALUE (repeatable)."""
    workers: int = dataclasses.field(default_factory=default_workers)
    """Worker processes."""
    overwrite: bool = False
    """Replace an existing output directory."""

    def run(self) -> None:
        from testbed.demos import episode_seeds
        from testbed.drift import format_drift, measure_drift, write_drift
        from testbed.evaluation import check_policies
        from testbed.experts import make_expert
        from testbed.outputs import atomic_output_dir, check_output_dir, write_json
        from testbed.policies import PolicySpec
        from testbed.provenance import provenance
        from testbed.rollout import RolloutPool

        scenario = _scenario(self.scenario, self.set)
        make_expert(self.expert)
        specs = [PolicySpec.parse(p) for p in self.policy]
        if not self.threshold_m > 0:
            raise TestbedError(f"--threshold-m must be > 0, got {self.threshold_m}")
        seeds = episode_seeds(self.seed, self.episodes)
        check_policies(scenario, specs, seeds)
        check_output_dir(self.out, overwrite=self.overwrite)
        with RolloutPool(_check_workers(self.workers)) as pool:
            result = measure_drift(
                scenario, specs, seeds, expert=self.expert, pool=pool, threshold_m=self.threshold_m, progress=True
            )
        with atomic_output_dir(self.out, overwrite=self.overwrite) as tmp:
            write_drift(result, tmp, title=f"{scenario.name}: compounding error vs expert:{self.expert}, {self.episodes} episodes")
            write_json(
                tmp / "config.json",
                {
                    "args": dataclasses.asdict(self),
                    "scenario": scenario.to_dict(),
                    "seeds": {"first": self.seed, "n_episodes": self.episodes},
                    "statistics": "means with 95% percentile-bootstrap CIs over episodes; survival: Kaplan-Meier with Greenwood 95% CI",
                    "provenance": provenance(),
                },
            )
        print(f"{scenario.name}: drift against expert:{self.expert} over {self.episodes} episodes; mean [95% CI]")
        print(format_drift(result.summary))
        print(f"-> {self.out}")


COMMANDS = {"collect": Collect, "train": Train, "evaluate": Evaluate, "drift": Drift, "pipeline": Pipeline}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``testbed`` command."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = tyro.extras.subcommand_cli_from_dict(
        COMMANDS, prog="testbed", args=args, description="Behavioral-cloning testbed on highway-env."
    )
    try:
        command.run()
    except TestbedError as e:
        print(f"testbed: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("testbed: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
