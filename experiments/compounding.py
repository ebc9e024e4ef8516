"""Compounding error or a constant hazard? Horizon fits, hazards and same-step errors, with
the two controls, on terminating and recoverable-cost driving.

With crashes that end the episode, any policy with a constant per-step crash probability loses
return roughly like T^2, so a quadratic cost is no evidence of compounding. This study asks a
question that can fail:

- **Cost against horizon on independent episodes.** For every horizon T (decisions) a fresh
  block of test seeds (never prefixes of longer runs); cost C = decision steps with a
  collision. On the *recoverable* variant (``crash_recovery``, :mod:`testbed.recovery`) a
  collision is charged and the episode goes on, so a constant hazard gives C(T) = a T exactly
  and compounding (a hazard growing with the time driven) gives b > 0 in C(T) = a T + b T^2.
  On the terminating variant C(T) <= 1 saturates (b < 0 whatever the policy): its fit is shown
  for contrast only.
- **Hazard and errors over time**, on the longest horizon's episodes: the per-step hazard h(t)
  of a collision (steps at risk, Clopper-Pearson per bin), and eps_on(t) - eps_off(t): the
  policy's disagreement with its teacher on its own states against the same policy on the
  teacher's own episode from the same seed at the same step t.
- **Two controls beside the clones.** (a) *iid errors*: the expert with a uniformly random
  action on a fraction p of steps, p matched to the BC clones' eps_off (errors that cannot
  compound: they do not depend on the state); (b) *realizable teacher*: the first BC clone
  driving with its argmax as the teacher, cloned again at the same budget by BC (compounding
  without unrealizable labels; its errors are measured against that teacher).

The clones are ``experiments/compounding_error.py``'s (BC, DART, DAgger at ``budget`` training
labels, every training seed), read from ``{results}/compounding_error/``: run that step first.

Outputs under results/compounding/: costs.csv (mean cost per variant, policy group and T),
fits.csv (a, b with bootstrap CIs over training seeds and episodes), hazard.csv, errors.csv
(eps_on(t), eps_off(t) per step bin), episodes.csv, horizon.png, hazard.png, config.json.

    python experiments/compounding.py           # after experiments/compounding_error.py
    python experiments/compounding.py --fast    # tiny, for the tests (builds its own clones)
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Any

import pandas as pd

from testbed import drift, kit
from testbed.errors import TestbedError
from testbed.metrics import clone_table, clones_mean_ci, episode_metrics, mean_ci
from testbed.outputs import atomic_output_dir, final_path, read_args, read_json
from testbed.plotting import plot_hazard_and_shift, plot_horizon_costs
from testbed.policies import PolicySpec
from testbed.rollout import RolloutPool
from testbed.scenarios import Scenario, get_scenario, parse_overrides
from testbed.seeds import DEMOS, TEST, check_test_seeds

METHODS = ("bc", "dart", "dagger")
CONTROLS = ("iid-errors", "realizable")
VARIANTS = {
    "terminating": {"near_miss_headway_s": 0.5},
    "recoverable": {"near_miss_headway_s": 0.5, "crash_recovery": True},
}
"""Scenario options of the two variants (both record per-step costs)."""
TEST_OFFSET = 400_000
"""This study's block of the test range: variant v, horizon k use offset + v * 100000 + k * 10000."""
STUDENT_BLOCK = 800
"""Demonstration seeds of the realizable teacher for student seed s start at DEMOS.first + s * this."""


