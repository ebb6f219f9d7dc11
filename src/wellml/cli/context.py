"""The workspace the CLI acts on, and the global options that choose it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wellml.workspace import Workspace


@dataclass
class CliState:
    """Global options of one CLI invocation."""

    workspace: Path | None = None
    debug: bool = False
    _ws: Workspace | None = None

    def open(self) -> Workspace:
        """The workspace: ``--workspace``, ``WELLML_WORKSPACE``, or found from the current
        folder upward."""
        if self._ws is None:
            self._ws = Workspace.open(self.workspace)
        return self._ws


state = CliState()
