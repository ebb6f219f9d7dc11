"""SQL for monitoring: baselines, monitors, executions, alert events, retrain triggers and
poisoning checks."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, insert, or_, select, update

from wellml.store.tables import (
    alert_events,
    baselines,
    monitor_executions,
    monitors,
    poisoning_checks,
    retrain_triggers,
    review_items,
    review_queues,
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


# -- review queue -------------------------------------------------------------------------------


def review_queue(conn: Connection, endpoint_id: str) -> dict[str, Any] | None:
    """An endpoint's review queue settings."""
    row = conn.execute(
        select(review_queues).where(review_queues.c.endpoint_id == endpoint_id)
    ).first()
    return dict(row._mapping) if row else None


def review_queues_all(conn: Connection) -> list[dict[str, Any]]:
    """Every review queue."""
    return [dict(r._mapping) for r in conn.execute(select(review_queues))]


def upsert_review_queue(conn: Connection, endpoint_id: str, threshold: float, at: float) -> None:
    """Create an endpoint's review queue, or change its threshold (scanning continues)."""
    if review_queue(conn, endpoint_id) is None:
        conn.execute(
            insert(review_queues).values(
                endpoint_id=endpoint_id,
                threshold=threshold,
                scanned_version=0,
                created_at=at,
                updated_at=at,
            )
        )
    else:
        conn.execute(
            update(review_queues)
            .where(review_queues.c.endpoint_id == endpoint_id)
            .values(threshold=threshold, updated_at=at)
        )


def advance_review_scan(conn: Connection, endpoint_id: str, seen: int, to: int, at: float) -> bool:
    """Move the queue's scan mark from ``seen`` to ``to``; False when another scan moved it."""
    result = conn.execute(
        update(review_queues)
        .where(
            and_(
                review_queues.c.endpoint_id == endpoint_id,
                review_queues.c.scanned_version == seen,
            )
        )
        .values(scanned_version=to, updated_at=at)
    )
    return bool(result.rowcount)


def insert_review_items(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Queue items (one statement for the batch)."""
    if rows:
        conn.execute(insert(review_items), rows)


def review_items_of(
    conn: Connection,
    endpoint_id: str,
    *,
    status: str | None = None,
    ids: list[str] | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Items of an endpoint's queue, least confident first."""
    stmt = select(review_items).where(review_items.c.endpoint_id == endpoint_id)
    if status is not None:
        stmt = stmt.where(review_items.c.status == status)
    if ids is not None:
        stmt = stmt.where(review_items.c.id.in_(ids))
    stmt = stmt.order_by(review_items.c.confidence, review_items.c.created_at, review_items.c.id)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [dict(r._mapping) for r in conn.execute(stmt)]


def review_timings(conn: Connection, endpoint_id: str) -> list[dict[str, Any]]:
    """Status, prediction, label and times of every item of the queue (no inputs)."""
    rows = conn.execute(
        select(
            review_items.c.status,
            review_items.c.prediction,
            review_items.c.label,
            review_items.c.created_at,
            review_items.c.reviewed_at,
        ).where(review_items.c.endpoint_id == endpoint_id)
    )
    return [dict(r._mapping) for r in rows]


def close_review_items(
    conn: Connection, endpoint_id: str, ids: list[str], values: dict[str, Any]
) -> int:
    """Mark pending items reviewed (labelled or skipped); returns how many were pending."""
    if not ids:
        return 0
    result = conn.execute(
        update(review_items)
        .where(
            and_(
                review_items.c.endpoint_id == endpoint_id,
                review_items.c.id.in_(ids),
                review_items.c.status == "pending",
            )
        )
        .values(**values)
    )
    return int(result.rowcount)


def set_review_labels(conn: Connection, labels: dict[str, Any]) -> None:
    """Store each item's label (after :func:`close_review_items` claimed them), in one batch."""
    if labels:
        stmt = (
            update(review_items)
            .where(review_items.c.id == bindparam("item_id"))
            .values(label=bindparam("new_label"))
        )
        conn.execute(stmt, [{"item_id": k, "new_label": v} for k, v in labels.items()])


def reopen_review_items(conn: Connection, endpoint_id: str, ids: list[str]) -> None:
    """Undo a claim whose labels could not be stored: the items are pending again."""
    conn.execute(
        update(review_items)
        .where(
            and_(
                review_items.c.endpoint_id == endpoint_id,
                review_items.c.id.in_(ids),
                review_items.c.ground_truth.is_(None),
            )
        )
        .values(status="pending", label=None, reviewer=None, note=None, reviewed_at=None)
    )


def mark_review_ground_truth(conn: Connection, ids: list[str], dataset_ref: str) -> None:
    """Record the ground-truth dataset version the items' labels went to."""
    conn.execute(
        update(review_items).where(review_items.c.id.in_(ids)).values(ground_truth=dataset_ref)
    )
