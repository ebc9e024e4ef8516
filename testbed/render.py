"""Side-by-side animations: a reference (the expert) and a policy driving the same seed.

Both runs go through the rollout harness's :func:`testbed.rollout.run_episode` (so they are
the very episodes an evaluation of that seed records), with highway-env drawing one frame per
decision offscreen. Frame ``k`` is the state after ``k`` decisions, the indexing of
:func:`testbed.drift.twin_steps`, and the moments the twins part are the ones
:func:`testbed.drift.twin_episode` defines:

- from the frame of the first differing decision, the policy's panel gets an orange border
  and the caption "actions differ from t=..";
- from the first step at which the ego positions are more than ``threshold_m`` apart, a red
  border and the caption "diverged at t=..";
- a crashed run's final frame has a dark red caption band reading "CRASHED"; a run that
  ended first holds its last frame.

Everything after recording is pure: frames (H, W, 3) uint8 arrays in, PIL images out.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from testbed.drift import DIVERGENCE_THRESHOLD_M, twin_episode
from testbed.errors import TestbedError
from testbed.limits import check_frame_skip, check_option, check_panel
from testbed.outputs import atomic_output_file
from testbed.policies import PolicySpec, build_agent
from testbed.provenance import provenance
from testbed.rollout import EpisodeRecord, run_episode
from testbed.scenarios import Scenario, make_env, offscreen_video

BORDER_PX = 4
"""Width of the border around each panel [px] (white unless marked)."""
CAPTION_PX = 30
"""Height of the caption band above each panel [px]."""
DISAGREE_RGB = (255, 150, 0)
"""Border colour once the policy's actions differ from the reference's."""
DIVERGED_RGB = (230, 0, 0)
"""Border colour once the twins are more than the threshold apart."""
CRASH_RGB = (120, 0, 0)
"""Caption band colour on a crashed run's final frame."""
PLAIN_RGB = (255, 255, 255)
CAPTION_RGB = (235, 235, 235)


@dataclasses.dataclass(frozen=True)
class Divergence:
    """When a twin pair parts (1-based, as :func:`testbed.drift.twin_episode`; None if never)."""

    first_disagreement_step: int | None
    """First decision (1-based) at which the actions differ; it is taken at frame ``step - 1``."""
    divergence_step: int | None
    """First step (state after that many decisions, = frame index) with position error > threshold."""
    threshold_m: float

    @classmethod
    def of(cls, policy: EpisodeRecord, reference: EpisodeRecord, *, threshold_m: float) -> Divergence:
        """Measured with :func:`testbed.drift.twin_episode`."""

        ep = twin_episode(policy, reference, threshold_m=threshold_m)

        def as_int(x: float) -> int | None:
            return None if math.isnan(x) else int(x)

        return cls(as_int(ep["first_disagreement_step"]), as_int(ep["divergence_step"]), threshold_m)

    def border(self, frame: int) -> tuple[int, int, int]:
        """Border colour of the policy's panel at ``frame``."""
        if self.divergence_step is not None and frame >= self.divergence_step:
            return DIVERGED_RGB
        if self.first_disagreement_step is not None and frame >= self.first_disagreement_step - 1:
            return DISAGREE_RGB
        return PLAIN_RGB


def _font():
    from PIL import ImageFont

    return ImageFont.load_default(size=12)


def panel(
    frame: np.ndarray, *, title: str, status: str, border: tuple[int, int, int], crashed: bool, scale: float
) -> Any:
    """One panel: a caption band (title, status) over the downscaled frame in a border.

    Args:
        frame: (H, W, 3) uint8 image.
        scale: resize factor of the frame.

    Returns:
        A PIL RGB image of width ``round(W * scale) + 2 * BORDER_PX``.
    """
    from PIL import Image, ImageDraw

    image = Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8), "RGB")
    w, h = max(1, round(image.width * scale)), max(1, round(image.height * scale))
    image = image.resize((w, h), Image.Resampling.BILINEAR)
    out = Image.new("RGB", (w + 2 * BORDER_PX, h + CAPTION_PX + 2 * BORDER_PX), border)
    draw = ImageDraw.Draw(out)
    band = CRASH_RGB if crashed else CAPTION_RGB
    draw.rectangle([BORDER_PX, BORDER_PX, BORDER_PX + w - 1, BORDER_PX + CAPTION_PX - 1], fill=band)
    ink = (255, 255, 255) if crashed else (0, 0, 0)
    font = _font()
    draw.text((BORDER_PX + 3, BORDER_PX + 2), title, fill=ink, font=font)
    draw.text((BORDER_PX + 3, BORDER_PX + 15), status, fill=ink, font=font)
    out.paste(image, (BORDER_PX, BORDER_PX + CAPTION_PX))
    return out


