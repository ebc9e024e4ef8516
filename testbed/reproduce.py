"""Rebuild every committed result (``testbed reproduce``).

Each step is one experiment script in ``experiments/`` (or the quick pipeline) writing
``results/<step>/``. A script exposes ``Args`` (a dataclass with ``fast``, ``out`` and
``workers`` fields), ``main(args)`` and ``replot(out)``, which redraws its figures from the
CSVs a run left in ``out`` — that is what ``--plot-only`` calls, so every committed PNG can be
rebuilt offline from the committed CSVs.

The scripts live in the source checkout, not in the installed package: reproducing needs the
repository (``pip install -e .`` from a clone).

The steps run on one queue (:mod:`testbed.scheduler`): a step starts once the steps whose
results it reads are done (:attr:`Step.after`), as many at a time as there are free cores
(:attr:`Step.cpus` each), the longest remaining chain first; locally on long-lived workers or
as Ray tasks. A killed rebuild run again at the same commit skips the steps it had finished
(their record is kept in ``OUT_ROOT/.reproduce/`` until the rebuild completes).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
import pathlib
import sys
import time
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from testbed.errors import TestbedError
from testbed.outputs import read_json
from testbed.pipeline import Pipeline, save_summary_plot
from testbed.plotting import plot_training_log
from testbed.rollout import read_kept_lookups, share_episodes
from testbed.scheduler import Executor, Finished, Scheduler, Task

STORE = ".reproduce"
"""Under the output root: the record of the steps a rebuild has finished (removed when it completes)."""
EPISODES = "episodes"
"""Under :data:`STORE`: the run's shared expert and baseline episodes (:func:`testbed.rollout.share_episodes`)."""


@dataclasses.dataclass(frozen=True)
class Step:
    """One result directory and how to rebuild it."""

    name: str
    """Result directory under the output root (``results/<name>``)."""
    script: str | None
    """Experiment script in ``experiments/`` (without ``.py``); None for the quick pipeline."""
    description: str
    """What the step produces."""
    after: tuple[str, ...] = ()
    """Steps whose results this one reads (it starts once they are done)."""
    cpus: int = 1
    """Worker processes the step runs with (its rollout pools, its sweep cells): the cores it
    keeps busy on the queue, at most the rebuild's ``--workers``."""
    cost_s: float = 300.0
    """Wall time [s] of the step on ``cpus`` cores as last measured (orders the queue only)."""
    options: tuple[tuple[str, Any], ...] = ()
    """The script's ``Args`` fields this step sets (``(name, value)`` pairs), for a step that runs
    a script with other than its defaults."""


STEPS: tuple[Step, ...] = (
    Step("pipeline", None, "quick pipeline: expert -> demos -> BC -> paired evaluation (highway-fast)", cost_s=107),
    Step(
        "divergence_gif",
        "divergence_gif",
        "side-by-side GIF of expert and the pipeline's clone, divergence marked",
        after=("pipeline",),
        cost_s=1,
    ),
    Step(
        "expert_quality",
        "expert_quality",
        "the teachers (scripted, scripted-v1, planner) on every scenario + dense stress case",
        cost_s=1000,
    ),
    Step(
        "rl_expert",
        "rl_expert",
        "SB3 DQN expert trained on highway-fast, evaluated beside the scripted expert",
        cost_s=94,
    ),
    Step(
        "experts", "experts", "expert zoo x scenarios, and BC clones of each expert", after=("rl_expert",), cost_s=481
    ),
    Step(
        "compounding_error",
        "compounding_error",
        "BC vs DART (fitted noise) vs DAgger (BC's training each round) at equal expert labels: return, crash "
        "rate, eps_on vs eps_off at the same step",
        cpus=2,
        cost_s=1200,
    ),
    Step(
        "compounding_error_planner",
        "compounding_error",
        "the same comparison with the planner as the teacher that demonstrates and labels (3000 labels)",
        cpus=2,
        cost_s=1300,
        options=(("expert", "planner"), ("budgets", (3_000,)), ("eval_episodes", 100)),
    ),
    Step(
        "compounding",
        "compounding",
        "compounding error or a constant hazard on stationary traffic: hazard ratio to the expert against t, "
        "horizon fits, same-step errors, two controls; clones trained here on long episodes",
        cpus=2,
        cost_s=1500,
    ),
    Step(
        "recoverability",
        "recoverability",
        "can the expert recover from a BC clone's own states: handover vs the expert's own windows",
        cpus=2,
        cost_s=600,
    ),
    Step(
        "realizability",
        "realizability",
        "the clone's gap split into realizability, estimation and covariate shift",
        cost_s=500,
    ),
    Step("data_scaling", "data_scaling", "clone quality vs number of demonstrations", cost_s=305),
    Step("distribution_shift", "distribution_shift", "train-scenario x test-scenario matrix", cost_s=560),
    Step("sensors", "sensors", "the same data cloned from kinematics, lidar, occupancy grid and camera", cost_s=690),
    Step(
        "leaderboard",
        "leaderboard",
        "standard-suite leaderboard of experts, clones and baselines",
        after=("pipeline", "rl_expert"),
        cost_s=190,
    ),
)
"""Every result, in the order ``testbed reproduce`` rebuilds them."""


