"""The project's error types for user mistakes and for runs stopped from outside.

The command line turns a :class:`TestbedError` into a one-line message and exit code 2, and
an :class:`Interrupted` into one line and ``128 + signal``; anything else is a bug and keeps
its traceback.
"""


class TestbedError(Exception):
    """A user-facing error: bad input, missing or mismatched files, nonsense values.

    ``detail`` is optional text shown only with ``--debug`` (e.g. the traceback of a user's
    own policy function that raised).
    """

    __test__ = False  # not a pytest test class despite the name

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail

    def __reduce__(self):  # keep ``detail`` across process boundaries (rollout workers)
        return (_rebuild, (type(self), str(self), self.detail))


def _rebuild(cls: type, message: str, detail: str | None) -> "TestbedError":
    return cls(message, detail=detail)


class Interrupted(BaseException):
    """The run was stopped by a signal (SIGINT or SIGTERM). A ``BaseException``, like
    ``KeyboardInterrupt``, so that only clean-up code (``finally``, context managers) sees it."""

    def __init__(self, signal_name: str, exit_code: int) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name
        self.exit_code = exit_code
