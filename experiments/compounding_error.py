"""BC vs DART vs DAgger at equal training labels, on the sealed test seeds.

For every budget B of training labels (the (observation, action) pairs a model trains on) and
every training seed s, three clones of the scripted expert on highway-fast:

- **BC** trains on the first B transitions of clean expert demonstrations (no validation
  split: every label counted is trained on). Training seed s draws its demonstrations from
  its own block of demonstration seeds and its own initialisation, so the spread over seeds
  is the spread a user would see.
- **DART** (Laskey et al. 2017) trains the same way on demonstrations collected from the same
  seeds with noise injected: with probability p the applied action is uniformly random, while
  the recorded label stays the expert's. p is chosen before anything else runs, on
  development seeds (tuning demonstrations, development evaluation seeds) and recorded.
- **DAgger** (Ross et al. 2011) runs rounds of ``dagger_labels_per_round`` labels: beta = 1 in
  round 0 (the expert drives), 0 after (the learner drives with its argmax and the privileged
  expert labels every visited state), BC on the aggregate after each round. The clone at
  budget B is the iterate with the best accuracy on the common validation set among those
  that trained on at most B labels.

One common validation set of expert states (demonstration seeds no training set uses) scores
every clone open loop. Every clone then drives the same test seeds with the expert labelling
its states (eps_on, return, crash rate) and labels the expert's own test episodes offline
(eps_off). Errors are pooled over steps (a ratio, so short crashed episodes do not weigh
more), and the covariate-shift term compares a clone's error on its own episode with its
error on the expert's episode from the same seed *at the same step*. Rows averaging clones
carry variance-components intervals over training and evaluation seeds
(:mod:`testbed.metrics`); differences to BC are paired by training seed index and test seed.

Outputs under results/compounding_error/: methods.csv (method x budget), steps.csv
(eps_on(t), eps_off(t) per method and budget), clones.csv (one row per clone),
open_vs_closed.csv, episodes.csv, dart_tuning.csv, methods.png, steps.png,
open_vs_closed.png, config.json; the sweep (one cell per method and training seed) in sweep/.

    python experiments/compounding_error.py           # wall time: results/reproduce.json
    python experiments/compounding_error.py --fast    # tiny preset, used by the tests
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import time
from typing import Any

import numpy as np
import pandas as pd
import tyro

from testbed.collect import collect_transitions
from testbed.demos import load_demos, save_demos
from testbed.drift import errors_from_text, errors_text, off_policy_errors, pooled_scores, same_step_difference
from testbed.errors import TestbedError
from testbed.metrics import (
    Interval,
    clone_table,
    clones_mean_ci,
    clones_rate_ci,
    combination_ci,
    episode_ci,
    mean_ci,
    rate_ci,
)
from testbed.outputs import atomic_output_dir, read_args, write_json
from testbed.policies import PolicySpec
from testbed.provenance import git_commit, provenance
from testbed.rollout import RolloutPool
from testbed.runtime import default_workers
from testbed.scenarios import Scenario, get_scenario, parse_overrides
from testbed.seeds import DAGGER, DEMOS, DEVELOPMENT, TEST_SEED, TUNING, check_test_seeds, episode_seeds
from testbed.sweep import CellResult, Sweep

METHODS = ("bc", "dart", "dagger")
DEMO_BLOCK = 800
"""Demonstration seeds per training seed: seed s collects from DEMOS.first + s * DEMO_BLOCK."""
VALIDATION_OFFSET = 4_000
"""The common validation episodes start at this offset of the demonstration range."""
DAGGER_BLOCK = 100
"""DAgger round seeds per training seed: seed s's round r is DAGGER.first + s * DAGGER_BLOCK + r."""


