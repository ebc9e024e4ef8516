"""BC vs DART vs DAgger at equal expert labels and equal training, on the sealed test seeds.

For every budget B of expert labels and training seed s, clones of ``--expert`` on highway-fast
(reproduce: the scripted expert, and the planner at 3000 labels), each trained with BC's recipe
(a fresh network seeded by s, ``epochs`` epochs in batches of ``batch_size``, every label).

- **BC** trains on the first B transitions of clean expert demonstrations from seed s's own block
  of demonstration seeds, so the spread over seeds is the spread a user would see.
- **DART** (Laskey et al. 2017) with noise fitted to the learner's error (:mod:`testbed.dart`):
  its first B//2 labels are BC's first B//2; 2-fold cross-fitting on them (a clone per half of
  the episodes, scored on the other half) estimates the learner's error eps_hat on the expert's
  states; the other labels come from the seeds that follow, the applied action uniformly random
  with probability p = min(1, eps_hat K/(K-1)) (K actions: it then differs from the expert's at
  the learner's rate), the label always the expert's.
- **DAgger** (Ross et al. 2011) runs rounds of ``dagger_labels_per_round`` labels: beta = 1 in
  round 0 (the expert drives), 0 after (the learner drives with its argmax and the privileged
  expert labels every visited state). After each round a fresh network trains on the aggregate
  with BC's recipe (``DAggerConfig(training="scratch")``), so every iterate had exactly the
  gradient steps BC takes on as many labels. Two clones per budget: ``dagger``, the iterate
  trained on exactly B labels, and ``dagger-onpolicy``, the iterate with the highest mean return
  driving itself on ``dagger_selection_episodes`` development seeds among those trained on at
  most B labels (ties to fewer labels; :func:`testbed.dagger.select_iterate`).

Labels: ``n_train_labels`` (what a clone trained on) and ``n_labels_used`` (every expert label
its method consumed) are B for BC, DART (its cross-fitting reuses its training labels) and
``dagger``; ``dagger-onpolicy`` used B to make its candidates and selects by returns, with no
labels (``selection_episodes``). One common validation set of expert states (demonstration seeds
no training set uses) scores every clone open loop (``val_accuracy``) and selects nothing.
Every clone then drives the same test seeds with the
expert labelling its states (eps_on, return, crash rate) and labels the expert's own test
episodes offline (eps_off). Errors are pooled over steps (a ratio, so short crashed episodes do
not weigh more), and the covariate-shift term compares a clone's error on its own episode with
its error on the expert's episode from the same seed *at the same step*. Rows averaging clones
carry variance-components intervals over training and evaluation seeds (:mod:`testbed.metrics`);
differences to BC are paired by test seed.

Outputs under results/compounding_error/: methods.csv (method x budget), steps.csv (eps_on(t),
eps_off(t) per method and budget), clones.csv (one row per clone, with DART's p and eps_hat and
DAgger's round), open_vs_closed.csv, episodes.csv, methods.png, steps.png, open_vs_closed.png,
config.json; the sweep (one cell per method and training seed; DAgger's cell holds both of its
rows, the on-policy one in its ``onpolicy/``) in sweep/.

    python experiments/compounding_error.py           # wall time: results/reproduce.json
    python experiments/compounding_error.py --fast    # tiny preset, used by the tests
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
import time
from typing import Any

import pandas as pd

from testbed import drift, kit
from testbed.collect import collect, collect_transitions
from testbed.demos import load_demos, save_demos
from testbed.errors import TestbedError
from testbed.kit.clones import clone_records, dagger_budget_clones, drive_clones, self_driven_returns
from testbed.metrics import spearman_within_groups
from testbed.outputs import atomic_output_dir, read_args
from testbed.plotting import plot_methods_by_budget, plot_open_vs_closed, plot_step_errors
from testbed.policies import PolicySpec
from testbed.rollout import RolloutPool
from testbed.scenarios import Scenario, get_scenario, parse_overrides
from testbed.seeds import DAGGER, DEMOS, DEVELOPMENT, check_test_seeds, episode_seeds

METHODS = ("bc", "dart", "dagger", "dagger-onpolicy")
CELL_METHODS = ("bc", "dart", "dagger")  # a sweep cell per training seed and method; DAgger's makes both rows
DEMO_BLOCK = 800
"""Demonstration seeds per training seed: seed s collects from DEMOS.first + s * DEMO_BLOCK."""
VALIDATION_OFFSET = 4_000
"""The common validation episodes start at this offset of the demonstration range."""
DAGGER_BLOCK = 100
"""DAgger round seeds per training seed: seed s's round r is DAGGER.first + s * DAGGER_BLOCK + r."""
ACCOUNTING = ("n_train_labels", "n_labels_used", "selection_episodes", "noise", "eps_hat")  # methods.csv: means


