"""`python -m meterspec`: the `meterspec` command."""

import sys

from meterspec.cli import main

if __name__ == "__main__":
    sys.exit(main())
