"""SQL for the lineage graph: artifacts, executions and the events between them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from wellml.lineage.provenance import CodeVersion, Environment
from wellml.store.metadata import new_id, now
from wellml.store.tables import (
    environments,
    lineage_artifacts,
    lineage_events,
    lineage_executions,
)


def ensure_environment(conn: Connection, env: Environment) -> str:
    """Record an environment once; return its id.

    The insert runs every time (and does nothing when the row exists): remembering "already
    written" in the process would be wrong while the writing transaction is uncommitted.
    """
    row = {
        "id": env.id,
        "python": env.python,
        "platform": env.platform,
        "packages": env.packages,
        "created_at": now(),
    }
    stmt: Any
    if conn.dialect.name == "postgresql":
        stmt = postgresql.insert(environments).values(row).on_conflict_do_nothing()
    else:
        stmt = sqlite.insert(environments).values(row).on_conflict_do_nothing()
    conn.execute(stmt)
    return env.id


def add_artifact(
    conn: Connection,
    *,
    kind: str,
    ref: str,
    user: str,
    uri: str | None = None,
    digest: str | None = None,
    properties: dict[str, Any] | None = None,
) -> str:
    """Insert an artifact node; return its id."""
    aid = new_id()
    conn.execute(
        insert(lineage_artifacts).values(
            id=aid,
            kind=kind,
            ref=ref,
            uri=uri,
            digest=digest,
            properties=properties or {},
            created_at=now(),
            created_by=user,
        )
    )
    return aid


def add_execution(
    conn: Connection,
    *,
    kind: str,
    ref: str,
    user: str,
    code: CodeVersion,
    environment_id: str | None,
    name: str | None = None,
    status: str = "completed",
    properties: dict[str, Any] | None = None,
    started_at: float | None = None,
    ended_at: float | None = None,
) -> str:
    """Insert an execution node; return its id."""
    eid = new_id()
    start = started_at if started_at is not None else now()
    conn.execute(
        insert(lineage_executions).values(
            id=eid,
            kind=kind,
            ref=ref,
            name=name,
            status=status,
            code_repo=code.repo,
            code_commit=code.commit,
            code_dirty=code.dirty,
            environment_id=environment_id,
            user=user,
            properties=properties or {},
            started_at=start,
            ended_at=ended_at if ended_at is not None else (start if status != "running" else None),
        )
    )
    return eid


def finish_execution(conn: Connection, execution_id: str, *, status: str) -> None:
    """Mark an execution ended with ``status``."""
    conn.execute(
        update(lineage_executions)
        .where(lineage_executions.c.id == execution_id)
        .values(status=status, ended_at=now())
    )


def add_events(conn: Connection, execution_id: str, events: Iterable[tuple[str, str, str]]) -> None:
    """Link artifacts to an execution: ``(artifact_id, "input"|"output", role)`` each.

    A link that already exists is left as it is.
    """
    existing = {
        (r.artifact_id, r.direction)
        for r in conn.execute(
            select(lineage_events.c.artifact_id, lineage_events.c.direction).where(
                lineage_events.c.execution_id == execution_id
            )
        )
    }
    rows = []
    for artifact_id, direction, role in events:
        if direction not in ("input", "output"):
            raise ValueError(f"direction must be input or output, not {direction!r}")
        if (artifact_id, direction) in existing:
            continue
        existing.add((artifact_id, direction))
        rows.append(
            {
                "execution_id": execution_id,
                "artifact_id": artifact_id,
                "direction": direction,
                "role": role,
                "created_at": now(),
            }
        )
    if rows:
        conn.execute(insert(lineage_events), rows)


def artifact_by_ref(conn: Connection, ref: str) -> dict[str, Any] | None:
    """The artifact node with this ref, as a dict."""
    row = conn.execute(select(lineage_artifacts).where(lineage_artifacts.c.ref == ref)).first()
    return dict(row._mapping) if row else None


def execution_by_ref(conn: Connection, ref: str) -> dict[str, Any] | None:
    """The execution node with this ref, as a dict."""
    row = conn.execute(select(lineage_executions).where(lineage_executions.c.ref == ref)).first()
    return dict(row._mapping) if row else None


def artifacts_by_ids(conn: Connection, ids: Sequence[str]) -> list[dict[str, Any]]:
    """Artifact nodes by id."""
    if not ids:
        return []
    rows = conn.execute(select(lineage_artifacts).where(lineage_artifacts.c.id.in_(ids)))
    return [dict(r._mapping) for r in rows]


def executions_by_ids(conn: Connection, ids: Sequence[str]) -> list[dict[str, Any]]:
    """Execution nodes by id."""
    if not ids:
        return []
    rows = conn.execute(select(lineage_executions).where(lineage_executions.c.id.in_(ids)))
    return [dict(r._mapping) for r in rows]


def events_of_executions(conn: Connection, ids: Sequence[str]) -> list[dict[str, Any]]:
    """Every event of these executions."""
    if not ids:
        return []
    rows = conn.execute(select(lineage_events).where(lineage_events.c.execution_id.in_(ids)))
    return [dict(r._mapping) for r in rows]


def events_of_artifacts(conn: Connection, ids: Sequence[str]) -> list[dict[str, Any]]:
    """Every event that touches these artifacts."""
    if not ids:
        return []
    rows = conn.execute(select(lineage_events).where(lineage_events.c.artifact_id.in_(ids)))
    return [dict(r._mapping) for r in rows]
