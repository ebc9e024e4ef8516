"""Data scaling of behavioral cloning: clone quality against the number of demonstrations.

For every number of expert demonstration episodes n (1, 5, 20, 50, 100 by default) and every
training seed, one BC clone is trained and driven on sealed test seeds; expert, idle and random
are driven on the same seeds as reference lines. Every (n, seed) clone and every baseline is
one cell of a resumable sweep (:mod:`testbed.sweep`): rerunning after an interruption
finishes the missing cells (the code's git commit is part of the sweep config, so cells are
only resumed by the code that made them; ``testbed reproduce`` always starts afresh), and
``--executor ray`` spreads the cells over a Ray cluster.

Data. The expert drives one pool of ``pool_episodes`` demonstration episodes (seeds
0..pool-1), collected once, plus ``val_episodes`` more (the seeds after the pool) that no clone
trains on: they measure every clone's open-loop validation accuracy on the same data, from
n = 1 up. Training seed s draws a fixed random order of the pool (``rng([s, 0x5CA1E])``) and
its clone with n episodes trains on the first n of that order, so a seed's sets are nested
(n=5 within n=10) and different seeds see different episodes; at n = pool size all seeds share
the data and differ in initialisation, batch order only. All training happens on the whole
subset (no validation split: n counts training episodes); the batch size is capped at the
subset's transitions so that n = 1 can train. Evaluation seeds start at 1000000 (the sealed
test range), checked to be disjoint from every clone's demonstration seeds.

Outputs under ``results/data_scaling/``: ``config.json`` (args, scenario, seeds, statistics,
wall times, provenance), ``cells.csv`` (one row per clone), ``baselines.csv``,
``episodes.csv`` (every evaluation episode), ``summary.csv`` (per n: means with 95% CIs over
training seeds; baselines: over episodes), ``data_scaling.png``; the sweep itself in
``sweep/`` and the demonstrations in ``demos/``.

    python experiments/data_scaling.py                      # wall time: results/reproduce.json
    python experiments/data_scaling.py --executor ray --address auto
    python experiments/data_scaling.py --fast               # ~1 min, used by the tests

In ``testbed reproduce`` on 2 cores: 264–324 s (25 clone cells and 3 baselines: 470–575 s of CPU; the
pool reused from the quick pipeline, ~40 s more alone); each cell's times: ``sweep/cells/*/timing.json``.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import time
from typing import Any, Literal

import numpy as np
import pandas as pd

from testbed import kit
from testbed.collect import collect
from testbed.demos import load_demos, save_demos
from testbed.errors import TestbedError
from testbed.metrics import Interval, clones_ci, clones_mean_ci, episode_ci, mean_ci, normalized_score_ci, policy_table
from testbed.outputs import read_args, read_json
from testbed.plotting import plot_data_scaling
from testbed.policies import PolicySpec
from testbed.provenance import git_commit
from testbed.rollout import RolloutPool
from testbed.scenarios import Scenario, get_scenario, parse_overrides
from testbed.seeds import check_test_seeds
from testbed.sweep import CellResult, Sweep

SUBSET_KEY = 0x5CA1E
"""Second word of the generator seed that orders the pool for a training seed."""
BASELINES = ("idle", "random")


@dataclasses.dataclass
class Args(kit.EvalArgs):
    """Data scaling of BC: return, crash rate and validation accuracy vs demonstration episodes."""

    scenario: str = "highway-fast"
    """Scenario preset."""
    set: tuple[str, ...] = ()
    """Scenario config overrides KEY=VALUE, e.g. duration=20."""
    expert: str = "scripted"
    """Expert to clone (also the top reference line)."""
    data_sizes: tuple[int, ...] = (1, 5, 20, 50, 100)
    """Numbers of demonstration episodes to train on."""
    train_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    """BC training seeds per data size (each also draws its own subset of the pool)."""
    pool_episodes: int = 100
    """Demonstration pool (episodes, seeds 0..pool-1); at least the largest data size."""
    val_episodes: int = 20
    """Extra expert episodes (seeds after the pool) no clone trains on: validation accuracy."""
    epochs: int = 100
    """BC epochs (passes over each clone's own subset)."""
    batch_size: int = 64
    """BC batch size (capped at a subset's transitions)."""
    eval_episodes: int = 50
    """Evaluation episodes per clone and per baseline (sealed test seeds)."""
    executor: Literal["local", "ray"] = "local"
    """Where cells run: local spawn processes, or Ray."""
    address: str | None = None
    """Ray cluster address (e.g. auto; the output directory must then be on a filesystem all
    nodes share); default: a local Ray instance of --workers CPUs."""
    out: str = "results/data_scaling"
    """Output directory; rerunning with the same arguments resumes it."""
    overwrite: bool = False
    """Delete an existing output directory first instead of resuming it."""

    def resolved(self) -> Args:
        """The tiny --fast preset (2 sizes, 2 seeds, few episodes and epochs), else itself."""
        if not self.fast:
            return self
        sizes = dict(pool_episodes=3, val_episodes=2, epochs=3, batch_size=16, eval_episodes=3)
        return dataclasses.replace(self, data_sizes=(1, 3), train_seeds=(0, 1), **sizes)

    def validate(self) -> None:
        """Raise :class:`TestbedError` on nonsense values."""
        if not self.data_sizes or min(self.data_sizes) < 1:
            raise TestbedError(f"--data-sizes must be positive, got {list(self.data_sizes)}")
        if len(set(self.data_sizes)) != len(self.data_sizes) or len(set(self.train_seeds)) != len(self.train_seeds):
            raise TestbedError("--data-sizes and --train-seeds must not repeat values")
        if not self.train_seeds:
            raise TestbedError("give at least one --train-seeds value")
        if self.pool_episodes < max(self.data_sizes):
            raise TestbedError(f"--pool-episodes {self.pool_episodes} is smaller than the largest data size")
        if min(self.val_episodes, self.eval_episodes, self.epochs, self.batch_size) < 1:
            raise TestbedError("--val-episodes, --eval-episodes, --epochs and --batch-size must be at least 1")
        if self.pool_episodes + self.val_episodes > self.eval_seed:
            raise TestbedError("demonstration seeds would reach the evaluation seeds; raise --eval-seed")
        if self.workers < 1:
            raise TestbedError(f"--workers must be at least 1, got {self.workers}")


@dataclasses.dataclass(frozen=True)
class Context:
    """What every cell shares (part of the sweep's config)."""

    scenario: dict[str, Any]
    """Resolved scenario (``Scenario.to_dict``)."""
    expert: str
    """Expert name."""
    demos_dir: str
    """Saved pool + validation episodes."""
    pool_episodes: int
    """Episodes of the pool (the first ones in ``demos_dir``)."""
    epochs: int
    """BC epochs."""
    batch_size: int
    """BC batch size before capping."""
    eval_seeds: tuple[int, ...]
    """Evaluation seeds (sealed test range)."""

    def to_dict(self) -> dict[str, Any]:
        # The demos path is where, not what: leave it out so that a moved directory resumes.
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "demos_dir"} | {
            "eval_seeds": [self.eval_seeds[0], len(self.eval_seeds)]
        }