def side_by_side(left: Any, right: Any) -> Any:
    """Two panels next to each other (top-aligned, the shorter padded with white)."""
    from PIL import Image

    out = Image.new("RGB", (left.width + right.width, max(left.height, right.height)), PLAIN_RGB)
    out.paste(left, (0, 0))
    out.paste(right, (left.width, 0))
    return out


def frame_indices(n_frames: int, frame_skip: int) -> list[int]:
    """Every ``frame_skip``-th frame, always ending with the last one."""
    if frame_skip < 1:
        raise TestbedError(f"--frame-skip must be at least 1, got {frame_skip}")
    keep = list(range(0, n_frames, frame_skip))
    if keep[-1] != n_frames - 1:
        keep.append(n_frames - 1)
    return keep


def comparison_frames(
    reference: Sequence[np.ndarray],
    policy: Sequence[np.ndarray],
    *,
    reference_label: str,
    policy_label: str,
    divergence: Divergence,
    reference_crashed: bool,
    policy_crashed: bool,
    policy_frequency_hz: float,
    scale: float = 0.5,
    frame_skip: int = 1,
) -> list[Any]:
    """The animation's images: reference on the left, policy on the right.

    Args:
        reference, policy: frames 0..T of each run (state after k decisions); the shorter run
            holds its last frame.
        divergence: when the twins part; marks the policy's panel from those frames on.
        reference_crashed, policy_crashed: whether each run ended in a crash (its last frame
            is marked).
        policy_frequency_hz: decisions per second, for the captions' times.
        scale: resize factor of the simulator frames.
        frame_skip: keep every n-th frame (and the last).
    """
    if not reference or not policy:
        raise ValueError("need at least one frame of each run")
    if not scale > 0:
        raise TestbedError(f"--scale must be > 0, got {scale}")
    n = max(len(reference), len(policy))
    images = []
    for k in frame_indices(n, frame_skip):
        t = k / policy_frequency_hz
        ref_k, pol_k = min(k, len(reference) - 1), min(k, len(policy) - 1)
        ref_crash = reference_crashed and ref_k == len(reference) - 1
        pol_crash = policy_crashed and pol_k == len(policy) - 1
        left = panel(
            reference[ref_k],
            title=f"reference: {reference_label}",
            border=PLAIN_RGB,
            crashed=ref_crash,
            scale=scale,
            status=_status(t, ref_k, len(reference), ref_crash, policy_frequency_hz, ""),
        )
        border = divergence.border(k)
        if border == DIVERGED_RGB:
            assert divergence.divergence_step is not None  # the border says so
            note = f"diverged >{divergence.threshold_m:g} m at t={divergence.divergence_step / policy_frequency_hz:g} s"
        elif border == DISAGREE_RGB:
            assert divergence.first_disagreement_step is not None
            note = f"actions differ from t={(divergence.first_disagreement_step - 1) / policy_frequency_hz:g} s"
        else:
            note = "same path as reference"
        right = panel(
            policy[pol_k],
            title=f"policy: {policy_label}",
            border=border,
            crashed=pol_crash,
            scale=scale,
            status=_status(t, pol_k, len(policy), pol_crash, policy_frequency_hz, note),
        )
        images.append(side_by_side(left, right))
    return images


def _status(t: float, k: int, n: int, crashed: bool, hz: float, note: str) -> str:
    if crashed:
        return f"CRASHED at t={k / hz:g} s"
    if k < n - 1 or t <= (n - 1) / hz:
        return f"t={t:g} s" + (f"   {note}" if note else "")
    return f"ended at t={k / hz:g} s" + (f"  {note}" if note else "")


def save_gif(images: Sequence[Any], path: str | pathlib.Path, *, fps: float, comment: str = "") -> None:
    """Write an animated GIF (looping) atomically: a temporary file renamed into place."""
    if not fps > 0:
        raise TestbedError(f"--fps must be > 0, got {fps}")
    # On a full disk PIL's write fails with an OSError; atomic_output_file removes the partial file.
    with atomic_output_file(path, suffix=".gif") as tmp:
        first, *rest = images
        first.save(
            tmp,
            format="GIF",
            save_all=True,
            append_images=rest,
            duration=round(1000 / fps),
            loop=0,
            optimize=True,
            comment=comment.encode(),
        )


