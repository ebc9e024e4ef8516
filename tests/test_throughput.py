"""benchmarks/throughput.py runs end to end on a tiny job and reports every ratio."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "throughput.py"


@pytest.mark.slow
def test_throughput_benchmark_reports_every_ratio(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "throughput.json"
    tiny = ["--n-episodes", "4", "--n-blocks", "2", "--n-epochs", "1", "--n-train-repeats", "1"]
    sim = ["--sim-scenarios", "highway-fast", "--sim-steps", "3", "--sim-pairs", "1"]
    new = ["--whole-process-episodes", "2", "--whole-process-pairs", "1", "--lockstep-episodes", "4"]
    new += ["--decision-n-clones", "2", "--decision-episodes", "2", "--step-n-clones", "2", "--step-episodes", "2"]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *tiny, *sim, *new, "--default-threads-budget-s", "1", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "accelerated/stock env.step speed on highway-fast" in done.stdout
    assert "records identical to 1-worker: yes" in done.stdout
    ratios = json.loads(out.read_text())["ratios"]
    assert "saved trajectories identical: yes" in done.stdout and "records identical: yes" in done.stdout
    keys = ("whole_process_collect_workers_2/workers_1", "lockstep/one_episode_at_a_time")
    keys += ("planner_decisions_kept/asked", "steps_kept/simulated")
    for key in ("sim_accelerated/stock/highway-fast/idle", "bc/plain_torch", *keys):
        assert ratios[key] > 0, key
    assert any(k.startswith("workers_2/workers_1") for k in ratios)
    whole = json.loads(out.read_text())["figures"]["whole_process_collect"]
    (single,) = whole["wall_times_s"]["1 episode"]  # one pair: the median is the one time
    assert whole["serial_s"] + whole["episode_s"] == pytest.approx(single)
    assert "2 workers can give at most" in done.stdout
    for name in ("decisions", "steps"):  # the clones start where the teacher did
        kept = json.loads(out.read_text())["figures"][name]
        assert kept["identical_records"] and kept["distinct_steps"] < kept["steps"], name


def test_bad_arguments_are_one_line_errors() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--sim-pairs", "0"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("throughput: error: --sim-pairs")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--whole-process-episodes", "1"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("throughput: error: --whole-process-episodes")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--comparisons", "decisions", "--decision-clones", "/nonexistent"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("throughput: error: --decision-clones")
