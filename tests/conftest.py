"""Shared fixtures (a tiny expert dataset and a clone trained on it, built once per session) and
helpers."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import subprocess
import sys
from collections.abc import Mapping
from types import ModuleType

import numpy as np
import pytest

from testbed.cli import main
from testbed.scenarios import Scenario, get_scenario

DEMO_EPISODES = 30
"""Enough highway-fast expert episodes (~850 transitions) for a clone that clearly beats random."""
ROOT = pathlib.Path(__file__).resolve().parent.parent
"""The repository's root (experiments/ lives there, not in the package)."""


def load_experiment(name: str) -> ModuleType:
    """``experiments/<name>.py`` as a module (registered under ``name``, once per session)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def scenario() -> Scenario:
    return get_scenario("highway-fast")


@pytest.fixture(scope="session")
def demos_dir(tmp_path_factory: pytest.TempPathFactory, scenario: Scenario) -> pathlib.Path:
    from testbed.collect import collect
    from testbed.demos import save_demos

    demos = collect(scenario, "scripted", n_episodes=DEMO_EPISODES, seed=0, n_workers=2)
    return save_demos(demos, tmp_path_factory.mktemp("data") / "demos")


@pytest.fixture(scope="session")
def clone_dir(tmp_path_factory: pytest.TempPathFactory, demos_dir: pathlib.Path) -> pathlib.Path:
    from testbed.demos import load_demos
    from testbed.training import TrainConfig, save_clone, train_bc

    demos = load_demos(demos_dir)
    config = TrainConfig(n_epochs=60, batch_size=32, seed=0)
    result = train_bc(demos, config)
    return save_clone(
        tmp_path_factory.mktemp("runs") / "clone", result, demos=demos, demos_path=str(demos_dir), config=config
    )


def fails(capsys: pytest.CaptureFixture[str], args: list[str], fragment: str, *, only_line: bool = False) -> None:
    """Assert that ``testbed ARGS`` is refused as a user error: exit code 2, a last stderr line
    ``testbed: error: ...`` containing ``fragment``, no traceback (and, with ``only_line``,
    nothing else on stderr)."""
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "no error message"
    assert err[-1].startswith("testbed: error: ") and fragment in err[-1], err
    assert not any("Traceback" in line for line in err)
    if only_line:
        assert len(err) == 1, err


def score_world(
    policies: Mapping[str, tuple[float, float]], scales: Mapping[str, float], *, n: int, seed: int
) -> dict[str, dict[str, np.ndarray]]:
    """Simulated returns ``world[policy][scenario]`` (``n`` seeds each) for the aggregate tests:
    an expert near 1 and a random policy near 0 times each scenario's scale, and each of
    ``policies`` normal with its (mean, sd) times the scale."""
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, np.ndarray]] = {p: {} for p in ("expert", "random", *policies)}
    for scenario, scale in scales.items():
        out["expert"][scenario] = scale * (1 + 0.05 * rng.normal(size=n))
        out["random"][scenario] = scale * 0.05 * rng.normal(size=n)
        for p, (mean, sd) in policies.items():
            out[p][scenario] = scale * (mean + sd * rng.normal(size=n))
    return out


RAY_ADDRESS = "127.0.0.1:6500"
"""Where :func:`run_on_a_ray_cluster`'s cluster listens."""

_RAY_IN_A_NAMESPACE = """
set -e
ip link set lo up
export RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=disabled CI=true
ray start --head --port=6500 --num-cpus=2 --include-dashboard=false --disable-usage-stats > "$1/ray-start.log" 2>&1
trap 'ray stop --force > /dev/null 2>&1' EXIT
shift
"$@"
"""


def run_on_a_ray_cluster(
    tmp_path: pathlib.Path, command: list[str], *, env: Mapping[str, str] | None = None, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """Start a Ray cluster (``ray start --head``: its own GCS, raylet and 2 worker CPUs at
    :data:`RAY_ADDRESS`) and run ``command`` against it, inside a network namespace of loopback
    only (``unshare -n``): Ray resolves 127.0.0.1 to the machine's outward address otherwise,
    and a test talks to nothing but this machine's loopback. Skips without Ray or without the
    right to make a namespace; fails (with Ray's start log) if the command does."""
    pytest.importorskip("ray")
    if os.geteuid() != 0 or subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs root for a network namespace (unshare -n)")
    run = subprocess.run(
        ["unshare", "-n", "bash", "-c", _RAY_IN_A_NAMESPACE, "ray-test", str(tmp_path), *command],
        capture_output=True,
        text=True,
        env=dict(env if env is not None else os.environ),
        timeout=timeout,
    )
    log = tmp_path / "ray-start.log"
    started = log.read_text()[-1000:] if log.is_file() else ""
    assert run.returncode == 0, started + run.stdout[-2000:] + run.stderr[-2000:]
    return run
