"""A leaderboard: any policies on a fixed suite of scenarios, normalized between random and the expert.

Every policy drives the same evaluation seeds (by default from :data:`SUITE_SEED`, in the
development range) on every scenario of a suite (:data:`SUITES`, the one place suites are
defined). Per scenario the leaderboard reports return, crash rate, the **normalized score**

    (mean return of the policy - mean return of random) / (mean return of the expert - mean return of random)

(1 for the reference expert and 0 for ``random`` by construction, so both always run), and the
**twin error**: the ego position error [m] against the expert's run from the same seed after
``horizon_s`` seconds (:func:`testbed.drift.twin_steps`), or at the end of the shorter run when
either ended earlier. Policies are ranked by their normalized score averaged over the scenarios
they ran on.

A policy that cannot run on a scenario (a clone or model made for other observation or action
spaces) is found before any simulation (:func:`testbed.policies.build_agent` refuses it) and
reported as ``n/a`` there (status ``unfit`` in ``scenarios.csv``, with the reason); its mean
is over the scenarios it ran on and the ``scenarios`` column says how many. A policy that fits
none of the suite's scenarios is an error. User policies (``MODULE:FUNCTION``) that declare no
spaces are assumed to fit. A scenario where the expert does not beat random on mean return
(possible only in shortened test runs) has no normalized score and is left out of every mean.

Statistics: 95% percentile-bootstrap intervals over episodes (:func:`testbed.metrics.mean_ci`).
The normalized score's interval resamples seeds jointly for the policy, random and the expert
(a paired bootstrap of the ratio), independently per scenario for the mean over scenarios.

Clones of one recipe that differ only in training seed (a :class:`CloneGroup`) are one row: the
mean over the clones, with intervals over training and evaluation seeds (variance components
with Student's t, :func:`testbed.metrics.clones_mean_ci`, :func:`~testbed.metrics.clones_rate_ci`;
the normalized score by the delta method, :func:`~testbed.metrics.normalized_score_ci` per
scenario and :func:`~testbed.metrics.clones_normalized_score_ci` over scenarios); each clone's
own row is in :attr:`Leaderboard.clones`. The aggregates pool the clones' episodes as the
group's runs (:mod:`testbed.aggregate`).
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from testbed.aggregate import Aggregates, aggregate_scores, returns_by_scenario
from testbed.clone_io import read_clone_metadata
from testbed.drift import twin_steps
from testbed.errors import TestbedError
from testbed.evaluation import check_held_out
from testbed.experts import make_expert
from testbed.limits import check_option
from testbed.metrics import (
    BOOTSTRAP_SEED,
    CONFIDENCE,
    METRICS,
    N_RESAMPLES,
    Interval,
    clones_ci,
    clones_normalized_score_ci,
    episodes_table,
    mean_ci,
    normalized_score_ci,
    policy_table,
    summarize,
)
from testbed.outputs import write_json
from testbed.policies import PolicySpec, build_agent
from testbed.provenance import provenance
from testbed.rollout import EpisodeRecord, RolloutPool
from testbed.scenarios import Scenario, get_scenario
from testbed.seeds import EVAL_SEED, episode_seeds, range_name


@dataclasses.dataclass(frozen=True)
class SuiteScenario:
    """One column of a leaderboard: a scenario preset with fixed overrides."""

    name: str
    """Column name, e.g. ``"highway-fast-dense"``."""
    preset: str
    """Scenario preset (:data:`testbed.scenarios.PRESETS`)."""
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """Config overrides, as ``--set`` would give them."""

    def resolve(self, extra: Mapping[str, Any] | None = None) -> Scenario:
        """The scenario, with ``extra`` overrides on top (quick runs: ``duration=5``)."""

        return get_scenario(self.preset, {**self.overrides, **(extra or {})})


SUITES: dict[str, tuple[SuiteScenario, ...]] = {
    "standard": (
        SuiteScenario("highway-fast", "highway-fast"),
        SuiteScenario("highway-fast-dense", "highway-fast", {"vehicles_density": 1.5}),
        SuiteScenario("merge", "merge"),
        SuiteScenario("roundabout", "roundabout"),
    ),
}
"""Suite name -> its scenarios, in column order."""

SUITE_SEED = EVAL_SEED
"""First seed of every suite scenario: episode ``i`` uses seed ``SUITE_SEED + i``
(development range; the committed leaderboard uses the test range)."""

DEFAULT_EPISODES = 100
"""Episodes per policy and scenario of a full leaderboard run."""

DEFAULT_HORIZON_S = 10.0
"""Time [s] at which the twin position error is read."""

REFERENCE_RANDOM = PolicySpec("random")


@dataclasses.dataclass(frozen=True)
class CloneGroup:
    """Clones of one recipe that differ only in training seed (:mod:`testbed.kit.seeded`): one
    leaderboard row, the mean over the clones."""

    name: str
    """The row's policy label."""
    members: tuple[PolicySpec, ...]
    """The clones (at least one), in the order of ``train_seeds``."""
    train_seeds: tuple[int, ...]
    """Their training seeds."""

    def __post_init__(self) -> None:
        if not self.members or len(self.members) != len(self.train_seeds):
            raise ValueError("a clone group needs one training seed per clone and at least one clone")

    @property
    def labels(self) -> list[str]:
        """The clones' labels, in order."""
        return [m.label for m in self.members]


