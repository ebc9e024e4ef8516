"""Expert recoverability: can the expert recover from the clone's own states? (issue 24)

DAgger labels the states the learner visits with the expert's actions. Those labels can teach
recovery only if the expert itself recovers from such states (Spencer et al. 2021, "Feedback
in imitation learning: the three regimes of covariate shift"). This script measures it:

1. Clones: BC clones of the ``expert`` at ``labels`` training labels, one per training seed
   (the recipe of compounding_error: every label trained on, 100 epochs, batch 64), each from
   its own block of demonstration seeds (``DEMOS`` from ``demo_offset``, ``DEMO_BLOCK`` per seed).
2. Handover: on ``episodes`` sealed test seeds (one block from ``test_offset``) and for every
   handover time t, the scenario runs t + ``window`` decisions; each clone drives the first t
   and a takeover expert (``scripted``, ``planner``) the rest (the spec
   ``handover:t:CLONE->expert:NAME``, :class:`testbed.policies.HandoverAgent`).
3. References on the same seeds and scenario: the takeover expert driving from decision 0
   ("expert-own", its own states) and the clone driving on ("clone-keeps").
4. Measures over the window [t, t + window): crash rate and return (reward sum). An episode
   that crashed before t has no window (for a handover: the clone crashed, the expert never
   took over): it is counted (``n_excluded``) and the rates are conditional on the rest.
   Rows of clones (handover, clone-keeps) average per-clone conditional means with
   variance-components intervals over training and test seeds; differences to expert-own are
   paired by seed, over the seeds where both reached t.

Outputs under results/recoverability/: recoverability.csv (takeover x t x group),
episodes.csv (one row per episode), recoverability.png, config.json, clones/.

    python experiments/recoverability.py           # wall time: config.json
    python experiments/recoverability.py --fast    # tiny preset, used by the tests
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Any

import numpy as np
import pandas as pd

from testbed import kit
from testbed.collect import collect_transitions
from testbed.drift import pooled_scores
from testbed.errors import TestbedError
from testbed.evaluation import check_held_out
from testbed.metrics import NAN_INTERVAL, Interval, clones_mean_ci, episode_ci, mean_ci, rate_ci
from testbed.outputs import atomic_output_dir, read_args
from testbed.plotting import plot_recoverability
from testbed.policies import PolicySpec
from testbed.rollout import EpisodeRecord, RolloutPool
from testbed.scenarios import Scenario, get_scenario, parse_overrides
from testbed.seeds import DEMOS, TEST, check_test_seeds

GROUPS = ("handover", "expert-own", "clone-keeps")
"""Who drives the window: the takeover expert from the clone's state, the expert on its own
episode, the clone itself."""
DEMO_BLOCK = 150
"""Demonstration seeds per training seed (~100 highway-fast episodes hold 3000 labels)."""
MEASURES = ("crash_rate", "return", "crash_diff", "return_diff")
"""The table's measures per takeover, t and group, each with its 95% interval."""


