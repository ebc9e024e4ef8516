"""Compounding error or a constant hazard? Hazard ratios against time, horizon fits and same-step
errors on stationary traffic, the expert and two controls beside the clones.

With crashes that end the episode, a constant per-step crash probability already loses return
roughly like T^2, so a quadratic cost is no evidence of compounding. This study asks a question
that can fail, in two variants (:mod:`testbed.recovery`): *recoverable* (a collision is charged
and the episode goes on) and, for contrast, *terminating*; both on *stationary traffic* (the
vehicles near the ego held at their count after reset: late steps are driven in as much traffic).

1. **Clones trained on episodes as long as the longest horizon.** Per training seed (>= 5): BC
   on ``budget`` expert labels, DAgger on as many (``training="scratch"``, the last iterate),
   collected on the recoverable variant with ``duration`` = the longest horizon (the expert
   rarely collides: nearly the terminating variant's data; DAgger's learner and the teacher do,
   and drive on, as at test time). Sweep cells, in parallel.
2. **The expert and two controls on the same scenario and seeds**, each one driver with as many
   episodes as a group of clones; the expert's hazard is the reference. *iid errors*: the expert
   applying a uniform random action with probability p = min(1, eps_on K/(K-1)) (K actions; eps_on:
   BC's on-policy disagreement on development episodes, before any test episode): errors as frequent
   as BC's that cannot compound. *Realizable*: BC clones of the first BC clone (argmax teacher).
3. **Cost against horizon**, every horizon T on its own test seeds (never prefixes of longer
   runs): C(T) = steps with a collision. Recoverable: a constant hazard gives C(T) = a T, one
   growing with the time driven b > 0 in a T + b T^2; terminating: C(T) <= 1 saturates (b < 0).
4. **Hazard against t** (:mod:`testbed.hazard`): collisions per (episode, bin), every horizon's
   episodes pooled (a policy does not see T), Poisson regression with offset log(steps) +
   log(mean nearby vehicles), cluster-robust by driver unit (a clone; an expert or iid episode):
   each group's own log-hazard slope per 100 decisions (``h_slope``), and its hazard ratio per
   bin and the ratio's slope (``hr_trend``) to the expert and to the iid control (NaN where the
   reference has events in fewer than two bins: an expert that never collides has no ratio).
5. **Same-step errors**: eps_on(t) (disagreement with the teacher on the policy's own states)
   against eps_off(t) (on the teacher's episode, same seed and step), and the cost-weighted error
   beside the 0/1 one (value_gaps.csv: the planner's value lost by the action applied, every
   ``--value-gap-every`` k-th step of the recoverable variant's longest horizon; 0 turns it off).

Readings. A clone whose hazard rises with t on stationary recoverable traffic (``h_slope``, and
``hr_trend`` to the iid control, above 0), with b > 0 and a growing eps_on(t) - eps_off(t),
compounds; a flat hazard is constant, however large. Realizable: does compounding need
unrealizable labels? Limits: 5 clones a group; iid matches BC's error rate, not its type.

Outputs in results/compounding/: costs, fits (a, b, h_slope), trends, hazard, hazard_ratio, errors,
density, value_gaps, episodes .csv; horizon, hazard, hazard_ratio, value_gap .png; config.json; clones
in sweep/, students/.

    python experiments/compounding.py [--fast]   # wall time: results/reproduce.json; --fast: tiny, tests
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Any

import pandas as pd

from testbed import drift, hazard, kit
from testbed.errors import TestbedError
from testbed.experts import make_expert
from testbed.metrics import clone_table, clones_mean_ci, mean_ci
from testbed.outputs import atomic_output_dir, read_args
from testbed.plotting import (
    plot_hazard_and_shift,
    plot_hazard_ratio_and_density,
    plot_horizon_costs,
    plot_value_gaps,
)
from testbed.policies import PolicySpec
from testbed.rollout import RolloutPool, Scoring
from testbed.scenarios import Scenario, describe_spaces, get_scenario, parse_overrides
from testbed.seeds import DAGGER, DEMOS, DEVELOPMENT, TEST, check_test_seeds

METHODS, GROUPS = ("bc", "dagger"), ("expert", "bc", "dagger", "iid-errors", "realizable")
REFERENCES = ("expert", "iid-errors")  # of the hazard ratios
VALUATION = "planner"  # the expert whose action values price each decision (value_gaps)
CLONE_GROUPS = (*METHODS, "realizable")  # several clones: a driver unit (cluster) is a clone, elsewhere an episode
TRAFFIC = {"near_miss_headway_s": 0.5, "stationary_traffic": True}
VARIANTS = {"terminating": TRAFFIC, "recoverable": {**TRAFFIC, "crash_recovery": True}}
"""Scenario options of the two variants; clones are trained on the recoverable one."""
TEST_OFFSET = 400_000
"""This study's block of the test range: variant v, horizon k use offset + v * 100000 + k * 10000."""
DEMO_OFFSET, STUDENT_OFFSET, DEMO_BLOCK = 4_100, 4_500, 50
"""Seed s's demonstrations: DEMOS.first + DEMO_OFFSET + s * DEMO_BLOCK; its student's from STUDENT_OFFSET."""
DAGGER_OFFSET, DAGGER_BLOCK = 2_500, 100
"""Seed s's DAgger round r: DAGGER.first + DAGGER_OFFSET + s * DAGGER_BLOCK + r (compounding_error's: below 500)."""
MATCH_OFFSET = 6_000
"""The BC clones' eps_on (the iid control's p) is measured on development seeds from this offset."""


