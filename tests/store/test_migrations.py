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