def subset_indices(pool_episodes: int, n: int, train_seed: int) -> list[int]:
    """Pool indices (sorted) of training seed ``train_seed``'s ``n``-episode subset: the first
    ``n`` of a permutation drawn from ``rng([train_seed, SUBSET_KEY])``, hence nested in n."""
    order = np.random.default_rng([train_seed, SUBSET_KEY]).permutation(pool_episodes)
    return sorted(order[:n].tolist())


def run_cell(ctx: Context, cell: dict[str, Any], cell_dir: pathlib.Path) -> dict[str, Any]:
    """One sweep cell: a baseline's evaluation, or one clone's training and evaluation."""
    from testbed.training import TrainConfig

    scenario = Scenario.from_dict(ctx.scenario)
    if cell["kind"] == "baseline":
        policy, spec = cell["policy"], PolicySpec.parse(cell["policy"])
        return {"policy": policy, **kit.evaluate_in_cell(scenario, spec, ctx.eval_seeds, policy, cell_dir)}
    n, seed = int(cell["n_demo_episodes"]), int(cell["train_seed"])
    everything = load_demos(ctx.demos_dir, scenario=scenario)
    demos = everything.subset(subset_indices(ctx.pool_episodes, n, seed))
    batch_size = min(ctx.batch_size, demos.n_transitions)
    config = TrainConfig(n_epochs=ctx.epochs, batch_size=batch_size, seed=seed, val_fraction=0.0)
    return {
        "n_demo_episodes": n,
        "train_seed": seed,
        "demo_seeds": demos.seeds,
        "n_transitions": demos.n_transitions,
        "batch_size": config.batch_size,
        **kit.clone_cell(
            cell_dir,
            scenario,
            demos,
            config,
            demos_path=ctx.demos_dir,
            validation=everything.trajectories[ctx.pool_episodes :],
            eval_seeds=ctx.eval_seeds,
            name=f"bc n={n} seed={seed}",
        ),
    }


