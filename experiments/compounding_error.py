"""Compounding error of behavioral cloning on highway-fast, and DAgger / DART as cures.

One script, five results under results/compounding_error/ (CSV + PNG each, config.json with
provenance):

1. drift/ — twin rollouts, eps_on vs eps_off and survival for BC, DART-BC and DAgger clones
   (the expert itself is included as the zero-divergence sanity check);
2. labels.csv/labels.png — return and crash rate against the number of expert labels for
   BC (growing demonstration sets) and DAgger (after each round);
3. dart.csv — BC on clean vs noise-injected demonstrations at equal data size;
4. open_vs_closed.csv/png — validation accuracy vs closed-loop return / crash rate across
   clones (data size x training seed), with Spearman rank correlations and bootstrap CIs;
5. horizon.csv/png — expert-minus-clone return gap and crash-probability gap against the
   episode horizon T, with fitted log-log slopes (bootstrap CIs) for BC and DAgger.

    python experiments/compounding_error.py           # wall time: results/reproduce.json
    python experiments/compounding_error.py --fast    # tiny preset, used by the tests
"""

from __future__ import annotations

import copy
import dataclasses
import json
import pathlib
import time
from typing import Any

import numpy as np
import pandas as pd
import tyro

from testbed.collect import collect
from testbed.dagger import DAggerConfig, as_demonstrations, train_dagger
from testbed.demos import Demonstrations
from testbed.drift import format_drift, measure_drift, write_drift
from testbed.metrics import episodes_table, mean_ci
from testbed.outputs import atomic_output_dir, final_path, write_json
from testbed.policies import PolicySpec
from testbed.provenance import provenance
from testbed.rollout import RolloutPool
from testbed.runtime import default_workers
from testbed.scenarios import get_scenario
from testbed.seeds import EVAL_SEED
from testbed.training import TrainConfig, TrainResult, save_clone, train_bc


@dataclasses.dataclass
class Args:
    """Compounding-error study: drift measures, BC vs DAgger vs DART, horizon scaling."""

    scenario: str = "highway-fast"
    """Scenario preset."""
    expert: str = "scripted"
    """Expert to clone."""
    demo_episodes: int = 100
    """Largest demonstration set (episodes, seeds 0..)."""
    data_sizes: tuple[int, ...] = (10, 25, 50, 100)
    """Demonstration set sizes (episodes) for the labels and open/closed-loop sweeps."""
    train_seeds: tuple[int, ...] = (0, 1, 2)
    """BC training seeds per data size."""
    epochs: int = 100
    """BC epochs (DAgger: per-round epochs are set below)."""
    batch_size: int = 64
    """BC batch size (BC and DAgger)."""
    dart_noise: float = 0.2
    """DART: probability of applying a random action while collecting (labels stay clean)."""
    dart_seed: int = 2_000
    """First seed of the noisy demonstrations (disjoint from the clean ones)."""
    dagger_rounds: int = 5
    """DAgger rounds (round 0 is the expert driving)."""
    dagger_episodes_per_round: int = 20
    """DAgger episodes per round."""
    dagger_epochs_per_round: int = 30
    """DAgger BC epochs per round."""
    eval_episodes: int = 100
    """Held-out episodes for drift and for the DAgger/BC/DART comparison."""
    sweep_eval_episodes: int = 30
    """Held-out episodes per clone in the labels and open/closed-loop sweeps."""
    horizons_s: tuple[int, ...] = (10, 20, 40, 80)
    """Episode durations T [s] for horizon scaling (highway-fast decides at 1 Hz)."""
    horizon_episodes: int = 30
    """Held-out episodes per horizon and policy."""
    eval_seed: int = EVAL_SEED
    """First held-out seed."""
    workers: int = dataclasses.field(default_factory=default_workers)
    """Worker processes."""
    out: str = "results/compounding_error"
    """Output directory (replaced)."""
    fast: bool = False
    """Tiny preset for tests."""

    def resolved(self) -> Args:
        if not self.fast:
            return self
        return dataclasses.replace(
            self,
            demo_episodes=6,
            data_sizes=(3, 6),
            train_seeds=(0, 1),
            epochs=5,
            batch_size=16,
            dagger_rounds=2,
            dagger_episodes_per_round=3,
            dagger_epochs_per_round=3,
            eval_episodes=4,
            sweep_eval_episodes=3,
            horizons_s=(5, 10),
            horizon_episodes=3,
        )


