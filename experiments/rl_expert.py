"""The RL expert: SB3 DQN trained on highway-fast, then measured against the scripted expert.

Trains with highway-env's documented DQN setting (``testbed train-expert`` code path) and
evaluates the model next to ``expert:scripted`` on sealed test seeds. The model is what
``experiments/experts.py`` and ``experiments/leaderboard.py`` serve as
``expert:sb3:results/rl_expert/highway-fast-dqn/model.zip``, so ``testbed reproduce`` runs
this step before them.

Writes results/rl_expert/: ``highway-fast-dqn/`` (model.zip, training_curve.csv,
metadata.json), ``training_bins.csv`` (training return and crash rate per block of
timesteps, with 95% CIs over the block's episodes), ``training_curve.png``, ``eval/``
(episodes.csv, summary.csv/json, summary.png: DQN and scripted expert on the same seeds)
and config.json (arguments, wall times, provenance).

    python experiments/rl_expert.py           # wall time: results/reproduce.json
    python experiments/rl_expert.py --fast    # 300 steps, 2 short episodes, for tests
"""

from __future__ import annotations

import dataclasses
import pathlib

import pandas as pd

from testbed import kit
from testbed.evaluation import evaluate, write_evaluation
from testbed.metrics import episode_ci, format_summary
from testbed.outputs import atomic_output_dir
from testbed.policies import PolicySpec
from testbed.rl import RLConfig, save_expert, train_expert
from testbed.rollout import RolloutPool
from testbed.scenarios import get_scenario, parse_overrides
from testbed.seeds import RL, TEST_SEED, check_test_seeds, episode_seeds

MODEL_DIR = "highway-fast-dqn"
"""Run directory of the model inside the output directory."""


@dataclasses.dataclass
class Args(kit.StepArgs):
    """Train the DQN expert on highway-fast and evaluate it beside the scripted expert."""

    timesteps: int = 6000
    """DQN environment steps (decisions). highway-env's example trains for 20000; 6000 keeps
    the full reproduce within its hour on 2 cores."""
    seed: int = 0
    """Seed of the algorithm and of the first training episode (episode k: env seed k)."""
    bin_timesteps: int = 1000
    """Width of the blocks of ``training_bins.csv`` [environment steps]."""
    eval_episodes: int = 100
    """Held-out evaluation episodes."""
    eval_seed: int = TEST_SEED
    """First evaluation seed, in the sealed test range (training uses the RL range)."""
    set: tuple[str, ...] = ()
    """Scenario config overrides KEY=VALUE (quick runs only)."""
    out: str = "results/rl_expert"
    """Output directory (replaced)."""

    def resolved(self) -> Args:
        """The fast preset: 300 steps of 5 s episodes, 2 evaluation episodes."""
        return kit.fast_preset(self, timesteps=300, bin_timesteps=100, eval_episodes=2, set=("duration=5",))


def training_bins(curve: pd.DataFrame, width: int) -> pd.DataFrame:
    """Training episodes grouped by the block of ``width`` timesteps they ended in: mean
    return (95% bootstrap CI) and crash rate (Clopper-Pearson) over the block's episodes."""
    rows = []
    for block, group in curve.groupby(((curve["timesteps"] - 1) // width).astype(int)):
        row = {"timesteps_from": int(block) * width, "timesteps_to": (int(block) + 1) * width, "n_episodes": len(group)}
        for column in ("return", "crashed"):
            ci = episode_ci(column, group[column].to_numpy(dtype=float))
            row.update(ci.columns(column))
        rows.append(row)
    return pd.DataFrame(rows)


def main(args: Args) -> pd.DataFrame:
    args = args.resolved()
    scenario = get_scenario("highway-fast", parse_overrides(args.set))
    config = RLConfig(algo="dqn", n_timesteps=args.timesteps, seed=args.seed)
    config.validate()
    test_seeds = check_test_seeds(episode_seeds(args.eval_seed, args.eval_episodes), "rl_expert")
    times: dict[str, float] = {}
    with atomic_output_dir(args.out, overwrite=True) as tmp:
        with kit.timed(times, "train_s"):
            result = train_expert(scenario, config, progress=True)
            save_expert(tmp / MODEL_DIR, result, scenario=scenario, config=config)
        bins = training_bins(result.curve, args.bin_timesteps)

        with kit.timed(times, "evaluate_s"), RolloutPool(args.workers) as pool:
            # The model is evaluated where it will live, so its spec names the final path.
            final = pathlib.Path(args.out) / MODEL_DIR / "model.zip"
            specs = [
                PolicySpec.parse("expert:scripted"),
                PolicySpec.parse(f"expert:sb3:{tmp / MODEL_DIR / 'model.zip'}"),
            ]
            ev = evaluate(scenario, specs, n_episodes=args.eval_episodes, seed=args.eval_seed, pool=pool, progress=True)
            rename = {specs[1].label: f"expert:sb3:{final}"}
            ev.episodes = ev.episodes.replace({"policy": rename})
            ev.summary = ev.summary.replace({"policy": rename})
            ev.config["policies"][1]["spec"] = rename[specs[1].label]
            write_evaluation(ev, tmp / "eval")

        record = kit.experiment_record(
            args,
            rl_config=dataclasses.asdict(config),
            hyperparameters=config.hyperparameters(),
            scenario=scenario.to_dict(),
            seeds={
                "train_episodes": f"episode k uses env seed {RL.first} + {args.seed} + k (the RL range)",
                "eval": {"first": args.eval_seed, "n_episodes": args.eval_episodes, **test_seeds},
            },
            statistics="means with 95% percentile-bootstrap CIs and crash rates with exact Clopper-Pearson "
            "intervals, over episodes (training blocks: over the block's training episodes, with exploration)",
            wall_time_s={k: round(v, 1) for k, v in times.items()},
        )
        kit.write_results(tmp, {"training_bins": bins}, record)
        _plot(tmp)
    print(f"DQN {args.timesteps} steps ({len(result.curve)} training episodes) in {times['train_s']:.0f} s")
    print(format_summary(ev.summary))
    return ev.summary


def replot(out: str | pathlib.Path) -> list[pathlib.Path]:
    """Redraw both figures from the CSVs an earlier run wrote into ``out``."""
    return _plot(pathlib.Path(out))


def _plot(out: pathlib.Path) -> list[pathlib.Path]:
    from testbed.outputs import read_json
    from testbed.pipeline import save_summary_plot
    from testbed.plotting import plot_binned_curve

    args = read_json(out / "config.json", what="experiment config")["args"]
    fig = plot_binned_curve(
        pd.read_csv(out / "training_bins.csv"),
        metrics=(("return", "training episode return"), ("crashed", "training crash rate")),
        title=f"DQN on highway-fast, seed {args['seed']}: training episodes (with exploration) per "
        f"{args['bin_timesteps']} steps, mean with 95% CI",
    )
    kit.save_laid_out_figure(fig, out / "training_curve.png")
    save_summary_plot(pd.read_csv(out / "eval" / "summary.csv"), out / "eval" / "summary.png", "highway-fast")
    return [out / "training_curve.png", out / "eval" / "summary.png"]


if __name__ == "__main__":
    kit.run_script(main, Args)
