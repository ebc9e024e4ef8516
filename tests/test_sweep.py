"""Sweeps: grid-order results, resume after SIGKILL, config guard, local vs Ray."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import run_on_a_ray_cluster

from testbed.errors import TestbedError
from testbed.sweep import Sweep, cell_id, run_sweep

ROOT = pathlib.Path(__file__).resolve().parent.parent
TESTS = pathlib.Path(__file__).resolve().parent


def toy_cell(cell: dict, cell_dir: pathlib.Path) -> dict:
    """Cheap and deterministic: a few seeded random numbers, one file, an optional pause."""
    rng = np.random.default_rng([cell["a"], cell["seed"]])
    values = rng.normal(size=3).tolist()
    (cell_dir / "values.txt").write_text(" ".join(f"{v:.17g}" for v in values))
    time.sleep(cell.get("sleep_s", 0.0))
    return {"a": cell["a"], "seed": cell["seed"], "values": values, "total": float(np.sum(values))}


def toy_cells(sleep_s: float = 0.0) -> list[dict]:
    return [{"a": a, "seed": s, "sleep_s": sleep_s} for a in (1, 2, 3) for s in (0, 1)]


def real_cell(cell: dict, cell_dir: pathlib.Path) -> dict:
    """Collect 2 short expert episodes, train BC 1 epoch, evaluate 2 held-out episodes."""
    from testbed.collect import collect
    from testbed.metrics import episode_metrics
    from testbed.policies import PolicySpec
    from testbed.rollout import rollouts
    from testbed.scenarios import get_scenario
    from testbed.training import TrainConfig, save_clone, train_bc

    scenario = get_scenario("highway-fast", {"duration": 5})
    demos = collect(scenario, "scripted", n_episodes=2, seed=10 * cell["seed"])
    config = TrainConfig(n_epochs=1, batch_size=4, seed=cell["seed"], val_fraction=0.5)
    result = train_bc(demos, config)
    clone = save_clone(cell_dir / "clone", result, demos=demos, demos_path="(memory)", config=config)
    records = rollouts(scenario, PolicySpec("clone", str(clone)), [10_000, 10_001])
    return {
        "val_accuracy": float(result.log["val/accuracy"].iloc[-1]),
        "returns": [episode_metrics(r.trajectory)["return"] for r in records],
    }


def _results(results) -> list[tuple[str, dict]]:
    return [(r.cell_id, r.result) for r in results]


def _files(out: pathlib.Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted((out / "cells").rglob("*"))
        if p.is_file() and p.name != "timing.json" and p.suffix != ".pt" and "metadata" not in p.name
    }


def test_cell_ids_are_stable_and_unique() -> None:
    @dataclasses.dataclass(frozen=True)
    class Cell:
        seed: int
        algo: str

    assert cell_id(Cell(3, "bc")) == cell_id({"algo": "bc", "seed": 3}) == "algo=bc,seed=3"
    assert cell_id({"policy": "expert:scripted"}) == "policy=expert-scripted"
    with pytest.raises(TestbedError, match="same parameters"):
        Sweep("unused", [{"a": 1}, {"a": 1}], toy_cell)


def test_grid_order_and_rerun_skips_done_cells(tmp_path: pathlib.Path) -> None:
    # Later cells finish first (shorter pauses), yet results come back in grid order.
    cells = [{"a": a, "seed": 0, "sleep_s": 0.3 * (3 - a)} for a in (1, 2, 3)]
    out = tmp_path / "sweep"
    first = run_sweep(cells, toy_cell, out, config={"k": 1}, workers=2)
    assert [r.params["a"] for r in first] == [1, 2, 3]
    assert [r.result["a"] for r in first] == [1, 2, 3]
    config = json.loads((out / "config.json").read_text())
    assert config["sweep"]["function"] == "toy_cell" and config["provenance"]["git_commit"]
    stamp = (out / "cells" / first[0].cell_id / "result.json").stat().st_mtime_ns
    again = run_sweep(cells, toy_cell, out, config={"k": 1}, workers=2)
    assert _results(again) == _results(first)
    assert (out / "cells" / first[0].cell_id / "result.json").stat().st_mtime_ns == stamp  # not redone
    assert len(json.loads((out / "config.json").read_text())["resumed"]) == 1
    with pytest.raises(TestbedError, match="different sweep config.*config differs in k"):
        run_sweep(cells, toy_cell, out, config={"k": 2})
    with pytest.raises(TestbedError, match="different sweep config"):
        run_sweep(cells[:2], toy_cell, out, config={"k": 1})


@pytest.mark.slow
def test_killed_sweep_resumes_to_identical_results(tmp_path: pathlib.Path) -> None:
    cells = toy_cells(sleep_s=0.5)
    reference = run_sweep(cells, toy_cell, tmp_path / "whole", config={"toy": True})

    out = tmp_path / "killed"
    script = (
        f"import sys; sys.path[:0] = [{str(TESTS)!r}, {str(ROOT)!r}]\n"
        "from test_sweep import toy_cell, toy_cells\n"
        "from testbed.sweep import run_sweep\n"
        f"run_sweep(toy_cells(sleep_s=0.5), toy_cell, {str(out)!r}, config={{'toy': True}}, workers=2)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list(out.glob("cells/*/result.json")):
            assert proc.poll() is None, "the sweep ended before it could be killed"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    n_done = len(list(out.glob("cells/*/result.json")))
    assert 1 <= n_done < len(cells)
    # What a kill can leave behind, made certain: a temporary cell directory and a cell
    # directory without its result.
    sweep = Sweep(out, cells, toy_cell, config={"toy": True})
    todo = [i for i, d in zip(sweep.ids, sweep.done()) if not d]
    (out / "cells" / f".{todo[0]}.tmp-xyz").mkdir()
    (out / "cells" / todo[-1]).mkdir(exist_ok=True)
    (out / "cells" / todo[-1] / "values.txt").write_text("half")

    resumed = run_sweep(cells, toy_cell, out, config={"toy": True})
    assert _results(resumed) == _results(reference)
    assert _files(out) == _files(tmp_path / "whole")
    assert not [p for p in (out / "cells").iterdir() if p.name.startswith(".")]
    assert (out / "results.json").read_bytes() == (tmp_path / "whole" / "results.json").read_bytes()


REAL_CELLS = [{"seed": 0}, {"seed": 1}]


@pytest.fixture(scope="module")
def real_local(tmp_path_factory: pytest.TempPathFactory):
    return run_sweep(REAL_CELLS, real_cell, tmp_path_factory.mktemp("real") / "sweep", workers=2)


@pytest.mark.slow
def test_real_cell_through_local_pool(real_local) -> None:
    assert [r.params["seed"] for r in real_local] == [0, 1]
    for r in real_local:
        assert len(r.result["returns"]) == 2 and all(np.isfinite(r.result["returns"]))
        assert 0.0 <= r.result["val_accuracy"] <= 1.0
        assert (r.path / "clone" / "policy.pt").is_file()
    assert real_local[0].result != real_local[1].result  # different seeds, different data


_ON_RAY = """
import pathlib, sys
sys.path.insert(0, sys.argv[2])
from test_sweep import REAL_CELLS, real_cell, toy_cell, toy_cells
from conftest import RAY_ADDRESS
from testbed.sweep import run_sweep
out = pathlib.Path(sys.argv[1])
run_sweep(toy_cells(), toy_cell, out / "ray", config={"toy": True}, executor="ray", address=RAY_ADDRESS)
run_sweep(REAL_CELLS, real_cell, out / "real_ray", executor="ray", address=RAY_ADDRESS)
"""
"""The sweeps of :func:`test_ray_matches_local`, run on the cluster (the cell functions travel
to Ray's workers by value: this test module is not installed)."""


@pytest.mark.slow
@pytest.mark.xdist_group("ray")  # one Ray instance at a time
def test_ray_matches_local(tmp_path: pathlib.Path, real_local) -> None:
    toy = toy_cells()
    local = run_sweep(toy, toy_cell, tmp_path / "local", config={"toy": True}, workers=1)
    tests = str(pathlib.Path(__file__).resolve().parent)
    run_on_a_ray_cluster(tmp_path, [sys.executable, "-c", _ON_RAY, str(tmp_path), tests])
    # Every cell is done on the cluster: reading the sweeps back here recomputes nothing.
    remote = run_sweep(toy, toy_cell, tmp_path / "ray", config={"toy": True}, workers=1)
    assert _results(remote) == _results(local)
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")
    # A real cell (collect, train, evaluate) gives the same numbers in a Ray worker.
    assert _results(run_sweep(REAL_CELLS, real_cell, tmp_path / "real_ray", workers=1)) == _results(real_local)
