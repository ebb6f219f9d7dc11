"""Migration 0004 keeps the baselines, monitors and executions of an older database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from wellml.store.metadata import MIGRATIONS_DIR, MetadataStore


def _insert(conn: sa.Connection, table: str, **values: Any) -> None:
    """Insert a row, filling the other required columns with placeholder values."""
    columns = sa.inspect(conn).get_columns(table)
    row = dict(values)
    for col in columns:
        if col["name"] in row or col["nullable"]:
            continue
        kind = type(col["type"]).__name__.upper()
        if "INT" in kind:
            row[col["name"]] = 1
        elif "FLOAT" in kind or "REAL" in kind or "NUMERIC" in kind:
            row[col["name"]] = 1.0
        elif "JSON" in kind:
            row[col["name"]] = "{}"
        elif "BOOL" in kind:
            row[col["name"]] = False
        else:
            row[col["name"]] = f"{table}-{col['name']}"
    names = ", ".join(f'"{k}"' for k in row)
    params = ", ".join(f":{k}" for k in row)
    conn.execute(sa.text(f"INSERT INTO {table} ({names}) VALUES ({params})"), row)


def _migrate(store: MetadataStore, direction: str, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with store.engine.connect() as conn, conn.begin():
        cfg.attributes["connection"] = conn
        getattr(command, direction)(cfg, revision)


def test_rows_written_before_0004_survive_the_upgrade_with_foreign_keys_on(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003")
        _insert(conn, "environments", id="env")
        _insert(conn, "lineage_artifacts", id="la1", ref="dataset:d@1")
        _insert(conn, "lineage_executions", id="le1", ref="monitor-run:e1", environment_id="env")
        _insert(conn, "datasets", id="d", name="d")
        _insert(conn, "dataset_versions", id="dv1", dataset_id="d", lineage_artifact_id="la1")
        _insert(
            conn,
            "baselines",
            id="b1",
            dataset_version_id="dv1",
            features='["x"]',
            constraints='{"features": []}',
            lineage_artifact_id="la1",
        )
        _insert(
            conn,
            "monitors",
            id="m1",
            name="ep-drift",
            kind="data_drift",
            baseline_id="b1",
            created_at=2.0,
        )
        _insert(
            conn,
            "monitor_executions",
            id="e1",
            monitor_id="m1",
            dataset_version_id="dv1",
            status="completed",
            violations="[]",
            lineage_execution_id="le1",
        )
    engine.dispose()

    # Migrated on the store's own connections, which enforce foreign keys.
    store = MetadataStore(url, migrate=False)
    _migrate(store, "upgrade", "0004")
    with store.read() as conn:
        base = conn.execute(sa.text("SELECT name, version, created_by FROM baselines")).one()
        mon = conn.execute(sa.text("SELECT baseline_id, last_slot FROM monitors")).one()
        exe = conn.execute(sa.text('SELECT kind, "trigger" FROM monitor_executions')).one()
        broken = conn.execute(sa.text("PRAGMA foreign_key_check")).all()
    store.dispose()
    assert tuple(base) == ("baseline-b1", 1, "unknown")
    assert tuple(mon) == ("b1", None)
    assert tuple(exe) == ("data_drift", "manual")
    assert broken == []


def test_downgrade_to_0003_and_back_keeps_the_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/new.db"
    store = MetadataStore(url, migrate=False)
    _migrate(store, "upgrade", "0004")
    with store.write() as conn:
        _insert(conn, "environments", id="env")
        _insert(conn, "lineage_artifacts", id="la1", ref="dataset:d@1")
        _insert(conn, "lineage_executions", id="le1", ref="monitor-run:e1", environment_id="env")
        _insert(conn, "datasets", id="d", name="d")
        _insert(conn, "dataset_versions", id="dv1", dataset_id="d", lineage_artifact_id="la1")
        _insert(
            conn,
            "baselines",
            id="b1",
            name="b",
            dataset_version_id="dv1",
            lineage_artifact_id="la1",
        )
        _insert(conn, "monitors", id="m1", name="with", kind="data_drift", baseline_id="b1")
        _insert(conn, "monitors", id="m2", name="without", kind="model_quality")
        _insert(
            conn,
            "monitor_executions",
            id="e1",
            monitor_id="m1",
            kind="data_drift",
            dataset_version_id="dv1",
            lineage_execution_id="le1",
        )
    _migrate(store, "downgrade", "0003")
    _migrate(store, "upgrade", "0004")
    with store.read() as conn:
        monitors = conn.execute(sa.text("SELECT id FROM monitors")).scalars().all()
        executions = conn.execute(sa.text("SELECT id, kind FROM monitor_executions")).all()
        broken = conn.execute(sa.text("PRAGMA foreign_key_check")).all()
    store.dispose()
    # The monitor without a baseline could not go back to the old schema.
    assert monitors == ["m1"]
    assert [tuple(e) for e in executions] == [("e1", "data_drift")]
    assert broken == []
