"""`testbed reproduce`: committed figures are redrawn from committed CSVs; steps run."""

from __future__ import annotations

import json
import pathlib
import shutil

import numpy as np
import pytest

from testbed.cli import main
from testbed.errors import TestbedError
from testbed.reproduce import available_steps, select_steps

pytestmark = pytest.mark.slow  # end-to-end: every test here runs a whole command or script

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"


def _pixels(path: pathlib.Path) -> np.ndarray:
    import matplotlib.image

    return matplotlib.image.imread(path)


def test_plot_only_redraws_every_committed_figure_from_its_csvs(tmp_path: pathlib.Path, capsys) -> None:
    steps = [s.name for s in available_steps() if (RESULTS / s.name).is_dir()]
    assert "pipeline" in steps and "compounding_error" in steps
    for name in steps:
        shutil.copytree(RESULTS / name, tmp_path / name, ignore=shutil.ignore_patterns("runs", "demos"))
        for png in (tmp_path / name).rglob("*.png"):
            png.unlink()
    assert (
        main(["reproduce", "--plot-only", "--out-root", str(tmp_path), *sum((["--only", s] for s in steps), [])]) == 0
    )
    committed = sorted(p.relative_to(RESULTS) for name in steps for p in (RESULTS / name).rglob("*.png"))
    assert committed
    for rel in committed:
        redrawn = tmp_path / rel
        assert redrawn.is_file(), f"{rel} is committed but not redrawn by --plot-only"
        a, b = _pixels(RESULTS / rel), _pixels(redrawn)
        assert a.shape == b.shape, rel
        # Same data, same code: identical up to font rasterisation differences.
        assert np.abs(a - b).mean() < 1e-3, rel


def test_unknown_step_and_missing_results_are_one_line_errors(tmp_path: pathlib.Path, capsys) -> None:
    with pytest.raises(TestbedError, match="unknown step"):
        select_steps(("nope",))
    assert main(["reproduce", "--plot-only", "--only", "pipeline", "--out-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("testbed: error:") and "\n" not in err


def test_fast_pipeline_step_then_plot_only(tmp_path: pathlib.Path) -> None:
    assert main(["reproduce", "--fast", "--only", "pipeline", "--out-root", str(tmp_path), "--workers", "2"]) == 0
    run = tmp_path / "pipeline" / "highway-fast"
    assert (run / "eval" / "summary.csv").is_file() and (run / "clone" / "policy.pt").is_file()
    before = _pixels(run / "summary.png")
    (run / "summary.png").unlink()
    assert main(["reproduce", "--plot-only", "--only", "pipeline", "--out-root", str(tmp_path)]) == 0
    assert np.array_equal(before, _pixels(run / "summary.png"))


def test_a_rebuild_replaces_a_resumable_output_instead_of_resuming_it(tmp_path: pathlib.Path) -> None:
    # A data-scaling output left by other code (its sweep refuses to resume) is rebuilt.
    stale = tmp_path / "data_scaling"
    shutil.copytree(RESULTS / "data_scaling" / "sweep", stale / "sweep", ignore=shutil.ignore_patterns("cells"))
    (stale / "summary.csv").write_text("stale\n")
    assert main(["reproduce", "--fast", "--only", "data_scaling", "--out-root", str(tmp_path), "--workers", "2"]) == 0
    assert (stale / "summary.csv").read_text() != "stale\n"
    assert json.loads((stale / "sweep" / "config.json").read_text())["sweep"]["config"]["context"]["epochs"] == 3


def test_a_step_runs_its_script_with_its_options(tmp_path: pathlib.Path, monkeypatch) -> None:
    """The planner-teacher step runs compounding_error's Args with its own expert, budgets and
    episodes (and the rebuild's out and workers); the scripted step with the script's defaults."""
    import dataclasses
    import types

    from testbed import reproduce

    seen = []

    @dataclasses.dataclass
    class Args:
        fast: bool = False
        out: str = ""
        workers: int = 1
        expert: str = "scripted"
        budgets: tuple[int, ...] = (1_000, 3_000)
        eval_episodes: int = 200

    fake = types.SimpleNamespace(Args=Args, main=seen.append)
    monkeypatch.setattr(reproduce, "load_script", lambda name: fake)
    steps = {s.name: s for s in reproduce.STEPS}
    for name in ("compounding_error", "compounding_error_planner"):
        reproduce.run_step(steps[name], tmp_path, fast=False, plot_only=False, workers=2)
    plain, planner = seen
    assert plain == Args(out=str(tmp_path / "compounding_error"), workers=2)
    assert planner == Args(
        out=str(tmp_path / "compounding_error_planner"),
        workers=2,
        expert="planner",
        budgets=(3_000,),
        eval_episodes=100,
    )