@dataclasses.dataclass
class Args(kit.StepArgs):
    """Does the expert recover from a BC clone's own states? Handover vs expert-own windows."""

    scenario: str = "highway-fast"
    """Scenario preset (1 decision per second: windows are counted in decisions)."""
    set: tuple[str, ...] = ()
    """Scenario config overrides KEY=VALUE (``duration`` is set per handover time)."""
    expert: str = "scripted"
    """Expert the clones imitate."""
    takeovers: tuple[str, ...] = ("scripted", "planner")
    """Experts that take over (planner: ~25 ms of CPU per decision, scripted ~1 ms)."""
    labels: int = 3_000
    """Training labels per clone (every one trained on)."""
    train_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    """One clone per training seed (own demonstrations and initialisation)."""
    epochs: int = 100
    """BC epochs."""
    batch_size: int = 64
    """BC batch size."""
    handover_times: tuple[int, ...] = (5, 10, 20)
    """Decisions the clone drives before the handover (t)."""
    window: int = 20
    """Decisions the window [t, t + window) lasts; the episode ends with it."""
    episodes: int = 50
    """Sealed test seeds, the same for every clone, t and takeover expert."""
    test_offset: int = 700_000
    """Offset of this experiment's block in the sealed test range (other experiments use others)."""
    demo_offset: int = 4_100
    """Offset of the demonstration seeds (training seed s: ``demo_offset + s * DEMO_BLOCK``)."""
    out: str = "results/recoverability"
    """Output directory (replaced)."""

    def resolved(self) -> Args:
        return kit.fast_preset(
            self, labels=60, train_seeds=(0, 1), epochs=3, batch_size=16, handover_times=(2, 4), window=3, episodes=3
        )

    def validate(self) -> None:
        """Raise :class:`TestbedError` on nonsense values."""
        kit.check_at_least_one(self, "labels", "epochs", "batch_size", "window", "episodes")
        kit.check_distinct_positive(self, "handover_times")
        if len(self.train_seeds) < 2 or min(self.train_seeds) < 0 or len(set(self.train_seeds)) < len(self.train_seeds):
            raise TestbedError(f"--train-seeds: need >= 2 distinct non-negative seeds, got {list(self.train_seeds)}")
        if not self.takeovers or len(set(self.takeovers)) < len(self.takeovers):
            raise TestbedError(f"--takeovers must be distinct expert names, got {list(self.takeovers)}")
        DEMOS.seeds(DEMO_BLOCK, offset=self.demo_offset + max(self.train_seeds) * DEMO_BLOCK)
        TEST.seeds(self.episodes, offset=self.test_offset)


def window_row(record: EpisodeRecord, t: int, window: int) -> dict[str, Any]:
    """The window [t, t + window) of one episode: ``reached_t`` (no crash in the first t
    decisions: for a handover, the expert took over), ``window_steps``, ``window_crashed``
    (a crash inside the window only) and ``window_return`` (reward sum over it)."""
    crashed = np.array([bool(i["crashed"]) for i in record.infos])
    reached = len(crashed) > t and not crashed[:t].any()
    rews = np.asarray(record.trajectory.rews, dtype=np.float64)
    return {
        "seed": record.seed,
        "length": len(crashed),
        "reached_t": reached,
        "window_steps": len(crashed[t : t + window]) if reached else 0,
        "window_crashed": bool(reached and crashed[t : t + window].any()),
        "window_return": float(rews[t : t + window].sum()) if reached else 0.0,
    }


def handover_scenario(args: Args, t: int) -> Scenario:
    """The scenario of ``args`` ending after t + window decisions."""
    overrides = parse_overrides(args.set)
    frequency = get_scenario(args.scenario, overrides).policy_frequency_hz
    return get_scenario(args.scenario, {**overrides, "duration": (t + args.window) / frequency})


def conditional_ci(
    values: np.ndarray, mask: np.ndarray, *, rate: bool, bound: float | None = None
) -> tuple[Interval, int]:
    """Mean over clones (rows) of each clone's mean over its ``mask``-ed test seeds (columns),
    and the clones with any: variance components over the linearised per-episode scores
    (:func:`testbed.drift.pooled_scores`, :func:`testbed.metrics.clones_mean_ci`); a ``rate``
    is widened to the hull with the pooled Clopper-Pearson interval (as ``clones_rate_ci``);
    ``bound``: an interval clipped to [-bound, bound] (a difference of rates)."""
    keep = mask.sum(axis=1) > 0
    y, m = np.where(mask, values, 0.0)[keep], mask[keep].astype(float)
    if not len(y):
        return NAN_INTERVAL, 0
    if len(y) == 1:
        x = y[0][m[0] > 0]
        return (episode_ci("crashed", x) if rate else mean_ci(x)), 1
    ci = clones_mean_ci(pooled_scores(y, m))
    if bound is not None:  # a difference of rates
        ci = Interval(ci.mean, max(-bound, ci.low), min(bound, ci.high))
    if rate:
        pooled = rate_ci(int(y.sum()), int(m.sum()))
        ci = Interval(ci.mean, max(0.0, min(ci.low, pooled.low)), min(1.0, max(ci.high, pooled.high)))
    return ci, len(y)


