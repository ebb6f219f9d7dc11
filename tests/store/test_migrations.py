"""The shipped migrations build exactly the schema the code declares, on every backend."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from wellml.store.metadata import MetadataStore, head_revision
from wellml.store.tables import metadata


def _diff(url: str) -> list[object]:
    store = MetadataStore(url)
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, metadata)
    store.dispose()
    return diff


def test_sqlite_schema_matches_the_declared_tables(tmp_path: Path) -> None:
    assert _diff(f"sqlite:///{tmp_path}/m.db") == []


@pytest.mark.postgres
def test_postgres_schema_matches_the_declared_tables(postgres_url: str) -> None:
    assert _diff(postgres_url) == []


def test_concurrent_first_opens_migrate_once(tmp_path: Path) -> None:
    import threading

    url = f"sqlite:///{tmp_path}/m.db"
    errors: list[BaseException] = []

    def open_store() -> None:
        try:
            MetadataStore(url).dispose()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    store = MetadataStore(url)
    with store.read() as conn:
        from wellml.store.metadata import current_revision

        assert current_revision(conn) == head_revision()


# --- Alembic is imported only when a migration is due -----------------------------------------

_OPEN_AND_REPORT = """
import sys
from wellml.store.metadata import MetadataStore, current_revision
store = MetadataStore(sys.argv[1])
imported = "alembic" in sys.modules
with store.read() as conn:
    print(imported, current_revision(conn))
"""


def _open_in_fresh_process(url: str) -> tuple[bool, str]:
    """Open the store in a new interpreter: whether it imported Alembic, and the revision."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _OPEN_AND_REPORT, url],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    imported, revision = done.stdout.split()
    return imported == "True", revision


def _migrate_to(url: str, revision: str) -> None:
    """Bring a new database to an older revision, as an older wellml would have left it."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine

    from wellml.store.metadata import MIGRATIONS_DIR

    engine = create_engine(url)
    with engine.begin() as conn:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    engine.dispose()


def test_shipped_head_is_read_from_the_files_as_alembic_reads_it() -> None:
    from wellml.store.metadata import _shipped_head

    assert _shipped_head() == head_revision()


def test_store_at_head_opens_without_importing_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/m.db"
    MetadataStore(url).dispose()
    assert _open_in_fresh_process(url) == (False, head_revision())


def test_old_database_is_still_migrated_to_head(tmp_path: Path) -> None:
    from sqlalchemy import inspect

    url = f"sqlite:///{tmp_path}/m.db"
    _migrate_to(url, "0006")
    assert _open_in_fresh_process(url) == (True, head_revision())
    store = MetadataStore(url)
    with store.read() as conn:
        assert inspect(conn).has_table("review_queues")
    store.dispose()


def test_empty_database_is_migrated_to_head(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/m.db"
    assert _open_in_fresh_process(url) == (True, head_revision())


def _versions(folder: Path, files: dict[str, str]) -> None:
    (folder / "versions").mkdir(parents=True)
    for name, body in files.items():
        (folder / "versions" / name).write_text(body)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"a.py": 'revision = "a"\ndown_revision = None\n'}, "a"),
        (
            {
                "a.py": 'revision = "a"\ndown_revision = None\n',
                "b.py": 'revision = "b"\ndown_revision = "a"\n',
            },
            "b",
        ),
        # Two heads, a merge, a missing revision, a file that is not Python: Alembic decides.
        (
            {
                "a.py": 'revision = "a"\ndown_revision = None\n',
                "b.py": 'revision = "b"\ndown_revision = None\n',
            },
            None,
        ),
        ({"m.py": 'revision = "m"\ndown_revision = ("a", "b")\n'}, None),
        ({"x.py": "down_revision = None\n"}, None),
        ({"bad.py": "revision = (\n"}, None),
        ({}, None),
    ],
)
def test_shipped_head_without_alembic_gives_up_on_anything_but_a_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, str], expected: str | None
) -> None:
    from wellml.store import metadata as module

    _versions(tmp_path, files)
    monkeypatch.setattr(module, "MIGRATIONS_DIR", tmp_path)
    module._shipped_head.cache_clear()
    try:
        assert module._shipped_head() == expected
    finally:
        module._shipped_head.cache_clear()


def test_stored_revision_is_none_without_a_version_table(tmp_path: Path) -> None:
    from sqlalchemy import create_engine

    from wellml.store.metadata import _stored_revision

    engine = create_engine(f"sqlite:///{tmp_path}/m.db")
    with engine.connect() as conn:
        assert _stored_revision(conn) is None
    engine.dispose()
    url = f"sqlite:///{tmp_path}/m.db"
    MetadataStore(url).dispose()
    engine = create_engine(url)
    with engine.connect() as conn:
        assert _stored_revision(conn) == head_revision()
    engine.dispose()