@dataclasses.dataclass
class Args:
    """BC vs DART vs DAgger at equal training labels, >= 5 training seeds, on test seeds."""

    scenario: str = "highway-fast"
    """Scenario preset."""
    set: tuple[str, ...] = ()
    """Scenario config overrides KEY=VALUE."""
    expert: str = "scripted"
    """Expert to clone (and to label)."""
    budgets: tuple[int, ...] = (1_000, 3_000, 10_000)
    """Training-label budgets (labels each model trains on)."""
    train_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    """Training seeds (each: its own demonstrations, DAgger rounds and initialisation)."""
    epochs: int = 100
    """BC and DART epochs."""
    batch_size: int = 64
    """Batch size of every method."""
    dart_noises: tuple[float, ...] = (0.1, 0.2, 0.3)
    """DART candidates: probability of a random applied action while collecting."""
    dart_tuning_budget: int = 3_000
    """Training labels of each DART tuning clone (tuning-range demonstrations)."""
    dart_tuning_episodes: int = 100
    """Development-range evaluation episodes per DART candidate (highest mean return wins)."""
    dagger_labels_per_round: int = 500
    """DAgger labels per round (rounds: the largest budget / this)."""
    dagger_epochs_per_round: int = 10
    """DAgger BC epochs over the aggregate after each round."""
    val_episodes: int = 50
    """Common validation episodes of expert states (demonstration seeds from offset 4000)."""
    eval_episodes: int = 200
    """Test episodes per clone (the expert drives the same seeds)."""
    eval_seed: int = TEST_SEED
    """First evaluation seed (in the sealed test range, :data:`testbed.seeds.TEST`)."""
    workers: int = dataclasses.field(default_factory=default_workers)
    """Worker processes (one sweep cell each)."""
    out: str = "results/compounding_error"
    """Output directory (replaced)."""
    fast: bool = False
    """Tiny preset for tests."""

    def resolved(self) -> Args:
        if not self.fast:
            return self
        return dataclasses.replace(
            self,
            set=(*self.set, "duration=8"),
            budgets=(40, 80),
            train_seeds=(0, 1),
            epochs=3,
            batch_size=16,
            dart_noises=(0.2,),
            dart_tuning_budget=40,
            dart_tuning_episodes=2,
            dagger_labels_per_round=40,
            dagger_epochs_per_round=2,
            val_episodes=2,
            eval_episodes=3,
        )

    def validate(self) -> None:
        """Raise :class:`TestbedError` on nonsense values."""
        if not self.budgets or min(self.budgets) < 1 or list(self.budgets) != sorted(set(self.budgets)):
            raise TestbedError(f"--budgets must be increasing positive label counts, got {self.budgets}")
        if (
            len(self.train_seeds) < 2
            or min(self.train_seeds) < 0
            or len(set(self.train_seeds)) != len(self.train_seeds)
        ):
            raise TestbedError(f"--train-seeds: need >= 2 distinct non-negative seeds, got {self.train_seeds}")
        if (max(self.train_seeds) + 1) * DEMO_BLOCK > VALIDATION_OFFSET:
            raise TestbedError(
                f"--train-seeds must stay below {VALIDATION_OFFSET // DEMO_BLOCK} (demonstration blocks)"
            )
        if not self.dart_noises or not all(0 < p <= 1 for p in self.dart_noises):
            raise TestbedError(f"--dart-noises must be probabilities in (0, 1], got {self.dart_noises}")
        if self.budgets[-1] % self.dagger_labels_per_round or self.dagger_labels_per_round < 1:
            raise TestbedError("--dagger-labels-per-round must divide the largest budget")
        for name in ("epochs", "batch_size", "dagger_epochs_per_round", "val_episodes", "eval_episodes"):
            if getattr(self, name) < 1:
                raise TestbedError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")


@dataclasses.dataclass(frozen=True)
class Context:
    """What every sweep cell needs (JSON scalars; part of the sweep config)."""

    scenario: dict[str, Any]
    expert: str
    budgets: tuple[int, ...]
    epochs: int
    batch_size: int
    dagger_labels_per_round: int
    dagger_epochs_per_round: int
    validation_dir: str
    eval_seeds: tuple[int, ...]


