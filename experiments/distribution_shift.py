"""Distribution shift: clones trained in one scenario, driven in every other.

A train-scenario x test-scenario matrix. For each training scenario the expert's
demonstrations (seeds 0..) train one BC clone; the clone and the expert then drive the same
sealed test seeds (1000000..) of every test scenario. Each cell reports the clone's and the expert's
return and crash rate with 95% CIs and the clone-minus-expert return paired by seed, so a cell
says how much of the clone's loss comes from the shift and how much the expert itself finds the
test scenario harder.

Every case shares highway-fast's Kinematics observation (5 vehicles, relative, normalised), so
a clone can be fed any case: roundabout's preset observes absolute coordinates, so its case
here swaps in the relative observation (the clone trained on it is a roundabout clone with the
highway observation). Writes results/distribution_shift/: cells.csv, episodes.csv, config.json,
distribution_shift.png.

    python experiments/distribution_shift.py           # wall time: results/reproduce.json
    python experiments/distribution_shift.py --fast    # tiny, used by the tests
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Any

import numpy as np
import pandas as pd

from testbed import kit
from testbed.collect import collect
from testbed.evaluation import evaluate
from testbed.metrics import Interval
from testbed.outputs import atomic_output_dir
from testbed.policies import PolicySpec
from testbed.rollout import RolloutPool
from testbed.scenarios import Scenario, get_scenario, parse_overrides
from testbed.seeds import TEST_SEED, check_test_seeds, episode_seeds

CASES: dict[str, tuple[str, tuple[str, ...]]] = {
    "highway-fast": ("highway-fast", ()),
    "dense": ("highway-fast", ("vehicles_density=1.5",)),
    "4-lanes": ("highway-fast", ("lanes_count=4",)),
    "merge": ("merge", ()),
    "roundabout": ("roundabout", ()),
    "highway": ("highway", ()),
}
"""Case name -> (scenario preset, config overrides). ``highway`` (highway-v0) simulates ~10x
slower than highway-fast, so it is a test column only on request (``--test-cases``)."""


@dataclasses.dataclass
class Args(kit.BCArgs):
    """Train BC in some scenarios, evaluate clone and expert in all of them."""

    train_cases: tuple[str, ...] = ("highway-fast", "dense", "4-lanes", "merge", "roundabout")
    """Cases a clone is trained in (rows of the matrix); names from CASES."""
    test_cases: tuple[str, ...] = ("highway-fast", "dense", "4-lanes", "merge", "roundabout")
    """Cases every clone and the expert drive in (columns); names from CASES."""
    expert: str = "scripted"
    """Expert that demonstrates and serves as the per-cell reference."""
    demo_episodes: int = 50
    """Demonstration episodes per training case (seeds 0..)."""
    eval_episodes: int = 30
    """Evaluation episodes per cell (seeds from ``eval_seed``)."""
    eval_seed: int = TEST_SEED
    """First evaluation seed (in the sealed test range, :data:`testbed.seeds.TEST`)."""
    out: str = "results/distribution_shift"
    """Output directory (replaced)."""

    def resolved(self) -> Args:
        """The arguments checked (known cases), with the fast preset applied (tiny, for tests)."""
        unknown = sorted(set(self.train_cases + self.test_cases) - set(CASES))
        if unknown:
            from testbed.errors import TestbedError

            raise TestbedError(f"unknown case(s) {unknown}; choose from: {', '.join(CASES)}")
        return kit.fast_preset(
            self,
            train_cases=("highway-fast", "merge"),
            test_cases=("highway-fast", "merge", "roundabout"),
            demo_episodes=4,
            epochs=3,
            batch_size=16,
            eval_episodes=3,
        )


def case_scenario(case: str) -> Scenario:
    """The scenario of a case, observing through highway-fast's Kinematics config."""
    preset, overrides = CASES[case]
    scenario = get_scenario(preset, parse_overrides(overrides))
    shared = get_scenario("highway-fast").config["observation"]
    labels = [case] if overrides else []
    if scenario.config["observation"] != shared:
        scenario = dataclasses.replace(scenario, config={**scenario.config, "observation": dict(shared)})
        labels.append("relative-obs")
    # NAME[LABEL] (testbed.scenarios.split_label): records of these scenarios load back.
    return dataclasses.replace(scenario, name=f"{preset}[{','.join(labels)}]" if labels else preset)


