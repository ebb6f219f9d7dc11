"""SQL for endpoints: their records, configuration versions, deployment history, supervisor
events, captured-data files and batch transform jobs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from wellml.store.metadata import now
from wellml.store.tables import (
    batch_chunks,
    batch_jobs,
    capture_files,
    endpoint_configs,
    endpoint_deployments,
    endpoint_events,
    endpoints,
)


def endpoint_by_name(conn: Connection, name: str) -> dict[str, Any] | None:
    """The endpoint with this name."""
    row = conn.execute(select(endpoints).where(endpoints.c.name == name)).first()
    return dict(row._mapping) if row else None


def list_endpoints(conn: Connection) -> list[dict[str, Any]]:
    """Every endpoint by name."""
    return [dict(r._mapping) for r in conn.execute(select(endpoints).order_by(endpoints.c.name))]


def insert_endpoint(conn: Connection, row: dict[str, Any]) -> None:
    """Insert an endpoint."""
    conn.execute(insert(endpoints).values(row))


def update_endpoint(conn: Connection, endpoint_id: str, **values: Any) -> None:
    """Change an endpoint's fields (``updated_at`` is set too)."""
    conn.execute(
        update(endpoints).where(endpoints.c.id == endpoint_id).values(updated_at=now(), **values)
    )


def add_deployment(conn: Connection, row: dict[str, Any]) -> None:
    """Append to an endpoint's deployment history."""
    conn.execute(insert(endpoint_deployments).values(row))


def end_deployment(
    conn: Connection, deployment_id: str, outcome: str, reason: str | None = None
) -> None:
    """Close a deployment with its outcome (and why, when it did not complete)."""
    values: dict[str, Any] = {"outcome": outcome, "ended_at": now()}
    if reason is not None:
        values["reason"] = reason
    conn.execute(
        update(endpoint_deployments)
        .where(endpoint_deployments.c.id == deployment_id)
        .values(**values)
    )


def update_deployment(conn: Connection, deployment_id: str, **values: Any) -> None:
    """Change a deployment's fields (its outcome while in progress, its steps)."""
    conn.execute(
        update(endpoint_deployments)
        .where(endpoint_deployments.c.id == deployment_id)
        .values(**values)
    )


def deployment_by_id(conn: Connection, deployment_id: str) -> dict[str, Any] | None:
    """One deployment."""
    row = conn.execute(
        select(endpoint_deployments).where(endpoint_deployments.c.id == deployment_id)
    ).first()
    return dict(row._mapping) if row else None


def open_deployments(conn: Connection, endpoint_id: str) -> list[dict[str, Any]]:
    """An endpoint's deployments that wait for or are in the hands of its supervisor."""
    rows = conn.execute(
        select(endpoint_deployments)
        .where(
            endpoint_deployments.c.endpoint_id == endpoint_id,
            endpoint_deployments.c.outcome.in_(("pending", "in-progress")),
        )
        .order_by(endpoint_deployments.c.started_at)
    )
    return [dict(r._mapping) for r in rows]


def add_config(conn: Connection, row: dict[str, Any]) -> None:
    """Store a configuration version."""
    conn.execute(insert(endpoint_configs).values(row))


def next_config_version(conn: Connection, endpoint_id: str) -> int:
    """The number the endpoint's next configuration gets."""
    top = conn.execute(
        select(func.max(endpoint_configs.c.version)).where(
            endpoint_configs.c.endpoint_id == endpoint_id
        )
    ).scalar()
    return int(top or 0) + 1


def config_version(conn: Connection, endpoint_id: str, version: int) -> dict[str, Any] | None:
    """One configuration version of an endpoint."""
    row = conn.execute(
        select(endpoint_configs).where(
            endpoint_configs.c.endpoint_id == endpoint_id, endpoint_configs.c.version == version
        )
    ).first()
    return dict(row._mapping) if row else None


def configs_of(conn: Connection, endpoint_id: str) -> list[dict[str, Any]]:
    """Every configuration version of an endpoint, oldest first."""
    rows = conn.execute(
        select(endpoint_configs)
        .where(endpoint_configs.c.endpoint_id == endpoint_id)
        .order_by(endpoint_configs.c.version)
    )
    return [dict(r._mapping) for r in rows]


