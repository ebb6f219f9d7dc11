"""SQL for monitoring: baselines, monitors, executions, alert events, retrain triggers and
poisoning checks."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, func, insert, or_, select, update

from wellml.store.tables import (
    alert_events,
    baselines,
    monitor_executions,
    monitors,
    poisoning_checks,
    retrain_triggers,
)

# -- baselines ----------------------------------------------------------------------------------


def insert_baseline(conn: Connection, row: dict[str, Any]) -> None:
    """Store a baseline version."""
    conn.execute(insert(baselines).values(row))


def next_baseline_version(conn: Connection, name: str) -> int:
    """The version number the next baseline called ``name`` gets."""
    top = conn.execute(
        select(func.max(baselines.c.version)).where(baselines.c.name == name)
    ).scalar()
    return int(top or 0) + 1


def baseline_by_id(conn: Connection, baseline_id: str) -> dict[str, Any] | None:
    """A baseline by id."""
    row = conn.execute(select(baselines).where(baselines.c.id == baseline_id)).first()
    return dict(row._mapping) if row else None


def baseline_by_ref(conn: Connection, name: str, version: int | None) -> dict[str, Any] | None:
    """A baseline by name and version (the newest version when ``version`` is None)."""
    stmt = select(baselines).where(baselines.c.name == name)
    if version is None:
        stmt = stmt.order_by(baselines.c.version.desc()).limit(1)
    else:
        stmt = stmt.where(baselines.c.version == version)
    row = conn.execute(stmt).first()
    return dict(row._mapping) if row else None


def baseline_for_dataset(
    conn: Connection, dataset_version_id: str, features: list[str]
) -> dict[str, Any] | None:
    """The newest baseline of a dataset version over exactly these features."""
    rows = conn.execute(
        select(baselines)
        .where(baselines.c.dataset_version_id == dataset_version_id)
        .order_by(baselines.c.created_at.desc(), baselines.c.version.desc())
    )
    for r in rows:
        if list(r.features) == list(features):
            return dict(r._mapping)
    return None


def list_baselines(conn: Connection, name: str | None = None) -> list[dict[str, Any]]:
    """Baselines (of one name, or all) by name and version, without their statistics."""
    stmt = select(
        baselines.c.id,
        baselines.c.name,
        baselines.c.version,
        baselines.c.dataset_version_id,
        baselines.c.parent_id,
        baselines.c.features,
        baselines.c.changes,
        baselines.c.created_at,
        baselines.c.created_by,
    ).order_by(baselines.c.name, baselines.c.version)
    if name is not None:
        stmt = stmt.where(baselines.c.name == name)
    return [dict(r._mapping) for r in conn.execute(stmt)]


# -- monitors -----------------------------------------------------------------------------------


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


def claim_slot(conn: Connection, monitor_id: str, slot: float) -> bool:
    """Record ``slot`` as the monitor's newest run slot unless it already is (or a later one).

    One conditional UPDATE, so of two processes claiming the same slot only one succeeds.
    """
    result = conn.execute(
        update(monitors)
        .where(
            and_(
                monitors.c.id == monitor_id,
                or_(monitors.c.last_slot.is_(None), monitors.c.last_slot < slot),
            )
        )
        .values(last_slot=slot)
    )
    return bool(result.rowcount == 1)


# -- executions ---------------------------------------------------------------------------------


def insert_execution(conn: Connection, row: dict[str, Any]) -> None:
    """Store a monitor execution."""
    conn.execute(insert(monitor_executions).values(row))


def execution_by_id(conn: Connection, execution_id: str) -> dict[str, Any] | None:
    """An execution by id, with its monitor's name."""
    row = conn.execute(
        select(monitor_executions, monitors.c.name.label("monitor"))
        .join(monitors, monitors.c.id == monitor_executions.c.monitor_id)
        .where(monitor_executions.c.id == execution_id)
    ).first()
    return dict(row._mapping) if row else None


