"""The `testbed` command: bad input gives one line and exit 2, never partial output; the
pipeline runs end to end at a tiny size."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys

import pandas as pd
import pytest
from conftest import fails

from testbed.cli import main
from testbed.scenarios import highway_env_version, scenario_names
from testbed.sim import SUPPORTED_HIGHWAY_ENVS


def test_collect_bad_inputs(capsys, tmp_path: pathlib.Path) -> None:
    out = str(tmp_path / "d")
    fails(capsys, ["collect", "--out", out, "--scenario", "highwy"], "unknown scenario")
    fails(capsys, ["collect", "--out", out, "--expert", "nobody"], "unknown expert")
    fails(capsys, ["collect", "--out", out, "--episodes", "0"], "--episodes must be at least 1")
    fails(capsys, ["collect", "--out", out, "--episodes", "-3"], "--episodes must be at least 1")
    fails(capsys, ["collect", "--out", out, "--set", "vehicles_densty=2"], "unknown config key")
    fails(capsys, ["collect", "--out", out, "--workers", "0"], "--workers must be at least 1")
    assert not any(tmp_path.iterdir()), "a failed command left output behind"


def test_existing_output_needs_overwrite(capsys, tmp_path: pathlib.Path, demos_dir: pathlib.Path) -> None:
    out = tmp_path / "exists"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    fails(capsys, ["collect", "--out", str(out), "--episodes", "1"], "output directory exists")
    fails(capsys, ["train", "--demos", str(demos_dir), "--out", str(out)], "output directory exists")
    assert (out / "keep.txt").read_text() == "mine"


def test_train_bad_inputs(capsys, tmp_path: pathlib.Path, demos_dir: pathlib.Path) -> None:
    out = str(tmp_path / "run")
    fails(capsys, ["train", "--demos", str(tmp_path / "missing"), "--out", out], "not found")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(demos_dir, corrupt)
    (corrupt / "metadata.json").write_text("[1, 2")
    fails(capsys, ["train", "--demos", str(corrupt), "--out", out], "corrupt")
    fails(capsys, ["train", "--demos", str(demos_dir), "--out", out, "--epochs", "0"], "--epochs")
    fails(capsys, ["train", "--demos", str(demos_dir), "--out", out, "--net-arch", "64,x"], "--net-arch")
    fails(capsys, ["train", "--demos", str(demos_dir), "--out", out, "--val-fraction", "1.5"], "--val-fraction")
    assert not (tmp_path / "run").exists()


def test_evaluate_bad_inputs(capsys, tmp_path: pathlib.Path, clone_dir: pathlib.Path) -> None:
    out = str(tmp_path / "ev")
    fails(capsys, ["evaluate", "--out", out], "at least one --policy")
    fails(capsys, ["evaluate", "--out", out, "--policy", "wizard"], "bad policy spec")
    fails(capsys, ["evaluate", "--out", out, "--policy", "clone:/no/such/run"], "not found")
    fails(capsys, ["evaluate", "--out", out, "--policy", "idle", "--episodes", "0"], "--episodes")
    # Demonstration seeds 0..29 must never be evaluation seeds.
    fails(capsys, ["evaluate", "--out", out, "--policy", f"clone:{clone_dir}", "--seed", "5"], "overlap")
    # Nor when the clone drives part of a handover, first or second.
    for pair in (f"clone:{clone_dir}->expert:scripted", f"idle->clone:{clone_dir}"):
        fails(capsys, ["evaluate", "--out", out, "--policy", f"handover:3:{pair}", "--seed", "5"], "overlap")
    # A clone from another observation space.
    fails(
        capsys,
        ["evaluate", "--out", out, "--policy", f"clone:{clone_dir}", "--set", "observation.vehicles_count=7"],
        "different observation space",
    )
    fake = tmp_path / "fake_run"
    shutil.copytree(clone_dir, fake)
    (fake / "policy.pt").write_bytes(b"this is not a policy")
    fails(capsys, ["evaluate", "--out", out, "--policy", f"clone:{fake}", "--episodes", "1"], "not a loadable policy")
    assert not (tmp_path / "ev").exists()


def test_entry_point_prints_one_line(tmp_path: pathlib.Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "testbed.cli", "collect", "--out", str(tmp_path / "x"), "--scenario", "nope"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    # The presets of the installed highway-env (1.12 adds merge-generic and roundabout-generic).
    assert proc.stderr.strip().splitlines() == [
        f"testbed: error: unknown scenario 'nope'; choose from: {', '.join(scenario_names())}, "
        "optionally with a sensor suffix: -lidar, -grid, -camera, -kinrich (e.g. highway-fast-camera)"
    ]
    assert {"highway", "highway-fast", "highway-fast-continuous", "merge", "roundabout"} <= set(scenario_names())


@pytest.mark.slow
def test_pipeline_end_to_end(capsys, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "pipe"
    args = [
        "pipeline",
        "--demo-episodes",
        "4",
        "--eval-episodes",
        "3",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--workers",
        "1",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    for name in ("expert:scripted", f"clone:{out / 'clone'}", "idle", "random", "crash rate"):
        assert name in printed
    for f in (
        "summary.png",
        "training.png",
        "config.json",
        "eval/episodes.csv",
        "eval/summary.json",
        "demos/metadata.json",
        "clone/policy.pt",
        "clone/train_log.csv",
    ):
        assert (out / f).is_file(), f
    episodes = pd.read_csv(out / "eval" / "episodes.csv")
    assert len(episodes) == 4 * 3 and set(episodes["seed"]) == {10_000, 10_001, 10_002}
    summary = json.loads((out / "eval" / "summary.json").read_text())
    assert [row["policy"] for row in summary["summary"]][0] == "expert:scripted"
    config = json.loads((out / "config.json").read_text())
    # The installed highway-env: the pinned 1.9.1, or 1.12.1 on the current stack.
    assert config["provenance"]["packages"]["highway-env"] == highway_env_version()
    assert highway_env_version() in SUPPORTED_HIGHWAY_ENVS
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary directory left behind"
    # Same command again: refused without --overwrite, identical numbers with it.
    assert main(args) == 2
    assert main([*args, "--overwrite"]) == 0
    again = pd.read_csv(out / "eval" / "episodes.csv")
    pd.testing.assert_frame_equal(episodes, again)


def test_evaluate_writes_summary(capsys, tmp_path: pathlib.Path, clone_dir: pathlib.Path) -> None:
    out = tmp_path / "ev"
    args = [
        "evaluate",
        "--out",
        str(out),
        "--policy",
        "idle",
        "--policy",
        f"clone:{clone_dir}",
        "--episodes",
        "2",
        "--workers",
        "2",
        "--no-plot",
    ]
    assert main(args) == 0
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["policy"]) == ["idle", f"clone:{clone_dir}"]
    assert {"return_ci_low", "crashed_ci_high", "return_diff"} <= set(summary.columns)
    assert not (out / "summary.png").exists()


def test_drift_command(capsys, tmp_path: pathlib.Path, clone_dir: pathlib.Path) -> None:
    out = tmp_path / "drift"
    args = [
        "drift",
        "--out",
        str(out),
        "--policy",
        "expert:scripted",
        "--policy",
        f"clone:{clone_dir}",
        "--episodes",
        "2",
        "--workers",
        "1",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "eps_on" in printed and f"clone:{clone_dir}" in printed
    summary = pd.read_csv(out / "drift_summary.csv").set_index("policy")
    assert summary.loc["expert:scripted", "eps_on"] == 0.0
    assert summary.loc["expert:scripted", "max_position_error_m"] == 0.0
    for f in ("drift.png", "twin_steps.csv", "audit_steps.csv", "survival.csv", "config.json"):
        assert (out / f).is_file()
    fails(capsys, ["drift", "--out", str(tmp_path / "d2"), "--policy", "idle", "--threshold-m", "0"], "--threshold-m")
    fails(capsys, ["drift", "--out", str(tmp_path / "d2")], "at least one --policy")


@pytest.mark.slow
def test_dagger_and_noise_commands(capsys, tmp_path: pathlib.Path) -> None:
    run = tmp_path / "dagger"
    args = [
        "train",
        "--algo",
        "dagger",
        "--out",
        str(run),
        "--rounds",
        "2",
        "--labels-per-round",
        "40",
        "--epochs-per-round",
        "2",
        "--batch-size",
        "16",
    ]
    assert main(args) == 0
    meta = json.loads((run / "metadata.json").read_text())
    assert meta["algorithm"] == "dagger" and meta["dagger"]["n_rounds"] == 2
    assert meta["dagger"]["beta_schedule"] == "expert-first" and meta["dagger"]["sample_learner"] is False
    # No validation set in the CLI: the last iterate is kept, and the record says so.
    assert meta["iterate"]["round"] == 1 and meta["iterate"]["val_score"] is None
    assert "no validation set" in meta["iterate"]["selection"]
    log = pd.read_csv(run / "train_log.csv")
    assert list(log["round"]) == [0, 1] and list(log["beta"]) == [1.0, 0.0]
    assert list(log["round_labels"]) == [40, 40] and list(log["n_labels"]) == [40, 80]
    dagger = ["train", "--algo", "dagger", "--out", str(tmp_path / "x")]
    fails(capsys, [*dagger, "--rounds", "0"], "--rounds")
    fails(capsys, [*dagger, "--labels-per-round", "0"], "--labels-per-round")
    fails(capsys, [*dagger, "--labels-per-round", "10"], "--batch-size")
    fails(capsys, [*dagger, "--first-seed", "9999", "--rounds", "2"], "--first-seed")
    fails(capsys, ["train", "--algo", "bc", "--out", str(tmp_path / "x")], "--demos is required")

    demos = tmp_path / "noisy"
    assert main(["collect", "--out", str(demos), "--episodes", "2", "--noise", "0.5", "--workers", "1"]) == 0
    meta = json.loads((demos / "metadata.json").read_text())
    assert meta["noise"]["probability"] == 0.5
    fails(capsys, ["collect", "--out", str(tmp_path / "n2"), "--noise", "1.5"], "--noise")


def test_the_only_option_names_every_step() -> None:
    """`--only`'s help lists the steps in order (it is written out, so it could go stale)."""
    import inspect

    from testbed.cli import Reproduce
    from testbed.reproduce import STEPS

    listed = inspect.getsource(Reproduce).split("Steps:", 1)[1].split('"""', 1)[0]
    assert [s.strip(" .\n") for s in listed.replace("\n", " ").split(",")] == [s.name for s in STEPS]


