"""The command-line interface: thin commands over the capability services."""

from __future__ import annotations

import sys


def main() -> None:
    """Entry point of the ``wellml`` command."""
    from wellml.cli.app import main as run

    sys.exit(run())
