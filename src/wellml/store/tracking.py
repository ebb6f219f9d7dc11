"""SQL for experiment tracking: experiments, runs, params, tags, metrics and artifacts."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, and_, func, insert, select, update
from sqlalchemy.sql import Select

from wellml.errors import Conflict
from wellml.store.metadata import new_id, now
from wellml.store.tables import (
    experiments,
    run_artifacts,
    run_metrics,
    run_params,
    run_tags,
    runs,
)

# SQLite allows 32,766 bound parameters per statement; stay well under it.
_CHUNK = 500

_insert_metric = insert(run_metrics)


def experiment_by_name(conn: Connection, name: str) -> dict[str, Any] | None:
    """The experiment with this name."""
    row = conn.execute(select(experiments).where(experiments.c.name == name)).first()
    return dict(row._mapping) if row else None


def create_experiment(conn: Connection, name: str, description: str = "") -> dict[str, Any]:
    """Insert an experiment."""
    row = {"id": new_id(), "name": name, "description": description, "created_at": now()}
    conn.execute(insert(experiments).values(row))
    return row


def list_experiments(conn: Connection) -> list[dict[str, Any]]:
    """Every experiment with its run count."""
    stmt = (
        select(experiments, func.count(runs.c.id).label("runs"))
        .join(runs, runs.c.experiment_id == experiments.c.id, isouter=True)
        .group_by(experiments.c.id)
        .order_by(experiments.c.name)
    )
    return [dict(r._mapping) for r in conn.execute(stmt)]


def insert_run(conn: Connection, row: dict[str, Any]) -> None:
    """Insert a run row."""
    conn.execute(insert(runs).values(row))


def set_run_status(
    conn: Connection,
    run_id: str,
    status: str,
    error: str | None = None,
    ended_at: float | None = None,
) -> None:
    """End a run (or change its status)."""
    conn.execute(
        update(runs)
        .where(runs.c.id == run_id)
        .values(status=status, error=error, ended_at=ended_at if ended_at else now())
    )


def heartbeat(conn: Connection, run_id: str) -> None:
    """Record that a run's process is alive."""
    conn.execute(update(runs).where(runs.c.id == run_id).values(heartbeat_at=now()))


def write_batch(
    conn: Connection,
    run_id: str,
    *,
    metrics: Sequence[tuple[str, float, int, float]] = (),
    params: dict[str, str] | None = None,
    tags: dict[str, str] | None = None,
) -> None:
    """Write metric points, params and tags of one run in one transaction.

    Params are immutable: logging a key again with another value raises Conflict.
    """
    if metrics:
        rows = []
        for key, value, step, ts in metrics:
            nan = isinstance(value, float) and math.isnan(value)
            rows.append(
                {
                    "run_id": run_id,
                    "key": key,
                    "step": step,
                    "value": None if nan else value,
                    "is_nan": nan,
                    "timestamp": ts,
                }
            )
        conn.execute(_insert_metric, rows)
    if params:
        keys = list(params)
        old: dict[str, str] = {}
        for i in range(0, len(keys), _CHUNK):
            old.update(
                conn.execute(
                    select(run_params.c.key, run_params.c.value).where(
                        run_params.c.run_id == run_id, run_params.c.key.in_(keys[i : i + _CHUNK])
                    )
                )
                .tuples()
                .all()
            )
        clash = {k: (old[k], v) for k, v in params.items() if k in old and old[k] != v}
        if clash:
            k, (was, new) = next(iter(clash.items()))
            raise Conflict(
                f"param {k!r} of run {run_id} is already {was!r}; params are immutable "
                f"(tried {new!r})"
            )
        fresh = [
            {"run_id": run_id, "key": k, "value": v} for k, v in params.items() if k not in old
        ]
        if fresh:
            conn.execute(insert(run_params), fresh)
    if tags:
        existing = set(
            conn.execute(
                select(run_tags.c.key).where(
                    run_tags.c.run_id == run_id, run_tags.c.key.in_(list(tags))
                )
            ).scalars()
        )
        for k, v in tags.items():
            if k in existing:
                conn.execute(
                    update(run_tags)
                    .where(run_tags.c.run_id == run_id, run_tags.c.key == k)
                    .values(value=v)
                )
        fresh = [
            {"run_id": run_id, "key": k, "value": v} for k, v in tags.items() if k not in existing
        ]
        if fresh:
            conn.execute(insert(run_tags), fresh)


def add_artifact(conn: Connection, run_id: str, path: str, digest: str, size: int) -> None:
    """Record (or replace) a run artifact."""
    conn.execute(
        run_artifacts.delete().where(run_artifacts.c.run_id == run_id, run_artifacts.c.path == path)
    )
    conn.execute(insert(run_artifacts).values(run_id=run_id, path=path, digest=digest, size=size))


def _run_select() -> Select[Any]:
    return select(runs, experiments.c.name.label("experiment")).join(
        experiments, experiments.c.id == runs.c.experiment_id
    )


