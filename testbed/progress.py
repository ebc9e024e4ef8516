"""Progress bars a person can read: one per stage, and none where nobody watches.

A bar is drawn only on a terminal: when stdout and stderr are both TTYs and the environment
variable ``CI`` is unset or false. Under CI, in a log file or a pipe, stages run silently and
only their result lines are printed (tqdm on a non-terminal writes every refresh as text,
which is what made a pipeline log hundreds of lines long). ``TESTBED_PROGRESS=1`` forces bars
on and ``TESTBED_PROGRESS=0`` off.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

_FALSE = ("", "0", "false", "no", "off")


def enabled() -> bool:
    """Whether progress bars are drawn (see the module docstring)."""
    forced = os.environ.get("TESTBED_PROGRESS")
    if forced is not None and forced.strip() != "":
        return forced.strip().lower() not in _FALSE
    if os.environ.get("CI", "").strip().lower() not in _FALSE:
        return False
    return _isatty(sys.stdout) and _isatty(sys.stderr)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # replaced or closed streams
        return False


class Bar:
    """One stage's progress bar (tqdm), or a silent stand-in when bars are off.

    Args:
        total: units of work in the stage.
        desc: the stage's name, shown left of the bar.
        unit: what one unit is (``ep``, ``epoch``).
        show: draw it (default :func:`enabled`).
    """

    def __init__(self, total: int | None, desc: str, *, unit: str = "it", show: bool | None = None) -> None:
        self._bar: Any = None
        if enabled() if show is None else show:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        """Advance by ``n`` units."""
        if self._bar is not None:
            self._bar.update(n)

    def set_postfix(self, text: str) -> None:
        """Show ``text`` right of the bar (the current policy, the last accuracy)."""
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)

    def close(self) -> None:
        """Remove the bar from the screen."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def track(items: Iterable[T], total: int, desc: str, *, unit: str = "it", bar: Bar | None = None) -> Iterator[T]:
    """Yield ``items``, advancing ``bar`` (or a bar of its own, closed at the end) per item."""
    own = bar is None
    current = Bar(total, desc, unit=unit) if bar is None else bar
    try:
        for item in items:
            yield item
            current.update()
    finally:
        if own:
            current.close()


__all__ = ["Bar", "enabled", "track"]
