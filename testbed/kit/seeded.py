"""Several BC clones of one recipe, one per training seed, so that a clone row says something
about the spread over training seeds (issue 24).

Training seed ``s`` collects its demonstrations from its own block of the demonstration range,
``DEMOS.first + s * DEMO_BLOCK ..`` (:data:`testbed.seeds.DEMOS`), and initialises with
``TrainConfig.seed = s``: seed 0 keeps the demonstrations (seeds 0..) and initialisation that
one clone per case had before, so its clone is the same clone; the other seeds see other
episodes and start elsewhere. A script collects every clone's demonstrations
(:func:`seeded_demos`), trains them (:func:`train_seeded`, in worker processes), drives them
beside the expert on shared evaluation seeds and summarises them with
:func:`testbed.kit.records.clones_vs_expert`. :func:`clone_recipe` reads the recipe of a clone
trained elsewhere (the quick pipeline's) so that other seeds can repeat it.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
import typing
from collections.abc import Sequence
from typing import Any

from testbed.errors import TestbedError
from testbed.policies import PolicySpec
from testbed.seeds import DEMOS

if typing.TYPE_CHECKING:
    import pandas as pd

    from testbed.demos import Demonstrations
    from testbed.rollout import RolloutPool
    from testbed.scenarios import Scenario
    from testbed.training import TrainConfig

DEMO_BLOCK = 500
"""Demonstration seeds per training seed: seed s collects from ``DEMOS.first + s * DEMO_BLOCK``
(at most this many episodes; 10 training seeds fill the demonstration range)."""


def demo_seeds(train_seed: int, n_episodes: int) -> list[int]:
    """The demonstration seeds of training seed ``train_seed``: ``n_episodes`` from the start of
    its block.

    Raises:
        TestbedError: more episodes than a block holds, or a block beyond the demonstration range.
    """
    if n_episodes > DEMO_BLOCK:
        raise TestbedError(f"{n_episodes} demonstration episodes do not fit a training seed's block of {DEMO_BLOCK}")
    return DEMOS.seeds(n_episodes, offset=train_seed * DEMO_BLOCK)


def check_train_seeds(train_seeds: Sequence[int], n_episodes: int) -> None:
    """Raise :class:`~testbed.errors.TestbedError` unless ``train_seeds`` are distinct,
    non-negative and each one's block of ``n_episodes`` fits the demonstration range."""
    if not train_seeds or min(train_seeds) < 0 or len(set(train_seeds)) != len(train_seeds):
        raise TestbedError(f"--train-seeds must be distinct non-negative seeds, got {list(train_seeds)}")
    demo_seeds(max(train_seeds), n_episodes)


def seeds_record(train_seeds: Sequence[int], n_episodes: int) -> dict[str, Any]:
    """What ``config.json`` records about the clones' demonstration seeds: the range, the rule,
    and each training seed's first and last seed."""
    blocks = {str(s): [(seeds := demo_seeds(s, n_episodes))[0], seeds[-1]] for s in train_seeds}
    rule = f"training seed s: {n_episodes} episodes from {DEMOS.first} + s * {DEMO_BLOCK}; initialisation seed s"
    return {**DEMOS.record(), "block": DEMO_BLOCK, "rule": rule, "first_last_by_train_seed": blocks}


@dataclasses.dataclass
class CloneJob:
    """One training seed's demonstrations and recipe, before training (:func:`seeded_demos`)."""

    train_seed: int
    """The training seed (its demonstration block and initialisation)."""
    path: pathlib.Path
    """Where its clone is saved."""
    demos: Demonstrations
    """Its demonstrations."""
    config: TrainConfig
    """Its BC hyperparameters (``seed`` = the training seed)."""
    demos_path: str
    """Where the demonstrations were saved (recorded with the clone), or ``(in memory)``."""
    collect_s: float
    """Wall time [s] of their collection."""


@dataclasses.dataclass
class SeededClone:
    """A trained clone of one training seed (:func:`train_seeded`)."""

    job: CloneJob
    """What it was trained from."""
    spec: PolicySpec
    """Its policy spec (named by where it ends up, :func:`testbed.kit.clone_spec`)."""
    log: pd.DataFrame
    """Its training log (:attr:`testbed.training.TrainResult.log`)."""
    train_s: float | None
    """Wall time [s] of its training when trained in this process (``workers=1``), else None."""

    @property
    def train_seed(self) -> int:
        """Its training seed."""
        return self.job.train_seed

    def record(self) -> dict[str, Any]:
        """``train_seed``, ``demo_first``, ``demo_last`` and ``n_transitions``: a clones.csv row's start."""
        seeds = self.job.demos.seeds
        return {
            "train_seed": self.train_seed,
            "demo_first": seeds[0],
            "demo_last": seeds[-1],
            "n_transitions": self.job.demos.n_transitions,
        }


