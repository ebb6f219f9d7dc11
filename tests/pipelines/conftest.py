"""Fixtures of the pipeline tests: a local Ray shared by the tests that need one."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def ray_local() -> Iterator[Any]:
    """A local Ray with 2 CPUs, started once for the session."""
    try:
        import ray
    except ImportError:
        message = "Ray is not installed (pip install 'wellml[ray]')"
        if os.environ.get("WELLML_REQUIRE_SERVICES") == "1":
            pytest.fail(message + " and WELLML_REQUIRE_SERVICES=1", pytrace=False)
        pytest.skip(message)
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    try:
        yield ray
    finally:
        ray.shutdown()


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