def summary_rows(episodes: pd.DataFrame, seeds: list[int]) -> list[dict[str, Any]]:
    """One row per (takeover, t, group): window crash rate and return, and their differences to
    expert-own paired by seed (0 for expert-own itself)."""
    rows = []
    for (takeover, t), own in episodes[episodes["group"] == "expert-own"].groupby(["takeover", "t"], sort=False):
        own = own.set_index("seed").loc[seeds]
        own_reached = own["reached_t"].to_numpy(bool)[None, :]
        for group in GROUPS:
            if group == "expert-own":
                frame = own.reset_index().assign(train_seed=-1)
            else:
                who = takeover if group == "handover" else "none"
                frame = episodes[(episodes["group"] == group) & (episodes["takeover"] == who) & (episodes["t"] == t)]

            def table(col: str, frame: pd.DataFrame = frame) -> np.ndarray:
                wide = frame.pivot(index="train_seed", columns="seed", values=col).sort_index()
                return wide[seeds].to_numpy(float)

            reached, crashed, ret = table("reached_t") > 0, table("window_crashed"), table("window_return")
            both = reached & own_reached
            crash, n_clones = conditional_ci(crashed, reached, rate=True)
            own_crashed, own_return = own["window_crashed"].to_numpy(float), own["window_return"].to_numpy(float)
            columns = {
                **crash.columns("crash_rate"),
                **conditional_ci(ret, reached, rate=False)[0].columns("return"),
                **conditional_ci(crashed - own_crashed, both, rate=False, bound=1.0)[0].columns("crash_diff"),
                **conditional_ci(ret - own_return, both, rate=False)[0].columns("return_diff"),
            }
            rows.append(
                {
                    "takeover": takeover,
                    "t": int(t),
                    "group": group,
                    "n_clones": n_clones if group != "expert-own" else 0,
                    "n_episodes": reached.size,
                    "n_excluded": int((~reached).sum()),
                    "n_paired": int(both.sum()),
                    **columns,
                }
            )
    return rows