def seeded_demos(
    directory: pathlib.Path,
    scenario: Scenario,
    expert: str,
    train_seeds: Sequence[int],
    *,
    n_episodes: int,
    config: TrainConfig,
    pool: RolloutPool,
    demos_dir: pathlib.Path | None = None,
) -> list[CloneJob]:
    """Collect every training seed's demonstrations from its block (:func:`demo_seeds`); seed
    ``s``'s clone will be saved at ``directory / f"seed{s}"`` and trained with ``config`` at
    ``seed=s``. With ``demos_dir``, each seed's demonstrations are saved at
    ``demos_dir / f"seed{s}"`` too."""
    from testbed.collect import collect
    from testbed.demos import save_demos
    from testbed.outputs import final_path

    check_train_seeds(train_seeds, n_episodes)
    jobs = []
    for seed in train_seeds:
        start = time.perf_counter()
        first = demo_seeds(seed, n_episodes)[0]
        demos = collect(scenario, expert, n_episodes=n_episodes, seed=first, pool=pool, progress=True)
        collect_s = time.perf_counter() - start
        demos_path = "(in memory)"
        if demos_dir is not None:
            demos_path = str(final_path(save_demos(demos, demos_dir / f"seed{seed}")))
        clone_config = dataclasses.replace(config, seed=seed)
        jobs.append(CloneJob(seed, directory / f"seed{seed}", demos, clone_config, demos_path, collect_s))
    return jobs


def train_seeded(jobs: Sequence[CloneJob], *, workers: int) -> list[SeededClone]:
    """Train and save the clone of every job: in up to ``workers`` processes
    (:func:`testbed.kit.train_clones`; the weights do not depend on where a clone trains), or,
    with ``workers=1``, one after the other in this process, each timed."""
    from testbed.kit.clones import clone_spec, train_clones
    from testbed.training import save_clone, train_bc

    results, times = {}, {}
    if workers > 1:
        results = train_clones({i: (j.demos, j.config) for i, j in enumerate(jobs)}, workers)
    else:
        for i, job in enumerate(jobs):
            start = time.perf_counter()
            results[i] = train_bc(job.demos, job.config)
            times[i] = time.perf_counter() - start
    clones = []
    for i, job in enumerate(jobs):
        save_clone(job.path, results[i], demos=job.demos, demos_path=job.demos_path, config=job.config)
        clones.append(SeededClone(job, clone_spec(job.path), results[i].log, times.get(i)))
    return clones


def seeded_episodes(episodes: pd.DataFrame, clones: Sequence[SeededClone]) -> pd.DataFrame:
    """The episodes of ``clones`` in an evaluation's episodes table, with their ``train_seed``."""
    seeds = {c.spec.label: c.train_seed for c in clones}
    mine = episodes[episodes["policy"].isin(seeds)]
    return mine.assign(train_seed=mine["policy"].map(seeds))


def seeded_summary(
    episodes: pd.DataFrame, clones: Sequence[SeededClone], expert: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The clones' row against the expert (:func:`testbed.kit.records.clones_vs_expert`) from an
    evaluation's episodes table where they and ``expert`` (a label) drove the same seeds, and one
    row per clone (:meth:`SeededClone.record`, then
    :func:`~testbed.kit.records.each_clone_vs_expert`'s columns)."""
    from testbed.kit.records import clones_vs_expert, each_clone_vs_expert

    mine, reference = seeded_episodes(episodes, clones), episodes[episodes["policy"] == expert]
    records = {c.train_seed: c.record() for c in clones}
    each = [{**records[row["train_seed"]], **row} for row in each_clone_vs_expert(mine, reference)]
    return clones_vs_expert(mine, reference), each


STATISTICS = (
    "clone_*: means over the clones (training seeds) and test episodes, 95% intervals over training and test "
    "seeds (variance components, Student's t: testbed.metrics.clones_mean_ci; crash rate clones_rate_ci); "
    "return_diff: clone minus expert paired by seed, averaged over the clones, same interval; expert_*: 95% "
    "percentile-bootstrap CIs over episodes, crash rate Clopper-Pearson; clones.csv: each clone alone, intervals "
    "over its episodes"
)
"""What ``config.json`` says about the statistics of :func:`seeded_summary`'s rows."""


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How a BC clone was made, to be repeated with other training seeds (:func:`clone_recipe`)."""

    scenario: Scenario
    """Where its demonstrations were collected."""
    expert: str
    """Who demonstrated (with the parameters it has today, checked equal to the recorded ones)."""
    n_episodes: int
    """Demonstration episodes."""
    config: TrainConfig
    """BC hyperparameters (``seed`` 0)."""


def clone_recipe(path: str | pathlib.Path) -> Recipe:
    """The recipe of the BC clone saved at ``path``, which must be training seed 0's clone: BC,
    initialisation seed 0, demonstrations on the first block (:func:`demo_seeds` of seed 0).

    Raises:
        TestbedError: not such a clone, or an expert whose parameters changed since.
    """
    from testbed.clone_io import read_clone_metadata
    from testbed.experts import make_expert
    from testbed.scenarios import Scenario
    from testbed.training import TrainConfig

    meta = read_clone_metadata(path)
    demos, config = meta.get("demos", {}), dict(meta.get("config", {}))
    n_episodes = int(demos.get("n_episodes", 0))
    used = sorted(demos.get("train_seeds", []) + demos.get("val_seeds", []))
    if meta.get("algorithm") != "bc" or config.get("seed") != 0 or not n_episodes or used != demo_seeds(0, n_episodes):
        raise TestbedError(
            f"{path} is not training seed 0's BC clone (initialisation seed 0, demonstrations on seeds "
            f"{DEMOS.first}..{DEMOS.first + n_episodes - 1}); its recipe cannot be repeated with other seeds"
        )
    expert = demos["expert"]
    params = make_expert(expert["name"]).params()
    if json.loads(json.dumps(params)) != expert.get("params"):
        raise TestbedError(f"{path}: expert {expert['name']!r} has other parameters today than when it demonstrated")
    config["net_arch"] = tuple(config["net_arch"])
    return Recipe(Scenario.from_dict(meta["scenario"]), expert["name"], n_episodes, TrainConfig(**config))
