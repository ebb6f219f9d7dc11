"""SQL for tuning studies and their trials."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, insert, select, update

from wellml.store.tables import tuning_studies, tuning_trials


def insert_study(conn: Connection, row: dict[str, Any]) -> None:
    """Insert a study row."""
    conn.execute(insert(tuning_studies).values(row))


def update_study(conn: Connection, study_id: str, **values: Any) -> None:
    """Change a study row (its best trial so far, its final status)."""
    conn.execute(update(tuning_studies).where(tuning_studies.c.id == study_id).values(**values))


def insert_trial(conn: Connection, row: dict[str, Any]) -> None:
    """Insert a finished trial."""
    conn.execute(insert(tuning_trials).values(row))


def get_study(conn: Connection, study_id: str) -> dict[str, Any] | None:
    """A study by id."""
    row = conn.execute(select(tuning_studies).where(tuning_studies.c.id == study_id)).first()
    return dict(row._mapping) if row else None


def study_ids(
    conn: Connection, *, name: str | None = None, prefix: str | None = None, limit: int = 100
) -> list[str]:
    """Ids of studies, newest first: all, of one name, or whose id starts with ``prefix``."""
    stmt = select(tuning_studies.c.id).order_by(tuning_studies.c.created_at.desc()).limit(limit)
    if name is not None:
        stmt = stmt.where(tuning_studies.c.name == name)
    if prefix is not None:
        stmt = stmt.where(tuning_studies.c.id.like(prefix + "%"))
    return [r[0] for r in conn.execute(stmt)]


def trials_of(conn: Connection, study_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Trial rows of each study, by number."""
    out: dict[str, list[dict[str, Any]]] = {s: [] for s in study_ids}
    if not study_ids:
        return out
    stmt = (
        select(tuning_trials)
        .where(tuning_trials.c.study_id.in_(study_ids))
        .order_by(tuning_trials.c.number)
    )
    for r in conn.execute(stmt):
        out[r.study_id].append(dict(r._mapping))
    return out


def running_studies(conn: Connection) -> list[dict[str, Any]]:
    """Studies still marked running."""
    stmt = select(tuning_studies).where(tuning_studies.c.status == "running")
    return [dict(r._mapping) for r in conn.execute(stmt)]
