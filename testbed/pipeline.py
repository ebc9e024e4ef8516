"""The quick pipeline: collect -> train -> evaluate (expert, clone, idle, random), a table and a plot.

``testbed pipeline`` runs it and ``testbed reproduce`` runs it as its first step.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Annotated

import pandas as pd
import tyro

from testbed.collect import collect
from testbed.demos import save_demos
from testbed.errors import TestbedError
from testbed.evaluation import evaluate, write_evaluation
from testbed.experts import make_expert
from testbed.limits import check_option, check_options
from testbed.metrics import format_summary
from testbed.outputs import atomic_output_dir, check_output_dir, write_json
from testbed.plotting import plot_summary, plot_training_log
from testbed.policies import PolicySpec
from testbed.provenance import provenance
from testbed.rollout import RolloutPool
from testbed.runtime import default_workers
from testbed.scenarios import get_scenario, parse_overrides
from testbed.seeds import DEMO_SEED, EVAL_SEED, episode_seeds, range_name
from testbed.training import TrainConfig, parse_net_arch, save_clone, train_bc

Repeatable = tyro.conf.UseAppendAction


def check_workers(n: int) -> int:
    """``n`` if it is a valid worker count (:data:`testbed.limits.OPTIONS`).

    Raises:
        TestbedError: ``n < 1`` or more than :data:`testbed.limits.MAX_WORKERS`.
    """
    check_option("workers", n)
    return n


def save_summary_plot(summary: pd.DataFrame, path: pathlib.Path, scenario_name: str) -> None:
    """Draw an evaluation summary (means with 95% CIs per policy and metric) to ``path``."""
    import matplotlib.pyplot as plt

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
    demo_seed: int = DEMO_SEED
    """First demonstration seed."""
    eval_episodes: int = 100
    """Evaluation episodes per policy (seeds EVAL_SEED ..)."""
    eval_seed: int = EVAL_SEED
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
        check_options(self)
        scenario = get_scenario(self.scenario, parse_overrides(self.set))
        make_expert(self.expert)
        episode_seeds(self.demo_seed, self.demo_episodes)
        episode_seeds(self.eval_seed, self.eval_episodes)
        demo_range = set(range(self.demo_seed, self.demo_seed + self.demo_episodes))
        if demo_range & set(range(self.eval_seed, self.eval_seed + self.eval_episodes)):
            raise TestbedError("demonstration and evaluation seeds overlap; move --eval-seed or --demo-seed")
        config = TrainConfig(
            n_epochs=self.epochs,
            batch_size=self.batch_size,
            net_arch=parse_net_arch(self.net_arch),
            seed=self.train_seed,
        )
        config.validate()
        workers = check_workers(self.workers)
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
                PolicySpec("expert", self.expert),
                PolicySpec("clone", str(tmp / "clone"), name=f"clone:{out / 'clone'}"),
                PolicySpec("idle"),
                PolicySpec("random"),
            ]
            evaluation = evaluate(
                scenario, specs, n_episodes=self.eval_episodes, seed=self.eval_seed, pool=pool, progress=True
            )
            write_evaluation(evaluation, tmp / "eval")
            save_summary_plot(evaluation.summary, tmp / "summary.png", scenario.name)
            times["evaluate_s"] = time.perf_counter() - start
            write_json(
                tmp / "config.json",
                {
                    "command": "pipeline",
                    "args": dataclasses.asdict(self),
                    "scenario": scenario.to_dict(),
                    "train_config": config.to_dict(),
                    "demo_seeds": {
                        "first": self.demo_seed,
                        "n_episodes": self.demo_episodes,
                        "range": range_name([self.demo_seed]),
                    },
                    # The quick pipeline evaluates on the development range by default: a
                    # smoke test and a starting point, not a committed claim.
                    "eval_seeds": {
                        "first": self.eval_seed,
                        "n_episodes": self.eval_episodes,
                        "range": range_name([self.eval_seed]),
                    },
                    "wall_time_s": {k: round(v, 1) for k, v in times.items()},
                    "provenance": provenance(),
                },
            )
        print(
            f"\n{scenario.name}: expert:{self.expert} cloned from {self.demo_episodes} episodes "
            f"({demos.n_transitions} transitions); {self.eval_episodes} paired episodes "
            f"from seed {self.eval_seed} ({range_name([self.eval_seed])} range); mean [95% CI]"
        )
        print(format_summary(evaluation.summary))
        print(
            f"wall time: collect {times['collect_s']:.0f} s, train {times['train_s']:.0f} s, "
            f"evaluate {times['evaluate_s']:.0f} s -> {out}/ (summary.png, eval/summary.csv)"
        )
