"""Our leaderboard: every shipped expert, BC clones of the scripted expert and the baselines on
the standard suite (the same code path as ``testbed benchmark``).

The clones are one row: the quick pipeline's clone is training seed 0, and every other training
seed repeats its recorded recipe (the same scenario, expert, number of demonstrations and BC
hyperparameters) on its own block of demonstration seeds with its own initialisation
(:mod:`testbed.kit.seeded`); the row is the mean over the clones, with intervals over training and
evaluation seeds (:class:`testbed.leaderboard.CloneGroup`), and clones.csv ranks each clone alone.

Writes results/leaderboard/: leaderboard.md, leaderboard.csv, scenarios.csv, episodes.csv,
clones.csv, config.json, leaderboard.png (normalized score per policy with 95% CIs), the clones
it trained (clones/seed*/), and the aggregates over scenarios and seeds: aggregate.csv (IQM, mean,
median), profiles.csv, improvement.csv and aggregate.png (IQM and performance profiles with
stratified-bootstrap CIs).

    python experiments/leaderboard.py           # wall time: results/reproduce.json
                                                # (it reuses earlier steps' episodes)
    python experiments/leaderboard.py --fast    # tiny, used by the tests
"""

from __future__ import annotations

import dataclasses
import pathlib
import time

import pandas as pd

from testbed import kit
from testbed.leaderboard import CloneGroup, format_markdown, run_benchmark, suite_scenarios, write_leaderboard
from testbed.outputs import atomic_output_dir
from testbed.policies import PolicySpec
from testbed.rollout import RolloutPool
from testbed.scenarios import parse_overrides
from testbed.seeds import TEST_SEED, check_test_seeds, episode_seeds

POLICIES: tuple[str, ...] = (
    "expert:planner",
    "expert:sb3:{results}/rl_expert/highway-fast-dqn/model.zip",
    "idle",
)
"""Ranked besides the references (random and expert:scripted, always added) and the clones;
``{results}``: the upstream results root (:attr:`testbed.kit.UpstreamArgs.results`)."""

CLONE = "{results}/pipeline/highway-fast/clone"
"""Training seed 0's clone: the quick pipeline's."""


@dataclasses.dataclass
class Args(kit.UpstreamArgs, kit.SeedsArgs):
    """Benchmark our experts, clones and baselines on the standard suite."""

    policies: tuple[str, ...] = POLICIES
    """Policy specs to rank (random and the reference expert are added)."""
    clone: str = CLONE
    """Training seed 0's BC clone (demonstrations from seed 0, initialisation seed 0), whose
    recorded recipe every other of ``train_seeds`` repeats; the clones are one row, their mean.
    Empty: no clones."""
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
    out: str = "results/leaderboard"
    """Output directory (replaced)."""

    def resolved(self) -> Args:
        """The fast preset (highway-fast only, 2 episodes of 5 s, policies that need no trained
        files, 2 training seeds of a clone given explicitly: the default one's recipe is full
        size), else the policies and the clone with the upstream results root filled in."""
        if self.fast:
            return dataclasses.replace(
                self,
                policies=("idle",),
                scenarios=("highway-fast",),
                episodes=2,
                set=("duration=5",),
                clone="" if self.clone == CLONE else self.clone,
                train_seeds=(0, 1),
            )
        policies = tuple(kit.upstream(p, self.results) for p in self.policies)
        return dataclasses.replace(self, policies=policies, clone=kit.upstream(self.clone, self.results))


def main(args: Args) -> pd.DataFrame:
    args = args.resolved()
    start = time.perf_counter()
    test_seeds = check_test_seeds(episode_seeds(args.eval_seed, args.episodes), "leaderboard")
    specs = [PolicySpec.parse(p) for p in args.policies]
    with atomic_output_dir(args.out, overwrite=True) as out, RolloutPool(args.workers) as pool:
        recipe = kit.clone_recipe(args.clone) if args.clone else None
        groups = [clone_group(args, recipe, out / "clones", pool)] if recipe else []
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
            groups=groups,
        )
        board.config["args"] = dataclasses.asdict(args)
        board.config["seeds"]["test"] = test_seeds
        if recipe:
            board.config["seeds"]["clone_demonstrations"] = kit.seeds_record(args.train_seeds, recipe.n_episodes)
        board.config["wall_time_s"] = round(time.perf_counter() - start, 1)
        write_leaderboard(board, out)
        _plot(board.ranking, out / "leaderboard.png", args)
        if board.aggregates is not None:
            _plot_aggregates(board.aggregates.scores, board.aggregates.profiles, board.ranking, out, args)
    print(format_markdown(board).split("\n\n## ")[0])
    return board.ranking


def clone_group(args: Args, recipe: kit.Recipe, directory: pathlib.Path, pool: RolloutPool) -> CloneGroup:
    """The clones of ``args.train_seeds``: training seed 0's is ``args.clone`` itself, every other
    one repeats its ``recipe`` (trained into ``directory``, in ``args.workers`` processes)."""
    kit.check_train_seeds(args.train_seeds, recipe.n_episodes)
    others = [s for s in args.train_seeds if s != 0]
    jobs = (
        kit.seeded_demos(
            directory,
            recipe.scenario,
            recipe.expert,
            others,
            n_episodes=recipe.n_episodes,
            config=recipe.config,
            pool=pool,
        )
        if others
        else []
    )
    trained = {c.train_seed: c.spec for c in kit.train_seeded(jobs, workers=args.workers)}
    first = PolicySpec("clone", args.clone)
    members = tuple(first if s == 0 else trained[s] for s in args.train_seeds)
    seeds = ",".join(map(str, args.train_seeds))
    return CloneGroup(f"{first.label} (train seeds {seeds})", members, tuple(args.train_seeds))


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
) -> None:
    from testbed.plotting import plot_aggregates

    title = f"{args.suite} suite, {args.episodes} seeds per scenario, runs pooled over scenarios"
    fig = plot_aggregates(scores, profiles, order=list(ranking["policy"]), title=title)
    kit.save_laid_out_figure(fig, out / "aggregate.png")


def _plot(ranking: pd.DataFrame, path: pathlib.Path, args: Args) -> None:
    from testbed.plotting import plot_leaderboard

    title = f"Leaderboard, {args.suite} suite, {args.episodes} seeds per scenario (95% CIs)"
    kit.save_laid_out_figure(plot_leaderboard(ranking, title=title), path)


if __name__ == "__main__":
    kit.run_script(main, Args)