def suite_scenarios(suite: str, only: Sequence[str] = ()) -> tuple[SuiteScenario, ...]:
    """The scenarios of ``suite``, restricted to the names in ``only`` when given.

    Raises:
        TestbedError: unknown suite or scenario name.
    """
    if suite not in SUITES:
        raise TestbedError(f"unknown suite {suite!r}; choose from: {', '.join(sorted(SUITES))}")
    entries = SUITES[suite]
    names = [e.name for e in entries]
    unknown = [n for n in only if n not in names]
    if unknown:
        raise TestbedError(f"suite {suite!r} has no scenario {unknown[0]!r}; choose from: {', '.join(names)}")
    return tuple(e for e in entries if not only or e.name in only)


def with_references(specs: Sequence[PolicySpec], expert: str) -> list[PolicySpec]:
    """``specs`` (duplicates dropped) followed by the references random and ``expert:NAME`` if absent."""
    out: dict[str, PolicySpec] = {}
    for spec in [*specs, PolicySpec("expert", expert), REFERENCE_RANDOM]:
        out.setdefault(spec.label, spec)
    return list(out.values())


def fit_matrix(specs: Sequence[PolicySpec], scenarios: Mapping[str, Scenario]) -> dict[tuple[str, str], str]:
    """Which policy cannot run where, found by building each agent once (no simulation).

    Returns:
        ``(policy label, scenario name) -> reason`` for every pair that does not fit.

    Raises:
        TestbedError: a policy that fits none of the scenarios (with the first reason).
    """

    unfit: dict[tuple[str, str], str] = {}
    for spec in specs:
        for name, scenario in scenarios.items():
            try:
                build_agent(spec, scenario)
            except TestbedError as e:
                unfit[(spec.label, name)] = str(e)
        reasons = [unfit.get((spec.label, n)) for n in scenarios]
        if all(reasons):
            raise TestbedError(f"{spec.label} cannot run on any scenario of the suite: {reasons[0]}")
    return unfit


def twin_error_at(policy: EpisodeRecord, expert: EpisodeRecord, step: int) -> float:
    """Twin position error [m] after ``step`` decisions, or at the last step both runs reached."""

    errors = twin_steps(policy, expert)["position_error_m"].to_numpy()
    return float(errors[min(step, len(errors)) - 1])


