"""Exact scalar fast paths for ``np.clip`` and ``np.abs``.

highway-env calls ``np.clip`` and ``np.abs`` hundreds of thousands of times per episode on
single Python floats, where numpy's ufunc machinery (wrapping the scalar in a 0-d array,
type resolution, unwrapping) costs ~1-3 us for a handful of comparisons. The functions here
return exactly what numpy returns, value *and* type (``numpy.float64``), for the argument
types they accept, and hand every other call to numpy unchanged:

``clip(a, lo, hi)`` with ``a`` a ``float``/``numpy.float64`` and ``lo``, ``hi`` each a
``float``/``numpy.float64`` (not NaN) or a small ``int``: numpy's float clip loop is
``_NPY_MIN(_NPY_MAX(a, lo), hi)`` where ``_NPY_MAX(x, y)`` is ``x`` if ``x`` is NaN or not
``x < y`` (a tie keeps ``x``: ``np.clip(-0.0, 0, 30)`` is ``-0.0``) and ``_NPY_MIN`` is the
mirror image. Those are IEEE comparisons, identical in Python; the result is one of the three
inputs converted exactly to float64. ``tests/test_sim.py`` checks this against ``np.clip`` on
signed zeros, infinities, NaN, ties and random values.

``fast_abs(x)`` (``np.abs``) with ``x`` a ``float``/``numpy.float64``: IEEE ``fabs`` (clears the sign bit), which
is what both Python's ``abs`` and numpy's ``absolute`` compute.

They are installed by replacing the ``np`` global of a few highway-env modules with
:data:`FAST_NUMPY`, a module object holding all of numpy's attributes plus these two, so
``np.clip`` in those modules resolves to :func:`clip` and every other ``np.X`` to numpy's own.
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np

_np_clip = np.clip
_np_abs = np.abs
_float64 = np.float64
_INT_LIMIT = 2**53  # ints up to here convert to float64 exactly


def clip(*args: Any, **kwargs: Any) -> Any:
    """``numpy.clip``, with an exact fast path for a scalar float and scalar bounds (each a
    ``float``/``numpy.float64`` that is not NaN, or an ``int`` that converts exactly)."""
    if not kwargs and len(args) == 3:
        a, lo, hi = args
        ta, tl, th = type(a), type(lo), type(hi)
        if (
            (ta is float or ta is _float64)
            and ((tl is float or tl is _float64) and lo == lo or tl is int and -_INT_LIMIT <= lo <= _INT_LIMIT)
            and ((th is float or th is _float64) and hi == hi or th is int and -_INT_LIMIT <= hi <= _INT_LIMIT)
        ):
            t = lo if a < lo else a
            return _float64(hi if t > hi else t)
    return _np_clip(*args, **kwargs)


def fast_abs(*args: Any, **kwargs: Any) -> Any:
    """``numpy.abs``, with an exact fast path for a scalar float."""
    if not kwargs and len(args) == 1:
        x = args[0]
        tx = type(x)
        if tx is float or tx is _float64:
            return _float64(x.__abs__())  # IEEE fabs
    return _np_abs(*args, **kwargs)


def make_fast_numpy() -> types.ModuleType:
    """A module object with all of numpy's attributes, ``clip`` and ``abs`` replaced."""
    module = types.ModuleType("numpy", "numpy with exact scalar fast paths (testbed.sim)")
    module.__dict__.update(np.__dict__)
    module.clip = clip  # type: ignore[attr-defined]
    module.abs = fast_abs  # type: ignore[attr-defined]
    return module