@dataclasses.dataclass
class Args(kit.UpstreamArgs):
    """Compounding error vs a constant hazard: horizon fits, hazard and same-step error curves.

    With ``--fast`` (tiny preset for tests) it trains two BC clones itself instead of reading
    compounding_error's."""

    scenario: str = "highway-fast"
    """Scenario preset (decides at 1 Hz: a horizon T is T decisions)."""
    set: tuple[str, ...] = ()
    """Scenario config overrides KEY=VALUE (both variants)."""
    expert: str = "scripted"
    """The clones' expert."""
    budget: int = 3_000
    """Training labels of the clones compared (a budget of compounding_error)."""
    horizons: tuple[int, ...] = (20, 40, 80, 160)
    """Episode horizons T [decisions], each on its own test seeds."""
    episodes: int = 30
    """Test episodes per policy, variant and horizon."""
    hazard_bin: int = 20
    """Steps per bin of the hazard and error curves."""
    student_epochs: int = 100
    """BC epochs of the realizable teacher's students (compounding_error's BC recipe)."""
    out: str = "results/compounding"
    """Output directory (replaced)."""

    def resolved(self) -> Args:
        return kit.fast_preset(self, budget=60, horizons=(5, 10), episodes=3, hazard_bin=5, student_epochs=3)

    def validate(self) -> None:
        """Raise :class:`TestbedError` on nonsense values."""
        if len(set(self.horizons)) < 2 or min(self.horizons) < 1 or max(self.horizons) > 3600:
            raise TestbedError(f"--horizons: need >= 2 distinct horizons in 1..3600, got {self.horizons}")
        kit.check_at_least_one(self, "budget", "episodes", "hazard_bin", "student_epochs")
        if self.episodes > 10_000:
            raise TestbedError("--episodes must be at most 10000 (each horizon's seed block)")


@dataclasses.dataclass(frozen=True)
class Policy:
    """One driver of the study: its group, training seed and who labels its states."""

    group: str
    seed: int
    spec: PolicySpec
    teacher: PolicySpec
    noise: float = 0.0


def upstream_clones(results: pathlib.Path, budget: int) -> tuple[dict[str, list[tuple[int, pathlib.Path]]], float]:
    """compounding_error's clones at ``budget`` per method, and the BC clones' mean eps_off.

    Raises:
        TestbedError: the upstream step has not run, or has no clone at ``budget``.
    """
    base = results / "compounding_error"
    cells = read_json(base / "sweep" / "results.json", what="compounding_error sweep results (run that step first)")
    clones: dict[str, list[tuple[int, pathlib.Path]]] = {m: [] for m in METHODS}
    for result, c in kit.sweep_clones(cells, base / "sweep"):
        if c["budget"] == budget and (c["path"] / "policy.pt").is_file():
            clones[result["method"]].append((int(result["train_seed"]), c["path"]))
    if not all(clones.values()):
        raise TestbedError(
            f"{base}: no compounding_error clones at budget {budget} (run that step, or pick its budget)"
        )
    methods = pd.read_csv(base / "methods.csv")
    row = methods[(methods["method"] == "bc") & (methods["budget"] == budget)]
    return clones, float(row["eps_off"].iloc[0])


def fast_clones(scenario: Scenario, args: Args, pool: RolloutPool, out: pathlib.Path) -> tuple[dict, float]:
    """--fast: two BC clones trained here stand in for every method (the plumbing is what's tested)."""
    from testbed.collect import collect_transitions

    paths = []
    for seed in (0, 1):
        first = DEMOS.first + seed * STUDENT_BLOCK
        demos = collect_transitions(scenario, args.expert, args.budget, seed=first, pool=pool)
        config = kit.every_label_config(seed, args.budget, epochs=args.student_epochs, batch_size=16)
        kit.train_clone(out / "clones" / f"bc{seed}", demos, config)
        paths.append((seed, out / "clones" / f"bc{seed}"))
    return {m: paths for m in METHODS}, 0.3


def realizable_students(
    scenario: Scenario, teacher: pathlib.Path, seeds: list[int], args: Args, pool: RolloutPool, out: pathlib.Path
) -> list[tuple[int, pathlib.Path]]:
    """BC clones of the teacher clone (driving and labelling with its argmax), ``budget``
    labels each, student seed s on its own block of demonstration seeds."""
    driver = {"name": f"clone:{final_path(teacher)}", "params": {"acts": "argmax"}}
    students = []
    for s in seeds:
        demos = kit.driver_demonstrations(
            scenario,
            PolicySpec("clone", str(teacher)),
            args.budget,
            first_seed=DEMOS.first + s * STUDENT_BLOCK,
            n_seeds=STUDENT_BLOCK,
            pool=pool,
            driver=driver,
        )
        config = kit.every_label_config(s, args.budget, epochs=args.student_epochs, batch_size=64)
        kit.train_clone(out / "students" / f"s{s}", demos, config)
        students.append((s, out / "students" / f"s{s}"))
    return students


