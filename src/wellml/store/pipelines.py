"""SQL for pipeline runs and their steps, schedules and their firings, and the retrain
triggers monitors leave for pipelines to run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, and_, insert, or_, select, update

from wellml.store.tables import (
    pipeline_firings,
    pipeline_runs,
    pipeline_schedules,
    pipeline_steps,
    retrain_triggers,
)


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


# -- schedules ----------------------------------------------------------------------------------


def insert_schedule(conn: Connection, row: dict[str, Any]) -> None:
    """Insert a schedule row."""
    conn.execute(insert(pipeline_schedules).values(row))


def schedule_by_name(conn: Connection, name: str) -> dict[str, Any] | None:
    """A schedule by name."""
    row = conn.execute(select(pipeline_schedules).where(pipeline_schedules.c.name == name)).first()
    return dict(row._mapping) if row else None


def list_schedules(conn: Connection, *, enabled_only: bool = False) -> list[dict[str, Any]]:
    """Schedules by name."""
    stmt = select(pipeline_schedules).order_by(pipeline_schedules.c.name)
    if enabled_only:
        stmt = stmt.where(pipeline_schedules.c.enabled.is_(True))
    return [dict(r._mapping) for r in conn.execute(stmt)]


def update_schedule(conn: Connection, schedule_id: str, **values: Any) -> None:
    """Change a schedule."""
    conn.execute(
        update(pipeline_schedules).where(pipeline_schedules.c.id == schedule_id).values(**values)
    )


def claim_cursor(conn: Connection, schedule_id: str, value: float) -> bool:
    """Move a schedule's cursor to ``value`` unless it is there already (or further).

    One conditional UPDATE: of two schedulers claiming the same slot, only one succeeds.
    """
    result = conn.execute(
        update(pipeline_schedules)
        .where(
            and_(
                pipeline_schedules.c.id == schedule_id,
                pipeline_schedules.c.enabled.is_(True),
                or_(pipeline_schedules.c.cursor.is_(None), pipeline_schedules.c.cursor < value),
            )
        )
        .values(cursor=value)
    )
    return bool(result.rowcount == 1)


# -- firings ------------------------------------------------------------------------------------


def insert_firing(conn: Connection, row: dict[str, Any]) -> None:
    """Insert a firing row."""
    conn.execute(insert(pipeline_firings).values(row))


def finish_firing(conn: Connection, firing_id: str, **values: Any) -> None:
    """Record how a firing ended."""
    conn.execute(update(pipeline_firings).where(pipeline_firings.c.id == firing_id).values(values))


def firings(
    conn: Connection, *, schedule_id: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Firings, newest first (of one schedule, or all)."""
    stmt = select(pipeline_firings).order_by(pipeline_firings.c.claimed_at.desc()).limit(limit)
    if schedule_id is not None:
        stmt = stmt.where(pipeline_firings.c.schedule_id == schedule_id)
    return [dict(r._mapping) for r in conn.execute(stmt)]


def running_firings(conn: Connection) -> list[dict[str, Any]]:
    """Firings still marked running."""
    stmt = select(pipeline_firings).where(pipeline_firings.c.status == "running")
    return [dict(r._mapping) for r in conn.execute(stmt)]


def interrupt_firing(conn: Connection, firing_id: str, *, ended_at: float, error: str) -> bool:
    """Mark a firing that is still running as interrupted; False if it had already ended."""
    result = conn.execute(
        update(pipeline_firings)
        .where(pipeline_firings.c.id == firing_id, pipeline_firings.c.status == "running")
        .values(status="interrupted", ended_at=ended_at, error=error)
    )
    return bool(result.rowcount)


# -- retrain triggers (left by monitors, run by schedulers) -----------------------------------


def pending_retrain_triggers(conn: Connection, limit: int = 100) -> list[dict[str, Any]]:
    """Retrain triggers waiting to be run, oldest first."""
    stmt = (
        select(retrain_triggers)
        .where(retrain_triggers.c.status == "pending")
        .order_by(retrain_triggers.c.created_at)
        .limit(limit)
    )
    return [dict(r._mapping) for r in conn.execute(stmt)]


def claim_retrain_trigger(conn: Connection, trigger_id: str, *, by: str, at: float) -> bool:
    """Move a pending retrain trigger to claimed; False when another scheduler took it."""
    result = conn.execute(
        update(retrain_triggers)
        .where(retrain_triggers.c.id == trigger_id, retrain_triggers.c.status == "pending")
        .values(status="claimed", claimed_by=by, updated_at=at)
    )
    return bool(result.rowcount == 1)


def finish_retrain_trigger(
    conn: Connection,
    trigger_id: str,
    *,
    status: str,
    pipeline_run_id: str | None,
    error: str | None,
    at: float,
) -> None:
    """Record how the run a retrain trigger asked for ended."""
    conn.execute(
        update(retrain_triggers)
        .where(retrain_triggers.c.id == trigger_id)
        .values(status=status, pipeline_run_id=pipeline_run_id, error=error, updated_at=at)
    )
