"""SQL for endpoints: their records, deployment history and captured-data files."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select, update

from wellml.store.metadata import now
from wellml.store.tables import capture_files, endpoint_deployments, endpoints


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


def end_deployment(conn: Connection, deployment_id: str, outcome: str) -> None:
    """Close a deployment with its outcome."""
    conn.execute(
        update(endpoint_deployments)
        .where(endpoint_deployments.c.id == deployment_id)
        .values(outcome=outcome, ended_at=now())
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