class _FrameGrabber:
    """Wraps an agent: draws the scene before each of its decisions."""

    def __init__(self, agent: Any) -> None:
        self.agent = agent
        self.frames: list[np.ndarray] = []

    def reset(self, env: Any, seed: int) -> None:
        self.frames = []
        self.agent.reset(env, seed)

    def act(self, obs: np.ndarray, env: Any) -> int:
        self.frames.append(grab_frame(env))
        return self.agent.act(obs, env)


def grab_frame(env: Any) -> np.ndarray:
    """The current scene as an (H, W, 3) uint8 image, drawn offscreen."""
    if env.viewer is None:
        env.render()
        # highway-env 1.9.1 disables drawing altogether under SDL_VIDEODRIVER=dummy
        # (EnvViewer.enabled), which a user may have set; offscreen rendering draws to a
        # surface and needs no display.
        viewer: Any = env.viewer
        viewer.enabled = True
    frame = env.render()
    # render() switches on redrawing at every simulation sub-step; those frames are not kept.
    env.enable_auto_render = False
    return np.asarray(frame, dtype=np.uint8)


def record_frames(scenario: Scenario, spec: PolicySpec, seed: int) -> tuple[EpisodeRecord, list[np.ndarray]]:
    """Run one episode through :func:`testbed.rollout.run_episode`, drawing every state.

    Returns:
        The record (identical to the harness's for this seed) and frames 0..T.
    """
    offscreen_video()
    agent = _FrameGrabber(build_agent(spec, scenario))
    drawn = dataclasses.replace(scenario, config={**scenario.config, "offscreen_rendering": True})
    env = make_env(drawn, render_mode="rgb_array")
    try:
        record = run_episode(env, agent, seed, policy_label=spec.label)
        frames = [*agent.frames, grab_frame(env.unwrapped)]
    finally:
        env.close()
    return record, frames


def render_comparison(
    scenario: Scenario,
    policy: PolicySpec,
    reference: PolicySpec,
    seed: int,
    out: str | pathlib.Path,
    *,
    threshold_m: float | None = None,
    scale: float = 0.5,
    frame_skip: int = 1,
    fps: float = 2.0,
) -> dict[str, Any]:
    """Record both runs on ``seed`` and write the side-by-side GIF to ``out``.

    Returns:
        What the GIF shows (also stored as JSON in its comment): labels, seed, steps,
        crashes, :class:`Divergence` fields, frame count and provenance.
    """

    threshold_m = DIVERGENCE_THRESHOLD_M if threshold_m is None else threshold_m
    for name, value in (("threshold_m", threshold_m), ("scale", scale), ("fps", fps), ("frame_skip", frame_skip)):
        check_option(name, value)
    check_frame_skip(frame_skip, scenario.max_episode_steps)
    check_panel(scale, int(scenario.config["screen_width"]), int(scenario.config["screen_height"]))
    if pathlib.Path(out).suffix.lower() != ".gif":
        raise TestbedError(f"--out must be a .gif file (MP4 is not supported), got {out}")
    ref_record, ref_frames = record_frames(scenario, reference, seed)
    pol_record, pol_frames = record_frames(scenario, policy, seed)
    divergence = Divergence.of(pol_record, ref_record, threshold_m=threshold_m)
    images = comparison_frames(
        ref_frames,
        pol_frames,
        reference_label=reference.label,
        policy_label=policy.label,
        divergence=divergence,
        reference_crashed=bool(ref_record.infos[-1]["crashed"]),
        policy_crashed=bool(pol_record.infos[-1]["crashed"]),
        policy_frequency_hz=scenario.policy_frequency_hz,
        scale=scale,
        frame_skip=frame_skip,
    )
    info = {
        "scenario": scenario.to_dict(),
        "seed": seed,
        "reference": reference.label,
        "policy": policy.label,
        "reference_steps": len(ref_record.trajectory.acts),
        "policy_steps": len(pol_record.trajectory.acts),
        "reference_crashed": bool(ref_record.infos[-1]["crashed"]),
        "policy_crashed": bool(pol_record.infos[-1]["crashed"]),
        **dataclasses.asdict(divergence),
        "n_frames": len(images),
        "frame_skip": frame_skip,
        "fps": fps,
        "provenance": provenance(),
    }
    save_gif(images, out, fps=fps, comment=json.dumps(info))
    return info
