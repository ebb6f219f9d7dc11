"""The metadata store: one SQLAlchemy engine, transactions, and migrations applied on open.

SQLite (the default) runs in WAL mode so readers never block the writer, with a busy timeout
and ``BEGIN IMMEDIATE`` for writes so that two processes logging to one workspace queue up
instead of failing with "database is locked". PostgreSQL is used as it is, by URL.
"""

from __future__ import annotations

import ast
import functools
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import StaticPool

from wellml.errors import BackendUnavailable

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_SQLITE_BUSY_TIMEOUT_MS = 60_000


def new_id() -> str:
    """A new random record id (32 hex characters)."""
    return uuid.uuid4().hex


def now() -> float:
    """The current time as UTC epoch seconds, the unit of every stored time."""
    return time.time()


class MetadataStore:
    """The metadata database of a workspace.

    Use :meth:`read` for queries and :meth:`write` for changes; each yields a connection inside
    one transaction that commits on success and rolls back on any exception.
    """

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        """Connect to ``url`` and bring its schema up to date.

        Raises:
            BackendUnavailable: the database cannot be reached or its driver is missing.
        """
        self.url = url
        self.dialect = url.split(":", 1)[0].split("+", 1)[0]
        self.engine = _make_engine(url)
        if migrate:
            try:
                upgrade(self.engine)
            except OperationalError as exc:
                raise BackendUnavailable(f"metadata store {redact_url(url)}: {exc.orig}") from exc

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection in a read transaction."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A connection in a write transaction (SQLite: ``BEGIN IMMEDIATE``)."""
        with self.engine.connect() as conn:
            conn = conn.execution_options(wellml_write=True)
            with conn.begin():
                yield conn

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"MetadataStore({redact_url(self.url)!r})"


def redact_url(url: str) -> str:
    """The URL with its password replaced by ``***``, for messages and records."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    try:
        return create_engine(url, pool_pre_ping=True, future=True)
    except ModuleNotFoundError as exc:
        raise BackendUnavailable(
            f"the driver for {redact_url(url)} is not installed ({exc.name}); "
            "install the extra: pip install 'wellml[postgres]'"
        ) from exc


def _sqlite_engine(url: str) -> Engine:
    memory = url in ("sqlite://", "sqlite:///:memory:")
    if not memory:
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
    if memory:
        kwargs["poolclass"] = StaticPool
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from pysqlite so BEGIN IMMEDIATE can be issued.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_TIMEOUT_MS}")
        if not memory:
            _enable_wal(cur)
        # NORMAL in WAL mode survives a killed process; only power loss can drop the tail.
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get("wellml_write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")

    return engine


def _enable_wal(cur: Any) -> None:
    # Switching a new database to WAL needs an exclusive lock, and SQLite answers "locked"
    # at once, without waiting, when another connection switches at the same moment.
    import sqlite3

    for attempt in range(100):
        try:
            cur.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 99:
                raise
            time.sleep(0.01 * (1 + attempt % 10))


# --- migrations --------------------------------------------------------------------------------

_migrate_lock = threading.Lock()


@functools.cache
def head_revision() -> str:
    """The newest migration revision shipped with this version of wellml."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    assert head is not None, "no migrations shipped"
    return head


def current_revision(conn: Connection) -> str | None:
    """The migration revision the database is at, or None for an empty database."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


@functools.cache
def _shipped_head() -> str | None:
    """The head revision read from the migration files without importing Alembic, or None
    when they are not the simple chain it expects (Alembic then decides).

    Alembic costs a process some 10 MiB of imports; a store that is already up to date, as
    every open but the first is, should not pay them.
    """
    revisions: dict[str, str | None] = {}
    for path in sorted((MIGRATIONS_DIR / "versions").glob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, ValueError):
            return None
        found: dict[str, object] = {}
        for node in tree.body:
            if (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id in ("revision", "down_revision")
            ):
                # Anything but a literal (a merge's tuple, a computed name) is left to Alembic.
                value = node.value
                found[node.targets[0].id] = value.value if isinstance(value, ast.Constant) else ...
        revision, down = found.get("revision"), found.get("down_revision", ...)
        if not isinstance(revision, str) or not (down is None or isinstance(down, str)):
            return None
        revisions[revision] = down
    heads = set(revisions) - set(revisions.values())
    return heads.pop() if len(heads) == 1 else None


def _stored_revision(conn: Connection) -> str | None:
    """The revision recorded in Alembic's version table, read without Alembic; None when the
    table is missing or does not hold exactly one revision."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    rows = conn.execute(text("SELECT version_num FROM alembic_version")).fetchall()
    return str(rows[0][0]) if len(rows) == 1 else None


def upgrade(engine: Engine) -> None:
    """Apply every pending migration; safe when several processes open one store at once.

    Alembic is imported only when the database is not already at the shipped head.
    """
    shipped = _shipped_head()
    with engine.connect() as conn, conn.begin():
        if shipped is not None and _stored_revision(conn) == shipped:
            return
        if current_revision(conn) == head_revision():
            return
    from alembic import command
    from alembic.config import Config

    with _migrate_lock, engine.connect() as conn:
        conn = conn.execution_options(wellml_write=True)
        with conn.begin():
            if engine.dialect.name == "postgresql":
                # Serialises concurrent first opens; released at commit.
                conn.execute(text("SELECT pg_advisory_xact_lock(7215001)"))
            if current_revision(conn) == head_revision():
                return
            cfg = Config()
            cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