@dataclasses.dataclass
class Args(kit.EvalArgs):
    """BC vs DART vs DAgger at equal expert labels and BC's training, on test seeds."""

    scenario: str = "highway-fast"
    """Scenario preset."""
    set: tuple[str, ...] = ()
    """Scenario config overrides KEY=VALUE."""
    expert: str = "scripted"
    """Expert to clone (and to label)."""
    budgets: tuple[int, ...] = (1_000, 3_000)
    """Expert-label budgets (multiples of --dagger-labels-per-round); adding 10000 costs ~20 min more."""
    train_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    """Training seeds (each: its own demonstrations, DAgger rounds and initialisation)."""
    epochs: int = 100
    """BC epochs of every clone (DART's fold clones and every DAgger iterate too)."""
    batch_size: int = 64
    """Batch size of every clone."""
    dagger_labels_per_round: int = 500
    """DAgger labels per round (rounds: the largest budget / this)."""
    dagger_selection_episodes: int = 20
    """Development episodes each DAgger iterate drives for the on-policy selection."""
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
            dagger_labels_per_round=40,
            dagger_selection_episodes=2,
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
        kit.check_at_least_one(self, "epochs", "batch_size", "dagger_labels_per_round", "val_episodes")
        kit.check_at_least_one(self, "dagger_selection_episodes", "eval_episodes")
        per_round = self.dagger_labels_per_round  # DAgger's clone at B trains on exactly B labels, BC's batches
        if any(b % per_round for b in self.budgets) or per_round < self.batch_size:
            raise TestbedError(f"--budgets must be multiples of --dagger-labels-per-round {per_round} >= --batch-size")


@dataclasses.dataclass(frozen=True)
class Context:
    """What every sweep cell needs (JSON scalars; part of the sweep config)."""

    scenario: dict[str, Any]
    expert: str
    budgets: tuple[int, ...]
    epochs: int
    batch_size: int
    dagger_labels_per_round: int
    validation_dir: str
    eval_seeds: tuple[int, ...]
    dagger_selection_episodes: int


def run_cell(ctx: Context, cell: dict[str, Any], cell_dir: pathlib.Path) -> dict[str, Any]:
    """One method and training seed: its clones at every budget, scored open loop on the common
    validation set and driven on the test seeds (each distinct clone once)."""
    scenario = Scenario.from_dict(ctx.scenario)
    method, seed = cell["method"], int(cell["train_seed"])
    validation = load_demos(ctx.validation_dir, scenario=scenario).trajectories
    recipe = functools.partial(kit.every_label_config, seed, epochs=ctx.epochs, batch_size=ctx.batch_size)
    with RolloutPool(1) as pool:  # the cells are the parallel unit
        if method == "dagger":
            clones, selected = _dagger_clones(ctx, scenario, seed, recipe, pool, cell_dir)
        else:
            clones, selected = _demonstration_clones(ctx, scenario, method, seed, recipe, pool, cell_dir), []
        groups = {cell_dir: clones, **({cell_dir / "onpolicy": selected} if selected else {})}
        drive_clones(pool, scenario, groups, validation=validation, seeds=ctx.eval_seeds, expert=ctx.expert)
    result: dict[str, Any] = {"method": method, "train_seed": seed}
    for key, (where, group) in zip(("clones", "selected"), groups.items()):
        result[key] = [c | {"path": os.path.relpath(c["path"], where)} for c in group]
    return result


