"""Paired-seed evaluation of several policies.

Every policy drives the same evaluation seeds (never a demonstration seed), so differences between policies are paired
episode by episode (same initial scene, same traffic randomness until behaviours diverge).
"""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
from collections.abc import Sequence
from typing import Any

import pandas as pd

from testbed.clone_io import read_clone_metadata
from testbed.errors import TestbedError
from testbed.metrics import METRICS, episodes_table, summarize
from testbed.outputs import write_json
from testbed.policies import PolicySpec, build_agent
from testbed.progress import Bar
from testbed.provenance import provenance
from testbed.rollout import RolloutPool
from testbed.scenarios import Scenario
from testbed.seeds import EVAL_SEED, episode_seeds


@dataclasses.dataclass
class Evaluation:
    """Per-episode records and per-policy summary of one evaluation."""

    episodes: pd.DataFrame
    """One row per (policy, seed); columns ``policy``, ``seed`` and :data:`METRICS`."""
    summary: pd.DataFrame
    """Output of :func:`testbed.metrics.summarize` (first policy is the reference)."""
    config: dict[str, Any]
    """Scenario, seeds, policies (with clone training records) and provenance."""


def check_held_out(specs: Sequence[PolicySpec], seeds: Sequence[int]) -> None:
    """Refuse to evaluate a clone on seeds its demonstrations were collected on (a clone that
    drives part of a handover spec too).

    Raises:
        TestbedError: naming the clone and the overlapping seeds.
    """

    wanted = set(seeds)
    for spec in (driver for s in specs for driver in s.drivers()):
        if spec.kind != "clone":
            continue
        demos = read_clone_metadata(spec.arg).get("demos", {})
        used = set(demos.get("train_seeds", [])) | set(demos.get("val_seeds", []))
        overlap = sorted(wanted & used)
        if overlap:
            raise TestbedError(
                f"evaluation seeds overlap the demonstration seeds of {spec.label} "
                f"({len(overlap)} seeds, e.g. {overlap[:3]}); choose another --seed"
            )


def check_policies(scenario: Scenario, specs: Sequence[PolicySpec], seeds: Sequence[int]) -> None:
    """Everything that can be wrong with the policies of a run, checked before any simulation:
    none given, a clone evaluated on its own demonstration seeds (:func:`check_held_out`), or
    a clone that does not load or does not fit ``scenario``.

    Raises:
        TestbedError: on the first problem found.
    """

    if not specs:
        raise TestbedError("give at least one --policy")
    check_held_out(specs, seeds)
    for spec in specs:
        if spec.kind == "clone":
            build_agent(spec, scenario)


def evaluate(
    scenario: Scenario,
    specs: Sequence[PolicySpec],
    *,
    n_episodes: int,
    seed: int = EVAL_SEED,
    n_workers: int = 1,
    pool: RolloutPool | None = None,
    progress: bool = False,
) -> Evaluation:
    """Run every policy on the same ``n_episodes`` seeds starting at ``seed`` and summarise.

    Episodes run in ``pool`` (a :class:`testbed.rollout.RolloutPool`) if given, else in a pool
    of ``n_workers`` processes shared by all policies. ``progress`` shows one bar for all of
    them (on a terminal only: :mod:`testbed.progress`).

    Raises:
        TestbedError: no policies, duplicate policies, bad counts, clones that do not fit the
            scenario or whose demonstrations used these seeds.
    """

    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise TestbedError(f"a policy is listed twice: {labels}")
    seeds = episode_seeds(seed, n_episodes)
    check_policies(scenario, specs, seeds)
    records = []
    with (
        contextlib.nullcontext(pool) if pool is not None else RolloutPool(n_workers) as workers,
        # One bar for the whole stage (every policy's episodes), named after the policy running.
        Bar(len(specs) * len(seeds), "evaluate", unit="ep", show=None if progress else False) as bar,
    ):
        for spec in specs:
            bar.set_postfix(spec.label)
            records += workers.run(scenario, spec, seeds, progress=bar, desc=spec.label)
    episodes = episodes_table((r.policy, r.seed, r.trajectory) for r in records)
    summary = summarize(episodes)
    config = {
        "scenario": scenario.to_dict(),
        "seeds": {"first": seeds[0], "n_episodes": len(seeds)},
        "policies": [
            {"spec": s.label, **({"clone": read_clone_metadata(s.arg)} if s.kind == "clone" else {})} for s in specs
        ],
        "n_workers": pool.n_workers if pool is not None else n_workers,
        "metrics": METRICS,
        "statistics": "means with 95% percentile-bootstrap CIs over episodes; return_diff is paired by seed "
        "against the first policy",
        "provenance": provenance(),
    }
    return Evaluation(episodes=episodes, summary=summary, config=config)


def write_evaluation(evaluation: Evaluation, directory: pathlib.Path) -> None:
    """Write ``episodes.csv``, ``summary.csv``, ``summary.json`` and ``config.json``."""
    directory.mkdir(parents=True, exist_ok=True)
    evaluation.episodes.to_csv(directory / "episodes.csv", index=False)
    evaluation.summary.to_csv(directory / "summary.csv", index=False)
    write_json(
        directory / "summary.json", {"summary": evaluation.summary.to_dict(orient="records"), **evaluation.config}
    )
    write_json(directory / "config.json", evaluation.config)
