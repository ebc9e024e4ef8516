"""testbed train --tensorboard: event files under the run directory, for BC and DAgger, and
logging never changes what is trained."""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import pytest
from conftest import fails

from testbed.cli import main

pytest.importorskip("tensorboard", reason="tensorboard is not installed")


def _scalars(folder: pathlib.Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag under ``folder`` (recursively) -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found: dict[str, list[tuple[int, float]]] = {}
    for events in folder.rglob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            found.setdefault(tag, []).extend((e.step, e.value) for e in accumulator.Scalars(tag))
    return found


def test_bc_writes_event_files_in_the_run(tmp_path: pathlib.Path, demos_dir: pathlib.Path) -> None:
    run = tmp_path / "run"
    args = ["train", "--demos", str(demos_dir), "--out", str(run), "--epochs", "4", "--batch-size", "32"]
    assert main([*args, "--eval-every", "2", "--tensorboard"]) == 0
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    scalars = _scalars(run / "tensorboard")
    assert {"bc/loss", "bc/prob_true_act", "train/accuracy", "val/accuracy", "val/loss"} <= set(scalars)
    assert [step for step, _ in sorted(scalars["bc/loss"])] == [0, 1, 2, 3]  # one point per epoch
    assert [step for step, _ in sorted(scalars["val/accuracy"])] == [2, 4]
    import pandas as pd

    log = pd.read_csv(run / "train_log.csv")
    assert [round(v, 5) for _, v in sorted(scalars["val/accuracy"])] == [round(v, 5) for v in log["val/accuracy"]]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_without_the_flag_there_are_no_event_files(tmp_path: pathlib.Path, demos_dir: pathlib.Path) -> None:
    run = tmp_path / "run"
    assert main(["train", "--demos", str(demos_dir), "--out", str(run), "--epochs", "1", "--batch-size", "32"]) == 0
    assert not (run / "tensorboard").exists()


def test_logging_changes_no_weight(tmp_path: pathlib.Path, demos_dir: pathlib.Path) -> None:
    import pandas as pd

    from testbed.demos import load_demos
    from testbed.training import TrainConfig, tensorboard_logging, train_bc

    demos = load_demos(demos_dir)
    config = TrainConfig(n_epochs=3, batch_size=32, net_arch=(32,), seed=2, eval_every=1)
    plain = train_bc(demos, config)
    with tensorboard_logging(tmp_path / "tb"):
        logged = train_bc(demos, config)
    pd.testing.assert_frame_equal(plain.log, logged.log)
    for key, value in plain.policy.state_dict().items():
        assert np.array_equal(value.numpy(), logged.policy.state_dict()[key].numpy()), key


def test_dagger_writes_event_files(tmp_path: pathlib.Path) -> None:
    run = tmp_path / "dagger"
    args = ["train", "--algo", "dagger", "--out", str(run), "--rounds", "2", "--labels-per-round", "64"]
    assert main([*args, "--epochs-per-round", "2", "--batch-size", "32", "--tensorboard"]) == 0
    scalars = _scalars(run / "tensorboard")
    assert {"dagger_round/n_labels", "dagger_round/train/accuracy", "bc/loss"} <= set(scalars)
    assert sorted(scalars["dagger_round/n_labels"]) == [(0, 64.0), (1, 128.0)]
    assert len(scalars["bc/loss"]) >= 2  # imitation's statistics: at least each round's first batch


def test_missing_tensorboard_is_one_line(capsys, tmp_path: pathlib.Path, demos_dir: pathlib.Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard -> ImportError
    fails(
        capsys,
        ["train", "--demos", str(demos_dir), "--out", str(tmp_path / "r"), "--tensorboard"],
        "pip install tensorboard",
        only_line=True,
    )
    assert not (tmp_path / "r").exists()
