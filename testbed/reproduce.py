"""Rebuild every committed result (``testbed reproduce``).

Each step is one experiment script in ``experiments/`` (or the quick pipeline) writing
``results/<step>/``. A script exposes ``Args`` (a dataclass with ``fast``, ``out`` and
``workers`` fields), ``main(args)`` and ``replot(out)``, which redraws its figures from the
CSVs a run left in ``out`` — that is what ``--plot-only`` calls, so every committed PNG can be
rebuilt offline from the committed CSVs.

The scripts live in the source checkout, not in the installed package: reproducing needs the
repository (``pip install -e .`` from a clone).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import pathlib
import sys
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

from testbed.errors import TestbedError
from testbed.outputs import read_json
from testbed.pipeline import Pipeline, save_summary_plot
from testbed.plotting import plot_training_log
from testbed.rollout import reuse_episodes


@dataclasses.dataclass(frozen=True)
class Step:
    """One result directory and how to rebuild it."""

    name: str
    """Result directory under the output root (``results/<name>``)."""
    script: str | None
    """Experiment script in ``experiments/`` (without ``.py``); None for the quick pipeline."""
    description: str
    """What the step produces."""


STEPS: tuple[Step, ...] = (
    Step("pipeline", None, "quick pipeline: expert -> demos -> BC -> paired evaluation (highway-fast)"),
    Step("divergence_gif", "divergence_gif", "side-by-side GIF of expert and the pipeline's clone, divergence marked"),
    Step("expert_quality", "expert_quality", "scripted expert on every scenario + dense stress case"),
    Step("rl_expert", "rl_expert", "SB3 DQN expert trained on highway-fast, evaluated beside the scripted expert"),
    Step("experts", "experts", "expert zoo x scenarios, and BC clones of each expert"),
    Step(
        "compounding_error",
        "compounding_error",
        "BC vs DART vs DAgger at equal training labels: return, crash rate, eps_on vs eps_off at the same step",
    ),
    Step(
        "compounding",
        "compounding",
        "compounding error or a constant hazard: horizon fits, hazards and same-step errors with two controls",
    ),
    Step("realizability", "realizability", "the clone's gap split into realizability, estimation and covariate shift"),
    Step("data_scaling", "data_scaling", "clone quality vs number of demonstrations"),
    Step("distribution_shift", "distribution_shift", "train-scenario x test-scenario matrix"),
    Step("sensors", "sensors", "the same data cloned from kinematics, lidar, occupancy grid and camera"),
    Step("leaderboard", "leaderboard", "standard-suite leaderboard of experts, clones and baselines"),
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
    args = module.Args(fast=fast, out=str(out), workers=workers)
    if any(f.name == "results" for f in dataclasses.fields(args)):
        args = dataclasses.replace(args, results=str(out_root))  # upstream inputs from this same root
    if any(f.name == "overwrite" for f in dataclasses.fields(args)):
        # A script that resumes an existing output by default (a sweep) starts afresh: a
        # rebuild must not keep cells that earlier code computed.
        args = dataclasses.replace(args, overwrite=True)
    return module.main(args)


def reproduce(
    steps: list[Step], out_root: pathlib.Path, *, fast: bool, plot_only: bool, workers: int
) -> dict[str, float]:
    """Run ``steps`` in order; returns each step's wall time [s].

    The steps share one :func:`testbed.rollout.reuse_episodes` block: an expert or baseline
    episode that an earlier step already ran (same config, policy, seed) is not simulated
    again, which changes no number and saves a good part of the full rebuild.
    """

    times: dict[str, float] = {}
    with reuse_episodes():
        for step in steps:
            print(f"== {step.name}: {step.description}", flush=True)
            start = time.perf_counter()
            run_step(step, out_root, fast=fast, plot_only=plot_only, workers=workers)
            times[step.name] = time.perf_counter() - start
            print(f"== {step.name} done in {times[step.name]:.0f} s", flush=True)
    return times