def _cells(args: Args) -> list[dict[str, Any]]:
    baselines = [{"kind": "baseline", "policy": p} for p in (f"expert:{args.expert}", *BASELINES)]
    clones = [{"kind": "bc", "n_demo_episodes": n, "train_seed": s} for n in args.data_sizes for s in args.train_seeds]
    return baselines + clones


def aggregate(results: list[CellResult], expert: str) -> dict[str, pd.DataFrame]:
    """Tables from the sweep's results: per clone, per baseline, per episode, and summary.

    A BC row averages clones (training seeds) that all drove the same evaluation seeds, so its
    intervals carry both sources of noise: :func:`testbed.metrics.clones_mean_ci` for the
    return, :func:`testbed.metrics.clones_rate_ci` for the crash rate, and
    :func:`testbed.metrics.normalized_score_ci` for the normalized score (which also carries the
    noise of the expert's and random's means on those seeds). Validation accuracy is one number
    per clone on the shared validation episodes: Student's t over the training seeds.
    """
    episodes = pd.concat([pd.read_csv(r.path / "episodes.csv") for r in results], ignore_index=True)
    baselines = pd.DataFrame([r.result for r in results if r.params["kind"] == "baseline"])
    ref = baselines.set_index("policy")["return"]
    expert_label = f"expert:{expert}"
    expert_return, random_return = ref[expert_label], ref["random"]
    cells = pd.DataFrame(
        [{k: v for k, v in r.result.items() if k != "demo_seeds"} for r in results if r.params["kind"] == "bc"]
    )
    cells["normalized_score"] = (cells["return"] - random_return) / (expert_return - random_return)
    seeds = sorted(episodes.loc[episodes["policy"] == expert_label, "seed"].tolist())
    expert_row, random_row = (policy_table(episodes, [p], "return", seeds) for p in (expert_label, "random"))
    rows = []
    for n, g in cells.groupby("n_demo_episodes", sort=True):
        names = [f"bc n={int(n)} seed={int(s)}" for s in g["train_seed"]]
        returns, crashes = (policy_table(episodes, names, m, seeds) for m in ("return", "crashed"))
        accuracy, several = g["val_accuracy"].to_numpy(dtype=float), len(g) > 1
        # One clone: intervals over evaluation seeds only, none for its validation accuracy.
        val = clones_mean_ci(accuracy[:, None]) if several else Interval(accuracy[0], np.nan, np.nan)
        rows.append(
            {
                "policy": "bc",
                "n_demo_episodes": int(n),
                "n": len(g),
                "ci_over": "training and evaluation seeds" if several else "evaluation seeds (one clone)",
                "n_transitions": float(g["n_transitions"].mean()),
                **clones_ci("return", returns).columns("return"),
                **clones_ci("crashed", crashes).columns("crash_rate"),
                **val.columns("val_accuracy"),
                **normalized_score_ci(returns, random_row, expert_row).columns("normalized_score"),
            }
        )
    for policy in baselines["policy"]:
        ep = episodes[episodes["policy"] == policy]
        rows.append(
            {
                "policy": policy,
                "n_demo_episodes": np.nan,
                "n": len(ep),
                "ci_over": "episodes",
                **mean_ci(ep["return"]).columns("return"),
                **episode_ci("crashed", ep["crashed"]).columns("crash_rate"),
                "normalized_score": (ep["return"].mean() - random_return) / (expert_return - random_return),
            }
        )
    summary = pd.DataFrame(rows).astype({"n_demo_episodes": "Int64"})
    return {"cells": cells, "baselines": baselines, "episodes": episodes, "summary": summary}


