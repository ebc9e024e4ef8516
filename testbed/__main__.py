"""``python -m testbed`` is the ``testbed`` command."""

import sys

from testbed._early import main

if __name__ == "__main__":
    sys.exit(main())
