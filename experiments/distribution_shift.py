"""Distribution shift: clones trained in one scenario, driven in every other.

A train-scenario x test-scenario matrix. For each training scenario the expert's
demonstrations train one BC clone per training seed (seed s: demonstration seeds from
s * 500, initialisation s; :mod:`testbed.kit.seeded`); the clones and the expert then drive the
same sealed test seeds (1000000..) of every test scenario. Each cell reports the clones' mean
return and crash rate, with 95% intervals over training and test seeds (variance components),
the expert's (over episodes), and the clone-minus-expert return paired by seed and averaged over
the clones, so a cell says how much of the clones' loss comes from the shift and how much the
expert itself finds the test scenario harder.

Every case shares highway-fast's Kinematics observation (5 vehicles, relative, normalised), so
a clone can be fed any case: roundabout's preset observes absolute coordinates, so its case
here swaps in the relative observation (the clone trained on it is a roundabout clone with the
highway observation). Writes results/distribution_shift/: cells.csv (one row per cell),
clones.csv (one row per cell and clone), episodes.csv, config.json, distribution_shift.png.

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
from testbed.evaluation import evaluate
from testbed.metrics import Interval
from testbed.outputs import atomic_output_dir
from testbed.policies import PolicySpec
from testbed.rollout import RolloutPool
from testbed.scenarios import Scenario, get_scenario, parse_overrides
from testbed.seeds import TEST_SEED, check_test_seeds, episode_seeds
from testbed.training import TrainConfig

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
class Args(kit.SeedsArgs):
    """Train BC in some scenarios, evaluate clones and expert in all of them."""

    train_cases: tuple[str, ...] = ("highway-fast", "dense", "4-lanes", "merge", "roundabout")
    """Cases a clone is trained in (rows of the matrix); names from CASES."""
    test_cases: tuple[str, ...] = ("highway-fast", "dense", "4-lanes", "merge", "roundabout")
    """Cases every clone and the expert drive in (columns); names from CASES."""
    expert: str = "scripted"
    """Expert that demonstrates and serves as the per-cell reference."""
    demo_episodes: int = 50
    """Demonstration episodes per training case and training seed (seed s: from s * 500)."""
    epochs: int = 100
    """BC epochs."""
    batch_size: int = 64
    """BC batch size."""
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
            train_seeds=(0, 1),
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
    kit.check_train_seeds(args.train_seeds, args.demo_episodes)
    config = TrainConfig(n_epochs=args.epochs, batch_size=args.batch_size)
    scenarios = {c: case_scenario(c) for c in dict.fromkeys(args.train_cases + args.test_cases)}
    expert = PolicySpec("expert", args.expert)
    rows: list[dict[str, Any]] = []
    per_clone: list[dict[str, Any]] = []
    episodes = []
    timings: dict[str, float] = {}
    with atomic_output_dir(args.out, overwrite=True) as out, RolloutPool(args.workers) as pool:
        with kit.timed(timings, "collect"):
            jobs = {
                case: kit.seeded_demos(
                    out / "runs" / case,
                    scenarios[case],
                    args.expert,
                    args.train_seeds,
                    n_episodes=args.demo_episodes,
                    config=config,
                    pool=pool,
                )
                for case in args.train_cases
            }
        with kit.timed(timings, "train"):  # every case's clones at once, in worker processes
            trained = iter(kit.train_seeded([j for js in jobs.values() for j in js], workers=args.workers))
            clones = {case: [next(trained) for _ in js] for case, js in jobs.items()}
        with kit.timed(timings, "evaluate"):
            for test in args.test_cases:
                # Clones are checked against the scenario they drive in; the shared observation
                # config makes every clone fit every case.
                ev = evaluate(
                    scenarios[test],
                    [expert, *(c.spec for cs in clones.values() for c in cs)],
                    n_episodes=args.eval_episodes,
                    seed=args.eval_seed,
                    pool=pool,
                    progress=True,
                )
                case_of = {c.spec.label: train for train, cs in clones.items() for c in cs}
                seed_of = {c.spec.label: c.train_seed for cs in clones.values() for c in cs}
                policy = ev.episodes["policy"]
                episodes.append(
                    ev.episodes.assign(test_case=test, train_case=policy.map(case_of), train_seed=policy.map(seed_of))
                )
                for train, cs in clones.items():
                    cell = {"train_case": train, "test_case": test, "in_distribution": train == test}
                    row, each = kit.seeded_summary(ev.episodes, cs, expert.label)
                    rows.append({**cell, "n_episodes": args.eval_episodes, **row})
                    per_clone += [{**cell, **r} for r in each]
        cells = pd.DataFrame(rows)
        record = kit.experiment_record(
            args,
            cases={
                c: {"preset": CASES[c][0], "overrides": list(CASES[c][1]), "scenario": s.to_dict()}
                for c, s in scenarios.items()
            },
            train={**config.to_dict(), "seed": list(args.train_seeds)},
            seeds={"demonstrations": kit.seeds_record(args.train_seeds, args.demo_episodes), "eval": test_seeds},
            statistics=kit.STATISTICS,
            wall_time_s={k: round(v, 1) for k, v in timings.items()} | {"total": round(time.perf_counter() - start, 1)},
        )
        tables = {"cells": cells, "clones": pd.DataFrame(per_clone), "episodes": pd.concat(episodes, ignore_index=True)}
        kit.write_results(out, tables, record)
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
        "| train \\ test | test | clones | clone return | expert return | clone - expert | clone crash "
        "| expert crash |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, r in cells.iterrows():

        def f(m: str, r: pd.Series = r) -> str:
            return Interval.from_columns(r, m).format(2)

        lines.append(
            f"| {r['train_case']} | {r['test_case']} | {r['n_clones']} | {f('clone_return')} | {f('expert_return')} | "
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
        title=f"BC under distribution shift ({len(args.train_seeds)} clones per training case, each of "
        f"{args.demo_episodes} demos; {args.eval_episodes} seeds per cell)",
        row_label="trained in",
        column_label="driven in",
    )
    kit.save_laid_out_figure(fig, path)


if __name__ == "__main__":
    kit.run_script(main, Args)
