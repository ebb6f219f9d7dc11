"""Fixtures of the tuning tests: a local Ray with 2 CPUs, shared with other tests that use one."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def ray_cpus() -> Iterator[Any]:
    """Ray with 2 CPUs: the one already running in this session, or one started here."""
    try:
        import ray
    except ImportError:
        message = "Ray is not installed (pip install 'wellml[ray]')"
        if os.environ.get("WELLML_REQUIRE_SERVICES") == "1":
            pytest.fail(message + " and WELLML_REQUIRE_SERVICES=1", pytrace=False)
        pytest.skip(message)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()
