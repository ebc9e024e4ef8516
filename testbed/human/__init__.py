"""A person drives with the arrow keys; every step is recorded with its exact label.

highway-env's own manual control (``manual_control`` config, ``EventHandler``) applies key
presses straight to the vehicle, so the action given to ``step()`` is not what the person did.
Here key events are read by us, turned into an action by a key mapper, and that action is
passed to ``env.step()``: the recorded label *is* the applied action at every step. The
highway-env viewer is made offscreen (``offscreen_rendering``) so it never reads the event
queue itself; its frames are shown in our own window.

Key bindings (driver's point of view; the ego drives to the right of the screen, so "left"
is up on the screen):

- Discrete meta-actions: Left = LANERight = LANEUp = FASTER, Down = SLOWER,
  no arrow = IDLE. At each decision the most recent arrow pressed since the previous decision
  wins (so a quick tap between decisions is not lost), else a held arrow (Left, Right, Up,
  Down in that priority), else IDLE.
- Continuous (``ContinuousAction``, normalised to [-1, 1]): held Up/Down ramp the
  acceleration command up/down at ``accel_rate_per_s``; held Left/Right ramp steering at
  ``steer_rate_per_s`` up to ``max_steering``; with neither key of a pair held the command
  returns towards 0 at the same rate. An arrow tapped between two decisions counts as held
  at the next one.
- P pauses and resumes; Esc, Q or closing the window quits. An episode quit midway is then
  offered in the window: "save partial episode? Y/N" (Y keeps it, N or Esc drops it); the
  session ends after a quit.
"""

from __future__ import annotations

from testbed.human.drive import DrivenEpisode, drive, drive_episode, make_drive_env
from testbed.human.keys import (
    ARROWS,
    ContinuousKeyMapper,
    DiscreteKeyMapper,
    EventSource,
    KeyMapper,
    KeyState,
    PygameEvents,
    ScriptedEvents,
    key_event,
    make_mapper,
    tap,
)
from testbed.human.window import Display, PygameWindow

__all__ = [
    "ARROWS",
    "ContinuousKeyMapper",
    "DiscreteKeyMapper",
    "Display",
    "DrivenEpisode",
    "EventSource",
    "KeyMapper",
    "KeyState",
    "PygameEvents",
    "PygameWindow",
    "ScriptedEvents",
    "drive",
    "drive_episode",
    "key_event",
    "make_drive_env",
    "make_mapper",
    "tap",
]