def main(args: Args) -> dict[str, Any]:
    args = args.resolved()
    args.validate()
    start = time.perf_counter()
    scenario = get_scenario(args.scenario, parse_overrides(args.set))
    out = pathlib.Path(args.out)
    kit.clear_output(out, overwrite=args.overwrite, marker="sweep/config.json", what="data-scaling")
    demos_dir = out.absolute() / "demos"  # absolute: cells may run in Ray workers elsewhere
    eval_seeds = tuple(range(args.eval_seed, args.eval_seed + args.eval_episodes))
    test_seeds = check_test_seeds(list(eval_seeds), "data_scaling")
    ctx = Context(
        scenario.to_dict(), args.expert, str(demos_dir), args.pool_episodes, args.epochs, args.batch_size, eval_seeds
    )
    # The code's commit is part of the config: finished cells are resumed only by the code that
    # made them (a resume across commits would mix results of two versions of the expert or BC).
    sweep_config = {
        "context": ctx.to_dict(),
        "val_episodes": args.val_episodes,
        "subset_key": SUBSET_KEY,
        "code": git_commit(),
    }
    # Checks that out/sweep is this study's (or new) before any simulation.
    sweep = Sweep(out / "sweep", _cells(args), functools.partial(run_cell, ctx), config=sweep_config)
    timings: dict[str, float] = {}
    n_demos = args.pool_episodes + args.val_episodes
    with kit.timed(timings, "collect_s"):
        if not demos_dir.exists():
            with RolloutPool(args.workers) as pool:
                demos = collect(scenario, args.expert, n_episodes=n_demos, seed=0, pool=pool, progress=True)
            save_demos(demos, demos_dir)
        demos = load_demos(demos_dir, scenario=scenario)
        if demos.seeds != list(range(n_demos)) or demos.metadata.expert.get("name") != args.expert:
            raise TestbedError(f"{demos_dir} holds other demonstrations; use --overwrite")
    with kit.timed(timings, "sweep_s"):
        results = sweep.run(executor=args.executor, workers=args.workers, address=args.address, progress=True)
    tables = aggregate(results, args.expert)
    cell_times = pd.DataFrame([read_json(r.path / "timing.json", what="cell timing") for r in results])

    with kit.staged_files(out) as tmp:
        record = kit.experiment_record(
            args,
            scenario=scenario.to_dict(),
            train_config={
                "n_epochs": args.epochs,
                "batch_size": f"min({args.batch_size}, subset transitions)",
                "val_fraction": 0.0,
                "seed": "training seed",
                "other": "testbed.training.TrainConfig defaults",
            },
            seeds={
                "demo_pool": [0, args.pool_episodes - 1],
                "validation_demos": [args.pool_episodes, n_demos - 1],
                "eval": test_seeds,
                "subsets": f"training seed s uses the first n of rng([s, {SUBSET_KEY:#x}]).permutation(pool)",
            },
            statistics="clones (all on the same evaluation seeds): 95% variance-components intervals over "
            "training and evaluation seeds (testbed.metrics.clones_mean_ci; crash rate: its hull with the pooled "
            "Clopper-Pearson interval, clones_rate_ci); normalized_score = (clone - random) / (expert - random) on "
            "mean returns over the same seeds, delta-method interval carrying the expert's and random's noise "
            "(normalized_score_ci); val_accuracy: Student's t over training seeds; baselines: bootstrap over "
            "episodes, crash rates Clopper-Pearson",
            executor={"name": args.executor, "address": args.address, "workers": args.workers},
            wall_time_s={k: round(v, 1) for k, v in timings.items()}
            | {
                "total": round(time.perf_counter() - start, 1),
                "cells_wall_sum": round(float(cell_times["wall_time_s"].sum()), 1),
                "cells_cpu_sum": round(float(cell_times["cpu_time_s"].sum()), 1),
            },
        )
        kit.write_results(tmp, {k: tables[k] for k in ("cells", "baselines", "episodes", "summary")}, record)
        _plot(tmp / "data_scaling.png", tables, args)
    columns = ["policy", "n_demo_episodes", "n", "return", "crash_rate", "val_accuracy", "normalized_score"]
    print(tables["summary"][columns].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print(f"total {time.perf_counter() - start:.0f} s -> {out}")
    return tables | {"config": record}


def replot(out: str | pathlib.Path) -> list[pathlib.Path]:
    """Redraw the figure from ``summary.csv``, ``cells.csv`` and ``config.json`` of an earlier run."""
    out = pathlib.Path(out)
    tables = {name: pd.read_csv(out / f"{name}.csv") for name in ("summary", "cells")}
    return [_plot(out / "data_scaling.png", tables, read_args(out / "config.json", Args))]


def _plot(path: pathlib.Path, tables: dict[str, pd.DataFrame], args: Args) -> pathlib.Path:
    title = (
        f"{args.scenario}: BC vs number of demonstrations ({len(args.train_seeds)} training seeds, "
        f"{args.eval_episodes} test episodes each)"
    )
    fig = plot_data_scaling(tables["summary"], tables["cells"], sizes=args.data_sizes, title=title)
    return kit.save_laid_out_figure(fig, path)


if __name__ == "__main__":
    kit.run_script(main, Args)
