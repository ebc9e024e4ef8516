"""Shared fixtures (a tiny expert dataset and a clone trained on it, built once per session) and
helpers."""

from __future__ import annotations

import pathlib

import pytest

from testbed.cli import main
from testbed.scenarios import Scenario, get_scenario

DEMO_EPISODES = 30
"""Enough highway-fast expert episodes (~850 transitions) for a clone that clearly beats random."""


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
