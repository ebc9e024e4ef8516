"""Process set-up: torch threads, rollout worker initialisation, default worker count.

One copy of each, used by every pool (rollouts, sweeps) and by training. Nothing here runs at
import time.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


def set_torch_threads(n: int) -> None:
    """Set torch's intra-op threads (and inter-op, the first time it is possible).

    On a 2-core machine torch's default of 2 threads makes a small MLP ~10x slower than 1.
    """
    import torch

    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:  # can only be set once, before any inter-op work
        pass


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads, then restore the previous count."""
    import torch

    before = torch.get_num_threads()
    set_torch_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def init_worker() -> None:
    """Initialiser of every worker process: one intra-op thread per process (parallelism comes
    from the worker processes instead)."""
    os.environ["OMP_NUM_THREADS"] = "1"
    set_torch_threads(1)


def default_workers() -> int:
    """The number of cores available to this process."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)