def _train_config(ctx: Context, seed: int, n_labels: int, epochs: int) -> Any:
    from testbed.training import TrainConfig

    return TrainConfig(n_epochs=epochs, batch_size=min(ctx.batch_size, n_labels), seed=seed, val_fraction=0.0)


def _drive(scenario: Scenario, expert: str, path: pathlib.Path, seeds: tuple[int, ...], pool: RolloutPool) -> list:
    """Rows of the clone at ``path`` driving ``seeds`` with the expert labelling its states."""
    records = pool.run(scenario, PolicySpec("clone", str(path)), list(seeds), labeller=PolicySpec("expert", expert))
    rows = []
    for r in records:
        infos = r.infos
        errors = (np.asarray(r.trajectory.acts) != np.asarray(r.labels)).astype(int)
        rows.append(
            {
                "seed": r.seed,
                "return": float(np.sum(r.trajectory.rews)),
                "crashed": int(bool(infos[-1].get("crashed", False))),
                "length": len(errors),
                "on_errors": errors_text(errors),
            }
        )
    return rows


def run_cell(ctx: Context, cell: dict[str, Any], cell_dir: pathlib.Path) -> dict[str, Any]:
    """One method and training seed: collect, train a clone per budget, drive the test seeds."""
    from testbed.clone_io import load_clone
    from testbed.dagger import DAggerConfig, as_demonstrations, train_dagger
    from testbed.training import TrainResult, action_accuracy, save_clone, stack_transitions, train_bc

    scenario = Scenario.from_dict(ctx.scenario)
    method, seed = cell["method"], int(cell["train_seed"])
    validation = load_demos(ctx.validation_dir, scenario=scenario).trajectories
    clones: list[dict[str, Any]] = []
    with RolloutPool(1) as pool:  # the cells are the parallel unit
        if method in ("bc", "dart"):
            noise = float(cell.get("noise", 0.0))
            start = DEMOS.first + seed * DEMO_BLOCK
            demos = collect_transitions(scenario, ctx.expert, ctx.budgets[-1], seed=start, pool=pool, noise=noise)
            if demos.seeds[-1] >= start + DEMO_BLOCK:
                raise TestbedError(f"{method} seed {seed} needed seeds beyond its block of {DEMO_BLOCK}")
            for budget in ctx.budgets:
                subset = demos.first_transitions(budget)
                config = _train_config(ctx, seed, budget, ctx.epochs)
                result = train_bc(subset, config)
                path = save_clone(
                    cell_dir / "clones" / f"B{budget}", result, demos=subset, demos_path="(in memory)", config=config
                )
                clones.append({"budget": budget, "n_train_labels": subset.n_transitions, "path": path})
        else:
            config = _train_config(ctx, seed, ctx.dagger_labels_per_round, ctx.dagger_epochs_per_round)
            dagger = DAggerConfig(
                n_rounds=ctx.budgets[-1] // ctx.dagger_labels_per_round,
                labels_per_round=ctx.dagger_labels_per_round,
                epochs_per_round=ctx.dagger_epochs_per_round,
                first_seed=DAGGER.first + seed * DAGGER_BLOCK,
            )
            result = train_dagger(scenario, ctx.expert, config, dagger, validation=stack_transitions(validation))
            result.log.to_csv(cell_dir / "dagger_log.csv", index=False)
            data = as_demonstrations(result, scenario, ctx.expert)
            for budget in ctx.budgets:
                policy, it = result.best(budget)
                snapshot = TrainResult(
                    policy=policy, log=result.log.iloc[: it.round + 1], train_episodes=[], val_episodes=[]
                )
                path = save_clone(
                    cell_dir / "clones" / f"B{budget}",
                    snapshot,
                    demos=data,
                    demos_path="(DAgger)",
                    config=config,
                    algorithm="dagger",
                    extra={
                        "dagger": dataclasses.asdict(dagger),
                        "iterate": {"round": it.round, "n_labels": it.n_labels},
                    },
                )
                clones.append({"budget": budget, "n_train_labels": it.n_labels, "path": path, "dagger_round": it.round})
        rows = []
        for c in clones:
            c["val_accuracy"] = action_accuracy(load_clone(c["path"], scenario=scenario), validation)
            rows += [
                {"budget": c["budget"], **r} for r in _drive(scenario, ctx.expert, c["path"], ctx.eval_seeds, pool)
            ]
    pd.DataFrame(rows).to_csv(cell_dir / "episodes.csv", index=False)
    return {
        "method": method,
        "train_seed": seed,
        "clones": [{k: (str(v.relative_to(cell_dir)) if k == "path" else v) for k, v in c.items()} for c in clones],
    }