def _equal_size(noisy: Demonstrations, n_transitions: int) -> Demonstrations:
    """The first noisy episodes whose transitions come closest to ``n_transitions``."""
    lengths = np.cumsum([len(t.acts) for t in noisy.trajectories])
    n = int(np.argmin(np.abs(lengths - n_transitions))) + 1
    return noisy.first(n)


def _train(demos: Demonstrations, path: pathlib.Path, config: TrainConfig) -> tuple[PolicySpec, TrainResult]:
    result = train_bc(demos, config)
    save_clone(path, result, demos=demos, demos_path="(in memory)", config=config)
    return PolicySpec("clone", str(path), name=f"clone:{final_path(path)}"), result


def _evaluate(pool: RolloutPool, scenario, spec: PolicySpec, seeds: list[int]) -> pd.DataFrame:
    records = pool.run(scenario, spec, seeds, progress=True, desc=spec.label[-40:])
    return episodes_table((r.policy, r.seed, r.trajectory) for r in records)


def _ci_row(values: np.ndarray, prefix: str) -> dict[str, float]:
    ci = mean_ci(values)
    return ci.columns(prefix)


def _spearman_ci(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, n_boot: int = 2000) -> dict[str, float]:
    """Spearman's rho with a bootstrap CI over clones (NaN where an input is constant)."""
    import warnings

    from scipy import stats

    warnings.filterwarnings("ignore", message="An input array is constant")

    rho = float(stats.spearmanr(x, y).statistic)
    boots = []
    for _ in range(n_boot):
        idx = rng.integers(len(x), size=len(x))
        if np.ptp(x[idx]) > 0 and np.ptp(y[idx]) > 0:
            boots.append(stats.spearmanr(x[idx], y[idx]).statistic)
    low, high = np.percentile(boots, [2.5, 97.5]) if boots else (np.nan, np.nan)
    return {"spearman_rho": rho, "ci_low": float(low), "ci_high": float(high), "n_clones": len(x)}


def _loglog_slope(per_t: dict[int, np.ndarray], rng: np.random.Generator, n_boot: int = 2000) -> dict[str, float]:
    """Least-squares slope of log(mean gap) on log(T), with a bootstrap over episodes
    within each T. NaN when a mean gap is not positive (the log is undefined)."""
    ts = np.array(sorted(per_t), dtype=float)

    def slope(means: np.ndarray) -> float:
        if np.any(means <= 0):
            return float("nan")
        return float(np.polyfit(np.log(ts), np.log(means), 1)[0])

    point = slope(np.array([per_t[int(t)].mean() for t in ts]))
    boots = [
        slope(np.array([rng.choice(per_t[int(t)], size=len(per_t[int(t)])).mean() for t in ts])) for _ in range(n_boot)
    ]
    boots = np.array([b for b in boots if np.isfinite(b)])
    low, high = np.percentile(boots, [2.5, 97.5]) if len(boots) else (np.nan, np.nan)
    return {"slope": point, "ci_low": float(low), "ci_high": float(high), "n_valid_boot": int(len(boots))}


