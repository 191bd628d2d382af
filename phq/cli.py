"""Kept so that `python -m phq.cli` (tests, scripts, older deployments) still runs the command line,
which lives above the parts in cli/main.py."""

import sys

from cli.main import COMMANDS, main, usage  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