@dataclasses.dataclass
class Args(kit.StepArgs):
    """Compounding error vs a constant hazard on stationary traffic: hazard ratios against t,
    horizon fits, same-step errors; BC and DAgger clones trained here on long episodes."""

    scenario: str = "highway-fast"
    """Scenario preset (decides at 1 Hz: a horizon T is T decisions)."""
    set: tuple[str, ...] = ()
    """Scenario config overrides KEY=VALUE (both variants)."""
    expert: str = "scripted"
    """The expert cloned, labelling and driving."""
    budget: int = 3_000
    """Training labels of every clone."""
    train_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    """Training seeds (each: its own demonstrations, DAgger rounds, student and initialisation)."""
    epochs: int = 100
    """BC epochs (DAgger's per round, the students')."""
    batch_size: int = 64
    """Batch size of every clone."""
    dagger_labels_per_round: int = 500
    """DAgger labels per round (rounds: budget / this)."""
    horizons: tuple[int, ...] = (20, 40, 80, 160)
    """Episode horizons T [decisions], each on its own test seeds; clones train on the longest."""
    episodes: int = 30
    """Test episodes per clone, variant and horizon (the expert and the iid control, one driver each,
    drive as many as a group of clones: these seeds and more)."""
    match_episodes: int = 10
    """Development episodes per BC clone measuring eps_on for the iid control."""
    hazard_bin: int = 20
    """Steps per bin of the hazard, hazard-ratio and error curves."""
    value_gap_every: int = 8
    """Score every k-th step with the planner's action values (recoverable, longest T); 0: off."""
    out: str = "results/compounding"
    """Output directory (replaced)."""

    def resolved(self) -> Args:
        return kit.fast_preset(
            self, budget=60, train_seeds=(0, 1), epochs=3, batch_size=16, dagger_labels_per_round=30,
            horizons=(5, 10), episodes=3, match_episodes=2, hazard_bin=5,
        )  # fmt: skip

    def validate(self) -> None:
        """Raise :class:`TestbedError` on nonsense values."""
        if len(set(self.horizons)) < 2 or min(self.horizons) < 1 or max(self.horizons) > 3600:
            raise TestbedError(f"--horizons: need >= 2 distinct horizons in 1..3600, got {self.horizons}")
        kit.check_at_least_one(self, "budget", "epochs", "batch_size", "dagger_labels_per_round", "episodes")
        kit.check_at_least_one(self, "match_episodes", "hazard_bin")
        seeds, top = self.train_seeds, (STUDENT_OFFSET - DEMO_OFFSET) // DEMO_BLOCK
        if len(seeds) < 2 or len(set(seeds)) != len(seeds) or min(seeds) < 0 or max(seeds) >= top:
            raise TestbedError(f"--train-seeds: need >= 2 distinct seeds in 0..{top - 1}, got {seeds}")
        if self.budget % self.dagger_labels_per_round or self.budget // self.dagger_labels_per_round > DAGGER_BLOCK:
            raise TestbedError(f"--dagger-labels-per-round must divide --budget in at most {DAGGER_BLOCK} rounds")
        if self.episodes * len(seeds) > 10_000:
            raise TestbedError("--episodes x training seeds must be at most 10000 (each horizon's seed block)")


@dataclasses.dataclass(frozen=True)
class Context:
    """What every training cell needs (JSON scalars; the sweep's config)."""

    scenario: dict[str, Any]
    expert: str
    budget: int
    epochs: int
    batch_size: int
    dagger_labels_per_round: int
    match_seeds: tuple[int, ...]
    teacher: str = ""  # the realizable students' teacher clone (its path)