def tune_dart(ctx: Context, cell: dict[str, Any], cell_dir: pathlib.Path) -> dict[str, Any]:
    """One DART candidate on tuning demonstrations, driven on development seeds."""
    from testbed.metrics import episodes_table
    from testbed.training import save_clone, train_bc

    scenario = Scenario.from_dict(ctx.scenario)
    budget, noise = int(cell["budget"]), float(cell["noise"])
    with RolloutPool(1) as pool:
        demos = collect_transitions(scenario, ctx.expert, budget, seed=TUNING.first, pool=pool, noise=noise)
        config = _train_config(ctx, 0, budget, ctx.epochs)
        path = save_clone(
            cell_dir / "clone", train_bc(demos, config), demos=demos, demos_path="(in memory)", config=config
        )
        records = pool.run(scenario, PolicySpec("clone", str(path)), list(ctx.eval_seeds))
    episodes = episodes_table((f"dart p={noise}", r.seed, r.trajectory) for r in records)
    return {
        "noise": noise,
        "n_train_labels": demos.n_transitions,
        "demo_seeds": [demos.seeds[0], demos.seeds[-1]],
        **mean_ci(episodes["return"]).columns("return"),
        **episode_ci("crashed", episodes["crashed"]).columns("crash_rate"),
    }


def _clone_errors(cells: list[CellResult], expert_runs: dict[int, Any], scenario: Scenario) -> pd.DataFrame:
    """One row per (clone, test seed): outcome, on- and off-policy error sums, same-step shift."""
    from testbed.clone_io import load_clone

    frames = []
    for cell in cells:
        episodes = pd.read_csv(cell.path / "episodes.csv", dtype={"on_errors": str})
        for c in cell.result["clones"]:
            policy = load_clone(cell.path / c["path"], scenario=scenario)
            ep = episodes[episodes["budget"] == c["budget"]].copy()
            on = [errors_from_text(t) for t in ep["on_errors"]]
            off = [off_policy_errors(policy, expert_runs[s]) for s in ep["seed"]]
            pairs = [same_step_difference(a, b) for a, b in zip(on, off)]
            ep = ep.assign(
                method=cell.result["method"],
                train_seed=cell.result["train_seed"],
                n_train_labels=c["n_train_labels"],
                val_accuracy=c["val_accuracy"],
                on_sum=[a.sum() for a in on],
                on_steps=[len(a) for a in on],
                off_sum=[b.sum() for b in off],
                off_steps=[len(b) for b in off],
                shift_sum=[p[0] for p in pairs],
                shift_steps=[p[1] for p in pairs],
                off_errors=[errors_text(b) for b in off],
            )
            frames.append(ep)
    return pd.concat(frames, ignore_index=True)


