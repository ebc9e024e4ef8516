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

import pandas as pd

from testbed import drift, kit
from testbed.collect import collect, collect_transitions
from testbed.demos import load_demos, save_demos
from testbed.errors import TestbedError
from testbed.metrics import outcome_columns, spearman_within_groups
from testbed.outputs import atomic_output_dir, read_args
from testbed.plotting import plot_methods_by_budget, plot_open_vs_closed, plot_step_errors
from testbed.policies import PolicySpec
from testbed.rollout import RolloutPool
from testbed.scenarios import Scenario, get_scenario, parse_overrides
from testbed.seeds import DAGGER, DEMOS, DEVELOPMENT, TUNING, check_test_seeds, episode_seeds

METHODS = ("bc", "dart", "dagger")
DEMO_BLOCK = 800
"""Demonstration seeds per training seed: seed s collects from DEMOS.first + s * DEMO_BLOCK."""
VALIDATION_OFFSET = 4_000
"""The common validation episodes start at this offset of the demonstration range."""
DAGGER_BLOCK = 100
"""DAgger round seeds per training seed: seed s's round r is DAGGER.first + s * DAGGER_BLOCK + r."""


@dataclasses.dataclass
class Args(kit.EvalArgs):
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
    out: str = "results/compounding_error"
    """Output directory (replaced)."""

    def resolved(self) -> Args:
        return kit.fast_preset(
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
        seeds = self.train_seeds
        if len(seeds) < 2 or min(seeds) < 0 or len(set(seeds)) != len(seeds):
            raise TestbedError(f"--train-seeds: need >= 2 distinct non-negative seeds, got {seeds}")
        if (max(seeds) + 1) * DEMO_BLOCK > VALIDATION_OFFSET:
            raise TestbedError(f"--train-seeds must stay below {VALIDATION_OFFSET // DEMO_BLOCK} (seed blocks)")
        if not self.dart_noises or not all(0 < p <= 1 for p in self.dart_noises):
            raise TestbedError(f"--dart-noises must be probabilities in (0, 1], got {self.dart_noises}")
        if self.budgets[-1] % self.dagger_labels_per_round or self.dagger_labels_per_round < 1:
            raise TestbedError("--dagger-labels-per-round must divide the largest budget")
        kit.check_at_least_one(self, "epochs", "batch_size", "dagger_epochs_per_round", "val_episodes", "eval_episodes")


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


def run_cell(ctx: Context, cell: dict[str, Any], cell_dir: pathlib.Path) -> dict[str, Any]:
    """One method and training seed: collect, train a clone per budget, drive the test seeds."""
    from testbed.clone_io import load_clone
    from testbed.dagger import DAggerConfig, as_demonstrations, train_dagger
    from testbed.training import action_accuracy, stack_transitions

    scenario = Scenario.from_dict(ctx.scenario)
    method, seed = cell["method"], int(cell["train_seed"])
    validation = load_demos(ctx.validation_dir, scenario=scenario).trajectories
    clones: list[dict[str, Any]] = []
    with RolloutPool(1) as pool:  # the cells are the parallel unit
        if method in ("bc", "dart"):  # the first B transitions of (noisy) demonstrations
            start = DEMOS.first + seed * DEMO_BLOCK
            noise = float(cell.get("noise", 0.0))
            demos = collect_transitions(scenario, ctx.expert, ctx.budgets[-1], seed=start, pool=pool, noise=noise)
            if demos.seeds[-1] >= start + DEMO_BLOCK:
                raise TestbedError(f"{method} seed {seed} needed seeds beyond its block of {DEMO_BLOCK}")
            for budget in ctx.budgets:
                subset, path = demos.first_transitions(budget), cell_dir / "clones" / f"B{budget}"
                config = kit.every_label_config(seed, budget, epochs=ctx.epochs, batch_size=ctx.batch_size)
                kit.train_clone(path, subset, config)
                clones.append({"budget": budget, "n_train_labels": subset.n_transitions, "path": path})
        else:  # DAgger's rounds; at budget B its best validation iterate with at most B labels
            config = kit.every_label_config(
                seed, ctx.dagger_labels_per_round, epochs=ctx.dagger_epochs_per_round, batch_size=ctx.batch_size
            )
            dagger = DAggerConfig(
                n_rounds=ctx.budgets[-1] // ctx.dagger_labels_per_round,
                labels_per_round=ctx.dagger_labels_per_round,
                epochs_per_round=ctx.dagger_epochs_per_round,
                first_seed=DAGGER.first + seed * DAGGER_BLOCK,
            )
            result = train_dagger(scenario, ctx.expert, config, dagger, validation=stack_transitions(validation))
            result.log.to_csv(cell_dir / "dagger_log.csv", index=False)
            data = as_demonstrations(result, scenario, ctx.expert)
            clones = kit.save_dagger_clones(
                result, ctx.budgets, cell_dir / "clones", data=data, config=config, dagger=dagger
            )
        rows = []
        for c in clones:  # open loop on the common validation set, closed loop on the test seeds
            c["val_accuracy"] = action_accuracy(load_clone(c["path"], scenario=scenario), validation)
            spec, labeller = PolicySpec("clone", str(c["path"])), PolicySpec("expert", ctx.expert)
            records = pool.run(scenario, spec, list(ctx.eval_seeds), labeller=labeller)
            rows += [{"budget": c["budget"], **r} for r in drift.outcome_rows(records)]
    pd.DataFrame(rows).to_csv(cell_dir / "episodes.csv", index=False)
    clones = [{k: (str(v.relative_to(cell_dir)) if k == "path" else v) for k, v in c.items()} for c in clones]
    return {"method": method, "train_seed": seed, "clones": clones}


def tune_dart(ctx: Context, cell: dict[str, Any], cell_dir: pathlib.Path) -> dict[str, Any]:
    """One DART candidate on tuning demonstrations, driven on development seeds."""
    from testbed.metrics import episodes_table

    scenario = Scenario.from_dict(ctx.scenario)
    budget, noise = int(cell["budget"]), float(cell["noise"])
    with RolloutPool(1) as pool:
        demos = collect_transitions(scenario, ctx.expert, budget, seed=TUNING.first, pool=pool, noise=noise)
        config = kit.every_label_config(0, budget, epochs=ctx.epochs, batch_size=ctx.batch_size)
        spec = kit.train_clone(cell_dir / "clone", demos, config)
        records = pool.run(scenario, PolicySpec("clone", spec.arg), list(ctx.eval_seeds))
    episodes = episodes_table((f"dart p={noise}", r.seed, r.trajectory) for r in records)
    return {
        "noise": noise,
        "n_train_labels": demos.n_transitions,
        "demo_seeds": [demos.seeds[0], demos.seeds[-1]],
        **outcome_columns(episodes),
    }


def main(args: Args) -> dict[str, pd.DataFrame]:
    args = args.resolved()
    args.validate()
    start = time.perf_counter()
    scenario = get_scenario(args.scenario, parse_overrides(args.set))
    eval_seeds = tuple(episode_seeds(args.eval_seed, args.eval_episodes))
    test_seeds = check_test_seeds(list(eval_seeds), "compounding_error")
    val_seed = DEMOS.first + VALIDATION_OFFSET
    timings: dict[str, float] = {}
    with atomic_output_dir(args.out, overwrite=True) as out:
        # The common validation set of expert states, and the expert's own test episodes.
        with kit.timed(timings, "validation_and_expert_s"), RolloutPool(args.workers) as pool:
            validation = collect(scenario, args.expert, n_episodes=args.val_episodes, seed=val_seed, pool=pool)
            save_demos(validation, out / "validation")
            expert_spec = PolicySpec("expert", args.expert)
            expert_runs = pool.run(scenario, expert_spec, list(eval_seeds), progress=True, desc="expert")
        validation_dir = str((out / "validation").absolute())
        ctx = kit.context_from(
            args, Context, scenario=scenario.to_dict(), validation_dir=validation_dir, eval_seeds=eval_seeds
        )

        # The sweeps' config: the cells' context and the commit (not where this run keeps its files).
        sweep = functools.partial(kit.context_sweep, workers=args.workers, unrecorded=["validation_dir"])

        # DART's noise level, chosen on tuning demonstrations and development seeds only.
        with kit.timed(timings, "dart_tuning_s"):
            tuning_ctx = dataclasses.replace(ctx, eval_seeds=tuple(DEVELOPMENT.seeds(args.dart_tuning_episodes)))
            candidates = [{"noise": p, "budget": args.dart_tuning_budget} for p in args.dart_noises]
            tuning = sweep(out / "dart_tuning", candidates, tune_dart, tuning_ctx)
            tuning_table = pd.DataFrame([r.result for r in tuning])
            noise = float(tuning_table.loc[tuning_table["return"].idxmax(), "noise"])
            tuning_table["chosen"] = tuning_table["noise"] == noise

        # One sweep cell per method and training seed: its clones at every budget, driven.
        with kit.timed(timings, "sweep_s"):
            cells = [
                {"method": m, "train_seed": s, **({"noise": noise} if m == "dart" else {})}
                for s in args.train_seeds
                for m in METHODS
            ]
            results = sweep(out / "sweep", cells, run_cell, ctx)

        cell_results = [{"cell_id": r.cell_id, "result": r.result} for r in results]
        clones = kit.clone_error_table(cell_results, out / "sweep", {r.seed: r for r in expert_runs}, scenario)
        per_clone = drift.clone_rows(clones, ["method", "budget", "train_seed"])
        expert = pd.DataFrame(drift.outcome_rows(expert_runs, labelled=False))
        tables = {
            "methods": drift.method_rows(clones, reference="bc", expert=expert),
            "steps": drift.step_error_rows(clones, ["method", "budget"]),
            # Open vs closed loop: correlations within a data size, not across sizes.
            "open_vs_closed": spearman_within_groups(
                per_clone.sort_values(["method", "train_seed", "budget"], ignore_index=True),
                "val_accuracy",
                ("return", "crash_rate"),
                by="budget",
                label="closed_loop",
                n_label="n_clones",
                mean_label="within-budget mean",
            ),
            "clones": per_clone,
            "episodes": clones.drop(columns=["on_errors", "off_errors"]),
            "dart_tuning": tuning_table,
        }
        kit.write_results(out, tables)
        _plots(out, tables, args)
        record = kit.experiment_record(
            args,
            scenario=scenario.to_dict(),
            dart_noise={
                "chosen": noise,
                "by": "highest mean return on development seeds",
                "candidates": list(args.dart_noises),
            },
            seeds={
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
            labels="budget = labels the model trains on: BC and DART train on exactly that many (no validation "
            "split); DAgger's clone is its best validation iterate with at most that many aggregate labels "
            "(n_train_labels). The validation set's labels are not counted (every method is scored on it; "
            "only DAgger selects on it).",
            statistics="rows averaging clones: variance-components intervals over training and test "
            "seeds (testbed.metrics.clones_mean_ci; crash rate clones_rate_ci); eps_on/eps_off/shift pooled "
            "over steps per clone (ratio, linearised per episode: testbed.drift.pooled_scores); shift = "
            "eps_on(t) - eps_off(t) on the same seed at the same step, over the steps both episodes reached; "
            "*_vs_bc: paired by test seed, training seeds independent (combination_ci); expert: bootstrap "
            "over episodes, crash rate Clopper-Pearson; open_vs_closed: Spearman within each budget, "
            "bootstrap over clones (stratified for the mean over budgets)",
            wall_time_s={k: round(v, 1) for k, v in timings.items()} | {"total": round(time.perf_counter() - start, 1)},
        )
        kit.write_results(out, {}, record)
    columns = ["method", "budget", "return", "crash_rate", "eps_on", "eps_off", "shift", "return_vs_bc"]
    kit.print_table(tables["methods"], columns, digits=3)
    print(f"DART noise {noise} (development seeds); total {time.perf_counter() - start:.0f} s -> {args.out}")
    return tables


def replot(out: str | pathlib.Path) -> list[pathlib.Path]:
    """Redraw every figure from the CSVs an earlier run wrote into ``out``."""
    out = pathlib.Path(out)
    tables = {name: pd.read_csv(out / f"{name}.csv") for name in ("methods", "steps", "clones")}
    return _plots(out, tables, read_args(out / "config.json", Args))


def _plots(out: pathlib.Path, tables: dict[str, pd.DataFrame], args: Args) -> list[pathlib.Path]:
    title = (
        f"{args.scenario}: BC vs DART vs DAgger at equal training labels ({len(args.train_seeds)} training seeds x "
        f"{args.eval_episodes} test seeds; 95% CIs over both)"
    )
    figures = {
        "methods.png": plot_methods_by_budget(tables["methods"], order=METHODS, budgets=args.budgets, title=title),
        "steps.png": plot_step_errors(tables["steps"], order=METHODS, budget=max(args.budgets)),
        "open_vs_closed.png": plot_open_vs_closed(tables["clones"], order=METHODS, budgets=args.budgets),
    }
    return kit.save_figures(out, figures)


if __name__ == "__main__":
    kit.run_script(main, Args)