def main(args: Args) -> dict[str, Any]:
    args = args.resolved()
    start = time.perf_counter()
    scenario = get_scenario(args.scenario)
    eval_seeds = list(range(args.eval_seed, args.eval_seed + args.eval_episodes))
    sweep_seeds = eval_seeds[: args.sweep_eval_episodes]
    rng = np.random.default_rng(0)
    base = TrainConfig(n_epochs=args.epochs, batch_size=args.batch_size)
    timings: dict[str, float] = {}
    with atomic_output_dir(args.out, overwrite=True) as out, RolloutPool(args.workers) as pool:
        runs = out / "runs"
        t0 = time.perf_counter()
        clean = collect(scenario, args.expert, n_episodes=args.demo_episodes, seed=0, pool=pool, progress=True)
        noisy_all = collect(
            scenario,
            args.expert,
            n_episodes=args.demo_episodes,
            seed=args.dart_seed,
            pool=pool,
            noise=args.dart_noise,
            progress=True,
        )
        timings["collect_s"] = time.perf_counter() - t0

        # --- BC sweep over data size x seed: labels curve and open-loop vs closed-loop.
        t0 = time.perf_counter()
        sweep_rows, sweep_episodes = [], []
        main_bc: PolicySpec | None = None
        for n in args.data_sizes:
            for seed in args.train_seeds:
                demos = clean.first(n)
                spec, result = _train(demos, runs / f"bc_n{n}_s{seed}", dataclasses.replace(base, seed=seed))
                if n == max(args.data_sizes) and seed == args.train_seeds[0]:
                    main_bc = spec
                ep = _evaluate(pool, scenario, spec, sweep_seeds)
                sweep_episodes.append(ep.assign(algorithm="bc", n_episodes_demo=n, train_seed=seed))
                sweep_rows.append(
                    {
                        "algorithm": "bc",
                        "n_demo_episodes": n,
                        "train_seed": seed,
                        "n_labels": demos.n_transitions,
                        "val_accuracy": float(result.log["val/accuracy"].iloc[-1]),
                        "train_accuracy": float(result.log["train/accuracy"].iloc[-1]),
                        **_ci_row(ep["return"].to_numpy(), "return"),
                        **_ci_row(ep["crashed"].to_numpy(), "crash_rate"),
                    }
                )
        timings["bc_sweep_s"] = time.perf_counter() - t0

        # --- DART: BC on noisy demonstrations with as many transitions as the clean set.
        t0 = time.perf_counter()
        noisy = _equal_size(noisy_all, clean.n_transitions)
        dart_spec, _ = _train(noisy, runs / "dart", base)
        timings["dart_s"] = time.perf_counter() - t0

        # --- DAgger, with the policy after every round evaluated (labels curve).
        t0 = time.perf_counter()
        snapshots: list[tuple[int, Any, int]] = []
        dagger_cfg = DAggerConfig(
            n_rounds=args.dagger_rounds,
            episodes_per_round=args.dagger_episodes_per_round,
            epochs_per_round=args.dagger_epochs_per_round,
        )
        dres = train_dagger(
            scenario,
            args.expert,
            base,
            dagger_cfg,
            on_round_end=lambda r, policy, n: snapshots.append((r, copy.deepcopy(policy), n)),
            progress=True,
        )
        ddata = as_demonstrations(dres, scenario, args.expert)
        dagger_spec = None
        for r, policy, n_labels in snapshots:
            path = runs / f"dagger_round{r}"
            snap = TrainResult(policy=policy, log=dres.log.iloc[: r + 1], train_episodes=[], val_episodes=[])
            save_clone(
                path,
                snap,
                demos=ddata,
                demos_path="(DAgger)",
                config=base,
                algorithm="dagger",
                extra={"dagger": dataclasses.asdict(dagger_cfg), "round": r},
            )
            spec = PolicySpec("clone", str(path), name=f"clone:{final_path(path)}")
            ep = _evaluate(pool, scenario, spec, sweep_seeds)
            sweep_episodes.append(ep.assign(algorithm="dagger", n_episodes_demo=np.nan, train_seed=base.seed))
            sweep_rows.append(
                {
                    "algorithm": "dagger",
                    "round": r,
                    "train_seed": base.seed,
                    "n_labels": n_labels,
                    **_ci_row(ep["return"].to_numpy(), "return"),
                    **_ci_row(ep["crashed"].to_numpy(), "crash_rate"),
                }
            )
            dagger_spec = spec
        timings["dagger_s"] = time.perf_counter() - t0
        sweep = pd.DataFrame(sweep_rows)
        sweep.to_csv(out / "labels.csv", index=False)
        pd.concat(sweep_episodes, ignore_index=True).to_csv(out / "labels_episodes.csv", index=False)

        # --- Drift of the three cures' clones (+ expert as the zero check).
        t0 = time.perf_counter()
        named = {"bc": main_bc, "dart": dart_spec, "dagger": dagger_spec}
        specs = [PolicySpec("expert", args.expert), *named.values()]
        drift = measure_drift(scenario, specs, eval_seeds, expert=args.expert, pool=pool, progress=True)
        names = {spec.label: f"{name} ({spec.arg.rsplit('/', 1)[-1]})" for name, spec in named.items()}
        for frame in (drift.twin_steps, drift.twin_episodes, drift.audit_steps, drift.survival, drift.summary):
            frame["policy"] = frame["policy"].replace(names)
        (out / "drift").mkdir()
        write_drift(drift, out / "drift", title=_drift_title(scenario.name, len(eval_seeds)))
        timings["drift_s"] = time.perf_counter() - t0

        # --- DART vs BC at equal data size, on the drift episodes' closed-loop outcomes (the
        # policy drives in its twin rollout; the expert only labels).
        comp = []
        for name, spec in named.items():
            ep = drift.twin_episodes[drift.twin_episodes["policy"] == names[spec.label]]
            n_labels = {
                "bc": clean.n_transitions,
                "dart": noisy.n_transitions,
                "dagger": int(dres.log["n_labels"].iloc[-1]),
            }[name]
            comp.append(
                {
                    "method": name,
                    "run": spec.arg.rsplit("/", 1)[-1],
                    "n_labels": n_labels,
                    **_ci_row(ep["return"].to_numpy(), "return"),
                    **_ci_row(ep["crashed"].to_numpy(), "crash_rate"),
                }
            )
        pd.DataFrame(comp).to_csv(out / "methods.csv", index=False)

        # --- Open-loop vs closed-loop over the BC sweep.
        bc_rows = sweep[sweep["algorithm"] == "bc"]
        corr = pd.DataFrame(
            [
                {
                    "closed_loop": "return",
                    **_spearman_ci(bc_rows["val_accuracy"].to_numpy(), bc_rows["return"].to_numpy(), rng),
                },
                {
                    "closed_loop": "crash_rate",
                    **_spearman_ci(bc_rows["val_accuracy"].to_numpy(), bc_rows["crash_rate"].to_numpy(), rng),
                },
            ]
        )
        corr.to_csv(out / "open_vs_closed.csv", index=False)

        # --- Horizon scaling.
        t0 = time.perf_counter()
        horizon_rows, gaps = [], {"bc": {}, "dagger": {}}
        crash_gaps = {"bc": {}, "dagger": {}}
        for T in args.horizons_s:
            sc_t = get_scenario(args.scenario, {"duration": T})
            seeds_t = eval_seeds[: args.horizon_episodes]
            expert_ep = _evaluate(pool, sc_t, PolicySpec("expert", args.expert), seeds_t).set_index("seed")
            for name in ("bc", "dagger"):
                ep = _evaluate(pool, sc_t, named[name], seeds_t).set_index("seed").loc[expert_ep.index]
                gap = (expert_ep["return"] - ep["return"]).to_numpy()
                cgap = (ep["crashed"] - expert_ep["crashed"]).to_numpy()
                gaps[name][T], crash_gaps[name][T] = gap, cgap
                horizon_rows.append(
                    {
                        "method": name,
                        "T_s": T,
                        **_ci_row(gap, "return_gap"),
                        **_ci_row(cgap, "crash_gap"),
                        **_ci_row(ep["crashed"].to_numpy(), "crash_rate"),
                        **_ci_row(expert_ep["crashed"].to_numpy(), "expert_crash_rate"),
                    }
                )
        horizon = pd.DataFrame(horizon_rows)
        horizon.to_csv(out / "horizon.csv", index=False)
        slopes = pd.DataFrame(
            [{"method": m, "cost": "return_gap", **_loglog_slope(gaps[m], rng)} for m in gaps]
            + [{"method": m, "cost": "crash_gap", **_loglog_slope(crash_gaps[m], rng)} for m in crash_gaps]
        )
        slopes.to_csv(out / "horizon_slopes.csv", index=False)
        timings["horizon_s"] = time.perf_counter() - t0

        _plots(out, sweep, horizon, bc_rows)
        config = {
            "args": dataclasses.asdict(args),
            "scenario": scenario.to_dict(),
            "train_config": base.to_dict(),
            "dagger": dataclasses.asdict(dagger_cfg),
            "seeds": {
                "clean_demos": [0, args.demo_episodes - 1],
                "noisy_demos": [args.dart_seed, args.dart_seed + args.demo_episodes - 1],
                "dagger_rounds": dres.round_seeds,
                "eval": [eval_seeds[0], eval_seeds[-1]],
            },
            "dart_equal_size": {
                "clean_transitions": clean.n_transitions,
                "noisy_transitions": noisy.n_transitions,
                "noisy_episodes": len(noisy.trajectories),
            },
            "statistics": "means with 95% percentile-bootstrap CIs over episodes; Spearman CIs bootstrap over clones; "
            "slopes: least squares on log-log means, bootstrap over episodes within each horizon",
            "wall_time_s": {k: round(v, 1) for k, v in timings.items()}
            | {"total": round(time.perf_counter() - start, 1)},
            "provenance": provenance(),
        }
        write_json(out / "config.json", config)
    print(format_drift(drift.summary))
    print(pd.DataFrame(comp)[["method", "n_labels", "return", "crash_rate"]].to_string(index=False))
    print(corr.to_string(index=False))
    print(slopes.to_string(index=False))
    print(f"total {time.perf_counter() - start:.0f} s -> {args.out}")
    return {"drift": drift.summary, "methods": pd.DataFrame(comp), "corr": corr, "slopes": slopes, "sweep": sweep}


