"""Fixtures of the pipeline tests: a folder where test steps count their executions."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def markers(tmp_path: Path) -> Path:
    """A folder where test steps count their executions."""
    folder = tmp_path / "markers"
    folder.mkdir()
    return folder


def executions(markers: Path, name: str) -> int:
    """How many times the test step ``name`` ran."""
    path = markers / f"{name}.count"
    return len(path.read_text().splitlines()) if path.exists() else 0
