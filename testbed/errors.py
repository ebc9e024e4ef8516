"""The project's error type for user mistakes.

The command line turns a :class:`TestbedError` into a one-line message and exit code 2;
anything else is a bug and keeps its traceback.
"""


class TestbedError(Exception):
    """A user-facing error: bad input, missing or mismatched files, nonsense values."""

    __test__ = False  # not a pytest test class despite the name
