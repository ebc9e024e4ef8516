"""Side-by-side GIFs: frame count, two panels, and the divergence marks where testbed.drift puts them."""

from __future__ import annotations

import json
import pathlib

import numpy as np

from testbed.cli import main
from testbed.drift import twin_episode
from testbed.policies import PolicySpec
from testbed.render import (
    BORDER_PX,
    CAPTION_PX,
    CRASH_RGB,
    DISAGREE_RGB,
    DIVERGED_RGB,
    PLAIN_RGB,
    Divergence,
    comparison_frames,
    frame_indices,
)
from testbed.rollout import rollouts
from testbed.scenarios import get_scenario

SEED = 10_000
SCALE = 0.5
PANEL_W = round(600 * SCALE) + 2 * BORDER_PX  # highway-env's default 600 px wide screen


def _frames(path: pathlib.Path) -> list[np.ndarray]:
    from PIL import Image, ImageSequence

    with Image.open(path) as im:
        return [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)]


def _close(pixel: np.ndarray, rgb: tuple[int, int, int], tol: int = 30) -> bool:
    return bool(np.all(np.abs(pixel.astype(int) - np.array(rgb)) <= tol))


def _policy_border(frame: np.ndarray) -> np.ndarray:
    """Top-left pixel of the right (policy) panel's border."""
    return frame[1, PANEL_W + 1]


def test_render_marks_divergence_where_drift_says(tmp_path: pathlib.Path, capsys) -> None:
    out = tmp_path / "idle.gif"
    assert main(["render", "--policy", "idle", "--seed", str(SEED), "--set", "duration=5", "--out", str(out)]) == 0
    assert "idle" in capsys.readouterr().out
    # The same two episodes through the rollout harness, and testbed.drift's divergence.
    scenario = get_scenario("highway-fast", {"duration": 5})
    (expert,) = rollouts(scenario, PolicySpec("expert", "scripted"), [SEED])
    (idle,) = rollouts(scenario, PolicySpec("idle"), [SEED])
    twin = twin_episode(idle, expert)
    first, diverged = int(twin["first_disagreement_step"]), int(twin["divergence_step"])
    frames = _frames(out)
    assert len(frames) == max(len(expert.trajectory.acts), len(idle.trajectory.acts)) + 1
    height, width, _ = frames[0].shape
    assert width == 2 * PANEL_W and height == round(150 * SCALE) + CAPTION_PX + 2 * BORDER_PX
    for k, frame in enumerate(frames):
        assert _close(frame[1, 1], PLAIN_RGB), f"reference panel marked at frame {k}"
        expected = DIVERGED_RGB if k >= diverged else DISAGREE_RGB if k >= first - 1 else PLAIN_RGB
        assert _close(_policy_border(frame), expected), (k, _policy_border(frame), expected)
    assert any(_close(_policy_border(f), DIVERGED_RGB) for f in frames)
    from PIL import Image

    with Image.open(out) as im:
        info = json.loads(im.info["comment"])
    assert (info["first_disagreement_step"], info["divergence_step"]) == (first, diverged)
    assert info["seed"] == SEED and info["policy"] == "idle" and info["reference"] == "expert:scripted"


def test_expert_against_itself_is_never_marked(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "self.gif"
    args = ["render", "--policy", "expert:scripted", "--set", "duration=4", "--frame-skip", "2", "--out", str(out)]
    assert main(args) == 0
    frames = _frames(out)
    assert len(frames) == len(frame_indices(4 + 1, 2)) == 3  # frames 0, 2, 4
    assert all(_close(_policy_border(f), PLAIN_RGB) for f in frames)
    # Identical runs: the two panels show the same scene.
    for f in frames:
        left, right = f[CAPTION_PX + BORDER_PX :, :PANEL_W], f[CAPTION_PX + BORDER_PX :, PANEL_W:]
        assert np.array_equal(left, right)
    # Same seed, same pictures.
    again = tmp_path / "again.gif"
    assert main([*args[:-1], str(again)]) == 0
    assert all(np.array_equal(a, b) for a, b in zip(frames, _frames(again), strict=True))


def test_comparison_frames_marks_and_crash() -> None:
    """Pure composition: known divergence steps and a crash on synthetic frames."""
    grey = np.full((20, 40, 3), 100, dtype=np.uint8)
    reference, policy = [grey] * 8, [grey] * 6  # the policy's run is shorter: it crashed at step 5
    images = comparison_frames(
        reference,
        policy,
        reference_label="ref",
        policy_label="pol",
        divergence=Divergence(first_disagreement_step=3, divergence_step=4, threshold_m=1.0),
        reference_crashed=False,
        policy_crashed=True,
        policy_frequency_hz=1.0,
        scale=1.0,
    )
    assert len(images) == 8
    panel_w = 40 + 2 * BORDER_PX
    borders = [tuple(np.asarray(im)[0, panel_w]) for im in images]
    assert borders == [PLAIN_RGB] * 2 + [DISAGREE_RGB] * 2 + [DIVERGED_RGB] * 4
    band = [tuple(np.asarray(im)[BORDER_PX + 1, panel_w + BORDER_PX + 1]) for im in images]
    assert band[:5] != [CRASH_RGB] * 5 and all(b == CRASH_RGB for b in band[5:]), band
    left_band = [tuple(np.asarray(im)[BORDER_PX + 1, BORDER_PX + 1]) for im in images]
    assert CRASH_RGB not in left_band
    assert frame_indices(8, 3) == [0, 3, 6, 7]


def test_render_bad_inputs(tmp_path: pathlib.Path, capsys) -> None:
    def fails(args: list[str], fragment: str) -> None:
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err and err[-1].startswith("testbed: error: ") and fragment in err[-1], err

    out = str(tmp_path / "x.gif")
    fails(["render", "--policy", "wizard", "--out", out], "bad policy spec")
    fails(["render", "--policy", "idle", "--reference", "expert:nobody", "--out", out], "unknown expert")
    fails(["render", "--policy", "idle", "--out", str(tmp_path / "x.mp4")], ".gif")
    fails(["render", "--policy", "idle", "--out", out, "--threshold-m", "0"], "--threshold-m")
    fails(["render", "--policy", "idle", "--out", out, "--frame-skip", "0"], "--frame-skip")
    (tmp_path / "exists.gif").write_bytes(b"mine")
    fails(["render", "--policy", "idle", "--out", str(tmp_path / "exists.gif")], "exists")
    assert (tmp_path / "exists.gif").read_bytes() == b"mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists.gif"]
