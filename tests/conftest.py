"""Shared fixtures: fresh workspaces, the real PostgreSQL service when it is there, a local
Ray; and a helper that waits for a condition."""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from wellml.workspace import Workspace

PG_BASE = os.environ.get("WELLML_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUIRE = os.environ.get("WELLML_REQUIRE_SERVICES") == "1"


def _unavailable(service: str, why: str) -> None:
    message = f"{service} is not available ({why})"
    if REQUIRE:
        pytest.fail(message + " and WELLML_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(message)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("WELLML_WORKSPACE", "WELLML_DB_URL", "WELLML_ARTIFACTS_URL", "WELLML_CAPTURE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WELLML_USER", "tester")
    monkeypatch.setenv("WELLML_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    """A fresh workspace on the embedded defaults (SQLite, local artifacts)."""
    ws = Workspace.init(tmp_path / "ws", name="test")
    yield ws
    ws.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL to a fresh, empty schema in the real PostgreSQL; dropped afterwards."""
    try:
        import psycopg
    except ImportError:
        _unavailable("PostgreSQL", "psycopg is not installed")
    dsn = PG_BASE.replace("postgresql+psycopg://", "postgresql://")
    schema = f"wellml_test_{uuid.uuid4().hex[:12]}"
    try:
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        _unavailable("PostgreSQL", str(exc).strip().splitlines()[0])
    with conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        try:
            sep = "&" if "?" in PG_BASE else "?"
            yield f"{PG_BASE}{sep}options=-csearch_path%3D{schema}"
        finally:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(scope="session")
def ray_local() -> Iterator[Any]:
    """A local Ray with 2 CPUs, started once for the session (or the one already running)."""
    try:
        import ray
    except ImportError:
        _unavailable("Ray", "pip install 'wellml[ray]'")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def wait_until(check: Callable[[], Any], timeout: float = 30, what: str = "") -> Any:
    """Poll ``check`` every 0.2 s until it returns something true, and return that.

    Raises:
        AssertionError: it did not within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")
