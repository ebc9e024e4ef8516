"""Expert quality bar: the teachers (and always-IDLE for scale) on sealed test seeds.

Every case (scenario, and dense traffic as a stress case) drives the scripted expert's two rule
sets (``scripted``, the rules fixed on tuning seeds, which teach every other committed result,
and ``scripted-v1``, the original rules) and always-IDLE on the same 500 test seeds, and the
planner (about 50 ms per decision) on the first 100 of them. Each teacher's cost per decision
is timed on tuning seeds in this process.

Writes results/expert_quality/: episodes.csv, summary.csv (means with 95% bootstrap CIs per
case and policy; return_diff is paired by seed against the first expert), timing.csv,
config.json (full scenario configs, seeds, provenance) and expert_quality.png.

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
from testbed.experts.timing import decision_ms
from testbed.metrics import mean_ci
from testbed.outputs import atomic_output_dir
from testbed.policies import PolicySpec
from testbed.rollout import RolloutPool
from testbed.scenarios import get_scenario, parse_overrides
from testbed.seeds import TEST_SEED, TUNING, check_test_seeds, episode_seeds

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

    experts: tuple[str, ...] = ("scripted", "scripted-v1")
    """Experts measured on every test seed of every case; the first is the reference of the
    paired ``return_diff``."""
    episodes: int = 500
    """Test episodes per case."""
    planner_episodes: int = 100
    """Test episodes per case for the planner (the first of the same seeds; 0 leaves it out)."""
    timing_episodes: int = 3
    """Episodes (tuning seeds) per case and teacher over which the cost per decision is timed."""
    seed: int = TEST_SEED
    """First seed, in the sealed test range (testbed.seeds)."""
    out: str = "results/expert_quality"
    """Output directory."""
    overwrite: bool = True
    """Replace an existing output directory."""

    def resolved(self) -> Args:
        """The fast preset: 4 episodes per case."""
        return kit.fast_preset(self, episodes=4, planner_episodes=2, timing_episodes=1)


def main(args: Args) -> pd.DataFrame:
    args = args.resolved()
    test_seeds = check_test_seeds(episode_seeds(args.seed, args.episodes), "expert_quality")
    episodes, summaries, timing, scenarios = [], [], [], {}
    start = time.perf_counter()
    experts = [PolicySpec("expert", e) for e in args.experts]
    planner = PolicySpec("expert", "planner")
    idle = PolicySpec.parse("idle")
    with RolloutPool(args.workers) as pool:
        for label, name, overrides in CASES:
            scenario = get_scenario(name, parse_overrides(overrides))
            scenarios[label] = scenario.to_dict()
            evs = [evaluate(scenario, [*experts, idle], n_episodes=args.episodes, seed=args.seed, pool=pool)]
            if args.planner_episodes:  # on the first of the same seeds, paired with the first expert
                n = min(args.planner_episodes, args.episodes)
                evs.append(evaluate(scenario, [experts[0], planner], n_episodes=n, seed=args.seed, pool=pool))
            for ev, keep in zip(evs, (None, planner.label)):
                rows = ev.summary if keep is None else ev.summary[ev.summary["policy"] == keep]
                runs = ev.episodes if keep is None else ev.episodes[ev.episodes["policy"] == keep]
                summaries.append(rows.assign(case=label))
                episodes.append(runs.assign(case=label))
            for spec in [*experts, planner] if args.planner_episodes else experts:
                ms = decision_ms(scenario, spec.arg, TUNING.seeds(args.timing_episodes))
                timing.append(pd.DataFrame({"case": label, "policy": spec.label, "ms": ms}))
    summary = pd.concat(summaries, ignore_index=True)
    timing_table = pd.concat(timing, ignore_index=True)
    per_decision = [
        {"case": c, "policy": p, **mean_ci(g["ms"].to_numpy()).columns("ms_per_decision")}
        for (c, p), g in timing_table.groupby(["case", "policy"], sort=False)
    ]
    summary = summary.merge(pd.DataFrame(per_decision), on=["case", "policy"], how="left")
    record = kit.experiment_record(
        args,
        cases=[{"case": c, "scenario": scenarios[c]} for c, _, _ in CASES],
        seeds={
            "first": args.seed,
            "n_episodes": args.episodes,
            **test_seeds,
            "planner": {"first": args.seed, "n_episodes": min(args.planner_episodes, args.episodes)},
            "timing": TUNING.record(TUNING.seeds(args.timing_episodes)),
        },
        statistics="means with 95% percentile-bootstrap CIs over episodes (ms per decision: over decisions); "
        "crash rates: Clopper-Pearson; return_diff: against the first expert, paired by seed",
        wall_time_s=round(time.perf_counter() - start, 1),
    )
    with atomic_output_dir(args.out, overwrite=args.overwrite) as tmp:
        tables = {"episodes": pd.concat(episodes, ignore_index=True), "summary": summary, "timing": timing_table}
        kit.write_results(tmp, tables, record)
        _plot(summary, tmp / "expert_quality.png", record["seeds"])
    print(_table(summary))
    return summary


def replot(out: str | pathlib.Path) -> list[pathlib.Path]:
    """Redraw the figure from the CSV and config an earlier run wrote into ``out``."""
    from testbed.outputs import read_json

    out = pathlib.Path(out)
    seeds = read_json(out / "config.json", what="experiment config")["seeds"]
    _plot(pd.read_csv(out / "summary.csv"), out / "expert_quality.png", seeds)
    return [out / "expert_quality.png"]


def _table(summary: pd.DataFrame) -> str:
    from testbed.metrics import Interval

    lines = ["| case | policy | return | crash rate | speed [m/s] | ms/decision |", "|---|---|---|---|---|---|"]
    for _, r in summary.iterrows():
        metrics = ("return", "crashed", "mean_speed_mps", "ms_per_decision")
        cells = [Interval.from_columns(r, m).format(2) if pd.notna(r.get(m)) else "n/a" for m in metrics]
        lines.append(f"| {r['case']} | {r['policy']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _plot(summary: pd.DataFrame, path: pathlib.Path, seeds: dict) -> None:
    from testbed.plotting import plot_summary

    fig = plot_summary(
        summary.assign(policy=summary["case"] + "\n" + summary["policy"]),
        title=f"Teachers vs always-IDLE, 95% CIs over {seeds['n_episodes']} test seeds "
        f"(planner: the first {seeds['planner']['n_episodes']})",
    )
    fig.set_size_inches(12, 4.5)
    kit.save_figure(fig, path)


if __name__ == "__main__":
    kit.run_script(main, Args)
