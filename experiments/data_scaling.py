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
subset's number of transitions so that n = 1 can train. Evaluation seeds start at 1000000 (the sealed test range) and
are checked to be disjoint from every clone's demonstration seeds.

Outputs under ``results/data_scaling/``: ``config.json`` (args, scenario, seeds, statistics,
wall times, provenance), ``cells.csv`` (one row per clone), ``baselines.csv``,
``episodes.csv`` (every evaluation episode), ``summary.csv`` (per n: means with 95% CIs over
training seeds; baselines: over episodes), ``data_scaling.png``; the sweep itself in
``sweep/`` and the demonstrations in ``demos/``.

    python experiments/data_scaling.py                      # wall time: results/reproduce.json
    python experiments/data_scaling.py --executor ray --address auto
    python experiments/data_scaling.py --fast               # ~1 min, used by the tests

Wall time of the default study in ``testbed reproduce`` on 2 cores: 264–324 s (the 25 clone
cells and 3 baselines take 470–575 s of CPU over 2 workers; the demonstration pool is reused
from the quick pipeline's episodes there, ~40 s more when run alone).
Every cell records its wall and CPU time in ``sweep/cells/*/timing.json``.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import shutil
import tempfile
import time
from typing import Any, Literal

import numpy as np
import pandas as pd
import tyro

from testbed.collect import collect
from testbed.demos import load_demos, save_demos
from testbed.errors import TestbedError
from testbed.metrics import (
    Interval,
    clones_mean_ci,
    clones_rate_ci,
    episode_ci,
    episodes_table,
    mean_ci,
    normalized_score_ci,
)
from testbed.outputs import read_args, read_json, write_json
from testbed.policies import PolicySpec
from testbed.provenance import git_commit, provenance
from testbed.rollout import RolloutPool
from testbed.runtime import default_workers
from testbed.scenarios import Scenario, get_scenario, parse_overrides
from testbed.seeds import TEST_SEED, check_test_seeds
from testbed.sweep import CellResult, Sweep

SUBSET_KEY = 0x5CA1E
"""Second word of the generator seed that orders the pool for a training seed."""
BASELINES = ("idle", "random")


@dataclasses.dataclass
class Args:
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
    eval_seed: int = TEST_SEED
    """First evaluation seed (in the sealed test range, :data:`testbed.seeds.TEST`)."""
    executor: Literal["local", "ray"] = "local"
    """Where cells run: local spawn processes, or Ray."""
    address: str | None = None
    """Ray cluster address (e.g. auto; the output directory must then be on a filesystem all
    nodes share); default: a local Ray instance of --workers CPUs."""
    workers: int = dataclasses.field(default_factory=default_workers)
    """Parallel cells (local processes, or the CPUs of a local Ray instance); also the
    collection workers."""
    out: str = "results/data_scaling"
    """Output directory; rerunning with the same arguments resumes it."""
    overwrite: bool = False
    """Delete an existing output directory first instead of resuming it."""
    fast: bool = False
    """Tiny preset for tests (2 sizes, 2 seeds, few episodes and epochs)."""

    def resolved(self) -> Args:
        if not self.fast:
            return self
        return dataclasses.replace(
            self,
            data_sizes=(1, 3),
            train_seeds=(0, 1),
            pool_episodes=3,
            val_episodes=2,
            epochs=3,
            batch_size=16,
            eval_episodes=3,
        )

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
        if self.val_episodes < 1 or self.eval_episodes < 1 or self.epochs < 1 or self.batch_size < 1:
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


def _evaluate(
    scenario: Scenario, spec: PolicySpec, seeds: tuple[int, ...], name: str, cell_dir: pathlib.Path
) -> dict[str, float]:
    from testbed.rollout import rollouts

    records = rollouts(scenario, spec, list(seeds))  # in this process: cells are the parallel unit
    episodes = episodes_table((name, r.seed, r.trajectory) for r in records)
    episodes.to_csv(cell_dir / "episodes.csv", index=False)
    return {
        "return": float(episodes["return"].mean()),
        "crash_rate": float(episodes["crashed"].mean()),
        "mean_speed_mps": float(episodes["mean_speed_mps"].mean()),
    }


def run_cell(ctx: Context, cell: dict[str, Any], cell_dir: pathlib.Path) -> dict[str, Any]:
    """One sweep cell: a baseline's evaluation, or one clone's training and evaluation."""
    from testbed.evaluation import check_held_out
    from testbed.training import TrainConfig, action_accuracy, save_clone, train_bc

    scenario = Scenario.from_dict(ctx.scenario)
    if cell["kind"] == "baseline":
        return {
            "policy": cell["policy"],
            **_evaluate(scenario, PolicySpec.parse(cell["policy"]), ctx.eval_seeds, cell["policy"], cell_dir),
        }
    n, seed = int(cell["n_demo_episodes"]), int(cell["train_seed"])
    everything = load_demos(ctx.demos_dir, scenario=scenario)
    demos = everything.subset(subset_indices(ctx.pool_episodes, n, seed))
    validation = everything.trajectories[ctx.pool_episodes :]
    config = TrainConfig(
        n_epochs=ctx.epochs, batch_size=min(ctx.batch_size, demos.n_transitions), seed=seed, val_fraction=0.0
    )
    result = train_bc(demos, config)
    clone = save_clone(cell_dir / "clone", result, demos=demos, demos_path=ctx.demos_dir, config=config)
    spec = PolicySpec("clone", str(clone))
    check_held_out([spec], ctx.eval_seeds)
    return {
        "n_demo_episodes": n,
        "train_seed": seed,
        "demo_seeds": demos.seeds,
        "n_transitions": demos.n_transitions,
        "batch_size": config.batch_size,
        "train_accuracy": float(result.log["train/accuracy"].iloc[-1]),
        "val_accuracy": action_accuracy(result.policy, validation),
        **_evaluate(scenario, spec, ctx.eval_seeds, f"bc n={n} seed={seed}", cell_dir),
    }


def _cells(args: Args) -> list[dict[str, Any]]:
    baselines = [{"kind": "baseline", "policy": p} for p in (f"expert:{args.expert}", *BASELINES)]
    clones = [{"kind": "bc", "n_demo_episodes": n, "train_seed": s} for n in args.data_sizes for s in args.train_seeds]
    return baselines + clones


def _table(episodes: pd.DataFrame, policies: list[str], metric: str, seeds: list[int]) -> np.ndarray:
    """``metric`` of each policy (rows) on each evaluation seed (columns, in ``seeds`` order)."""
    wide = episodes[episodes["policy"].isin(policies)].pivot(index="policy", columns="seed", values=metric)
    return wide.loc[policies, seeds].to_numpy(dtype=float)


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
    expert_row, random_row = (_table(episodes, [p], "return", seeds) for p in (expert_label, "random"))
    rows = []
    for n, g in cells.groupby("n_demo_episodes", sort=True):
        names = [f"bc n={int(n)} seed={int(s)}" for s in g["train_seed"]]
        returns = _table(episodes, names, "return", seeds)
        several = len(g) > 1
        rows.append(
            {
                "policy": "bc",
                "n_demo_episodes": int(n),
                "n": len(g),
                "ci_over": "training and evaluation seeds" if several else "evaluation seeds (one clone)",
                "n_transitions": float(g["n_transitions"].mean()),
                **(clones_mean_ci(returns) if several else mean_ci(returns[0])).columns("return"),
                **(
                    clones_rate_ci(crashes := _table(episodes, names, "crashed", seeds))
                    if several
                    else episode_ci("crashed", crashes[0])
                ).columns("crash_rate"),
                **(
                    clones_mean_ci(g["val_accuracy"].to_numpy(dtype=float)[:, None])
                    if several
                    else Interval(float(g["val_accuracy"].iloc[0]), np.nan, np.nan)  # no spread measured
                ).columns("val_accuracy"),
                **normalized_score_ci(returns, random_row, expert_row).columns("normalized_score"),
            }
        )
    for policy in baselines["policy"]:
        ep = episodes[episodes["policy"] == policy]
        score = (ep["return"].mean() - random_return) / (expert_return - random_return)
        rows.append(
            {
                "policy": policy,
                "n_demo_episodes": np.nan,
                "n": len(ep),
                "ci_over": "episodes",
                **mean_ci(ep["return"]).columns("return"),
                **episode_ci("crashed", ep["crashed"]).columns("crash_rate"),
                "normalized_score": score,
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
    if args.overwrite and out.exists():
        if out.is_dir() and any(out.iterdir()) and not (out / "sweep" / "config.json").is_file():
            raise TestbedError(f"--overwrite refuses to delete {out}: it is not a data-scaling output")
        shutil.rmtree(out)
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

    t0 = time.perf_counter()
    n_demos = args.pool_episodes + args.val_episodes
    if not demos_dir.exists():
        with RolloutPool(args.workers) as pool:
            demos = collect(scenario, args.expert, n_episodes=n_demos, seed=0, pool=pool, progress=True)
        save_demos(demos, demos_dir)
    demos = load_demos(demos_dir, scenario=scenario)
    if demos.seeds != list(range(n_demos)) or demos.metadata.expert.get("name") != args.expert:
        raise TestbedError(f"{demos_dir} holds other demonstrations; use --overwrite")
    timings["collect_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    results = sweep.run(executor=args.executor, workers=args.workers, address=args.address, progress=True)
    timings["sweep_s"] = time.perf_counter() - t0
    tables = aggregate(results, args.expert)
    cell_times = pd.DataFrame([read_json(r.path / "timing.json", what="cell timing") for r in results])

    with tempfile.TemporaryDirectory(prefix=".data_scaling-", dir=out) as tmp_name:
        tmp = pathlib.Path(tmp_name)
        for name in ("cells", "baselines", "episodes", "summary"):
            tables[name].to_csv(tmp / f"{name}.csv", index=False)
        _plot(tmp / "data_scaling.png", tables, args)
        config = {
            "args": dataclasses.asdict(args),
            "scenario": scenario.to_dict(),
            "train_config": {
                "n_epochs": args.epochs,
                "batch_size": f"min({args.batch_size}, subset transitions)",
                "val_fraction": 0.0,
                "seed": "training seed",
                "other": "testbed.training.TrainConfig defaults",
            },
            "seeds": {
                "demo_pool": [0, args.pool_episodes - 1],
                "validation_demos": [args.pool_episodes, n_demos - 1],
                "eval": test_seeds,
                "subsets": f"training seed s uses the first n of rng([s, {SUBSET_KEY:#x}]).permutation(pool)",
            },
            "statistics": "clones (all on the same evaluation seeds): 95% variance-components intervals over "
            "training and evaluation seeds (testbed.metrics.clones_mean_ci; crash rate: its hull with the pooled "
            "Clopper-Pearson interval, clones_rate_ci); normalized_score = (clone - random) / (expert - random) on "
            "mean returns over the same seeds, delta-method interval carrying the expert's and random's noise "
            "(normalized_score_ci); val_accuracy: Student's t over training seeds; baselines: bootstrap over "
            "episodes, crash rates Clopper-Pearson",
            "executor": {"name": args.executor, "address": args.address, "workers": args.workers},
            "wall_time_s": {k: round(v, 1) for k, v in timings.items()}
            | {
                "total": round(time.perf_counter() - start, 1),
                "cells_wall_sum": round(float(cell_times["wall_time_s"].sum()), 1),
                "cells_cpu_sum": round(float(cell_times["cpu_time_s"].sum()), 1),
            },
            "provenance": provenance(),
        }
        write_json(tmp / "config.json", config)
        for path in sorted(tmp.iterdir()):
            path.replace(out / path.name)
    columns = ["policy", "n_demo_episodes", "n", "return", "crash_rate", "val_accuracy", "normalized_score"]
    print(tables["summary"][columns].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print(f"total {time.perf_counter() - start:.0f} s -> {out}")
    return tables | {"config": config}


def replot(out: str | pathlib.Path) -> list[pathlib.Path]:
    """Redraw the figure from ``summary.csv``, ``cells.csv`` and ``config.json`` of an earlier run."""
    out = pathlib.Path(out)
    args = read_args(out / "config.json", Args)
    tables = {name: pd.read_csv(out / f"{name}.csv") for name in ("summary", "cells")}
    _plot(out / "data_scaling.png", tables, args)
    return [out / "data_scaling.png"]


def _plot(path: pathlib.Path, tables: dict[str, pd.DataFrame], args: Args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    summary, cells = tables["summary"], tables["cells"]
    bc = summary[summary["policy"] == "bc"]
    refs = summary[summary["policy"] != "bc"].set_index("policy")
    fig, axes = plt.subplots(2, 2, figsize=(9, 6.5))
    panels = (
        ("return", "closed-loop return"),
        ("crash_rate", "crash rate"),
        ("val_accuracy", "validation action accuracy"),
        ("normalized_score", "normalized score"),
    )
    for ax, (col, label) in zip(axes.flat, panels):
        ax.scatter(cells["n_demo_episodes"], cells[col], s=8, alpha=0.35, color="C0")
        ax.errorbar(
            bc["n_demo_episodes"],
            bc[col],
            yerr=[bc[col] - bc[f"{col}_ci_low"], bc[f"{col}_ci_high"] - bc[col]],
            marker="o",
            capsize=3,
            color="C0",
            label="BC (mean over seeds, 95% CI)",
        )
        if col != "val_accuracy":
            for i, (policy, row) in enumerate(refs.iterrows()):
                ax.axhline(row[col], ls="--", lw=1, color=f"C{i + 1}", label=policy)
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xticks(list(args.data_sizes), [str(n) for n in args.data_sizes])
        ax.set_xlabel("demonstration episodes")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(
        f"{args.scenario}: BC vs number of demonstrations ({len(args.train_seeds)} training seeds, "
        f"{args.eval_episodes} test episodes each)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    import sys

    try:
        main(tyro.cli(Args))
    except TestbedError as e:
        print(f"data_scaling: error: {e}", file=sys.stderr)
        sys.exit(2)