def main(args: Args) -> pd.DataFrame:
    args = args.resolved()
    start = time.perf_counter()
    test_seeds = check_test_seeds(episode_seeds(args.eval_seed, args.eval_episodes), "distribution_shift")
    config = args.train_config()
    scenarios = {c: case_scenario(c) for c in dict.fromkeys(args.train_cases + args.test_cases)}
    expert = PolicySpec("expert", args.expert)
    rows: list[dict[str, Any]] = []
    episodes = []
    with atomic_output_dir(args.out, overwrite=True) as out, RolloutPool(args.workers) as pool:
        clones: dict[str, PolicySpec] = {}
        for case in args.train_cases:
            demos = collect(
                scenarios[case], args.expert, n_episodes=args.demo_episodes, seed=0, pool=pool, progress=True
            )
            clones[case] = kit.train_clone(out / "runs" / case, demos, config)
        for test in args.test_cases:
            # Clones are checked against the scenario they drive in; the shared observation
            # config makes every clone fit every case.
            ev = evaluate(
                scenarios[test],
                [expert, *clones.values()],
                n_episodes=args.eval_episodes,
                seed=args.eval_seed,
                pool=pool,
                progress=True,
            )
            by_label = {s.label: train for train, s in clones.items()}
            episodes.append(ev.episodes.assign(test_case=test, train_case=ev.episodes["policy"].map(by_label)))
            n_episodes = ev.summary.set_index("policy")["n_episodes"]
            for train, spec in clones.items():
                rows.append(
                    {
                        "train_case": train,
                        "test_case": test,
                        "in_distribution": train == test,
                        "n_episodes": int(n_episodes[spec.label]),
                        **kit.clone_vs_expert(ev.summary, spec.label, expert.label),
                    }
                )
        cells = pd.DataFrame(rows)
        record = kit.experiment_record(
            args,
            cases={
                c: {"preset": CASES[c][0], "overrides": list(CASES[c][1]), "scenario": s.to_dict()}
                for c, s in scenarios.items()
            },
            train=config.to_dict(),
            seeds={"demonstrations": {"first": 0, "n_episodes": args.demo_episodes}, "eval": test_seeds},
            statistics="means with 95% percentile-bootstrap CIs over episodes, crash rates with "
            "Clopper-Pearson intervals; return_diff is clone minus expert paired by seed",
            wall_time_s=round(time.perf_counter() - start, 1),
        )
        kit.write_results(out, {"cells": cells, "episodes": pd.concat(episodes, ignore_index=True)}, record)
        _plot(cells, args, out / "distribution_shift.png")
    print(table(cells))
    return cells


def replot(out: str | pathlib.Path) -> list[pathlib.Path]:
    """Redraw the figure from ``cells.csv`` and ``config.json`` of an earlier run in ``out``."""
    from testbed.outputs import read_args

    out = pathlib.Path(out)
    args = read_args(out / "config.json", Args)
    _plot(pd.read_csv(out / "cells.csv"), args, out / "distribution_shift.png")
    return [out / "distribution_shift.png"]


def table(cells: pd.DataFrame) -> str:
    """Markdown: one row per (train, test) cell."""
    lines = [
        "| train \\ test | test | clone return | expert return | clone - expert | clone crash | expert crash |",
        "|---|---|---|---|---|---|---|",
    ]
    for _, r in cells.iterrows():

        def f(m: str, r: pd.Series = r) -> str:
            return Interval.from_columns(r, m).format(2)

        lines.append(
            f"| {r['train_case']} | {r['test_case']} | {f('clone_return')} | {f('expert_return')} | "
            f"{f('return_diff')} | {f('clone_crashed')} | {f('expert_crashed')} |"
        )
    return "\n".join(lines)


def _plot(cells: pd.DataFrame, args: Args, path: pathlib.Path) -> None:
    from testbed.plotting import plot_matrix

    def grid(column: str) -> np.ndarray:
        return (
            cells.pivot(index="train_case", columns="test_case", values=column)
            .loc[list(args.train_cases), list(args.test_cases)]
            .to_numpy()
        )

    expert = cells.drop_duplicates("test_case").set_index("test_case").loc[list(args.test_cases)]
    fig = plot_matrix(
        {"clone crash rate": grid("clone_crashed"), "clone - expert return (paired)": grid("return_diff")},
        rows=list(args.train_cases),
        columns=list(args.test_cases),
        column_notes=[f"expert crash {c:.2f}" for c in expert["expert_crashed"]],
        title=f"BC under distribution shift ({args.demo_episodes} demos per training case, "
        f"{args.eval_episodes} seeds per cell)",
        row_label="trained in",
        column_label="driven in",
    )
    kit.save_laid_out_figure(fig, path)


if __name__ == "__main__":
    kit.run_script(main, Args)
