"""SQL for the model registry: registered models, versions, aliases and their history."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from wellml.store.metadata import new_id, now
from wellml.store.tables import model_aliases, model_events, model_versions, registered_models


def model_by_name(conn: Connection, name: str) -> dict[str, Any] | None:
    """The registered model with this name."""
    row = conn.execute(select(registered_models).where(registered_models.c.name == name)).first()
    return dict(row._mapping) if row else None


def create_model(conn: Connection, name: str, description: str, owner: str) -> dict[str, Any]:
    """Insert a registered model."""
    row = {
        "id": new_id(),
        "name": name,
        "description": description,
        "owner": owner,
        "created_at": now(),
    }
    conn.execute(insert(registered_models).values(row))
    return row


def next_version(conn: Connection, model_id: str) -> int:
    """One more than the model's highest version."""
    top = conn.execute(
        select(func.max(model_versions.c.version)).where(model_versions.c.model_id == model_id)
    ).scalar()
    return int(top or 0) + 1


def insert_version(conn: Connection, row: dict[str, Any]) -> None:
    """Insert a model version."""
    conn.execute(insert(model_versions).values(row))


def _versions() -> Any:
    return select(model_versions, registered_models.c.name).join(
        registered_models, registered_models.c.id == model_versions.c.model_id
    )


def get_version(conn: Connection, name: str, version: int | None) -> dict[str, Any] | None:
    """A version of a model (the latest when ``version`` is None)."""
    stmt = _versions().where(registered_models.c.name == name)
    if version is None:
        stmt = stmt.order_by(model_versions.c.version.desc()).limit(1)
    else:
        stmt = stmt.where(model_versions.c.version == version)
    row = conn.execute(stmt).first()
    return dict(row._mapping) if row else None


def version_by_id(conn: Connection, version_id: str) -> dict[str, Any] | None:
    """A model version by id."""
    row = conn.execute(_versions().where(model_versions.c.id == version_id)).first()
    return dict(row._mapping) if row else None


def versions_by_lineage_ids(conn: Connection, ids: list[str]) -> list[dict[str, Any]]:
    """Model versions by lineage artifact id."""
    if not ids:
        return []
    rows = conn.execute(_versions().where(model_versions.c.lineage_artifact_id.in_(ids)))
    return [dict(r._mapping) for r in rows]


def list_versions(
    conn: Connection, name: str | None = None, status: str | None = None
) -> list[dict[str, Any]]:
    """Versions, by model name then newest first."""
    stmt = _versions().order_by(registered_models.c.name, model_versions.c.version.desc())
    if name is not None:
        stmt = stmt.where(registered_models.c.name == name)
    if status is not None:
        stmt = stmt.where(model_versions.c.status == status)
    return [dict(r._mapping) for r in conn.execute(stmt)]


def list_models(conn: Connection) -> list[dict[str, Any]]:
    """Every registered model with its version count and latest version."""
    stmt = (
        select(
            registered_models,
            func.count(model_versions.c.id).label("versions"),
            func.max(model_versions.c.version).label("latest"),
        )
        .join(model_versions, model_versions.c.model_id == registered_models.c.id, isouter=True)
        .group_by(registered_models.c.id)
        .order_by(registered_models.c.name)
    )
    return [dict(r._mapping) for r in conn.execute(stmt)]


def set_status(conn: Connection, version_id: str, status: str, actor: str, reason: str) -> None:
    """Change a version's approval status and record the event."""
    at = now()
    conn.execute(
        update(model_versions)
        .where(model_versions.c.id == version_id)
        .values(status=status, status_by=actor, status_reason=reason, status_at=at)
    )
    add_event(conn, version_id, status, actor, reason)


def add_event(conn: Connection, version_id: str, action: str, actor: str, reason: str = "") -> None:
    """Append to a version's history."""
    conn.execute(
        insert(model_events).values(
            version_id=version_id, action=action, actor=actor, reason=reason, at=now()
        )
    )


def events_of(conn: Connection, version_id: str) -> list[dict[str, Any]]:
    """A version's history, oldest first."""
    rows = conn.execute(
        select(model_events)
        .where(model_events.c.version_id == version_id)
        .order_by(model_events.c.id)
    )
    return [dict(r._mapping) for r in rows]


def aliases_of_model(conn: Connection, model_id: str) -> dict[str, str]:
    """``{alias: version_id}`` of one model."""
    rows = conn.execute(
        select(model_aliases.c.alias, model_aliases.c.version_id).where(
            model_aliases.c.model_id == model_id
        )
    )
    return dict(rows.tuples().all())


def set_alias(conn: Connection, model_id: str, alias: str, version_id: str, actor: str) -> None:
    """Point an alias at a version (moving it if it exists)."""
    conn.execute(
        model_aliases.delete().where(
            model_aliases.c.model_id == model_id, model_aliases.c.alias == alias
        )
    )
    conn.execute(
        insert(model_aliases).values(
            model_id=model_id,
            alias=alias,
            version_id=version_id,
            updated_at=now(),
            updated_by=actor,
        )
    )


def delete_alias(conn: Connection, model_id: str, alias: str) -> int:
    """Remove an alias; return how many rows went."""
    res = conn.execute(
        model_aliases.delete().where(
            model_aliases.c.model_id == model_id, model_aliases.c.alias == alias
        )
    )
    return int(res.rowcount or 0)
