"""SQL for the feature store: versioned definitions and materializations."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from wellml.store.tables import feature_definitions, feature_materializations


def _row(row: Any) -> dict[str, Any] | None:
    return dict(row._mapping) if row is not None else None


def get_definition(
    conn: Connection, kind: str | tuple[str, ...], name: str, version: int | None = None
) -> dict[str, Any] | None:
    """A definition by kind(s) and name: the given version, or the latest."""
    kinds = (kind,) if isinstance(kind, str) else kind
    stmt = select(feature_definitions).where(
        feature_definitions.c.kind.in_(kinds), feature_definitions.c.name == name
    )
    if version is None:
        stmt = stmt.order_by(feature_definitions.c.version.desc()).limit(1)
    else:
        stmt = stmt.where(feature_definitions.c.version == version)
    return _row(conn.execute(stmt).first())


def definition_by_id(conn: Connection, definition_id: str) -> dict[str, Any] | None:
    """A definition by id."""
    return _row(
        conn.execute(
            select(feature_definitions).where(feature_definitions.c.id == definition_id)
        ).first()
    )


def next_version(conn: Connection, kind: str, name: str) -> int:
    """One more than the highest version of this definition."""
    top = conn.execute(
        select(func.max(feature_definitions.c.version)).where(
            feature_definitions.c.kind == kind, feature_definitions.c.name == name
        )
    ).scalar()
    return int(top or 0) + 1


def insert_definition(conn: Connection, row: dict[str, Any]) -> None:
    """Insert one definition version."""
    conn.execute(insert(feature_definitions).values(row))


def latest_definitions(conn: Connection, kind: str | None = None) -> list[dict[str, Any]]:
    """The latest version of every definition (of one kind), with its version count."""
    latest = (
        select(
            feature_definitions.c.kind,
            feature_definitions.c.name,
            func.max(feature_definitions.c.version).label("latest"),
            func.count().label("versions"),
        )
        .group_by(feature_definitions.c.kind, feature_definitions.c.name)
        .subquery()
    )
    stmt = (
        select(feature_definitions, latest.c.versions)
        .join(
            latest,
            (latest.c.kind == feature_definitions.c.kind)
            & (latest.c.name == feature_definitions.c.name)
            & (latest.c.latest == feature_definitions.c.version),
        )
        .order_by(feature_definitions.c.kind, feature_definitions.c.name)
    )
    if kind is not None:
        stmt = stmt.where(feature_definitions.c.kind == kind)
    return [dict(r._mapping) for r in conn.execute(stmt)]


def definition_versions(conn: Connection, kind: str, name: str) -> list[dict[str, Any]]:
    """Every version of a definition, newest first."""
    stmt = (
        select(feature_definitions)
        .where(feature_definitions.c.kind == kind, feature_definitions.c.name == name)
        .order_by(feature_definitions.c.version.desc())
    )
    return [dict(r._mapping) for r in conn.execute(stmt)]


def insert_materialization(conn: Connection, row: dict[str, Any]) -> None:
    """Insert a materialization record."""
    conn.execute(insert(feature_materializations).values(row))


def finish_materialization(conn: Connection, materialization_id: str, **values: Any) -> None:
    """Set the outcome of a materialization."""
    conn.execute(
        update(feature_materializations)
        .where(feature_materializations.c.id == materialization_id)
        .values(**values)
    )


def materializations(
    conn: Connection, definition_ids: list[str], *, status: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Materializations of these definitions, newest first."""
    stmt = (
        select(feature_materializations)
        .where(feature_materializations.c.definition_id.in_(definition_ids))
        .order_by(feature_materializations.c.started_at.desc())
        .limit(limit)
    )
    if status is not None:
        stmt = stmt.where(feature_materializations.c.status == status)
    return [dict(r._mapping) for r in conn.execute(stmt)]
