"""The ``testbed`` command's entry point (``pyproject.toml``'s script, ``python -m testbed``).

Before :mod:`testbed.cli` and its heavy imports: when this process is about to run episodes in
several workers, the workers' forkserver starts now and imports torch, gymnasium and
highway-env on another core while this process imports them too
(:func:`testbed.runtime.start_workers_early`, which does nothing in any other case). An entry
point rather than a side effect of importing :mod:`testbed.cli`, which tests and users import
as a library.
"""

import sys


def main() -> int:
    """Start the workers early where it pays, then run :func:`testbed.cli.main`."""
    from testbed.runtime import start_workers_early

    start_workers_early(sys.argv[1:])
    from testbed.cli import main as cli_main

    return cli_main()