def method_rows(clones: pd.DataFrame, expert: pd.DataFrame) -> pd.DataFrame:
    """methods.csv: per method and budget, means over clones with intervals over training and
    test seeds, and the paired difference to BC at the same budget."""
    rows = []
    for (method, budget), g in clones.groupby(["method", "budget"], sort=False):
        row: dict[str, Any] = {
            "method": method,
            "budget": int(budget),
            "n_clones": g["train_seed"].nunique(),
            "n_test_seeds": g["seed"].nunique(),
            "n_train_labels_min": int(g["n_train_labels"].min()),
            "n_train_labels_max": int(g["n_train_labels"].max()),
            **clones_mean_ci(clone_table(g, "return")).columns("return"),
            **clones_rate_ci(clone_table(g, "crashed")).columns("crash_rate"),
            **clones_mean_ci(g.groupby("train_seed")["val_accuracy"].first().to_numpy()[:, None]).columns(
                "val_accuracy"
            ),
        }
        for name in ("on", "off", "shift"):
            ci = clones_mean_ci(pooled_scores(clone_table(g, f"{name}_sum"), clone_table(g, f"{name}_steps")))
            floor = -1.0 if name == "shift" else 0.0  # error rates lie in [0, 1], their difference in [-1, 1]
            ci = Interval(ci.mean, max(ci.low, floor), min(ci.high, 1.0))
            row.update(ci.columns(f"eps_{name}" if name != "shift" else "shift"))
        bc = clones[(clones["method"] == "bc") & (clones["budget"] == budget)]
        for col, out in (("return", "return_vs_bc"), ("crashed", "crash_rate_vs_bc")):
            row.update(
                combination_ci([clone_table(g, col), clone_table(bc, col)], (1.0, -1.0)).columns(out)
                if method != "bc"
                else Interval(0.0, 0.0, 0.0).columns(out)
            )
        rows.append(row)
    rows.append(
        {
            "method": "expert",
            "n_test_seeds": len(expert),
            **mean_ci(expert["return"]).columns("return"),
            **episode_ci("crashed", expert["crashed"]).columns("crash_rate"),
        }
    )
    return pd.DataFrame(rows)


def step_rows(clones: pd.DataFrame) -> pd.DataFrame:
    """steps.csv: eps_on(t) over the clones' episodes alive at step t and eps_off(t) over the
    expert's, pooled over a method's clones (Clopper-Pearson per step, treating the step's
    episodes as independent: a rough band, the pooled rows of methods.csv carry the clustering)."""
    rows = []
    for (method, budget), g in clones.groupby(["method", "budget"], sort=False):
        for kind in ("on", "off"):
            errors = [errors_from_text(t) for t in g[f"{kind}_errors"]]
            horizon = max(len(e) for e in errors)
            for t in range(horizon):
                at_t = [e[t] for e in errors if len(e) > t]
                ci = rate_ci(int(np.sum(at_t)), len(at_t))
                rows.append(
                    {
                        "method": method,
                        "budget": int(budget),
                        "kind": f"eps_{kind}",
                        "step": t,
                        "n": len(at_t),
                        **ci.columns("error"),
                    }
                )
    return pd.DataFrame(rows)


def open_vs_closed(clones: pd.DataFrame, rng_seed: int = 0, n_boot: int = 2000) -> pd.DataFrame:
    """Spearman's rho between validation accuracy and closed-loop return/crash rate across the
    clones of each budget (bootstrap over clones within the budget), and its mean over budgets
    (stratified bootstrap): correlations within a data size, not across sizes."""
    import warnings

    from scipy import stats

    per_clone = clones.groupby(["method", "train_seed", "budget"], as_index=False).agg(
        val_accuracy=("val_accuracy", "first"), **{"return": ("return", "mean")}, crash_rate=("crashed", "mean")
    )
    rng = np.random.default_rng(rng_seed)
    rows = []
    for target in ("return", "crash_rate"):
        groups = [g for _, g in per_clone.groupby("budget", sort=True)]

        def rho(frames: list[pd.DataFrame], target: str = target) -> float:
            with warnings.catch_warnings():  # a resample with one distinct value has no rho
                warnings.simplefilter("ignore")
                return float(np.nanmean([stats.spearmanr(f["val_accuracy"], f[target]).statistic for f in frames]))

        boots = [rho([g.iloc[rng.integers(len(g), size=len(g))] for g in groups]) for _ in range(n_boot)]
        for budget, g in zip(sorted(per_clone["budget"].unique()), groups):
            b = [rho([g.iloc[rng.integers(len(g), size=len(g))]]) for _ in range(n_boot)]
            rows.append(
                {
                    "closed_loop": target,
                    "budget": int(budget),
                    "n_clones": len(g),
                    "spearman_rho": rho([g]),
                    **_percentiles(b),
                }
            )
        rows.append(
            {
                "closed_loop": target,
                "budget": "within-budget mean",
                "n_clones": len(per_clone),
                "spearman_rho": rho(groups),
                **_percentiles(boots),
            }
        )
    return pd.DataFrame(rows)