def experiments_dir() -> pathlib.Path:
    """``experiments/`` of the source checkout the package was installed from."""
    path = pathlib.Path(__file__).resolve().parent.parent / "experiments"
    if not path.is_dir():
        raise TestbedError(f"experiments/ not found at {path}; reproduce needs a source checkout (pip install -e .)")
    return path


def load_script(name: str) -> ModuleType:
    """Import ``experiments/<name>.py`` as a module."""
    path = experiments_dir() / f"{name}.py"
    if not path.is_file():
        raise TestbedError(f"experiment script not found: {path}")
    spec = importlib.util.spec_from_file_location(f"experiments_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def available_steps() -> list[Step]:
    """Steps whose script exists in this checkout (the pipeline always does)."""
    root = experiments_dir()
    return [s for s in STEPS if s.script is None or (root / f"{s.script}.py").is_file()]


def select_steps(only: tuple[str, ...]) -> list[Step]:
    """The steps named in ``only`` (all available ones when empty), in rebuild order.

    Raises:
        TestbedError: an unknown step name.
    """
    steps = available_steps()
    names = [s.name for s in steps]
    unknown = sorted(set(only) - set(names))
    if unknown:
        raise TestbedError(f"unknown step(s) {unknown}; choose from: {', '.join(names)}")
    return [s for s in steps if not only or s.name in only]


def _pipeline_run(out: pathlib.Path, *, fast: bool, workers: int) -> None:

    sizes: dict[str, Any] = dict(demo_episodes=10, eval_episodes=6, epochs=10, batch_size=16) if fast else {}
    Pipeline(out=str(out / "highway-fast"), overwrite=True, workers=workers, **sizes).run()


def _pipeline_replot(out: pathlib.Path) -> list[pathlib.Path]:
    import matplotlib.pyplot as plt
    import pandas as pd

    run = out / "highway-fast"
    config = read_json(run / "config.json", what="pipeline config")
    save_summary_plot(pd.read_csv(run / "eval" / "summary.csv"), run / "summary.png", config["scenario"]["name"])
    n = config["demo_seeds"]["n_episodes"]
    fig = plot_training_log(
        pd.read_csv(run / "clone" / "train_log.csv"), title=f"BC on {n} expert episodes ({config['scenario']['name']})"
    )
    fig.savefig(run / "training.png", dpi=120)
    plt.close(fig)
    return [run / "summary.png", run / "training.png"]


def run_step(step: Step, out_root: pathlib.Path, *, fast: bool, plot_only: bool, workers: int) -> Any:
    """Rebuild one step into ``out_root / step.name`` (or only redraw its figures)."""
    out = out_root / step.name
    if plot_only:
        if not out.is_dir():
            raise TestbedError(f"{out} not found: nothing to redraw (run without --plot-only first)")
        replot: Callable[[pathlib.Path], list[pathlib.Path]] = (
            _pipeline_replot if step.script is None else load_script(step.script).replot
        )
        return replot(out)
    if step.script is None:
        return _pipeline_run(out, fast=fast, workers=workers)
    module = load_script(step.script)
    args = dataclasses.replace(module.Args(fast=fast, out=str(out), workers=workers), **dict(step.options))
    if any(f.name == "results" for f in dataclasses.fields(args)):
        args = dataclasses.replace(args, results=str(out_root))  # upstream inputs from this same root
    if any(f.name == "overwrite" for f in dataclasses.fields(args)):
        # A script that resumes an existing output by default (a sweep) starts afresh: a
        # rebuild must not keep cells that earlier code computed.
        args = dataclasses.replace(args, overwrite=True)
    return module.main(args)


def _step_task(name: str, out_root: str, fast: bool, workers: int, cwd: str) -> dict[str, Any]:
    """A step as a scheduler task: rebuild ``name`` into ``out_root`` with ``workers``, from the
    rebuild's working directory ``cwd`` (a relative root stays relative: records name
    ``results/...``, not where this checkout happens to live)."""
    os.chdir(cwd)
    (step,) = [s for s in STEPS if s.name == name]
    run_step(step, pathlib.Path(out_root), fast=fast, plot_only=False, workers=workers)
    return {}


def step_tasks(steps: list[Step], out_root: pathlib.Path, *, fast: bool, workers: int) -> list[Task]:
    """One :class:`~testbed.scheduler.Task` per step; a dependency on a step that is not
    rebuilt in this run is dropped (its committed results are read as they are)."""
    names = {s.name for s in steps}
    tasks = []
    for step in steps:
        cpus = min(step.cpus, workers)
        fn = functools.partial(_step_task, step.name, str(out_root), fast, cpus, os.getcwd())
        after = tuple(a for a in step.after if a in names)
        tasks.append(Task(step.name, fn, after=after, cpus=cpus, cost_s=step.cost_s))
    return tasks


@dataclasses.dataclass(frozen=True)
class Rebuild:
    """What :func:`reproduce` did."""

    steps: dict[str, Finished]
    """Each step's record: its wall time, and whether an earlier, killed run had finished it."""
    kept: dict[str, dict[str, float]]
    """What the run's shared store saved (:func:`testbed.rollout.read_kept_lookups`; over every
    attempt when the run resumed a killed one); empty for ``plot_only``."""


def reproduce(
    steps: list[Step],
    out_root: pathlib.Path,
    *,
    fast: bool,
    plot_only: bool,
    workers: int,
    executor: Executor = "local",
    address: str | None = None,
    config: Mapping[str, Any] | None = None,
) -> Rebuild:
    """Rebuild ``steps`` into ``out_root`` on one queue; returns each step's record (its wall
    time, and whether an earlier, killed run of the same rebuild had finished it) and what the
    shared store saved.

    The run is one :func:`testbed.rollout.share_episodes` block over ``STORE/EPISODES``: an
    expert or baseline episode that any step or sweep cell of the run simulated is read, not
    simulated again, by every other, whichever worker runs it (a killed run's records serve its
    resumption; the folder goes with the store). No number changes.

    Args:
        steps: what to rebuild (:func:`select_steps`).
        out_root: the results root.
        fast: the tiny presets.
        plot_only: only redraw the figures (in this process, no queue).
        workers: cores to keep busy.
        executor: ``local`` or ``ray``; ``address``: a Ray cluster's.
        config: anything else that decides the outputs (the commit): a killed run resumes only
            when it equals this one's.
    """
    if plot_only:
        records = {}
        for step in steps:
            start = time.perf_counter()
            run_step(step, out_root, fast=fast, plot_only=True, workers=workers)
            records[step.name] = Finished(step.name, {}, time.perf_counter() - start, resumed=False)
        return Rebuild(records, {})
    tasks = step_tasks(steps, out_root, fast=fast, workers=workers)
    state = {"fast": fast, "out_root": str(out_root.absolute()), **dict(config or {})}
    scheduler = Scheduler(out_root / STORE, tasks, config=state, workers=workers)
    starts: dict[str, float] = {}

    def event(key: str, what: str) -> None:
        (step,) = [s for s in steps if s.name == key]
        if what == "start":
            starts[key] = time.perf_counter()
            print(f"== {key}: {step.description}", flush=True)
        elif what == "done":
            print(f"== {key} done in {time.perf_counter() - starts[key]:.0f} s", flush=True)
        elif what == "failed":
            print(
                f"== {key} FAILED after {time.perf_counter() - starts[key]:.0f} s (the other steps go on)", flush=True
            )
        else:
            print(f"== {key}: finished by the interrupted run, kept", flush=True)

    with share_episodes(out_root / STORE / EPISODES):
        records = scheduler.run(executor=executor, address=address, on_event=event)
    kept = read_kept_lookups(out_root / STORE / EPISODES)
    scheduler.clear()
    return Rebuild(records, kept)
