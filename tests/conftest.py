"""Shared fixtures: fresh workspaces, the real PostgreSQL service when it is there, a local
Ray; a helper that waits for a condition, and a load of requests from threads."""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import Counter
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


class RequestLoad:
    """JSON requests to ``url`` from ``threads`` threads, one after another in each, until
    stopped, ``limit`` requests in all, or ``seconds`` have passed. ``body(n, i)`` is the body
    of thread ``i``'s ``n``-th request. Counts answers by status (0: no answer) and by the
    variant that gave them."""

    def __init__(
        self,
        url: str,
        body: Callable[[int, int], Any],
        *,
        threads: int = 2,
        limit: int = 20_000,
        seconds: float = 300,
        headers: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> None:
        import httpx

        self._httpx = httpx
        self.url, self.body, self.headers, self.timeout = url, body, headers or {}, timeout
        self.limit = limit
        self.deadline = time.monotonic() + seconds
        self.sent = 0
        self.statuses: Counter[int] = Counter()
        self.variants: Counter[str] = Counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def _run(self, i: int) -> None:
        with self._httpx.Client(timeout=self.timeout) as client:
            n = 0
            while not self._stop.is_set() and time.monotonic() < self.deadline:
                with self._lock:
                    if self.sent >= self.limit:
                        return
                    self.sent += 1
                try:
                    r = client.post(self.url, json=self.body(n, i), headers=self.headers)
                    status, variant = r.status_code, r.headers.get("x-wellml-variant", "-")
                except self._httpx.HTTPError:
                    status, variant = 0, "-"
                n += 1
                with self._lock:
                    self.statuses[status] += 1
                    self.variants[variant] += 1

    def __enter__(self) -> RequestLoad:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)

    @property
    def failed(self) -> int:
        """Requests answered with anything but 200, or not answered."""
        return sum(n for s, n in self.statuses.items() if s != 200)
