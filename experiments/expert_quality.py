"""Expert quality bar: the scripted expert (and always-IDLE for scale) on sealed test seeds.

Writes results/expert_quality/: episodes.csv, summary.csv (means with 95% bootstrap CIs per
scenario and policy), config.json (full scenario configs, seeds, provenance) and
expert_quality.png.

    python experiments/expert_quality.py            # wall time: results/reproduce.json
    python experiments/expert_quality.py --fast     # 4 seeds, for tests
"""

from __future__ import annotations

import dataclasses
import pathlib
import time

import pandas as pd

from testbed import kit
from testbed.evaluation import evaluate
from testbed.outputs import atomic_output_dir
from testbed.policies import PolicySpec
from testbed.rollout import RolloutPool
from testbed.scenarios import get_scenario, parse_overrides
from testbed.seeds import TEST_SEED, check_test_seeds, episode_seeds

CASES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("highway-fast", "highway-fast", ()),
    ("merge", "merge", ()),
    ("roundabout", "roundabout", ()),
    ("highway-fast density 1.5 (stress)", "highway-fast", ("vehicles_density=1.5",)),
)
"""(case label, scenario preset, config overrides)."""


@dataclasses.dataclass
class Args(kit.StepArgs):
    """Evaluate the expert on every shipped scenario plus a dense-traffic stress case."""

    expert: str = "scripted"
    """Expert to measure."""
    episodes: int = 500
    """Test episodes per case."""
    seed: int = TEST_SEED
    """First seed, in the sealed test range (testbed.seeds)."""
    out: str = "results/expert_quality"
    """Output directory."""
    overwrite: bool = True
    """Replace an existing output directory."""

    def resolved(self) -> Args:
        """The fast preset: 4 episodes per case."""
        return kit.fast_preset(self, episodes=4)


def main(args: Args) -> pd.DataFrame:
    args = args.resolved()
    test_seeds = check_test_seeds(episode_seeds(args.seed, args.episodes), "expert_quality")
    episodes, summaries, scenarios = [], [], {}
    start = time.perf_counter()
    specs = [PolicySpec.parse(f"expert:{args.expert}"), PolicySpec.parse("idle")]
    with RolloutPool(args.workers) as pool:
        for label, name, overrides in CASES:
            scenario = get_scenario(name, parse_overrides(overrides))
            scenarios[label] = scenario.to_dict()
            ev = evaluate(scenario, specs, n_episodes=args.episodes, seed=args.seed, pool=pool, progress=True)
            episodes.append(ev.episodes.assign(case=label))
            summaries.append(ev.summary.assign(case=label))
    summary = pd.concat(summaries, ignore_index=True)
    record = kit.experiment_record(
        args,
        cases=[{"case": c, "scenario": scenarios[c]} for c, _, _ in CASES],
        seeds={"first": args.seed, "n_episodes": args.episodes, **test_seeds},
        statistics="means with 95% percentile-bootstrap CIs over episodes; crash rates: Clopper-Pearson",
        wall_time_s=round(time.perf_counter() - start, 1),
    )
    with atomic_output_dir(args.out, overwrite=args.overwrite) as tmp:
        kit.write_results(tmp, {"episodes": pd.concat(episodes, ignore_index=True), "summary": summary}, record)
        _plot(summary, tmp / "expert_quality.png", args.episodes)
    print(_table(summary))
    return summary


def replot(out: str | pathlib.Path) -> list[pathlib.Path]:
    """Redraw the figure from the CSV and config an earlier run wrote into ``out``."""
    from testbed.outputs import read_json

    out = pathlib.Path(out)
    n = read_json(out / "config.json", what="experiment config")["seeds"]["n_episodes"]
    _plot(pd.read_csv(out / "summary.csv"), out / "expert_quality.png", n)
    return [out / "expert_quality.png"]


def _table(summary: pd.DataFrame) -> str:
    from testbed.metrics import Interval

    lines = ["| case | policy | return | crash rate | speed [m/s] |", "|---|---|---|---|---|"]
    for _, r in summary.iterrows():
        cells = [Interval.from_columns(r, m).format(2) for m in ("return", "crashed", "mean_speed_mps")]
        lines.append(f"| {r['case']} | {r['policy']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _plot(summary: pd.DataFrame, path: pathlib.Path, n: int) -> None:
    from testbed.plotting import plot_summary

    fig = plot_summary(
        summary.assign(policy=summary["case"] + "\n" + summary["policy"]),
        title=f"Expert vs always-IDLE, 95% CIs over {n} test seeds",
    )
    fig.set_size_inches(12, 4.5)
    kit.save_figure(fig, path)


if __name__ == "__main__":
    kit.run_script(main, Args)
