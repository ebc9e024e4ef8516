"""The seed protocol: named, disjoint seed ranges, the one place seed ranges are defined.

Every episode the testbed simulates is seeded from one of these ranges, so that training and
evaluation never share a seed and so that results reported as held out are held out:

- demonstrations and DAgger rounds train clones;
- the development range (10000..) is where defaults, README examples and the quick pipeline
  are evaluated, and where anyone developing looks at numbers;
- the tuning range is for choosing expert and training parameters;
- RL training episodes have their own range;
- the sealed test range (1000000..) is used only by the committed result steps of
  ``experiments/``; nothing is tuned or chosen while looking at it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from testbed.errors import TestbedError


@dataclasses.dataclass(frozen=True)
class SeedRange:
    """A named range of episode seeds ``first .. first + size - 1``."""

    name: str
    """What the range is called in messages and result files."""
    first: int
    """Its first seed."""
    size: int
    """How many seeds it holds."""
    purpose: str
    """Who draws from it."""

    @property
    def stop(self) -> int:
        """One past its last seed."""
        return self.first + self.size

    def __contains__(self, seed: object) -> bool:
        return isinstance(seed, int) and self.first <= seed < self.stop

    def seeds(self, n: int, *, offset: int = 0) -> list[int]:
        """``n`` consecutive seeds from ``first + offset``.

        Raises:
            TestbedError: they would leave the range.
        """
        start = self.first + offset
        if offset < 0 or n < 0 or start + n > self.stop:
            raise TestbedError(f"{n} seeds from offset {offset} do not fit the {self.name} range {self.describe()}")
        return list(range(start, start + n))

    def describe(self) -> str:
        """``"10000..19999"``."""
        return f"{self.first}..{self.stop - 1}"

    def record(self, seeds: list[int] | None = None) -> dict[str, object]:
        """What a result file records about the seeds it used from this range."""
        out: dict[str, object] = {"range": self.name, "first": self.first, "last": self.stop - 1}
        if seeds is not None:
            out["n_used"] = len(seeds)
        return out


DEMOS = SeedRange("demonstrations", 0, 5_000, "expert demonstrations (testbed collect, the pipeline, experiments)")
DAGGER = SeedRange("dagger", 5_000, 5_000, "DAgger rounds (round r is seeded DAGGER_SEED + r)")
DEVELOPMENT = SeedRange(
    "development",
    10_000,
    10_000,
    "evaluation defaults of evaluate/drift/benchmark/render, the quick pipeline, README examples, developing",
)
TUNING = SeedRange("tuning", 20_000, 10_000, "choosing expert and training parameters")
RL = SeedRange("rl-training", 30_000, 70_000, "environment seeds of RL training episodes (testbed.rl)")
TEST = SeedRange("test", 1_000_000, 1_000_000, "sealed: only the committed result steps of experiments/ report on it")

RANGES: tuple[SeedRange, ...] = (DEMOS, DAGGER, DEVELOPMENT, TUNING, RL, TEST)
"""Every range, in seed order; no two overlap (tests/test_seeds.py)."""

DEMO_SEED = DEMOS.first
"""First seed of demonstration episodes (``testbed collect``, the pipeline)."""
DAGGER_SEED = DAGGER.first
"""First DAgger round seed (round r uses DAGGER_SEED + r)."""
EVAL_SEED = DEVELOPMENT.first
"""First evaluation seed of the commands (``testbed evaluate``, drift, the leaderboard): the
development range."""
TUNING_SEED = TUNING.first
"""First seed of the range experts and defaults are tuned on."""
TEST_SEED = TEST.first
"""First seed of the sealed test range."""


def check_test_seeds(seeds: list[int] | range, what: str) -> dict[str, object]:
    """Refuse evaluation seeds outside the sealed test range; return the record a committed
    result stores about them (range, bounds, first seed and count).

    Raises:
        TestbedError: a seed outside :data:`TEST`.
    """
    outside = [s for s in seeds if s not in TEST]
    if not seeds or outside:
        raise TestbedError(
            f"{what}: committed results evaluate on the sealed test range {TEST.describe()}, "
            f"got {len(outside)} seeds outside it (e.g. {outside[:3]})"
        )
    return {**TEST.record(list(seeds)), "first_used": int(seeds[0]), "last_used": int(seeds[-1])}


def range_of(seed: int) -> SeedRange | None:
    """The range ``seed`` belongs to (None: outside every range)."""
    return next((r for r in RANGES if seed in r), None)


def episode_seeds(seed: int, n_episodes: int) -> list[int]:
    """The seeds of ``n_episodes`` consecutive episodes starting at ``seed``.

    Raises:
        TestbedError: ``n_episodes < 1`` or a negative seed.
    """
    if n_episodes < 1:
        raise TestbedError(f"--episodes must be at least 1, got {n_episodes}")
    if seed < 0:
        raise TestbedError(f"--seed must be non-negative, got {seed}")
    return list(range(seed, seed + n_episodes))


def range_name(seeds: Sequence[int]) -> str:
    """The name of the range holding every seed of ``seeds`` ("mixed" if none does)."""
    first = range_of(int(seeds[0])) if len(seeds) else None
    return first.name if first is not None and all(int(s) in first for s in seeds) else "mixed"
