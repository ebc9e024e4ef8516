"""Script arguments: the dataclasses an experiment's ``Args`` extends (:class:`StepArgs`,
:class:`UpstreamArgs`, :class:`EvalArgs`, :class:`BCArgs`, :class:`SeedsArgs`), the ``--fast``
preset, checks of values, and the ``__main__`` block (:func:`run_script`)."""

from __future__ import annotations

import dataclasses
import pathlib
import sys
import typing
from collections.abc import Callable, Sequence
from typing import Any

from testbed.errors import TestbedError
from testbed.runtime import default_workers
from testbed.seeds import TEST_SEED

if typing.TYPE_CHECKING:
    from testbed.training import TrainConfig


@dataclasses.dataclass
class StepArgs:
    """Arguments every experiment script takes."""

    workers: int = dataclasses.field(default_factory=default_workers)
    """Worker processes (the numbers do not depend on it)."""
    fast: bool = False
    """Tiny preset for tests: the same code paths at a size of seconds."""


@dataclasses.dataclass
class UpstreamArgs(StepArgs):
    """Arguments of a script that reads the results of earlier steps."""

    results: str = "results"
    """Root of the upstream results this step reads; `testbed reproduce` passes its --out-root, so a
    rebuild elsewhere never mixes in the committed artefacts."""


@dataclasses.dataclass
class EvalArgs(StepArgs):
    """Arguments of a script that drives its policies on the sealed test seeds."""

    eval_seed: int = TEST_SEED
    """First evaluation seed (in the sealed test range, :data:`testbed.seeds.TEST`)."""


@dataclasses.dataclass
class BCArgs(StepArgs):
    """Arguments of a script that trains BC clones with one setting (:func:`train_clone`)."""

    epochs: int = 100
    """BC epochs."""
    batch_size: int = 64
    """BC batch size."""
    train_seed: int = 0
    """BC training seed."""

    def train_config(self) -> TrainConfig:
        """These arguments as :class:`testbed.training.TrainConfig`."""
        from testbed.training import TrainConfig

        return TrainConfig(n_epochs=self.epochs, batch_size=self.batch_size, seed=self.train_seed)


@dataclasses.dataclass
class SeedsArgs(StepArgs):
    """Arguments of a script that trains each of its clones with several training seeds
    (:mod:`testbed.kit.seeded`)."""

    train_seeds: tuple[int, ...] = (0, 1, 2)
    """Training seeds: seed s trains on its own block of demonstration seeds with initialisation
    seed s (seed 0 on the first block: the one clone of earlier versions)."""


_ArgsT = typing.TypeVar("_ArgsT", bound=StepArgs)
"""A script's ``Args``."""


def fast_preset(args: _ArgsT, **changes: Any) -> _ArgsT:
    """``args`` with a script's tiny test preset ``changes`` applied when ``args.fast`` (the
    same code paths at a size of seconds), else ``args`` as they are."""
    return dataclasses.replace(args, **changes) if args.fast else args


def check_at_least_one(args: Any, *names: str) -> None:
    """Raise :class:`~testbed.errors.TestbedError` naming the option ``--<name>`` of the first
    of ``names`` whose value in ``args`` is below 1."""
    for name in names:
        if getattr(args, name) < 1:
            raise TestbedError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")


def check_distinct_positive(args: Any, *names: str) -> None:
    """Raise :class:`~testbed.errors.TestbedError` naming the option ``--<name>`` of the first
    of ``names`` whose values in ``args`` (e.g. data sizes) are none, repeat or fall below 1."""
    for name in names:
        values = getattr(args, name)
        if not values or min(values) < 1 or len(set(values)) != len(values):
            raise TestbedError(f"--{name.replace('_', '-')} must be distinct positive values, got {list(values)}")


def upstream(spec: str, results: str) -> str:
    """``spec`` (a policy spec or path) with ``{results}`` replaced by the upstream results
    root ``results`` (:attr:`UpstreamArgs.results`), e.g.
    ``clone:{results}/pipeline/highway-fast/clone`` -> ``clone:results/pipeline/highway-fast/clone``."""
    return spec.replace("{results}", results)


def run_script(main: Callable[[Any], Any], args_type: type, argv: Sequence[str] | None = None) -> None:
    """The ``__main__`` block of an experiment script: parse ``args_type`` from the command
    line (its field docstrings are the ``--help``), one torch thread per process, run
    ``main``; a :class:`~testbed.errors.TestbedError` ends in one line and exit code 2."""
    import tyro

    from testbed.runtime import set_torch_threads

    args: Any = tyro.cli(args_type, args=argv)
    set_torch_threads(1)
    name = pathlib.Path(sys.argv[0]).stem
    try:
        main(args)
    except TestbedError as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        sys.exit(2)
