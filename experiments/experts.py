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

import numpy as np
import pandas as pd
import tyro

from testbed.collect import collect_transitions
from testbed.demos import Demonstrations, load_demos
from testbed.errors import TestbedError
from testbed.evaluation import evaluate
from testbed.metrics import Interval, episode_ci, mean_ci
from testbed.outputs import atomic_output_dir, final_path, write_json
from testbed.policies import PolicySpec, build_agent
from testbed.provenance import provenance
from testbed.rollout import RolloutPool
from testbed.runtime import default_workers
from testbed.scenarios import Scenario, get_scenario, make_env, parse_overrides
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
"""(expert name as in ``expert:NAME``, scenario preset) pairs."""


@dataclasses.dataclass
class Args:
    """Expert table: expert quality and the quality of its BC clone at equal data size."""

    cells: tuple[str, ...] = tuple(f"{e}@{s}" for e, s in CELLS)
    """Cells as EXPERT@SCENARIO (expert as in expert:NAME)."""
    human_demos: tuple[str, ...] = ()
    """Demonstration directories recorded with `testbed drive` (their scenario is read from them)."""
    n_transitions: int = 1000
    """Demonstration (observation, action) pairs each clone is trained on."""
    epochs: int = 100
    """BC epochs."""
    batch_size: int = 64
    """BC batch size."""
    train_seed: int = 0
    """BC training seed."""
    eval_episodes: int = 100
    """Evaluation episodes per expert and clone (sealed test seeds)."""
    eval_seed: int = TEST_SEED
    """First evaluation seed (in the sealed test range, :data:`testbed.seeds.TEST`)."""
    timing_episodes: int = 3
    """Episodes (tuning seeds 20000..) over which the cost per decision is timed, in this process."""
    workers: int = dataclasses.field(default_factory=default_workers)
    """Worker processes."""
    out: str = "results/experts"
    results: str = "results"
    """Root of the upstream results this step reads ({results} in the specs above); `testbed reproduce`
    passes its --out-root, so a rebuild elsewhere never mixes in the committed artefacts."""
    """Output directory (replaced)."""
    fast: bool = False
    """Tiny preset for tests."""

    def resolved(self) -> Args:
        if not self.fast:
            return dataclasses.replace(self, cells=tuple(c.replace("{results}", self.results) for c in self.cells))
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


def decision_ms(scenario: Scenario, expert: str, seeds: list[int]) -> np.ndarray:
    """Milliseconds per ``act`` call of the expert over the given episodes, in this process."""
    env = make_env(scenario)
    agent = build_agent(PolicySpec("expert", expert), scenario)
    times = []
    try:
        for seed in seeds:
            obs, _ = env.reset(seed=seed)
            agent.reset(env.unwrapped, seed)
            done = False
            while not done:
                t0 = time.perf_counter()
                action = agent.act(obs, env.unwrapped)
                times.append(1e3 * (time.perf_counter() - t0))
                obs, _, terminated, truncated, _ = env.step(action)
                done = terminated or truncated
    finally:
        env.close()
    return np.asarray(times)


def _ci(values: np.ndarray, name: str) -> dict[str, float]:
    """Columns of ``name``: Clopper-Pearson for a rate (``*_crashed``), else the bootstrap mean."""
    return (episode_ci("crashed", values) if name.endswith("_crashed") else mean_ci(values)).columns(name)