def add_event(
    conn: Connection, endpoint_id: str, kind: str, variant: str, detail: dict[str, Any]
) -> None:
    """Record something the supervisor did (a restart, a scaling action)."""
    conn.execute(
        insert(endpoint_events).values(
            endpoint_id=endpoint_id, kind=kind, variant=variant, detail=detail, at=now()
        )
    )


def events_of(conn: Connection, endpoint_id: str, limit: int = 200) -> list[dict[str, Any]]:
    """An endpoint's latest supervisor events, oldest first."""
    rows = conn.execute(
        select(endpoint_events)
        .where(endpoint_events.c.endpoint_id == endpoint_id)
        .order_by(endpoint_events.c.at.desc(), endpoint_events.c.id.desc())
        .limit(limit)
    )
    return [dict(r._mapping) for r in rows][::-1]


def delete_endpoint(conn: Connection, endpoint_id: str) -> None:
    """Remove an endpoint's live record; its history (configurations, deployments, events,
    captured files) stays, as lineage refers to it."""
    conn.execute(update(endpoints).where(endpoints.c.id == endpoint_id).values(status="deleted"))


def purge_events(conn: Connection, endpoint_id: str, before: float) -> None:
    """Drop supervisor events older than ``before``."""
    conn.execute(
        delete(endpoint_events).where(
            endpoint_events.c.endpoint_id == endpoint_id, endpoint_events.c.at < before
        )
    )


def deployments_of(conn: Connection, endpoint_id: str) -> list[dict[str, Any]]:
    """An endpoint's deployments, oldest first."""
    rows = conn.execute(
        select(endpoint_deployments)
        .where(endpoint_deployments.c.endpoint_id == endpoint_id)
        .order_by(endpoint_deployments.c.started_at)
    )
    return [dict(r._mapping) for r in rows]


def add_capture_file(conn: Connection, row: dict[str, Any]) -> None:
    """Record a captured-data file."""
    conn.execute(insert(capture_files).values(row))


def capture_files_of(conn: Connection, endpoint_id: str, *, only_new: bool) -> list[dict[str, Any]]:
    """Capture files of an endpoint, oldest first (only those not yet ingested if asked)."""
    stmt = select(capture_files).where(capture_files.c.endpoint_id == endpoint_id)
    if only_new:
        stmt = stmt.where(capture_files.c.dataset_version_id.is_(None))
    return [dict(r._mapping) for r in conn.execute(stmt.order_by(capture_files.c.first_at))]


def mark_ingested(conn: Connection, uris: list[str], dataset_version_id: str) -> None:
    """Record which dataset version now holds these capture files."""
    conn.execute(
        update(capture_files)
        .where(capture_files.c.uri.in_(uris))
        .values(dataset_version_id=dataset_version_id)
    )


def insert_batch_job(conn: Connection, row: dict[str, Any]) -> None:
    """Record a batch transform job."""
    conn.execute(insert(batch_jobs).values(row))


def update_batch_job(conn: Connection, job_id: str, **values: Any) -> None:
    """Change a batch job's fields."""
    conn.execute(update(batch_jobs).where(batch_jobs.c.id == job_id).values(**values))


def batch_job(conn: Connection, job_id: str) -> dict[str, Any] | None:
    """One batch job."""
    row = conn.execute(select(batch_jobs).where(batch_jobs.c.id == job_id)).first()
    return dict(row._mapping) if row else None


def batch_jobs_for(conn: Connection, output_uri: str) -> list[dict[str, Any]]:
    """Batch jobs that write ``output_uri``, newest first."""
    rows = conn.execute(
        select(batch_jobs)
        .where(batch_jobs.c.output_uri == output_uri)
        .order_by(batch_jobs.c.started_at.desc())
    )
    return [dict(r._mapping) for r in rows]


def add_batch_chunk(conn: Connection, row: dict[str, Any]) -> None:
    """Record a finished chunk."""
    conn.execute(insert(batch_chunks).values(row))


def batch_chunks_of(conn: Connection, job_id: str) -> list[dict[str, Any]]:
    """A job's finished chunks in order."""
    rows = conn.execute(
        select(batch_chunks).where(batch_chunks.c.job_id == job_id).order_by(batch_chunks.c.chunk)
    )
    return [dict(r._mapping) for r in rows]