def _drift_title(scenario: str, n_episodes: int) -> str:
    return f"{scenario}: BC, DART and DAgger vs expert, {n_episodes} episodes"


def replot(out: str | pathlib.Path) -> list[pathlib.Path]:
    """Redraw every figure from the CSVs an earlier run wrote into ``out``."""
    import matplotlib.pyplot as plt

    from testbed.plotting import plot_drift

    out = pathlib.Path(out)
    sweep = pd.read_csv(out / "labels.csv")
    _plots(out, sweep, pd.read_csv(out / "horizon.csv"), sweep[sweep["algorithm"] == "bc"])
    d = out / "drift"
    curves = {
        "position": pd.read_csv(d / "twin_position_curve.csv"),
        "disagreement": pd.read_csv(d / "disagreement_curve.csv"),
    }
    n = pd.read_csv(d / "drift_episodes.csv").groupby("policy").size().max()
    scenario = json.loads((out / "config.json").read_text())["scenario"]["name"]
    fig = plot_drift(
        curves, pd.read_csv(d / "survival.csv"), pd.read_csv(d / "drift_summary.csv"), title=_drift_title(scenario, n)
    )
    fig.savefig(d / "drift.png", dpi=120)
    plt.close(fig)
    return [out / "labels.png", out / "open_vs_closed.png", out / "horizon.png", d / "drift.png"]