def _percentiles(values: list[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    low, high = np.percentile(v, [2.5, 97.5]) if v.size else (np.nan, np.nan)
    return {"ci_low": float(low), "ci_high": float(high)}


def main(args: Args) -> dict[str, Any]:
    args = args.resolved()
    args.validate()
    start = time.perf_counter()
    scenario = get_scenario(args.scenario, parse_overrides(args.set))
    eval_seeds = tuple(episode_seeds(args.eval_seed, args.eval_episodes))
    test_seeds = check_test_seeds(list(eval_seeds), "compounding_error")
    timings: dict[str, float] = {}
    with atomic_output_dir(args.out, overwrite=True) as out:
        t0 = time.perf_counter()
        val_seed = DEMOS.first + VALIDATION_OFFSET
        with RolloutPool(args.workers) as pool:
            from testbed.collect import collect

            validation = collect(scenario, args.expert, n_episodes=args.val_episodes, seed=val_seed, pool=pool)
            save_demos(validation, out / "validation")
            expert_records = pool.run(
                scenario, PolicySpec("expert", args.expert), list(eval_seeds), progress=True, desc="expert"
            )
        timings["validation_and_expert_s"] = time.perf_counter() - t0

        def context(seeds: tuple[int, ...]) -> Context:
            return Context(
                scenario.to_dict(),
                args.expert,
                args.budgets,
                args.epochs,
                args.batch_size,
                args.dagger_labels_per_round,
                args.dagger_epochs_per_round,
                str((out / "validation").absolute()),
                seeds,
            )

        # DART's noise level, chosen on tuning demonstrations and development seeds only.
        t0 = time.perf_counter()
        tuning_ctx = context(tuple(DEVELOPMENT.seeds(args.dart_tuning_episodes)))
        tuning = Sweep(
            out / "dart_tuning",
            [{"noise": p, "budget": args.dart_tuning_budget} for p in args.dart_noises],
            functools.partial(tune_dart, tuning_ctx),
            config={"context": dataclasses.asdict(tuning_ctx) | {"validation_dir": None}, "code": git_commit()},
        ).run(workers=args.workers, progress=True)
        tuning_table = pd.DataFrame([r.result for r in tuning])
        noise = float(tuning_table.loc[tuning_table["return"].idxmax(), "noise"])
        tuning_table["chosen"] = tuning_table["noise"] == noise
        timings["dart_tuning_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        ctx = context(eval_seeds)
        cells = [
            {"method": m, "train_seed": s, **({"noise": noise} if m == "dart" else {})}
            for s in args.train_seeds
            for m in METHODS
        ]
        sweep = Sweep(
            out / "sweep",
            cells,
            functools.partial(run_cell, ctx),
            config={"context": dataclasses.asdict(ctx) | {"validation_dir": None}, "code": git_commit()},
        )
        results = sweep.run(workers=args.workers, progress=True)
        timings["sweep_s"] = time.perf_counter() - t0

        expert_by_seed = {r.seed: r for r in expert_records}
        expert = pd.DataFrame(
            [
                {
                    "seed": r.seed,
                    "return": float(np.sum(r.trajectory.rews)),
                    "crashed": int(bool(r.infos[-1].get("crashed", False))),
                }
                for r in expert_records
            ]
        )
        clones = _clone_errors(results, expert_by_seed, scenario)
        tables = {
            "methods": method_rows(clones, expert),
            "steps": step_rows(clones),
            "open_vs_closed": open_vs_closed(clones),
            "clones": clones.groupby(["method", "budget", "train_seed"], as_index=False, sort=False).agg(
                n_train_labels=("n_train_labels", "first"),
                val_accuracy=("val_accuracy", "first"),
                **{"return": ("return", "mean")},
                crash_rate=("crashed", "mean"),
            ),
            "episodes": clones.drop(columns=["on_errors", "off_errors"]),
            "dart_tuning": tuning_table,
        }
        for name, frame in tables.items():
            frame.to_csv(out / f"{name}.csv", index=False)
        _plots(out, tables["methods"], tables["steps"], tables["clones"], args)
        write_json(
            out / "config.json",
            {
                "args": dataclasses.asdict(args),
                "scenario": scenario.to_dict(),
                "dart_noise": {
                    "chosen": noise,
                    "by": "highest mean return on development seeds",
                    "candidates": list(args.dart_noises),
                },
                "seeds": {
                    "eval": test_seeds,
                    "demonstrations": f"seed s: from {DEMOS.first} + s * {DEMO_BLOCK}, BC and DART alike",
                    "validation": DEMOS.record(list(range(val_seed, val_seed + args.val_episodes)))
                    | {"first_used": val_seed},
                    "dagger_rounds": f"training seed s, round r: {DAGGER.first} + s * {DAGGER_BLOCK} + r",
                    "dart_tuning": {
                        "demonstrations": TUNING.record(),
                        "evaluation": DEVELOPMENT.record(list(tuning_ctx.eval_seeds)),
                    },
                },
                "labels": "budget = labels the model trains on: BC and DART train on exactly that many (no validation "
                "split); DAgger's clone is its best validation iterate with at most that many aggregate labels "
                "(n_train_labels). The validation set's labels are not counted (every method is scored on it; "
                "only DAgger selects on it).",
                "statistics": "rows averaging clones: variance-components intervals over training and test "
                "seeds (testbed.metrics.clones_mean_ci; crash rate clones_rate_ci); eps_on/eps_off/shift pooled "
                "over steps per clone (ratio, linearised per episode: testbed.drift.pooled_scores); shift = "
                "eps_on(t) - eps_off(t) on the same seed at the same step, over the steps both episodes reached; "
                "*_vs_bc: paired by test seed, training seeds independent (combination_ci); expert: bootstrap "
                "over episodes, crash rate Clopper-Pearson; open_vs_closed: Spearman within each budget, "
                "bootstrap over clones (stratified for the mean over budgets)",
                "wall_time_s": {k: round(v, 1) for k, v in timings.items()}
                | {"total": round(time.perf_counter() - start, 1)},
                "provenance": provenance(),
            },
        )
    methods = tables["methods"]
    print(
        methods[["method", "budget", "return", "crash_rate", "eps_on", "eps_off", "shift", "return_vs_bc"]].to_string(
            index=False, float_format=lambda x: f"{x:.3f}"
        )
    )
    print(f"DART noise {noise} (development seeds); total {time.perf_counter() - start:.0f} s -> {args.out}")
    return tables


def replot(out: str | pathlib.Path) -> list[pathlib.Path]:
    """Redraw every figure from the CSVs an earlier run wrote into ``out``."""
    out = pathlib.Path(out)
    args = read_args(out / "config.json", Args)
    read = {name: pd.read_csv(out / f"{name}.csv") for name in ("methods", "steps", "clones")}
    return _plots(out, read["methods"], read["steps"], read["clones"], args)


def _plots(
    out: pathlib.Path, methods: pd.DataFrame, steps: pd.DataFrame, clones: pd.DataFrame, args: Args
) -> list[pathlib.Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    m = methods[methods["method"].isin(METHODS)]
    expert = methods[methods["method"] == "expert"].iloc[0]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    panels = (
        ("return", "closed-loop return"),
        ("crash_rate", "crash rate"),
        ("eps_on", "eps_on (dashed: eps_off)"),
        ("shift", "eps_on(t) - eps_off(t), same seed and step"),
    )
    for ax, (col, label) in zip(axes.flat, panels):
        for i, (name, g) in enumerate(m.groupby("method", sort=False)):
            x = g["budget"] * (1 + 0.04 * (i - 1))  # side by side
            ax.errorbar(
                x,
                g[col],
                yerr=[g[col] - g[f"{col}_ci_low"], g[f"{col}_ci_high"] - g[col]],
                marker="o",
                capsize=3,
                color=f"C{i}",
                label=name,
            )
            if col == "eps_on":
                ax.errorbar(
                    x,
                    g["eps_off"],
                    yerr=[g["eps_off"] - g["eps_off_ci_low"], g["eps_off_ci_high"] - g["eps_off"]],
                    marker="s",
                    ls="--",
                    capsize=3,
                    color=f"C{i}",
                )
        if col in ("return", "crash_rate"):
            ax.axhline(expert[col], color="k", ls=":", lw=1, label="expert")
        if col == "shift":
            ax.axhline(0, color="k", lw=0.8)
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xticks(list(args.budgets), [str(b) for b in args.budgets])
        ax.set_xlabel("training labels")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(
        f"{args.scenario}: BC vs DART vs DAgger at equal training labels ({len(args.train_seeds)} training seeds x "
        f"{args.eval_episodes} test seeds; 95% CIs over both)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(out / "methods.png", dpi=120)
    plt.close(fig)

    budget = max(args.budgets)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, name in enumerate(METHODS):
        for kind, ls in (("eps_on", "-"), ("eps_off", "--")):
            g = steps[(steps["method"] == name) & (steps["budget"] == budget) & (steps["kind"] == kind)]
            ax.plot(g["step"], g["error"], ls=ls, color=f"C{i}", label=f"{name} {kind}")
            if kind == "eps_on":
                ax.fill_between(g["step"], g["error_ci_low"], g["error_ci_high"], color=f"C{i}", alpha=0.15)
    ax.set_xlabel("decision step t")
    ax.set_ylabel("disagreement with the expert at step t")
    ax.set_title(f"Own states (solid) vs the expert's (dashed) at {budget} training labels", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(out / "steps.png", dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, col in zip(axes, ("return", "crash_rate")):
        for j, b in enumerate(args.budgets):
            for marker, name in zip("o^s", METHODS):
                g = clones[(clones["budget"] == b) & (clones["method"] == name)]
                ax.scatter(
                    g["val_accuracy"],
                    g[col],
                    marker=marker,
                    color=f"C{j}",
                    s=18,
                    label=f"{name}, {b}" if col == "return" else None,
                )
        ax.set_xlabel("validation action accuracy (open loop, common set)")
        ax.set_ylabel(f"closed-loop {col.replace('_', ' ')}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6, ncol=len(args.budgets))
    fig.suptitle(
        "Open vs closed loop per clone (colour: training labels; within-budget correlations: open_vs_closed.csv)",
        fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(out / "open_vs_closed.png", dpi=120)
    plt.close(fig)
    return [out / "methods.png", out / "steps.png", out / "open_vs_closed.png"]


if __name__ == "__main__":
    import sys

    try:
        main(tyro.cli(Args))
    except TestbedError as e:
        print(f"compounding_error: error: {e}", file=sys.stderr)
        sys.exit(2)
