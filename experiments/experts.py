"""The expert zoo: every expert on its scenarios, and how well BC clones each one.

For every (expert, scenario) cell: the expert's return, crash rate and mean speed on sealed test
seeds (1000000..), its cost per decision, and a BC clone trained on exactly
``n_transitions`` of its demonstrations (seeds 0..; the last episode is cut so every expert
gives the clone the same number of (observation, action) pairs) evaluated on the same seeds.
Human demonstrations (recorded with ``testbed drive``) join the clone columns with
``--human-demos DIR`` (a human cannot be re-run on test seeds, so only the clone is
evaluated). Writes results/experts/: cells.csv, episodes.csv, timing.csv, config.json,
experts.png.

    python experiments/experts.py           # wall time: results/reproduce.json
    python experiments/experts.py --fast    # tiny, used by the tests
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Any

import pandas as pd

from testbed import kit
from testbed.collect import collect_transitions
from testbed.demos import Demonstrations, load_demos
from testbed.errors import TestbedError
from testbed.evaluation import evaluate
from testbed.experts.timing import decision_ms
from testbed.metrics import Interval, mean_ci
from testbed.outputs import atomic_output_dir
from testbed.policies import PolicySpec
from testbed.rollout import RolloutPool
from testbed.scenarios import Scenario, get_scenario, parse_overrides
from testbed.seeds import DEMO_SEED, TEST_SEED, TUNING_SEED, check_test_seeds, episode_seeds

CELLS: tuple[tuple[str, str], ...] = (
    ("scripted", "highway-fast"),
    ("scripted", "merge"),
    ("scripted", "roundabout"),
    ("planner", "highway-fast"),
    ("planner", "merge"),
    ("planner", "roundabout"),
    ("sb3:{results}/rl_expert/highway-fast-dqn/model.zip", "highway-fast"),
    ("continuous", "highway-fast-continuous"),
)
"""(expert name as in ``expert:NAME``, scenario preset) pairs; ``{results}``: the upstream
results root (:attr:`testbed.kit.UpstreamArgs.results`)."""

METRICS = ("return", "crashed", "mean_speed_mps")
"""Per-episode metrics reported for the expert and for its clone."""


@dataclasses.dataclass
class Args(kit.UpstreamArgs, kit.BCArgs):
    """Expert table: expert quality and the quality of its BC clone at equal data size."""

    cells: tuple[str, ...] = tuple(f"{e}@{s}" for e, s in CELLS)
    """Cells as EXPERT@SCENARIO (expert as in expert:NAME)."""
    human_demos: tuple[str, ...] = ()
    """Demonstration directories recorded with `testbed drive` (their scenario is read from them)."""
    n_transitions: int = 1000
    """Demonstration (observation, action) pairs each clone is trained on."""
    eval_episodes: int = 100
    """Evaluation episodes per expert and clone (sealed test seeds)."""
    eval_seed: int = TEST_SEED
    """First evaluation seed (in the sealed test range, :data:`testbed.seeds.TEST`)."""
    timing_episodes: int = 3
    """Episodes (tuning seeds 20000..) over which the cost per decision is timed, in this process."""
    out: str = "results/experts"
    """Output directory (replaced)."""

    def resolved(self) -> Args:
        """The fast preset (tiny, for tests), else the cells with the upstream results root filled in."""
        if not self.fast:
            return dataclasses.replace(self, cells=tuple(kit.upstream(c, self.results) for c in self.cells))
        return dataclasses.replace(
            self,
            cells=("scripted@highway-fast", "scripted@merge"),
            n_transitions=60,
            epochs=3,
            batch_size=16,
            eval_episodes=3,
            timing_episodes=1,
        )


def parse_cell(text: str) -> tuple[str, Scenario]:
    """``EXPERT@SCENARIO`` -> (expert name, scenario)."""
    expert, sep, scenario = text.rpartition("@")
    if not sep or not expert:
        raise TestbedError(f"bad cell {text!r}; use EXPERT@SCENARIO, e.g. scripted@highway-fast")
    PolicySpec.parse(f"expert:{expert}")
    return expert, get_scenario(scenario, parse_overrides(()))


def main(args: Args) -> pd.DataFrame:
    args = args.resolved()
    start = time.perf_counter()
    test_seeds = check_test_seeds(episode_seeds(args.eval_seed, args.eval_episodes), "experts")
    cells = [parse_cell(c) for c in args.cells]
    humans = [load_demos(d) for d in args.human_demos]
    config = args.train_config()
    rows: list[dict[str, Any]] = []
    episodes, timing = [], []
    scenarios: dict[str, Any] = {}
    with atomic_output_dir(args.out, overwrite=True) as out, RolloutPool(args.workers) as pool:
        sources: list[tuple[str, Scenario, Demonstrations | None]] = [(e, s, None) for e, s in cells]
        for d, demos in zip(args.human_demos, humans):
            sources.append((f"human:{pathlib.Path(d).name}", Scenario.from_dict(demos.metadata.scenario), demos))
        for expert, scenario, human in sources:
            scenarios[scenario.name] = scenario.to_dict()
            cell = {"expert": expert, "scenario": scenario.name}
            if human is None:
                demos = collect_transitions(
                    scenario, expert, args.n_transitions, seed=DEMO_SEED, pool=pool, progress=True
                )
            else:
                demos = human.first_transitions(min(args.n_transitions, human.n_transitions))
            name = f"{expert.replace('/', '_').replace(':', '_')}@{scenario.name}"
            clone = kit.train_clone(out / "runs" / name, demos, config)
            specs = ([PolicySpec("expert", expert)] if human is None else []) + [clone]
            ev = evaluate(scenario, specs, n_episodes=args.eval_episodes, seed=args.eval_seed, pool=pool, progress=True)
            episodes.append(ev.episodes.assign(**cell))
            summary = ev.summary.set_index("policy")
            row: dict[str, Any] = {
                **cell,
                "n_transitions": demos.n_transitions,
                "n_demo_episodes": len(demos.trajectories),
            }
            for role, spec in zip(("expert", "clone") if human is None else ("clone",), specs):
                row.update(kit.interval_columns(summary.loc[spec.label], METRICS, prefix=f"{role}_"))
            if human is None:
                ms = decision_ms(scenario, expert, list(range(TUNING_SEED, TUNING_SEED + args.timing_episodes)))
                row.update(mean_ci(ms).columns("expert_ms_per_decision"))
                timing.append(pd.DataFrame({**cell, "ms": ms}))
                # The clone's return minus the expert's, paired by seed (the expert is the reference).
                row.update(kit.interval_columns(summary.loc[clone.label], ("return_diff",)))
            rows.append(row)
        table_ = pd.DataFrame(rows)
        tables = {"cells": table_, "episodes": pd.concat(episodes, ignore_index=True)}
        if timing:
            tables["timing"] = pd.concat(timing, ignore_index=True)
        record = kit.experiment_record(
            args,
            scenarios=scenarios,
            train=config.to_dict(),
            seeds={
                "demonstrations": "0.. (until n_transitions)",
                "eval": test_seeds,
                "timing": {"first": TUNING_SEED, "n_episodes": args.timing_episodes},
            },
            statistics="means with 95% percentile-bootstrap CIs over episodes (ms: over decisions), "
            "crash rates with Clopper-Pearson intervals; "
            "return_diff is clone minus expert paired by seed",
            wall_time_s=round(time.perf_counter() - start, 1),
        )
        kit.write_results(out, tables, record)
        replot(out)
    print(table(table_))
    return table_


def table(cells: pd.DataFrame) -> str:
    """Markdown: one row per (expert, scenario)."""

    def f(r: pd.Series, m: str, digits: int = 2) -> str:
        if f"{m}_ci_low" not in r or pd.isna(r.get(m)):
            return "n/a"
        return Interval.from_columns(r, m).format(digits)

    lines = [
        "| expert | scenario | return | crash rate | speed [m/s] | ms/decision | clone return | clone crash rate |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, r in cells.iterrows():
        lines.append(
            f"| {r['expert']} | {r['scenario']} | {f(r, 'expert_return')} | {f(r, 'expert_crashed')} | "
            f"{f(r, 'expert_mean_speed_mps', 1)} | {f(r, 'expert_ms_per_decision', 2)} | {f(r, 'clone_return')} | "
            f"{f(r, 'clone_crashed')} |"
        )
    return "\n".join(lines)


def replot(out: str | pathlib.Path) -> list[pathlib.Path]:
    """Draw the figure from ``cells.csv`` and ``config.json`` of a run in ``out`` (``main``
    draws it so too)."""
    from testbed.outputs import read_args
    from testbed.plotting import plot_experts_and_clones

    def label(expert: str, scenario: str) -> str:  # sb3:.../highway-fast-dqn/model.zip -> sb3 dqn
        name = f"sb3 {pathlib.Path(expert[4:]).parent.name.rsplit('-', 1)[-1]}" if expert.startswith("sb3:") else expert
        return name + "\n" + scenario.replace("-continuous", "-\ncontinuous")

    args = read_args(pathlib.Path(out) / "config.json", Args)
    cells = pd.read_csv(pathlib.Path(out) / "cells.csv")
    fig = plot_experts_and_clones(
        cells,
        labels=[label(e, s) for e, s in zip(cells["expert"], cells["scenario"])],
        title=f"Experts and their BC clones ({args.n_transitions} demonstration transitions each; "
        f"{args.eval_episodes} test seeds; 95% CIs)",
    )
    return [kit.save_laid_out_figure(fig, pathlib.Path(out) / "experts.png")]


if __name__ == "__main__":
    kit.run_script(main, Args)