def _plots(out: pathlib.Path, sweep: pd.DataFrame, horizon: pd.DataFrame, bc_rows: pd.DataFrame) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for name, g in sweep.groupby("algorithm", sort=False):
        g = g.groupby("n_labels", as_index=False).mean(numeric_only=True) if name == "bc" else g
        for ax, col in zip(axes, ("return", "crash_rate")):
            ax.errorbar(
                g["n_labels"],
                g[col],
                yerr=[g[col] - g[f"{col}_ci_low"], g[f"{col}_ci_high"] - g[col]],
                marker="o",
                capsize=3,
                label=name,
            )
    for ax, label in zip(axes, ("closed-loop return", "crash rate")):
        ax.set_xlabel("expert labels")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("BC vs DAgger at equal expert labels (BC: mean over training seeds; 95% CIs)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "labels.png", dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, col in zip(axes, ("return", "crash_rate")):
        ax.scatter(bc_rows["val_accuracy"], bc_rows[col], c=np.log(bc_rows["n_demo_episodes"]), cmap="viridis")
        ax.set_xlabel("validation action accuracy (open loop)")
        ax.set_ylabel(f"closed-loop {col.replace('_', ' ')}")
        ax.grid(alpha=0.3)
    fig.suptitle("Open-loop vs closed-loop across BC clones (colour: log data size)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "open_vs_closed.png", dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for name, g in horizon.groupby("method", sort=False):
        for ax, col in zip(axes, ("return_gap", "crash_gap")):
            ax.errorbar(
                g["T_s"],
                g[col],
                yerr=[g[col] - g[f"{col}_ci_low"], g[f"{col}_ci_high"] - g[col]],
                marker="o",
                capsize=3,
                label=name,
            )
    for ax, label in zip(axes, ("expert - clone return", "clone - expert crash probability")):
        ax.set_xscale("log")
        ax.set_xlabel("horizon T [s]")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    fig.suptitle("Cost gap against horizon (paired by seed, 95% CIs)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "horizon.png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main(tyro.cli(Args))