def main(args: Args) -> pd.DataFrame:
    from testbed.training import TrainConfig, save_clone, train_bc

    args = args.resolved()
    start = time.perf_counter()
    test_seeds = check_test_seeds(episode_seeds(args.eval_seed, args.eval_episodes), "experts")
    cells = [parse_cell(c) for c in args.cells]
    humans = [load_demos(d) for d in args.human_demos]
    config = TrainConfig(n_epochs=args.epochs, batch_size=args.batch_size, seed=args.train_seed)
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
            path = out / "runs" / f"{expert.replace('/', '_').replace(':', '_')}@{scenario.name}"
            save_clone(path, train_bc(demos, config), demos=demos, demos_path="(in memory)", config=config)
            clone = PolicySpec("clone", str(path), name=f"clone:{final_path(path)}")
            specs = ([PolicySpec("expert", expert)] if human is None else []) + [clone]
            ev = evaluate(scenario, specs, n_episodes=args.eval_episodes, seed=args.eval_seed, pool=pool, progress=True)
            episodes.append(ev.episodes.assign(**cell))
            by_policy = {p: g for p, g in ev.episodes.groupby("policy")}
            row: dict[str, Any] = {
                **cell,
                "n_transitions": demos.n_transitions,
                "n_demo_episodes": len(demos.trajectories),
            }
            for role, spec in zip(("expert", "clone") if human is None else ("clone",), specs):
                ep = by_policy[spec.label]
                for m in ("return", "crashed", "mean_speed_mps"):
                    row.update(_ci(ep[m].to_numpy(), f"{role}_{m}"))
            if human is None:
                ms = decision_ms(scenario, expert, list(range(TUNING_SEED, TUNING_SEED + args.timing_episodes)))
                row.update(_ci(ms, "expert_ms_per_decision"))
                timing.append(pd.DataFrame({**cell, "ms": ms}))
                ex, cl = by_policy[specs[0].label].set_index("seed"), by_policy[specs[1].label].set_index("seed")
                row.update(_ci((cl["return"] - ex.loc[cl.index, "return"]).to_numpy(), "return_diff"))
            rows.append(row)
        table_ = pd.DataFrame(rows)
        table_.to_csv(out / "cells.csv", index=False)
        pd.concat(episodes, ignore_index=True).to_csv(out / "episodes.csv", index=False)
        if timing:
            pd.concat(timing, ignore_index=True).to_csv(out / "timing.csv", index=False)
        write_json(
            out / "config.json",
            {
                "args": dataclasses.asdict(args),
                "scenarios": scenarios,
                "train": config.to_dict(),
                "seeds": {
                    "demonstrations": "0.. (until n_transitions)",
                    "eval": test_seeds,
                    "timing": {"first": TUNING_SEED, "n_episodes": args.timing_episodes},
                },
                "statistics": "means with 95% percentile-bootstrap CIs over episodes (ms: over decisions), "
                "crash rates with Clopper-Pearson intervals; "
                "return_diff is clone minus expert paired by seed",
                "wall_time_s": round(time.perf_counter() - start, 1),
                "provenance": provenance(),
            },
        )
        _plot(table_, out / "experts.png", args)
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
    """Redraw the figure from ``cells.csv`` and ``config.json`` of an earlier run in ``out``."""
    from testbed.outputs import read_args

    out = pathlib.Path(out)
    args = read_args(out / "config.json", Args)
    _plot(pd.read_csv(out / "cells.csv"), out / "experts.png", args)
    return [out / "experts.png"]


def _plot(cells: pd.DataFrame, path: pathlib.Path, args: Args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def short(expert: str) -> str:  # sb3:.../highway-fast-dqn/model.zip -> sb3 dqn
        return f"sb3 {pathlib.Path(expert[4:]).parent.name.rsplit('-', 1)[-1]}" if expert.startswith("sb3:") else expert

    labels = [
        short(e) + "\n" + s.replace("-continuous", "-\ncontinuous") for e, s in zip(cells["expert"], cells["scenario"])
    ]
    x = np.arange(len(cells))
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.4 * len(cells) + 3), 4.2))
    for ax, metric, name in zip(axes, ("return", "crashed"), ("return", "crash rate")):
        for k, (role, offset) in enumerate((("expert", -0.2), ("clone", 0.2))):
            col = f"{role}_{metric}"
            if col not in cells:
                continue
            v = cells[col].to_numpy(dtype=float)
            err = np.vstack([v - cells[f"{col}_ci_low"], cells[f"{col}_ci_high"] - v])
            ax.bar(x + offset, v, width=0.4, yerr=err, capsize=3, label=role, color=f"C{k}")
        ax.set_xticks(x, labels, fontsize=7)
        ax.set_ylabel(name)
        ax.grid(axis="y", alpha=0.3)
        ax.legend()
    fig.suptitle(
        f"Experts and their BC clones ({args.n_transitions} demonstration transitions each; "
        f"{args.eval_episodes} test seeds; 95% CIs)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main(tyro.cli(Args))