def main(args: Args) -> pd.DataFrame:
    from testbed.training import save_clone

    args = args.resolved()
    args.validate()
    start = time.perf_counter()
    scenario = get_scenario(args.scenario, parse_overrides(args.set))
    seeds = TEST.seeds(args.episodes, offset=args.test_offset)
    test_record = check_test_seeds(seeds, "recoverability")
    takeovers = [PolicySpec.parse(f"expert:{name}") for name in args.takeovers]
    timings: dict[str, float] = {}
    rows: list[dict[str, Any]] = []
    with atomic_output_dir(args.out, overwrite=True) as out, RolloutPool(args.workers) as pool:
        # 1. Clones, each from its own block of demonstration seeds.
        with kit.timed(timings, "clones_s"):
            jobs = {}
            for s in args.train_seeds:
                first = DEMOS.first + args.demo_offset + s * DEMO_BLOCK
                demos = collect_transitions(scenario, args.expert, args.labels, seed=first, pool=pool, progress=True)
                if demos.seeds[-1] >= first + DEMO_BLOCK:
                    raise TestbedError(f"training seed {s} needed demonstration seeds beyond its block of {DEMO_BLOCK}")
                config = kit.every_label_config(s, args.labels, epochs=args.epochs, batch_size=args.batch_size)
                jobs[s] = (demos, config)
            clones = {}
            for s, result in kit.train_clones(jobs, args.workers).items():
                path = save_clone(
                    out / "clones" / f"seed{s}", result, demos=jobs[s][0], demos_path="(in memory)", config=jobs[s][1]
                )
                clones[s] = kit.clone_spec(path)
            check_held_out(list(clones.values()), seeds)

        # 2-3. Per handover time: the clone driving on, each expert on its own, each handover.
        with kit.timed(timings, "rollouts_s"):
            for t in args.handover_times:
                scenario_t = handover_scenario(args, t)
                runs: list[tuple[str, str, int, list[EpisodeRecord]]] = []
                for s, clone in sorted(clones.items()):
                    records = pool.run(scenario_t, clone, seeds, progress=True, desc=f"t={t} clone {s}")
                    runs.append(("clone-keeps", "none", s, records))
                for expert in takeovers:
                    records = pool.run(scenario_t, expert, seeds, progress=True, desc=f"t={t} {expert.label}")
                    runs.append(("expert-own", expert.arg, -1, records))
                    for s, clone in sorted(clones.items()):
                        spec, desc = PolicySpec.handover(clone, t, expert), f"t={t} clone {s}->{expert.arg}"
                        runs.append(
                            ("handover", expert.arg, s, pool.run(scenario_t, spec, seeds, progress=True, desc=desc))
                        )
                for group, takeover, s, records in runs:
                    for r in records:
                        row = window_row(r, t, args.window)
                        rows.append(
                            {"group": group, "takeover": takeover, "t": t, "train_seed": s, "policy": r.policy, **row}
                        )

        episodes = pd.DataFrame(rows)
        table = pd.DataFrame(summary_rows(episodes, seeds))
        kit.write_results(out, {"recoverability": table, "episodes": episodes})
        _plot(out, table, args)
        record = kit.experiment_record(
            args,
            scenario=scenario.to_dict(),
            handover_scenarios={str(t): handover_scenario(args, t).to_dict() for t in args.handover_times},
            train={str(s): jobs[s][1].to_dict() for s in args.train_seeds},
            seeds={
                "test": test_record | {"offset": args.test_offset},
                "demonstrations": {
                    **DEMOS.record(),
                    "rule": f"training seed s: from {DEMOS.first} + {args.demo_offset} + s * {DEMO_BLOCK}",
                    "used": {str(s): [int(jobs[s][0].seeds[0]), int(jobs[s][0].seeds[-1])] for s in args.train_seeds},
                },
            },
            windows="decisions [t, t + window) of an episode of t + window decisions; an episode that crashed "
            "before t has no window (counted in n_excluded, left out of every mean); n_clones: clones with any "
            "window (0 for expert-own, whose train_seed is -1 in episodes.csv); n_paired: the episodes of *_diff",
            statistics="clone rows (handover, clone-keeps): mean over clones of each clone's conditional mean, "
            "variance components over training and test seeds on linearised per-episode scores "
            "(testbed.drift.pooled_scores + testbed.metrics.clones_mean_ci; crash rate: hull with the pooled "
            "Clopper-Pearson interval); expert-own: Clopper-Pearson / bootstrap over episodes; *_diff: minus "
            "expert-own on the same seed, over the seeds where both reached t",
            wall_time_s={k: round(v, 1) for k, v in timings.items()} | {"total": round(time.perf_counter() - start, 1)},
        )
        kit.write_results(out, {}, record)
    kit.print_table(
        table, ["takeover", "t", "group", "n_excluded", "crash_rate", "return", "crash_diff", "return_diff"]
    )
    print(f"total {time.perf_counter() - start:.0f} s -> {args.out}")
    return table


def replot(out: str | pathlib.Path) -> list[pathlib.Path]:
    """Redraw the figure from ``recoverability.csv`` and ``config.json`` of an earlier run in ``out``."""
    out = pathlib.Path(out)
    return _plot(out, pd.read_csv(out / "recoverability.csv"), read_args(out / "config.json", Args))


def _plot(out: pathlib.Path, table: pd.DataFrame, args: Args) -> list[pathlib.Path]:
    title = (
        f"{args.scenario}: can the expert recover from the clone's states? ({len(args.train_seeds)} BC clones at "
        f"{args.labels} labels x {args.episodes} test seeds; 95% CIs; windows conditional on reaching t)"
    )
    fig = plot_recoverability(
        table, takeovers=args.takeovers, handover_times=args.handover_times, window=args.window, title=title
    )
    return [kit.save_figure(fig, out / "recoverability.png")]


if __name__ == "__main__":
    kit.run_script(main, Args)
