"""SQL for the data catalog: datasets, their versions, profiles and quality results."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, insert, select

from wellml.store.metadata import new_id, now
from wellml.store.tables import dataset_profiles, dataset_versions, datasets, quality_results


def dataset_by_name(conn: Connection, name: str) -> dict[str, Any] | None:
    """The dataset row with this name."""
    row = conn.execute(select(datasets).where(datasets.c.name == name)).first()
    return dict(row._mapping) if row else None


def create_dataset(
    conn: Connection, *, name: str, description: str, owner: str, properties: dict[str, Any]
) -> dict[str, Any]:
    """Insert a dataset row and return it."""
    row = {
        "id": new_id(),
        "name": name,
        "description": description,
        "owner": owner,
        "properties": properties,
        "created_at": now(),
    }
    conn.execute(insert(datasets).values(row))
    return row


def version_by_digest(conn: Connection, dataset_id: str, digest: str) -> dict[str, Any] | None:
    """The version of a dataset whose content has this digest."""
    row = conn.execute(
        _versions().where(
            dataset_versions.c.dataset_id == dataset_id,
            dataset_versions.c.content_digest == digest,
        )
    ).first()
    return dict(row._mapping) if row else None


def next_version(conn: Connection, dataset_id: str) -> int:
    """One more than the dataset's highest version number."""
    top = conn.execute(
        select(func.max(dataset_versions.c.version)).where(
            dataset_versions.c.dataset_id == dataset_id
        )
    ).scalar()
    return int(top or 0) + 1


def insert_version(conn: Connection, row: dict[str, Any]) -> None:
    """Insert a dataset version row."""
    conn.execute(insert(dataset_versions).values(row))


def _versions() -> Any:
    return select(dataset_versions, datasets.c.name).join(
        datasets, datasets.c.id == dataset_versions.c.dataset_id
    )


def get_version(conn: Connection, name: str, version: int | None) -> dict[str, Any] | None:
    """A version of the named dataset (the latest when ``version`` is None)."""
    stmt = _versions().where(datasets.c.name == name)
    if version is None:
        stmt = stmt.order_by(dataset_versions.c.version.desc()).limit(1)
    else:
        stmt = stmt.where(dataset_versions.c.version == version)
    row = conn.execute(stmt).first()
    return dict(row._mapping) if row else None


def version_by_id(conn: Connection, version_id: str) -> dict[str, Any] | None:
    """A dataset version by id."""
    row = conn.execute(_versions().where(dataset_versions.c.id == version_id)).first()
    return dict(row._mapping) if row else None


def versions_by_lineage_ids(conn: Connection, ids: list[str]) -> list[dict[str, Any]]:
    """Dataset versions by their lineage artifact ids."""
    if not ids:
        return []
    rows = conn.execute(_versions().where(dataset_versions.c.lineage_artifact_id.in_(ids)))
    return [dict(r._mapping) for r in rows]


def list_versions(conn: Connection, name: str | None = None) -> list[dict[str, Any]]:
    """Every version, newest first, optionally of one dataset."""
    stmt = _versions().order_by(datasets.c.name, dataset_versions.c.version.desc())
    if name is not None:
        stmt = stmt.where(datasets.c.name == name)
    return [dict(r._mapping) for r in conn.execute(stmt)]


def list_datasets(conn: Connection) -> list[dict[str, Any]]:
    """Every dataset with its version count and latest version."""
    stmt = (
        select(
            datasets,
            func.count(dataset_versions.c.id).label("versions"),
            func.max(dataset_versions.c.version).label("latest"),
        )
        .join(dataset_versions, dataset_versions.c.dataset_id == datasets.c.id, isouter=True)
        .group_by(datasets.c.id)
        .order_by(datasets.c.name)
    )
    return [dict(r._mapping) for r in conn.execute(stmt)]


def get_profile(conn: Connection, version_id: str) -> dict[str, Any] | None:
    """The stored profile of a version."""
    row = conn.execute(
        select(dataset_profiles.c.profile).where(
            dataset_profiles.c.dataset_version_id == version_id
        )
    ).first()
    return row[0] if row else None


def put_profile(conn: Connection, version_id: str, profile: dict[str, Any]) -> None:
    """Store a version's profile (profiles never change, so the first one stays)."""
    if get_profile(conn, version_id) is None:
        conn.execute(
            insert(dataset_profiles).values(
                dataset_version_id=version_id, profile=profile, created_at=now()
            )
        )


def add_quality_result(
    conn: Connection,
    *,
    version_id: str,
    rules: list[dict[str, Any]],
    report: dict[str, Any],
    passed: bool,
    user: str,
) -> str:
    """Store one evaluation of quality rules against a version."""
    qid = new_id()
    conn.execute(
        insert(quality_results).values(
            id=qid,
            dataset_version_id=version_id,
            rules=rules,
            report=report,
            passed=passed,
            created_at=now(),
            created_by=user,
        )
    )
    return qid


def quality_results_of(conn: Connection, version_id: str) -> list[dict[str, Any]]:
    """Every quality evaluation of a version, newest first."""
    rows = conn.execute(
        select(quality_results)
        .where(quality_results.c.dataset_version_id == version_id)
        .order_by(quality_results.c.created_at.desc())
    )
    return [dict(r._mapping) for r in rows]
