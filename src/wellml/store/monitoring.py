"""SQL for monitoring: baselines, monitors and their executions."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select

from wellml.store.tables import baselines, monitor_executions, monitors


def insert_baseline(conn: Connection, row: dict[str, Any]) -> None:
    """Store a baseline."""
    conn.execute(insert(baselines).values(row))


def baseline_by_id(conn: Connection, baseline_id: str) -> dict[str, Any] | None:
    """A baseline by id."""
    row = conn.execute(select(baselines).where(baselines.c.id == baseline_id)).first()
    return dict(row._mapping) if row else None


def baseline_for_dataset(
    conn: Connection, dataset_version_id: str, features: list[str]
) -> dict[str, Any] | None:
    """The newest baseline of a dataset version over exactly these features."""
    rows = conn.execute(
        select(baselines)
        .where(baselines.c.dataset_version_id == dataset_version_id)
        .order_by(baselines.c.created_at.desc())
    )
    for r in rows:
        if list(r.features) == list(features):
            return dict(r._mapping)
    return None


def insert_monitor(conn: Connection, row: dict[str, Any]) -> None:
    """Store a monitor."""
    conn.execute(insert(monitors).values(row))


def monitor_by_name(conn: Connection, name: str) -> dict[str, Any] | None:
    """A monitor by name."""
    row = conn.execute(select(monitors).where(monitors.c.name == name)).first()
    return dict(row._mapping) if row else None


def update_monitor(conn: Connection, monitor_id: str, **values: Any) -> None:
    """Change a monitor."""
    conn.execute(monitors.update().where(monitors.c.id == monitor_id).values(**values))


def list_monitors(conn: Connection) -> list[dict[str, Any]]:
    """Every monitor by name."""
    return [dict(r._mapping) for r in conn.execute(select(monitors).order_by(monitors.c.name))]


def insert_execution(conn: Connection, row: dict[str, Any]) -> None:
    """Store a monitor execution."""
    conn.execute(insert(monitor_executions).values(row))


def executions_of(conn: Connection, monitor_id: str, limit: int = 100) -> list[dict[str, Any]]:
    """A monitor's executions, newest first."""
    rows = conn.execute(
        select(monitor_executions)
        .where(monitor_executions.c.monitor_id == monitor_id)
        .order_by(monitor_executions.c.started_at.desc())
        .limit(limit)
    )
    return [dict(r._mapping) for r in rows]