def normalized_score(
    policy: Sequence[np.ndarray], random: Sequence[np.ndarray], expert: Sequence[np.ndarray]
) -> Interval:
    """Mean over scenarios of ``(mean(policy) - mean(random)) / (mean(expert) - mean(random))``.

    Args:
        policy, random, expert: per scenario, the episode returns of each, paired by seed
            (same length and seed order within a scenario).

    Returns:
        The score with a 95% percentile-bootstrap interval: seeds are resampled jointly for
        the three policies within a scenario and independently across scenarios. NaN when the
        expert does not beat random on some scenario (the scale is undefined there).
    """
    p = [np.asarray(a, dtype=np.float64) for a in policy]
    r = [np.asarray(a, dtype=np.float64) for a in random]
    e = [np.asarray(a, dtype=np.float64) for a in expert]
    if not p or any(not (len(a) == len(b) == len(c) > 0) for a, b, c in zip(p, r, e, strict=True)):
        raise ValueError("need paired, non-empty returns for every scenario")
    if any(c.mean() - b.mean() <= 0 for b, c in zip(r, e)):
        return Interval(float("nan"), float("nan"), float("nan"))

    def statistic(*indices: np.ndarray, axis: int = -1) -> np.ndarray:
        scores = []
        for idx, a, b, c in zip(indices, p, r, e):
            idx = np.asarray(idx, dtype=np.int64)
            mp, mr, me = a[idx].mean(axis=axis), b[idx].mean(axis=axis), c[idx].mean(axis=axis)
            with np.errstate(divide="ignore", invalid="ignore"):
                scores.append((mp - mr) / (me - mr))
        return np.mean(scores, axis=0)

    indices = tuple(np.arange(len(a)) for a in p)
    point = float(statistic(*indices))
    if all(len(a) == 1 for a in p):
        return Interval(point, point, point)
    from scipy import stats

    res = stats.bootstrap(
        indices,
        statistic,
        paired=False,
        vectorized=True,
        confidence_level=CONFIDENCE,
        n_resamples=N_RESAMPLES,
        method="percentile",
        random_state=np.random.default_rng(BOOTSTRAP_SEED),
    )
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if point in (0.0, 1.0) and np.isnan(low):  # constant statistic (a reference policy)
        low = high = point
    return Interval(point, low, high)


@dataclasses.dataclass
class Leaderboard:
    """Everything :func:`run_benchmark` computes."""

    ranking: pd.DataFrame
    """One row per policy, best first: ``rank``, ``policy``, ``n_scenarios`` (in its mean),
    ``normalized_score`` (+ ``_ci_low``/``_ci_high``) and ``normalized_score/<scenario>``."""
    scenarios: pd.DataFrame
    """One row per (scenario, policy): ``status`` (``ok``, or ``unfit``: not run, the reason in
    ``note``), ``n_episodes``
    and mean with CI of ``normalized_score``, ``return``, ``crash_rate``, ``mean_speed_mps``,
    ``twin_error_m``."""
    episodes: pd.DataFrame
    """One row per (scenario, policy, seed): :data:`testbed.metrics.METRICS` and ``twin_error_m``."""
    config: dict[str, Any]
    """Suite, scenario configs, seeds, policies, reference policies, horizon and provenance."""
    aggregates: Aggregates | None = None
    """IQM, performance profiles and probabilities of improvement over the scenarios with a
    defined scale and their seeds (:mod:`testbed.aggregate`); None when no scenario has one."""
    clones: pd.DataFrame | None = None
    """With clone groups: one row per clone, as its own policy (the ranking's columns but
    ``rank``, with ``group`` and ``train_seed``); None without."""