def executions_of(conn: Connection, monitor_id: str, limit: int = 100) -> list[dict[str, Any]]:
    """A monitor's executions, newest first."""
    rows = conn.execute(
        select(monitor_executions)
        .where(monitor_executions.c.monitor_id == monitor_id)
        .order_by(monitor_executions.c.started_at.desc())
        .limit(limit)
    )
    return [dict(r._mapping) for r in rows]


def checked_dataset_ids(conn: Connection, monitor_id: str) -> list[str]:
    """The dataset versions a monitor's executions have checked."""
    rows = conn.execute(
        select(monitor_executions.c.dataset_version_id, monitor_executions.c.inputs).where(
            monitor_executions.c.monitor_id == monitor_id
        )
    )
    out: list[str] = []
    for dataset_version_id, inputs in rows:
        out.append(dataset_version_id)
        out.extend(inputs or [])
    return out


# -- alerts and retrain triggers ----------------------------------------------------------------


def insert_alert(conn: Connection, row: dict[str, Any]) -> None:
    """Store an alert event."""
    conn.execute(insert(alert_events).values(row))


def alerts(
    conn: Connection, monitor_id: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Alert events (of one monitor, or all), newest first, with the monitor's name."""
    stmt = (
        select(alert_events, monitors.c.name.label("monitor"))
        .join(monitors, monitors.c.id == alert_events.c.monitor_id)
        .order_by(alert_events.c.created_at.desc())
        .limit(limit)
    )
    if monitor_id is not None:
        stmt = stmt.where(alert_events.c.monitor_id == monitor_id)
    return [dict(r._mapping) for r in conn.execute(stmt)]


def insert_trigger(conn: Connection, row: dict[str, Any]) -> None:
    """Store a retrain trigger."""
    conn.execute(insert(retrain_triggers).values(row))


def triggers(conn: Connection, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Retrain triggers (in one status, or all), oldest first, with the monitor's name."""
    stmt = (
        select(retrain_triggers, monitors.c.name.label("monitor"))
        .join(monitors, monitors.c.id == retrain_triggers.c.monitor_id)
        .order_by(retrain_triggers.c.created_at)
        .limit(limit)
    )
    if status is not None:
        stmt = stmt.where(retrain_triggers.c.status == status)
    return [dict(r._mapping) for r in conn.execute(stmt)]


def trigger_by_id(conn: Connection, trigger_id: str) -> dict[str, Any] | None:
    """A retrain trigger by id."""
    row = conn.execute(select(retrain_triggers).where(retrain_triggers.c.id == trigger_id)).first()
    return dict(row._mapping) if row else None


def claim_trigger(conn: Connection, trigger_id: str, by: str, at: float) -> bool:
    """Move a pending trigger to ``claimed``; False when someone else took it first."""
    result = conn.execute(
        update(retrain_triggers)
        .where(and_(retrain_triggers.c.id == trigger_id, retrain_triggers.c.status == "pending"))
        .values(status="claimed", claimed_by=by, updated_at=at)
    )
    return bool(result.rowcount == 1)


def update_trigger(conn: Connection, trigger_id: str, **values: Any) -> None:
    """Change a retrain trigger."""
    conn.execute(
        update(retrain_triggers).where(retrain_triggers.c.id == trigger_id).values(**values)
    )


# -- poisoning checks ---------------------------------------------------------------------------


def insert_poisoning_check(conn: Connection, row: dict[str, Any]) -> None:
    """Store a poisoning check."""
    conn.execute(insert(poisoning_checks).values(row))


def poisoning_checks_of(conn: Connection, dataset_version_id: str) -> list[dict[str, Any]]:
    """The poisoning checks of a dataset version, newest first."""
    rows = conn.execute(
        select(poisoning_checks)
        .where(poisoning_checks.c.dataset_version_id == dataset_version_id)
        .order_by(poisoning_checks.c.created_at.desc())
    )
    return [dict(r._mapping) for r in rows]
