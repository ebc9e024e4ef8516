"""What the driver sees: the display protocol, a pygame window and offscreen frame capture."""

from __future__ import annotations

import types
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np


class Display(Protocol):
    """Shows a frame with text lines under it."""

    def show(self, frame: np.ndarray | None, lines: Sequence[str]) -> None:
        """Draw ``frame`` (H, W, 3 uint8, or None to keep the last) and ``lines``."""

    def close(self) -> None:
        """Close the window."""


class PygameWindow:
    """A pygame window: the highway-env frame, with the key bindings and status below it."""

    PANEL_LINES = 5
    LINE_HEIGHT = 20

    def __init__(self, width: int, height: int, *, caption: str = "testbed drive") -> None:
        import pygame

        pygame.init()
        pygame.display.set_caption(caption)
        self._pg = pygame
        self.size = (int(width), int(height))
        panel = self.PANEL_LINES * self.LINE_HEIGHT + 10
        self.screen = pygame.display.set_mode((self.size[0], self.size[1] + panel))
        self.font = pygame.font.Font(None, 22)
        self._frame: Any = None

    def show(self, frame: np.ndarray | None, lines: Sequence[str]) -> None:
        pg = self._pg
        if frame is not None:
            self._frame = pg.surfarray.make_surface(np.ascontiguousarray(np.swapaxes(frame, 0, 1)))
        self.screen.fill((20, 20, 20))
        if self._frame is not None:
            self.screen.blit(self._frame, (0, 0))
        for i, line in enumerate(list(lines)[: self.PANEL_LINES]):
            text = self.font.render(line, True, (230, 230, 230))
            self.screen.blit(text, (8, self.size[1] + 6 + i * self.LINE_HEIGHT))
        pg.display.flip()

    def close(self) -> None:
        self._pg.display.quit()


class _FrameGrabber:
    """Collects the intermediate frames highway-env renders while one action is applied.

    highway-env's ``_automatic_rendering`` hands each intermediate simulation frame to a
    RecordVideo wrapper when one is set (``_record_video_wrapper.video_recorder.capture_frame``);
    we set a stand-in that renders the frame and keeps it. Rendering only reads the scene.
    """

    def __init__(self, base: Any) -> None:
        self.base = base
        self.frames: list[np.ndarray] = []
        base._record_video_wrapper = types.SimpleNamespace(
            video_recorder=types.SimpleNamespace(capture_frame=self._capture)
        )

    def _capture(self) -> None:
        self.frames.append(self.base.render())

    def take(self) -> list[np.ndarray]:
        frames, self.frames = self.frames, []
        return frames


# ---------------------------------------------------------------------------- driving