def get_runs(conn: Connection, run_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Run rows by id, with params, tags, latest metrics and artifacts attached."""
    out: list[dict[str, Any]] = []
    for i in range(0, len(run_ids), _CHUNK):
        chunk = list(run_ids[i : i + _CHUNK])
        rows = {
            r.id: dict(r._mapping) for r in conn.execute(_run_select().where(runs.c.id.in_(chunk)))
        }
        for r in rows.values():
            r.update(params={}, tags={}, metrics={}, artifacts={})
        for run_id, k, v in conn.execute(
            select(run_params.c.run_id, run_params.c.key, run_params.c.value).where(
                run_params.c.run_id.in_(chunk)
            )
        ):
            rows[run_id]["params"][k] = v
        for run_id, k, v in conn.execute(
            select(run_tags.c.run_id, run_tags.c.key, run_tags.c.value).where(
                run_tags.c.run_id.in_(chunk)
            )
        ):
            rows[run_id]["tags"][k] = v
        for run_id, k, v in latest_metrics(conn, chunk):
            rows[run_id]["metrics"][k] = v
        for run_id, path, digest, size in conn.execute(
            select(run_artifacts).where(run_artifacts.c.run_id.in_(chunk))
        ):
            rows[run_id]["artifacts"][path] = {"digest": digest, "size": size}
        out.extend(rows[r] for r in chunk if r in rows)
    return out


def latest_metrics(
    conn: Connection, run_ids: Sequence[str]
) -> Iterable[tuple[str, str, float | None]]:
    """``(run_id, key, value)`` of each metric's point with the highest step, then time."""
    ranked = (
        select(
            run_metrics.c.run_id,
            run_metrics.c.key,
            run_metrics.c.value,
            run_metrics.c.is_nan,
            func.row_number()
            .over(
                partition_by=(run_metrics.c.run_id, run_metrics.c.key),
                order_by=(run_metrics.c.step.desc(), run_metrics.c.timestamp.desc()),
            )
            .label("rn"),
        )
        .where(run_metrics.c.run_id.in_(list(run_ids)))
        .subquery()
    )
    stmt = select(ranked.c.run_id, ranked.c.key, ranked.c.value, ranked.c.is_nan).where(
        ranked.c.rn == 1
    )
    for run_id, key, value, is_nan in conn.execute(stmt):
        yield run_id, key, (math.nan if is_nan else value)


def metric_history(conn: Connection, run_id: str, key: str) -> list[dict[str, Any]]:
    """Every point of one metric of one run, by step then time."""
    rows = conn.execute(
        select(
            run_metrics.c.step, run_metrics.c.value, run_metrics.c.is_nan, run_metrics.c.timestamp
        )
        .where(run_metrics.c.run_id == run_id, run_metrics.c.key == key)
        .order_by(run_metrics.c.step, run_metrics.c.timestamp)
    )
    return [{"step": s, "value": math.nan if nan else v, "timestamp": ts} for s, v, nan, ts in rows]


def search_run_ids(
    conn: Connection,
    *,
    experiment_ids: Sequence[str] | None,
    metric_filters: Sequence[tuple[str, str, float]] = (),
    param_filters: Sequence[tuple[str, str, str]] = (),
    tag_filters: Sequence[tuple[str, str, str]] = (),
    attribute_filters: Sequence[tuple[str, str, Any]] = (),
    limit: int | None = None,
) -> list[str]:
    """Ids of runs matching every filter, newest first.

    A metric filter compares the metric's latest value (highest step).
    """
    stmt = select(runs.c.id).order_by(runs.c.started_at.desc(), runs.c.id)
    if experiment_ids is not None:
        stmt = stmt.where(runs.c.experiment_id.in_(list(experiment_ids)))
    for column, op, value in attribute_filters:
        stmt = stmt.where(_compare(getattr(runs.c, column), op, value))
    for key, op, value in param_filters:
        stmt = stmt.where(
            runs.c.id.in_(
                select(run_params.c.run_id).where(
                    run_params.c.key == key, _compare(run_params.c.value, op, value)
                )
            )
        )
    for key, op, value in tag_filters:
        stmt = stmt.where(
            runs.c.id.in_(
                select(run_tags.c.run_id).where(
                    run_tags.c.key == key, _compare(run_tags.c.value, op, value)
                )
            )
        )
    for key, op, value in metric_filters:
        last = (
            select(run_metrics.c.run_id, func.max(run_metrics.c.step).label("step"))
            .where(run_metrics.c.key == key)
            .group_by(run_metrics.c.run_id)
            .subquery()
        )
        matching = (
            select(run_metrics.c.run_id)
            .join(
                last, and_(last.c.run_id == run_metrics.c.run_id, last.c.step == run_metrics.c.step)
            )
            .where(run_metrics.c.key == key, _compare(run_metrics.c.value, op, value))
        )
        stmt = stmt.where(runs.c.id.in_(matching))
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(conn.execute(stmt).scalars())


def _compare(column: Any, op: str, value: Any) -> Any:
    return {
        "=": column == value,
        "!=": column != value,
        ">": column > value,
        ">=": column >= value,
        "<": column < value,
        "<=": column <= value,
        "like": column.like(value),
    }[op]


def running_runs(conn: Connection) -> list[dict[str, Any]]:
    """Runs still marked running."""
    rows = conn.execute(
        select(runs.c.id, runs.c.pid, runs.c.host).where(runs.c.status == "running")
    )
    return [dict(r._mapping) for r in rows]


def runs_by_lineage_ids(conn: Connection, ids: Sequence[str]) -> list[str]:
    """Run ids behind these lineage execution ids."""
    if not ids:
        return []
    return list(
        conn.execute(select(runs.c.id).where(runs.c.lineage_execution_id.in_(list(ids)))).scalars()
    )
