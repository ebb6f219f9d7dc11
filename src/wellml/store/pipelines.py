"""SQL for pipeline runs and their steps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, insert, select, update

from wellml.store.tables import pipeline_runs, pipeline_steps


def insert_run(conn: Connection, row: dict[str, Any]) -> None:
    """Insert a pipeline run row."""
    conn.execute(insert(pipeline_runs).values(row))


def finish_run(
    conn: Connection, run_id: str, *, status: str, ended_at: float, error: str | None
) -> None:
    """Set a run's final status."""
    conn.execute(
        update(pipeline_runs)
        .where(pipeline_runs.c.id == run_id)
        .values(status=status, ended_at=ended_at, error=error)
    )


def insert_steps(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert step rows (one batch)."""
    if rows:
        conn.execute(insert(pipeline_steps), list(rows))


def get_runs(conn: Connection, run_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Run rows by id, in the order asked."""
    if not run_ids:
        return []
    rows = {
        r.id: dict(r._mapping)
        for r in conn.execute(select(pipeline_runs).where(pipeline_runs.c.id.in_(run_ids)))
    }
    return [rows[i] for i in run_ids if i in rows]


def run_ids_with_prefix(conn: Connection, prefix: str, limit: int = 2) -> list[str]:
    """Ids of runs starting with ``prefix``."""
    stmt = select(pipeline_runs.c.id).where(pipeline_runs.c.id.like(prefix + "%")).limit(limit)
    return [r[0] for r in conn.execute(stmt)]


def list_run_ids(
    conn: Connection, *, pipeline: str | None, status: str | None, limit: int
) -> list[str]:
    """Ids of runs, newest first, optionally of one pipeline or status."""
    stmt = select(pipeline_runs.c.id).order_by(pipeline_runs.c.started_at.desc()).limit(limit)
    if pipeline is not None:
        stmt = stmt.where(pipeline_runs.c.pipeline == pipeline)
    if status is not None:
        stmt = stmt.where(pipeline_runs.c.status == status)
    return [r[0] for r in conn.execute(stmt)]


def steps_of_runs(conn: Connection, run_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Step rows of each run, in the order they were recorded."""
    out: dict[str, list[dict[str, Any]]] = {r: [] for r in run_ids}
    if not run_ids:
        return out
    stmt = (
        select(pipeline_steps)
        .where(pipeline_steps.c.run_id.in_(run_ids))
        .order_by(pipeline_steps.c.ended_at, pipeline_steps.c.name)
    )
    for r in conn.execute(stmt):
        out[r.run_id].append(dict(r._mapping))
    return out


def completed_step_by_cache_key(conn: Connection, cache_key: str) -> dict[str, Any] | None:
    """The latest step that computed outputs under this cache key."""
    row = conn.execute(
        select(pipeline_steps)
        .where(pipeline_steps.c.cache_key == cache_key, pipeline_steps.c.status == "completed")
        .order_by(pipeline_steps.c.ended_at.desc())
        .limit(1)
    ).first()
    return dict(row._mapping) if row else None


def running_runs(conn: Connection) -> list[dict[str, Any]]:
    """Runs still marked running."""
    stmt = select(pipeline_runs.c.id, pipeline_runs.c.host, pipeline_runs.c.pid).where(
        pipeline_runs.c.status == "running"
    )
    return [dict(r._mapping) for r in conn.execute(stmt)]


def interrupt_run(conn: Connection, run_id: str, *, ended_at: float, error: str) -> bool:
    """Mark a run that is still running as interrupted; False if it had already ended."""
    result = conn.execute(
        update(pipeline_runs)
        .where(pipeline_runs.c.id == run_id, pipeline_runs.c.status == "running")
        .values(status="interrupted", ended_at=ended_at, error=error)
    )
    return bool(result.rowcount)