def run_policy(
    policy: Policy, scenario: Scenario, seeds: list[int], reference: dict[int, Any], pool: RolloutPool
) -> list[dict[str, Any]]:
    """One row per episode: cost, length, on-policy errors and the same-step comparison with
    the policy's errors on its teacher's episode from the same seed."""
    from testbed.clone_io import load_clone

    records = pool.run(scenario, policy.spec, seeds, labeller=policy.teacher, noise=policy.noise)
    model = load_clone(policy.spec.arg, scenario=scenario) if policy.spec.kind == "clone" else None
    rows = []
    for r in records:
        on = drift.applied_errors(r, noisy=policy.noise > 0)
        if model is not None:
            off = drift.off_policy_errors(model, reference[r.seed])
        else:  # the noisy expert on the expert's own episode: the harness's noise, replayed
            off = drift.noise_errors(reference[r.seed], policy.noise, scenario)
        shift, n = drift.same_step_difference(on, off)
        rows.append(
            {
                "group": policy.group,
                "train_seed": policy.seed,
                "seed": r.seed,
                "length": len(on),
                "cost": int(episode_metrics(r.trajectory)["collisions"]),
                "collision_steps": " ".join(str(t) for t, i in enumerate(r.infos) if i["collision"]),
                "on_errors": drift.errors_text(on),
                "off_errors": drift.errors_text(off),
                "shift_sum": shift,
                "shift_steps": n,
            }
        )
    return rows


def summarize(episodes: pd.DataFrame, args: Args) -> dict[str, pd.DataFrame]:
    """costs.csv, fits.csv, hazard.csv and errors.csv from the per-episode rows."""
    costs, fits, hazard, errors = [], [], [], []
    longest = max(args.horizons)
    for (variant, group), g in episodes.groupby(["variant", "group"], sort=False):
        # Cost against horizon: a mean over policies and episodes per T, and the fit aT + bT^2.
        per_t = {int(t): clone_table(h, "cost") for t, h in g.groupby("T")}
        for t, table in per_t.items():
            ci = clones_mean_ci(table) if table.shape[0] > 1 else mean_ci(table[0])
            costs.append(
                {"variant": variant, "group": group, "T": t, "n_policies": table.shape[0], **ci.columns("cost")}
            )
        fits.append({"variant": variant, "group": group, **drift.horizon_fit_ci(per_t)})
        # Hazard and errors over time, on the longest horizon's episodes.
        last = g[g["T"] == longest]
        curve = drift.hazard_curve(
            [[int(s) for s in str(c).split()] if isinstance(c, str) else [] for c in last["collision_steps"]],
            last["length"].tolist(),
            bin_steps=args.hazard_bin,
        )
        hazard.append(curve.assign(variant=variant, group=group))
        on = [drift.errors_from_text(t) for t in last["on_errors"]]
        off = [drift.errors_from_text(t) for t in last["off_errors"]]
        for row in drift.binned_error_rows(on, off, bin_steps=args.hazard_bin, horizon=longest):
            errors.append({"variant": variant, "group": group, **row})
    return {
        "costs": pd.DataFrame(costs),
        "fits": pd.DataFrame(fits),
        "hazard": pd.concat(hazard, ignore_index=True),
        "errors": pd.DataFrame(errors),
    }