def _demonstration_clones(
    ctx: Context, scenario: Scenario, method: str, seed: int, recipe: Any, pool: RolloutPool, cell_dir: pathlib.Path
) -> list[dict[str, Any]]:
    """BC's clones (the first B clean transitions of seed's block) or DART's (:mod:`testbed.dart`)."""
    from testbed.dart import dart_demonstrations

    start = DEMOS.first + seed * DEMO_BLOCK
    n_clean = ctx.budgets[-1] if method == "bc" else ctx.budgets[-1] // 2  # DART: BC's first B // 2
    demos = collect_transitions(scenario, ctx.expert, n_clean, seed=start, pool=pool)
    if demos.seeds[-1] >= start + DEMO_BLOCK:
        raise TestbedError(f"{method} seed {seed} needed seeds beyond its block of {DEMO_BLOCK}")
    clones = []
    for budget in ctx.budgets:
        if method == "bc":
            data, extra = demos.first_transitions(budget), {}
        else:
            dart = dart_demonstrations(
                scenario, ctx.expert, demos, budget, recipe=recipe, pool=pool, seed_stop=start + DEMO_BLOCK
            )
            data, extra = dart.demos, dart.record()
        path = cell_dir / "clones" / f"B{budget}"
        kit.train_clone(path, data, recipe(budget))
        n = data.n_transitions
        clones.append({"budget": budget, "n_train_labels": n, "n_labels_used": n, "path": path, **extra})
    return clones