def run_benchmark(
    entries: Sequence[SuiteScenario],
    specs: Sequence[PolicySpec],
    *,
    n_episodes: int = DEFAULT_EPISODES,
    expert: str = "scripted",
    horizon_s: float = DEFAULT_HORIZON_S,
    overrides: Mapping[str, Any] | None = None,
    pool: RolloutPool,
    suite: str = "",
    first_seed: int = SUITE_SEED,
    progress: bool = False,
    groups: Sequence[CloneGroup] = (),
) -> Leaderboard:
    """Evaluate ``specs`` (plus random and ``expert:NAME``) and the clones of ``groups`` on every
    scenario of ``entries``, episode ``i`` seeded ``first_seed + i`` (default: the development
    range; the committed leaderboard uses the sealed test range). A group is one row, the mean
    over its clones (the module docstring); it is n/a on a scenario where any clone is.

    Raises:
        TestbedError: bad counts or horizon, a clone evaluated on its demonstration seeds, a
            policy that fits none of the scenarios, a group named like another policy.
    """

    check_option("horizon_s", horizon_s)
    make_expert(expert)
    seeds = episode_seeds(first_seed, n_episodes)
    specs = with_references(specs, expert)
    expert_label, random_label = PolicySpec("expert", expert).label, REFERENCE_RANDOM.label
    members = {m.label: m for g in groups for m in g.members}
    names = [s.label for s in specs] + [g.name for g in groups]
    if len(set(names) | set(members)) != len(names) + len(members):
        raise TestbedError(f"clone groups and policies must have distinct names, got {names + list(members)}")
    drivers = [*specs, *members.values()]
    check_held_out(drivers, seeds)
    scenarios = {e.name: e.resolve(overrides) for e in entries}
    unfit = fit_matrix(drivers, scenarios)
    for g in groups:
        for name in scenarios:
            reasons = [unfit[(m, name)] for m in g.labels if (m, name) in unfit]
            if reasons:
                unfit[(g.name, name)] = reasons[0]

    episode_frames: list[pd.DataFrame] = []
    summary_rows: list[dict[str, Any]] = []
    member_rows: list[dict[str, Any]] = []  # each clone of a group as a policy of its own
    for name, scenario in scenarios.items():
        runs: dict[str, list[EpisodeRecord]] = {}
        for spec in drivers:
            if (spec.label, name) not in unfit:
                runs[spec.label] = pool.run(scenario, spec, seeds, progress=progress, desc=f"{name}: {spec.label}")
        step = max(1, int(round(horizon_s * scenario.policy_frequency_hz)))
        expert_runs = {r.seed: r for r in runs[expert_label]}
        table = episodes_table((r.policy, r.seed, r.trajectory) for rs in runs.values() for r in rs)
        table["twin_error_m"] = [twin_error_at(r, expert_runs[r.seed], step) for rs in runs.values() for r in rs]
        table.insert(0, "scenario", name)
        episode_frames.append(table)
        summary = summarize(table.drop(columns="scenario"), reference=expert_label).set_index("policy")
        returns = {p: g.sort_values("seed")["return"].to_numpy() for p, g in table.groupby("policy")}
        for spec in drivers:
            label = spec.label
            row: dict[str, Any] = {"scenario": name, "policy": label}
            if label not in runs:
                row.update({"status": "unfit", "note": unfit[(label, name)]})
            else:
                twin = mean_ci(table.loc[table["policy"] == label, "twin_error_m"].to_numpy())
                score = normalized_score([returns[label]], [returns[random_label]], [returns[expert_label]])
                s = summary.loc[label]
                row.update({"status": "ok", "note": "", "n_episodes": int(s["n_episodes"])})
                row.update(_interval("normalized_score", score))
                for key, out in (("return", "return"), ("crashed", "crash_rate"), ("mean_speed_mps", "mean_speed_mps")):
                    row.update(_interval(out, Interval.from_columns(s, key)))
                row.update(_interval("twin_error_m", twin))
            (member_rows if label in members else summary_rows).append(row)
        for g in groups:
            row = {"scenario": name, "policy": g.name}
            if (g.name, name) in unfit:
                row.update({"status": "unfit", "note": unfit[(g.name, name)]})
            else:
                row.update(_group_row(table, g, expert_label, random_label))
            summary_rows.append(row)
    episodes = pd.concat(episode_frames, ignore_index=True)
    per_scenario = _counts(pd.DataFrame(summary_rows))
    scaled = [n for n in scenarios if _scale_defined(episodes[episodes["scenario"] == n], expert_label, random_label)]
    rank = functools.partial(
        _rank,
        names=list(scenarios),
        scaled=scaled,
        episodes=episodes,
        expert_label=expert_label,
        random_label=random_label,
    )
    ranking = rank([(s.label, None) for s in specs] + [(g.name, g.labels) for g in groups], per_scenario)
    aggregates = None
    if scaled:
        on_scale = episodes[episodes["scenario"].isin(scaled)]
        returns_of = returns_by_scenario(on_scale, [s.label for s in specs] + list(members))
        for g in groups:  # a (clones, seeds) table per scenario: the clones' episodes are the group's runs
            ran = [n for n in scaled if n in returns_of[g.labels[0]]]
            returns_of[g.name] = {n: np.vstack([returns_of[m][n] for m in g.labels]) for n in ran}
        aggregates = aggregate_scores(
            {p: returns_of[p] for p in [s.label for s in specs] + [g.name for g in groups]},
            expert=expert_label,
            random=random_label,
        )
    clones = None
    if groups:  # every clone as a policy of its own: the spread behind a group's row
        clones = rank([(m, None) for m in members], pd.DataFrame(member_rows)).drop(columns="rank")
        of = {m.label: (g.name, t) for g in groups for m, t in zip(g.members, g.train_seeds)}
        clones.insert(1, "group", clones["policy"].map(lambda p: of[p][0]))
        clones.insert(2, "train_seed", clones["policy"].map(lambda p: of[p][1]))
    statistics = (
        "means with 95% percentile-bootstrap CIs over episodes; normalized score: paired bootstrap "
        "over seeds (policy, random, expert resampled jointly), scenarios resampled independently for the mean; "
        "aggregates (IQM, mean, median, performance profiles, probability of improvement over runs pooled across "
        "scenarios): stratified bootstrap, seeds resampled within each scenario jointly for every policy"
    )
    if groups:
        statistics += (
            "; clone groups (one row, the mean over clones of one recipe with different training seeds): 95% "
            "intervals over training and evaluation seeds, variance components with Student's t (return, speed, "
            "twin error: testbed.metrics.clones_mean_ci; crash rate: clones_rate_ci; normalized score: delta "
            "method, normalized_score_ci per scenario, clones_normalized_score_ci over scenarios); in the "
            "aggregates a group's runs are its clones' episodes and each resample draws the clones too"
        )
    config = {
        "suite": suite,
        "scenarios": {
            n: {"suite_overrides": dict(e.overrides), "scenario": scenarios[e.name].to_dict()}
            for n, e in zip(scenarios, entries)
        },
        "extra_overrides": dict(overrides or {}),
        "seeds": {"first": seeds[0], "n_episodes": len(seeds), "range": range_name(seeds)},
        "policies": [
            {"spec": s.label, **({"clone": read_clone_metadata(s.arg)} if s.kind == "clone" else {})} for s in drivers
        ],
        "references": {"expert": expert_label, "random": random_label},
        "twin_horizon_s": horizon_s,
        "not_applicable": [
            {"policy": p, "scenario": n, "reason": why} for (p, n), why in unfit.items() if p not in members
        ],
        "undefined_scale": [n for n in scenarios if n not in scaled],
        "metrics": {
            **METRICS,
            "twin_error_m": f"ego position error [m] vs the expert's run from the same seed "
            f"after {horizon_s:g} s (or at the end of the shorter run)",
        },
        "statistics": statistics,
        **(
            {"groups": [{"policy": g.name, "clones": g.labels, "train_seeds": list(g.train_seeds)} for g in groups]}
            if groups
            else {}
        ),
        "provenance": provenance(),
    }
    return Leaderboard(
        ranking=ranking, scenarios=per_scenario, episodes=episodes, config=config, aggregates=aggregates, clones=clones
    )