def main(args: Args) -> dict[str, pd.DataFrame]:
    args = args.resolved()
    args.validate()
    start = time.perf_counter()
    base = get_scenario(args.scenario, parse_overrides(args.set))
    expert = PolicySpec("expert", args.expert)
    seed_blocks = {
        (v, t): TEST.seeds(args.episodes, offset=TEST_OFFSET + i * 100_000 + k * 10_000)
        for i, v in enumerate(VARIANTS)
        for k, t in enumerate(args.horizons)
    }
    test_records = {f"{v}/T={t}": check_test_seeds(s, "compounding") for (v, t), s in seed_blocks.items()}
    rows: list[dict[str, Any]] = []
    with atomic_output_dir(args.out, overwrite=True) as out, RolloutPool(args.workers) as pool:
        if args.fast:
            clones, eps_off = fast_clones(base, args, pool, out)
        else:
            clones, eps_off = upstream_clones(pathlib.Path(args.results), args.budget)
        # The two controls: iid errors at the BC clones' eps_off, and a realizable teacher.
        noise = min(1.0, eps_off * 5 / 4)  # a uniform random action differs from the expert's 4 times in 5
        teacher_path = clones["bc"][0][1]
        teacher = PolicySpec("clone", str(teacher_path))
        students = realizable_students(base, teacher_path, [s for s, _ in clones["bc"]], args, pool, out)
        policies = [Policy(m, s, PolicySpec("clone", str(p)), expert) for m in METHODS for s, p in clones[m]]
        policies.append(Policy("iid-errors", 0, expert, expert, noise=noise))
        policies += [Policy("realizable", s, PolicySpec("clone", str(p)), teacher) for s, p in students]
        # Every policy on every variant and horizon, each on its own block of test seeds.
        for (variant, t), seeds in seed_blocks.items():
            scenario = get_scenario(args.scenario, {**parse_overrides(args.set), **VARIANTS[variant], "duration": t})
            reference = {spec.label: {r.seed: r for r in pool.run(scenario, spec, seeds)} for spec in (expert, teacher)}
            for p in policies:
                for row in run_policy(p, scenario, seeds, reference[p.teacher.label], pool):
                    rows.append({"variant": variant, "T": t, **row})
            print(f"{variant} T={t}: {len(policies)} policies x {len(seeds)} episodes", flush=True)
        episodes = pd.DataFrame(rows)
        tables = summarize(episodes, args)
        tables["episodes"] = episodes.drop(columns=["on_errors", "off_errors"])
        kit.write_results(out, tables)
        pd.DataFrame(rows).to_csv(out / "errors_per_episode.csv.gz", index=False, compression="gzip")
        _plots(out, tables, args)
        record = kit.experiment_record(
            args,
            scenario=base.to_dict(),
            variants=VARIANTS,
            clones={m: [str(final_path(p)) for _, p in v] for m, v in clones.items()},
            controls={
                "iid-errors": {"noise": noise, "matched_to": f"BC eps_off {eps_off:.4f} at budget {args.budget}"},
                "realizable": {
                    "teacher": str(final_path(teacher_path)),
                    "students": [str(final_path(p)) for _, p in students],
                },
            },
            seeds={"test": test_records, "students": f"seed s: from {DEMOS.first} + s * {STUDENT_BLOCK}"},
            statistics="fits: least squares C(T) = aT + bT^2 through the origin, percentile bootstrap over "
            "training seeds (jointly across T) and episodes (within T); costs: variance-components intervals over "
            "training and test seeds; hazard and eps per bin: Clopper-Pearson over steps; shift per bin: pooled "
            "same-step difference, bootstrap over episodes",
            wall_time_s=round(time.perf_counter() - start, 1),
        )
        kit.write_results(out, {}, record)
    kit.print_table(tables["fits"], ["variant", "group", "a", "b", "b_ci_low", "b_ci_high"], digits=5)
    return tables


def replot(out: str | pathlib.Path) -> list[pathlib.Path]:
    """Redraw the figures from the CSVs an earlier run wrote into ``out``."""
    out = pathlib.Path(out)
    args = read_args(out / "config.json", Args)
    tables = {n: pd.read_csv(out / f"{n}.csv") for n in ("costs", "fits", "hazard", "errors")}
    return _plots(out, tables, args)


def _plots(out: pathlib.Path, tables: dict[str, pd.DataFrame], args: Args) -> list[pathlib.Path]:
    groups = [*METHODS, *CONTROLS]
    figures = {
        "horizon.png": plot_horizon_costs(tables["costs"], tables["fits"], variants=list(VARIANTS), groups=groups),
        "hazard.png": plot_hazard_and_shift(
            tables["hazard"], tables["errors"], variants=list(VARIANTS), groups=groups, horizon=max(args.horizons)
        ),
    }
    return kit.save_figures(out, figures)


if __name__ == "__main__":
    kit.run_script(main, Args)
