"""Our leaderboard: every shipped expert, the committed clones and the baselines on the
standard suite (the same code path as ``testbed benchmark``).

Writes results/leaderboard/: leaderboard.md, leaderboard.csv, scenarios.csv, episodes.csv,
config.json, leaderboard.png (normalized score per policy with 95% CIs), and the aggregates over
scenarios and seeds: aggregate.csv (IQM, mean, median), profiles.csv, improvement.csv and
aggregate.png (IQM and performance profiles with stratified-bootstrap CIs).

    python experiments/leaderboard.py           # wall time: results/reproduce.json
                                                # (it reuses earlier steps' episodes)
    python experiments/leaderboard.py --fast    # tiny, used by the tests
"""

from __future__ import annotations

import dataclasses
import pathlib
import time

import pandas as pd
import tyro

from testbed.leaderboard import format_markdown, run_benchmark, suite_scenarios, write_leaderboard
from testbed.outputs import atomic_output_dir
from testbed.policies import PolicySpec
from testbed.rollout import RolloutPool
from testbed.runtime import default_workers
from testbed.scenarios import parse_overrides
from testbed.seeds import TEST_SEED, check_test_seeds, episode_seeds

POLICIES: tuple[str, ...] = (
    "expert:planner",
    "expert:sb3:{results}/rl_expert/highway-fast-dqn/model.zip",
    "clone:{results}/pipeline/highway-fast/clone",
    "idle",
)
"""Ranked besides the references (random and expert:scripted, always added)."""


@dataclasses.dataclass
class Args:
    """Benchmark our experts, clones and baselines on the standard suite."""

    policies: tuple[str, ...] = POLICIES
    """Policy specs to rank (random and the reference expert are added)."""
    suite: str = "standard"
    """Scenario suite."""
    scenarios: tuple[str, ...] = ()
    """Only these scenarios of the suite (default: all)."""
    episodes: int = 30
    """Evaluation episodes per policy and scenario (sealed test seeds from ``eval_seed``)."""
    eval_seed: int = TEST_SEED
    """First evaluation seed (in the sealed test range, :data:`testbed.seeds.TEST`)."""
    expert: str = "scripted"
    """Reference expert (normalized score 1)."""
    set: tuple[str, ...] = ()
    """Config overrides applied to every scenario (quick runs only)."""
    workers: int = dataclasses.field(default_factory=default_workers)
    """Worker processes."""
    out: str = "results/leaderboard"
    results: str = "results"
    """Root of the upstream results this step reads ({results} in the specs above); `testbed reproduce`
    passes its --out-root, so a rebuild elsewhere never mixes in the committed artefacts."""
    """Output directory (replaced)."""
    fast: bool = False
    """Tiny preset for tests: highway-fast only, 2 episodes of 5 s, policies that need no trained files."""

    def resolved(self) -> Args:
        if self.fast:
            return dataclasses.replace(
                self, policies=("idle",), scenarios=("highway-fast",), episodes=2, set=("duration=5",)
            )
        return dataclasses.replace(self, policies=tuple(p.replace("{results}", self.results) for p in self.policies))


def main(args: Args) -> pd.DataFrame:
    args = args.resolved()
    start = time.perf_counter()
    test_seeds = check_test_seeds(episode_seeds(args.eval_seed, args.episodes), "leaderboard")
    specs = [PolicySpec.parse(p) for p in args.policies]
    with RolloutPool(args.workers) as pool:
        board = run_benchmark(
            suite_scenarios(args.suite, args.scenarios),
            specs,
            n_episodes=args.episodes,
            expert=args.expert,
            overrides=parse_overrides(args.set),
            pool=pool,
            suite=args.suite,
            first_seed=args.eval_seed,
            progress=True,
        )
    board.config["args"] = dataclasses.asdict(args)
    board.config["seeds"]["test"] = test_seeds
    board.config["wall_time_s"] = round(time.perf_counter() - start, 1)
    with atomic_output_dir(args.out, overwrite=True) as out:
        write_leaderboard(board, out)
        _plot(board.ranking, out / "leaderboard.png", args)
        if board.aggregates is not None:
            _plot_aggregates(board.aggregates.scores, board.aggregates.profiles, board.ranking, out, args)
    print(format_markdown(board).split("\n\n## ")[0])
    return board.ranking


def replot(out: str | pathlib.Path) -> list[pathlib.Path]:
    """Redraw the figures from the CSVs and ``config.json`` of an earlier run in ``out``."""
    from testbed.outputs import read_args

    out = pathlib.Path(out)
    args = read_args(out / "config.json", Args)
    ranking = pd.read_csv(out / "leaderboard.csv")
    _plot(ranking, out / "leaderboard.png", args)
    if not (out / "aggregate.csv").is_file():
        return [out / "leaderboard.png"]
    _plot_aggregates(pd.read_csv(out / "aggregate.csv"), pd.read_csv(out / "profiles.csv"), ranking, out, args)
    return [out / "leaderboard.png", out / "aggregate.png"]


def _plot_aggregates(
    scores: pd.DataFrame, profiles: pd.DataFrame, ranking: pd.DataFrame, out: pathlib.Path, args: Args
):
    import matplotlib.pyplot as plt

    from testbed.plotting import plot_aggregates

    title = f"{args.suite} suite, {args.episodes} seeds per scenario, runs pooled over scenarios"
    fig = plot_aggregates(scores, profiles, order=list(ranking["policy"]), title=title)
    fig.savefig(out / "aggregate.png", dpi=120)
    plt.close(fig)


def _plot(ranking: pd.DataFrame, path: pathlib.Path, args: Args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = ranking.iloc[::-1]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(r) + 1.5))
    v = r["normalized_score"].to_numpy(dtype=float)
    ax.barh(range(len(r)), v, xerr=[v - r["normalized_score_ci_low"], r["normalized_score_ci_high"] - v], capsize=3)
    ax.set_yticks(range(len(r)), [f"{p[-45:]} ({n} sc.)" for p, n in zip(r["policy"], r["n_scenarios"])], fontsize=8)
    ax.axvline(0, color="k", lw=0.8)
    ax.axvline(1, color="k", lw=0.8, ls="--")
    ax.set_xlabel("normalized score: (policy - random) / (expert - random), mean over scenarios")
    ax.set_title(f"Leaderboard, {args.suite} suite, {args.episodes} seeds per scenario (95% CIs)", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main(tyro.cli(Args))