def _counts(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with its ``n_clones`` column (empty but for clone groups) as integers."""
    return table.astype({"n_clones": "Int64"}) if "n_clones" in table else table


def _group_row(table: pd.DataFrame, group: CloneGroup, expert_label: str, random_label: str) -> dict[str, Any]:
    """A clone group's row of one scenario (:attr:`Leaderboard.scenarios`): the mean over its
    clones with intervals over training and evaluation seeds, ``n_clones`` besides."""
    seeds = sorted(set(table["seed"]))

    def clones(metric: str) -> np.ndarray:
        return policy_table(table, group.labels, metric, seeds)

    random, expert = (policy_table(table, [p], "return", seeds) for p in (random_label, expert_label))
    row: dict[str, Any] = {"status": "ok", "note": "", "n_episodes": len(group.members) * len(seeds)}
    row.update(_interval("normalized_score", normalized_score_ci(clones("return"), random, expert)))
    for key, out in (("return", "return"), ("crashed", "crash_rate"), ("mean_speed_mps", "mean_speed_mps")):
        row.update(_interval(out, clones_ci(key, clones(key))))
    row.update(_interval("twin_error_m", clones_ci("twin_error_m", clones("twin_error_m"))))
    row["n_clones"] = len(group.members)
    return row


def _interval(name: str, ci: Interval) -> dict[str, float]:
    return ci.columns(name)


def _rank(
    entries: Sequence[tuple[str, Sequence[str] | None]],
    per_scenario: pd.DataFrame,
    *,
    names: Sequence[str],
    scaled: Sequence[str],
    episodes: pd.DataFrame,
    expert_label: str,
    random_label: str,
) -> pd.DataFrame:
    """The ranking over ``names`` of ``entries`` (a policy's label and None, or a clone group's
    name and its clones' labels); a policy's mean is over the scenarios of ``scaled`` (where
    the expert beats random) that it ran on."""
    rows = []
    for label, clones in entries:
        first = clones[0] if clones else label
        ran = [n for n in scaled if ((episodes["scenario"] == n) & (episodes["policy"] == first)).any()]

        def returns(label: str, ran: list[str] = ran) -> list[np.ndarray]:
            out = []
            for n in ran:
                g = episodes[(episodes["scenario"] == n) & (episodes["policy"] == label)].sort_values("seed")
                out.append(g["return"].to_numpy())
            return out

        if not ran:
            score = Interval(np.nan, np.nan, np.nan)
        elif clones:
            here = [episodes[episodes["scenario"] == n] for n in ran]  # every policy on the same seeds
            tables = [policy_table(e, clones, "return", sorted(set(e["seed"]))) for e in here]
            score = clones_normalized_score_ci(tables, returns(random_label), returns(expert_label))
        else:
            score = normalized_score(returns(label), returns(random_label), returns(expert_label))
        row: dict[str, Any] = {"policy": label, "n_scenarios": len(ran), **_interval("normalized_score", score)}
        for n in names:
            cell = per_scenario[(per_scenario["scenario"] == n) & (per_scenario["policy"] == label)].iloc[0]
            row[f"normalized_score/{n}"] = cell.get("normalized_score", np.nan) if cell["status"] == "ok" else np.nan
        if clones:
            row["n_clones"] = len(clones)
        rows.append(row)
    ranking = _counts(pd.DataFrame(rows))
    # Best first; a NaN score (expert not beating random somewhere) sorts last; ties keep input order.
    ranking = ranking.sort_values("normalized_score", ascending=False, kind="stable", na_position="last")
    ranking.insert(0, "rank", np.arange(1, len(ranking) + 1))
    return ranking.reset_index(drop=True)


def _scale_defined(episodes: pd.DataFrame, expert_label: str, random_label: str) -> bool:
    """Whether the expert's mean return beats random's, so that the normalized score exists."""
    mean = episodes.groupby("policy")["return"].mean()
    return bool(mean[expert_label] > mean[random_label])


def _cell(row: Mapping[str, Any], key: str, digits: int = 2) -> str:
    value = row.get(key, np.nan)
    if value is None or pd.isna(value):
        return "n/a"
    return dataclasses.replace(Interval.from_columns(row, key), mean=value).format(digits)


def format_markdown(board: Leaderboard) -> str:
    """The leaderboard as markdown: ranking, one table per scenario, notes."""
    names = list(dict.fromkeys(board.scenarios["scenario"]))
    seeds = board.config["seeds"]
    horizon = board.config["twin_horizon_s"]
    refs = board.config["references"]
    last = seeds["first"] + seeds["n_episodes"] - 1
    lines = [
        f"# Leaderboard{' — suite `' + board.config['suite'] + '`' if board.config['suite'] else ''}",
        "",
        f"Every policy on the same {seeds['n_episodes']} {seeds.get('range', 'development')} seeds "
        f"({seeds['first']}–{last}) per scenario. "
        f"Normalized score = (return − `{refs['random']}`) / (`{refs['expert']}` − `{refs['random']}`), "
        "mean over the scenarios the policy ran on; mean [95% CI].",
        "",
        "| rank | policy | normalized score | scenarios | " + " | ".join(names) + " |",
        "|---|---|---|---|" + "---|" * len(names),
    ]
    for _, r in board.ranking.iterrows():
        cells = ["n/a" if pd.isna(r[f"normalized_score/{n}"]) else f"{r[f'normalized_score/{n}']:.2f}" for n in names]
        lines.append(
            f"| {r['rank']} | `{r['policy']}` | {_cell(r, 'normalized_score')} | {r['n_scenarios']}/{len(names)} | "
            + " | ".join(cells)
            + " |"
        )
    order = list(board.ranking["policy"])
    if board.aggregates is not None:
        lines += _aggregate_markdown(board.aggregates, order)
    for name in names:
        scenario = board.config["scenarios"][name]["scenario"]
        extra = board.config["scenarios"][name]["suite_overrides"]
        lines += [
            "",
            f"## {name}",
            "",
            f"`{scenario['env_id']}`" + (f", {', '.join(f'`{k}={v}`' for k, v in extra.items())}" if extra else ""),
            "",
            f"| policy | normalized score | return | crash rate | speed [m/s] | twin error at {horizon:g} s [m] |",
            "|---|---|---|---|---|---|",
        ]
        frame = board.scenarios[board.scenarios["scenario"] == name].set_index("policy").loc[order]
        for policy, r in frame.iterrows():
            if r["status"] == "unfit":
                lines.append(f"| `{policy}` | n/a | n/a | n/a | n/a | n/a |")
                continue
            lines.append(
                f"| `{policy}` | {_cell(r, 'normalized_score')} | {_cell(r, 'return')} | {_cell(r, 'crash_rate')} | "
                f"{_cell(r, 'mean_speed_mps', 1)} | {_cell(r, 'twin_error_m', 1)} |"
            )
    lines += [
        "",
        "## Notes",
        "",
        f"- Twin error: distance [m] between the policy's ego and `{refs['expert']}`'s ego driving the same seed, "
        f"{horizon:g} s into the episode, or at the end of the shorter run when either ended earlier.",
        "- Intervals: percentile bootstrap over episodes; the normalized score resamples seeds jointly for the "
        "policy and both references.",
    ]
    for group in board.config.get("groups", []):
        seeds = ", ".join(map(str, group["train_seeds"]))
        lines.append(
            f"- `{group['policy']}`: the mean of {len(group['clones'])} clones of one recipe (training seeds {seeds}, "
            "each with its own demonstration seeds); its intervals are over training and evaluation seeds (variance "
            "components, Student's t; the normalized score by the delta method); each clone's own row: `clones.csv`."
        )
    for item in board.config["not_applicable"]:
        reason = item["reason"]
        if len(reason) > 160:
            reason = reason[:160] + "… (full reason in config.json)"
        lines.append(f"- n/a: `{item['policy']}` on {item['scenario']}: {reason}")
    for name in board.config["undefined_scale"]:
        lines.append(
            f"- {name}: `{refs['expert']}` did not beat `{refs['random']}` on mean return, so no normalized score "
            "there; the scenario is left out of every policy's mean."
        )
    prov = board.config["provenance"]
    lines.append(f"- Written {prov['created_utc']} at commit {prov['git_commit']}.")
    return "\n".join(lines) + "\n"


def _aggregate_markdown(aggregates: Aggregates, order: Sequence[str]) -> list[str]:
    """The aggregate section of :func:`format_markdown`: IQM, mean and median per policy in
    ranking order, and each policy's probability of improvement over the next one down."""
    scores = aggregates.scores.set_index("policy").loc[[p for p in order if p in set(aggregates.scores["policy"])]]
    lines = [
        "",
        "## Aggregate over scenarios and seeds",
        "",
        "Normalized scores of every (scenario, seed) run pooled; 95% stratified-bootstrap CIs (seeds resampled "
        "within scenarios, the references with them). Performance profiles: `profiles.csv`, `aggregate.png`.",
        "",
        "| policy | runs | IQM | mean | median | P(better than the next row) |",
        "|---|---|---|---|---|---|",
    ]
    improvement = aggregates.improvement.set_index(["policy_x", "policy_y"])
    policies = list(scores.index)
    for i, (policy, r) in enumerate(scores.iterrows()):
        better = "—"
        if i + 1 < len(policies) and (policy, policies[i + 1]) in improvement.index:
            better = _cell(improvement.loc[(policy, policies[i + 1])], "p_improvement")
        lines.append(
            f"| `{policy}` | {int(r['n_runs'])} ({int(r['n_scenarios'])} sc.) | {_cell(r, 'iqm')} | "
            f"{_cell(r, 'mean')} | {_cell(r, 'median')} | {better} |"
        )
    return lines


def write_leaderboard(board: Leaderboard, directory: pathlib.Path) -> None:
    """Write ``leaderboard.md``, ``leaderboard.csv``, ``scenarios.csv``, ``episodes.csv``,
    ``config.json``, when there are aggregates ``aggregate.csv``, ``profiles.csv`` and
    ``improvement.csv``, and with clone groups ``clones.csv`` into ``directory``."""

    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "leaderboard.md").write_text(format_markdown(board))
    board.ranking.to_csv(directory / "leaderboard.csv", index=False)
    board.scenarios.to_csv(directory / "scenarios.csv", index=False)
    board.episodes.to_csv(directory / "episodes.csv", index=False)
    if board.aggregates is not None:
        board.aggregates.scores.to_csv(directory / "aggregate.csv", index=False)
        board.aggregates.profiles.to_csv(directory / "profiles.csv", index=False)
        board.aggregates.improvement.to_csv(directory / "improvement.csv", index=False)
    if board.clones is not None:
        board.clones.to_csv(directory / "clones.csv", index=False)
    write_json(directory / "config.json", board.config)