def train_cell(ctx: Context, cell: dict[str, Any], cell_dir: pathlib.Path) -> dict[str, Any]:
    """One clone (``bc``, ``dagger`` or a ``realizable`` student) of one training seed, at
    ``cell_dir/clone``; for a BC clone also its on-policy errors on the development match seeds."""
    from testbed.collect import collect_transitions
    from testbed.dagger import DAggerConfig, as_demonstrations, train_dagger
    from testbed.training import TrainResult, save_clone

    scenario, method, s = Scenario.from_dict(ctx.scenario), cell["method"], int(cell["train_seed"])
    path, result = cell_dir / "clone", {"method": method, "train_seed": s, "path": "clone"}
    config = kit.every_label_config(s, ctx.budget, epochs=ctx.epochs, batch_size=ctx.batch_size)
    if method == "dagger":
        per_round, first = ctx.dagger_labels_per_round, DAGGER.first + DAGGER_OFFSET + s * DAGGER_BLOCK
        dagger = DAggerConfig(ctx.budget // per_round, per_round, training="scratch", first_seed=first)
        config = kit.every_label_config(s, per_round, epochs=ctx.epochs, batch_size=ctx.batch_size)
        run = train_dagger(scenario, ctx.expert, config, dagger)
        last, data = TrainResult(run.policy, run.log, [], []), as_demonstrations(run, scenario, ctx.expert)
        extra = {"dagger": dataclasses.asdict(dagger)}
        save_clone(path, last, demos=data, demos_path="(DAgger)", config=config, algorithm="dagger", extra=extra)
        return result
    with RolloutPool(1) as pool:  # the cells are the parallel unit
        if method == "bc":
            first = DEMOS.first + DEMO_OFFSET + s * DEMO_BLOCK
            demos = collect_transitions(scenario, ctx.expert, ctx.budget, seed=first, pool=pool)
            if demos.seeds[-1] >= first + DEMO_BLOCK:
                raise TestbedError(f"BC seed {s} needed demonstration seeds beyond its block of {DEMO_BLOCK}")
        else:  # the teacher clone driving and labelling with its argmax
            first, teacher = DEMOS.first + STUDENT_OFFSET + s * DEMO_BLOCK, PolicySpec("clone", ctx.teacher)
            driver = {"name": "clone:teacher (the first BC clone)", "params": {"acts": "argmax"}}
            demos = kit.driver_demonstrations(
                scenario, teacher, ctx.budget, first_seed=first, n_seeds=DEMO_BLOCK, pool=pool, driver=driver
            )
        kit.train_clone(path, demos, config)
        if method == "bc":  # eps_on on development seeds, for the iid control's p
            labeller = PolicySpec("expert", ctx.expert)
            runs = pool.run(scenario, PolicySpec("clone", str(path)), list(ctx.match_seeds), labeller=labeller)
            errors = [drift.disagreement(r) for r in runs]
            result.update(match_errors=int(sum(e.sum() for e in errors)), match_steps=sum(len(e) for e in errors))
    return result


def summarize(episodes: pd.DataFrame, args: Args) -> dict[str, pd.DataFrame]:
    """costs, fits (with the hazard-ratio trend), hazard, hazard_ratio, errors and density
    tables from the per-episode rows."""
    costs, fits, curves, errors, bins, longest = [], [], [], [], [], max(args.horizons)
    for (variant, group), g in episodes.groupby(["variant", "group"], sort=False):
        # Cost against horizon: a mean over policies and episodes per T, and the fit aT + bT^2.
        per_t = {int(t): clone_table(h, "cost") for t, h in g.groupby("T")}
        for t, table in per_t.items():
            ci = clones_mean_ci(table) if table.shape[0] > 1 else mean_ci(table[0])
            costs.append({"variant": variant, "group": group, "T": t, "n_policies": len(table), **ci.columns("cost")})
        fits.append({"variant": variant, "group": group, **drift.horizon_fit_ci(per_t)})
        # Over time, every horizon's episodes (a policy does not know T): hazard, its ratio, errors.
        key = {"variant": variant, "group": group}
        events = [hazard.steps_from_text(c) for c in g["collision_steps"]]
        curves.append(drift.hazard_curve(events, g["length"].tolist(), bin_steps=args.hazard_bin).assign(**key))
        units = g["train_seed" if group in CLONE_GROUPS else "seed"].astype(str).radd(f"{group}/").tolist()
        bins.append(hazard.episode_bins(g, units, bin_steps=args.hazard_bin).assign(**key))
        if group != "expert":
            on, off = ([drift.errors_from_text(t) for t in g[c]] for c in ("on_errors", "off_errors"))
            clones = g["train_seed"].tolist() if group in CLONE_GROUPS else None  # intervals clustered by clone
            rows = drift.binned_error_rows(on, off, bin_steps=args.hazard_bin, horizon=longest, clones=clones)
            errors += [{**key, **row} for row in rows]
    binned = pd.concat(bins, ignore_index=True)
    models = hazard.hazard_tables(binned, REFERENCES, by="variant")  # to the expert and the iid control
    return {
        "costs": pd.DataFrame(costs),
        "fits": pd.DataFrame(fits).merge(models["slopes"], on=["variant", "group"], how="left"),
        **{"trends": models["trends"], "hazard_ratio": models["ratios"]},
        "hazard": pd.concat(curves, ignore_index=True),
        "errors": pd.DataFrame(errors),
        "density": hazard.density_rows(binned, ["variant", "group"]),
    } | ({"value_gaps": drift.value_gap_table(episodes, bin_steps=args.hazard_bin, horizon=longest,
                                               clone_groups=CLONE_GROUPS)} if args.value_gap_every else {})  # fmt: skip


def main(args: Args) -> dict[str, pd.DataFrame]:
    args = args.resolved()
    args.validate()
    start, timings, longest = time.perf_counter(), dict[str, float](), max(args.horizons)

    def scenario(variant: str, horizon: int) -> Scenario:
        return get_scenario(args.scenario, {**parse_overrides(args.set), **VARIANTS[variant], "duration": horizon})

    train, expert, seeds = scenario("recoverable", longest), PolicySpec("expert", args.expert), args.train_seeds
    blocks = {(v, t): TEST.seeds(args.episodes * len(seeds), offset=TEST_OFFSET + i * 100_000 + k * 10_000)
              for i, v in enumerate(VARIANTS) for k, t in enumerate(args.horizons)}  # fmt: skip
    test_records = {f"{v}/T={t}": check_test_seeds(s, "compounding") for (v, t), s in blocks.items()}
    match_seeds = tuple(DEVELOPMENT.seeds(args.match_episodes, offset=MATCH_OFFSET))
    ctx = kit.context_from(args, Context, scenario=train.to_dict(), match_seeds=match_seeds, teacher="")
    with atomic_output_dir(args.out, overwrite=True) as out:
        # 1. The clones, as sweep cells in parallel (DAgger's, the longest, first); then the students.
        with kit.timed(timings, "train_s"):
            cells = [{"method": m, "train_seed": s} for m in reversed(METHODS) for s in seeds]
            done = kit.context_sweep(out / "sweep", cells, train_cell, ctx, workers=args.workers)
            teacher_path = next(c.path / "clone" for c in done if c.result["method"] == "bc")
            ctx = dataclasses.replace(ctx, teacher=str(teacher_path.absolute()))
            cells = [{"method": "realizable", "train_seed": s} for s in seeds]
            done += kit.context_sweep(
                out / "students", cells, train_cell, ctx, workers=args.workers, unrecorded=["teacher"]
            )
        path = {(c.result["method"], c.result["train_seed"]): c.path / c.result["path"] for c in done}
        # 2. The iid control's p from the BC clones' eps_on on development seeds, before any test episode.
        bc = [c.result for c in done if c.result["method"] == "bc"]
        eps_on = sum(r["match_errors"] for r in bc) / sum(r["match_steps"] for r in bc)
        n_actions = int(describe_spaces(train)["action_space"]["n"])
        noise, teacher = min(1.0, eps_on * n_actions / (n_actions - 1)), PolicySpec("clone", str(teacher_path))
        policies = [kit.Driver("expert", 0, expert, expert)]
        policies += [kit.Driver(m, s, PolicySpec("clone", str(path[(m, s)])), expert) for m in METHODS for s in seeds]
        policies.append(kit.Driver("iid-errors", 0, expert, expert, noise=noise))
        policies += [
            kit.Driver("realizable", s, PolicySpec("clone", str(path[("realizable", s)])), teacher) for s in seeds
        ]
        # 3. Every policy on every variant and horizon, each on its own block of test seeds.
        rows: list[dict[str, Any]] = []
        with kit.timed(timings, "test_s"), RolloutPool(args.workers) as pool:
            for (variant, t), block in blocks.items():
                sc, shared = scenario(variant, t), block[: args.episodes]  # the clones'; the others drive all
                scored = args.value_gap_every and variant == "recoverable" and t == longest
                scoring = Scoring(PolicySpec("expert", VALUATION), args.value_gap_every) if scored else None
                runs = {expert.label: pool.run(sc, expert, block, scoring=scoring)}
                runs[teacher.label] = pool.run(sc, teacher, shared)
                reference = {k: {r.seed: r for r in v} for k, v in runs.items()}
                for p in policies:
                    drive = shared if p.group in CLONE_GROUPS else block
                    rows += [
                        {"variant": variant, "T": t, **r}
                        for r in kit.driver_episode_rows(p, sc, drive, reference, pool, scoring)
                    ]
                print(f"{variant} T={t}: {len(policies)} policies, {len(shared)} or {len(block)} episodes", flush=True)
        episodes = pd.DataFrame(rows)
        per_step = ["on_errors", "off_errors", "nearby", "value_gaps"]
        tables = summarize(episodes, args) | {"episodes": episodes.drop(columns=per_step, errors="ignore")}
        kit.write_results(out, tables)
        episodes.to_csv(out / "errors_per_episode.csv.gz", index=False, compression="gzip")
        _plots(out, tables, args)
        record = kit.experiment_record(
            args,
            scenario=train.to_dict(),
            variants=VARIANTS,
            training=f"collected on the recoverable variant, duration {longest}; dagger: DAggerConfig(training="
            f"'scratch'), the last iterate; realizable: teacher BC seed {seeds[0]} (argmax), students BC on its labels",
            controls={"iid-errors": {"noise": noise, "matched_to": f"BC eps_on {eps_on:.4f}, development seeds"}},
            valuation={"expert": VALUATION, "params": make_expert(VALUATION).params(), "every": args.value_gap_every},
            seeds={
                "test": test_records,
                "bc_demonstrations": f"seed s: from {DEMOS.first + DEMO_OFFSET} + s * {DEMO_BLOCK}",
                "student_demonstrations": f"seed s: from {DEMOS.first + STUDENT_OFFSET} + s * {DEMO_BLOCK}",
                "dagger_rounds": f"seed s, round r: {DAGGER.first + DAGGER_OFFSET} + s * {DAGGER_BLOCK} + r",
                "eps_on_match": DEVELOPMENT.record(list(match_seeds)) | {"first_used": match_seeds[0]},
            },
            statistics="fits: drift.horizon_fit_ci; costs: clones_mean_ci; hazard: Clopper-Pearson; eps, shift per bin "
            "(drift.binned_error_rows) clustered by clone; hazard_ratio, hr_trend: testbed.hazard; bins pool horizons",
            wall_time_s={k: round(v, 1) for k, v in timings.items()} | {"total": round(time.perf_counter() - start, 1)},
        )
        kit.write_results(out, {}, record)
    kit.print_table(tables["fits"], ["variant", "group", "b", "h_slope", "h_slope_ci_low", "h_slope_ci_high"])
    return tables


def replot(out: str | pathlib.Path) -> list[pathlib.Path]:
    """Redraw every figure from the CSVs an earlier run wrote into ``out``."""
    out, names = pathlib.Path(out), ["costs", "fits", "trends", "hazard", "hazard_ratio", "errors", "density"]
    names += ["value_gaps"] if (out / "value_gaps.csv").is_file() else []
    return _plots(out, {n: pd.read_csv(out / f"{n}.csv") for n in names}, read_args(out / "config.json", Args))


def _plots(out: pathlib.Path, tables: dict[str, pd.DataFrame], args: Args) -> list[pathlib.Path]:
    t, v = tables, {"variants": list(VARIANTS), "groups": GROUPS}
    gaps = (
        {"value_gap.png": plot_value_gaps(t["errors"], t["value_gaps"], variant="recoverable", groups=GROUPS)}
        if "value_gaps" in t
        else {}  # --value-gap-every 0
    )
    return kit.save_figures(out, {
        "horizon.png": plot_horizon_costs(t["costs"], t["fits"], **v),
        "hazard.png": plot_hazard_and_shift(t["hazard"], t["errors"], **v),
        "hazard_ratio.png": plot_hazard_ratio_and_density(
            t["hazard_ratio"], t["density"], t["trends"], **v, reference="iid-errors"
        ),
    } | gaps)  # fmt: skip


if __name__ == "__main__":
    kit.run_script(main, Args)