def _dagger_clones(
    ctx: Context, scenario: Scenario, seed: int, recipe: Any, pool: RolloutPool, cell_dir: pathlib.Path
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """DAgger trained as BC; per budget its iterate at B labels and its on-policy choice."""
    from testbed.dagger import DAggerConfig, as_demonstrations, train_dagger

    per_round, n_selection = ctx.dagger_labels_per_round, ctx.dagger_selection_episodes
    first, config = DAGGER.first + seed * DAGGER_BLOCK, recipe(per_round)
    dagger = DAggerConfig(ctx.budgets[-1] // per_round, per_round, training="scratch", first_seed=first)
    result = train_dagger(scenario, ctx.expert, config, dagger)  # no validation set: it selects nothing
    result.log.to_csv(cell_dir / "dagger_log.csv", index=False)
    data = as_demonstrations(result, scenario, ctx.expert)
    paths = kit.save_dagger_clones(result, cell_dir / "clones" / "iterates", data=data, config=config, dagger=dagger)
    returns = self_driven_returns(pool, scenario, paths, DEVELOPMENT.seeds(n_selection))
    pd.DataFrame({"n_labels": [it.n_labels for it in result.iterates], "return": returns}).to_csv(
        cell_dir / "selection.csv", index_label="round"
    )
    return dagger_budget_clones(result, paths, ctx.budgets, returns=returns, selection_episodes=n_selection)


def main(args: Args) -> dict[str, pd.DataFrame]:
    args = args.resolved()
    args.validate()
    start = time.perf_counter()
    scenario = get_scenario(args.scenario, parse_overrides(args.set))
    eval_seeds = tuple(episode_seeds(args.eval_seed, args.eval_episodes))
    test_seeds = check_test_seeds(list(eval_seeds), "compounding_error")
    selection_seeds = tuple(DEVELOPMENT.seeds(args.dagger_selection_episodes))
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

        # One sweep cell per method and training seed: its clones at every budget, driven.
        # The sweep's config: the cells' context and the commit (not where this run keeps its files).
        with kit.timed(timings, "sweep_s"):
            cells = [{"method": m, "train_seed": s} for s in args.train_seeds for m in CELL_METHODS]
            results = kit.context_sweep(
                out / "sweep", cells, run_cell, ctx, workers=args.workers, unrecorded=["validation_dir"]
            )

        # DAgger's on-policy clones are read as cells of their own (their episodes in onpolicy/).
        cell_results = [{"cell_id": r.cell_id, "result": r.result} for r in results] + [
            {"cell_id": f"{r.cell_id}/onpolicy", "result": r.result | {"method": "dagger-onpolicy", "clones": sel}}
            for r in results
            if (sel := r.result.get("selected"))
        ]
        clones = kit.clone_error_table(cell_results, out / "sweep", {r.seed: r for r in expert_runs}, scenario)
        info = clone_records(cell_results).drop(columns=["n_train_labels", "val_accuracy"])
        keys, by_seed = ["method", "budget", "train_seed"], ["method", "train_seed", "budget"]
        per_clone = drift.clone_rows(clones, keys).merge(info, on=keys, how="left")
        per_clone["selection_episodes"] = per_clone["selection_episodes"].fillna(0).astype(int)
        expert = pd.DataFrame(drift.outcome_rows(expert_runs, labelled=False))
        accounting = per_clone.groupby(["method", "budget"], as_index=False)[list(ACCOUNTING)].mean()
        methods = drift.method_rows(clones, reference="bc", expert=expert)
        tables = {
            "methods": methods.merge(accounting, on=["method", "budget"], how="left"),
            "steps": drift.step_error_rows(clones, ["method", "budget"]),
            # Open vs closed loop: within a data size, each clone once (dagger-onpolicy repeats an iterate).
            "open_vs_closed": spearman_within_groups(
                per_clone[per_clone.method != "dagger-onpolicy"].sort_values(by_seed, ignore_index=True),
                "val_accuracy",
                ("return", "crash_rate"),
                by="budget",
                label="closed_loop",
                n_label="n_clones",
                mean_label="within-budget mean",
            ),
            "clones": per_clone,
            "episodes": clones.drop(columns=["on_errors", "off_errors"]),
        }
        kit.write_results(out, tables)
        _plots(out, tables, args)
        record = kit.experiment_record(
            args,
            scenario=scenario.to_dict(),
            methods={
                "training": f"every clone (DART's fold clones, every DAgger iterate): BC's recipe, {args.epochs} "
                f"epochs from a fresh network, batch {args.batch_size}, every label (testbed.kit.every_label_config)",
                "dart": "testbed.dart: BC's first B//2 labels; the rest with p = min(1, eps_hat K/(K-1)), eps_hat "
                "2-fold cross-fitted on the first B//2 (alternate episodes)",
                "dagger": "DAggerConfig(training='scratch'); dagger: the iterate at B labels; dagger-onpolicy: "
                "the highest mean return on the selection seeds among iterates at <= B labels, ties to fewer",
            },
            seeds={
                "eval": test_seeds,
                "demonstrations": f"seed s: from {DEMOS.first} + s * {DEMO_BLOCK}; BC's first B, DART's first B//2 "
                "(the same), DART's noisy rest from the seeds that follow",
                "validation": DEMOS.record(list(range(val_seed, val_seed + args.val_episodes)))
                | {"first_used": val_seed},
                "dagger_rounds": f"training seed s, round r: {DAGGER.first} + s * {DAGGER_BLOCK} + r",
                "dagger_selection": DEVELOPMENT.record(list(selection_seeds))
                | {"first_used": selection_seeds[0], "note": "the same seeds for every iterate and training seed"},
            },
            labels="budget B = expert labels each method used (n_labels_used = B for every clone). BC, DART "
            "and dagger train on exactly B (n_train_labels); DART's noise is fitted by cross-fitting on its "
            "own first B//2 training labels (no extra labels); dagger-onpolicy trains on its chosen iterate's "
            "n_train_labels <= B and chooses by returns on development episodes, no expert labels "
            "(selection_episodes: iterates within B x dagger_selection_episodes). The common expert-state "
            "validation set is an open-loop score of every clone (val_accuracy) and selects nothing; its "
            "labels are no method's.",
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
    columns = ["method", "budget", "n_train_labels", "n_labels_used", "return", "crash_rate", "eps_on", "eps_off"]
    kit.print_table(tables["methods"], [*columns, "shift", "return_vs_bc", "noise"], digits=3)
    print(f"total {time.perf_counter() - start:.0f} s -> {args.out}")
    return tables


def replot(out: str | pathlib.Path) -> list[pathlib.Path]:
    """Redraw every figure from the CSVs an earlier run wrote into ``out``."""
    out = pathlib.Path(out)
    tables = {name: pd.read_csv(out / f"{name}.csv") for name in ("methods", "steps", "clones")}
    return _plots(out, tables, read_args(out / "config.json", Args))


def _plots(out: pathlib.Path, tables: dict[str, pd.DataFrame], args: Args) -> list[pathlib.Path]:
    title = (
        f"{args.scenario}: BC vs DART vs DAgger at equal expert labels ({len(args.train_seeds)} training seeds x "
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