def test_a_policy_under_a_deep_directory_keeps_the_plot_readable() -> None:
    """A clone evaluated from a deep directory is drawn by its kind and the end of its path;
    labels that fit (every committed figure's) are drawn as they are; the layout still fits."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    from testbed.plotting import LABEL_CHARS, plot_summary, short_label

    deep = "clone:/" + "/".join(f"level-{i:02d}" for i in range(12)) + "/pipe/clone"
    assert short_label(deep) == "clone:…/level-08/level-09/level-10/level-11/pipe/clone"
    assert len(short_label(deep)) <= LABEL_CHARS
    committed = "expert:sb3:results/rl_expert/highway-fast-dqn/model.zip"  # the longest committed
    assert short_label(committed) == committed
    assert short_label("x" * 80) == "…" + "x" * (LABEL_CHARS - 1)
    row = {"n_episodes": 4, "return": 1.0, "return_ci_low": 0.5, "return_ci_high": 1.5}
    row |= {"crashed": 0.25, "crashed_ci_low": 0.0, "crashed_ci_high": 0.8}
    summary = pd.DataFrame([{**row, "policy": p} for p in (committed, deep, "idle", "random")])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # tight_layout's "not applied" warning fails the test
        fig = plot_summary(summary)
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == [committed, short_label(deep), "idle", "random"]
