"""SQL for experiment tracking: experiments, runs, params, tags, metrics and artifacts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.sql import Select

from wellml.errors import Conflict
from wellml.store.metadata import new_id, now
from wellml.store.tables import (
    experiments,
    run_artifacts,
    run_latest_metrics,
    run_metrics,
    run_params,
    run_tags,
    runs,
)

# SQLite allows 32,766 bound parameters per statement; stay well under it.
_CHUNK = 500

_METRIC_COLUMNS = ("run_id", "key", "step", "value", "is_nan", "timestamp")


def _insert_metrics(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
    # The hot path of tracking: a plain executemany skips the per-row parameter processing
    # of a compiled statement, which costs more than SQLite's own insert.
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    values = f"VALUES ({', '.join([mark] * len(_METRIC_COLUMNS))})"
    columns = ", ".join(_METRIC_COLUMNS)
    conn.exec_driver_sql(f"INSERT INTO run_metrics ({columns}) {values}", rows)
    latest: dict[str, tuple[Any, ...]] = {}
    for row in rows:  # rows are (run_id, key, step, value, is_nan, timestamp)
        old = latest.get(row[1])
        if old is None or (row[2], row[5]) >= (old[2], old[5]):
            latest[row[1]] = row
    # Same syntax in SQLite and PostgreSQL: keep the point with the highest step, and of
    # points at one step the latest written.
    conn.exec_driver_sql(
        f"INSERT INTO run_latest_metrics ({columns}) {values} "
        "ON CONFLICT (run_id, key) DO UPDATE SET step = excluded.step, "
        "value = excluded.value, is_nan = excluded.is_nan, timestamp = excluded.timestamp "
        "WHERE excluded.step > run_latest_metrics.step OR (excluded.step = "
        "run_latest_metrics.step AND excluded.timestamp >= run_latest_metrics.timestamp)",
        list(latest.values()),
    )


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
            nan = value != value  # NaN is the only value not equal to itself
            rows.append((run_id, key, step, None if nan else value, nan, ts))
        _insert_metrics(conn, rows)
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


_RUN_COLUMNS = tuple(c.name for c in runs.columns)


def get_runs(conn: Connection, selection: Sequence[str] | Select[Any]) -> list[dict[str, Any]]:
    """Runs with params, tags, latest metrics and artifacts attached.

    Args:
        selection: run ids (the result keeps their order), or a query that selects run ids
            (the result is newest first).
    """
    if isinstance(selection, Select):
        ids = list(conn.execute(selection).scalars())
        found: dict[str, dict[str, Any]] = {}
        for i in range(0, len(ids), _CHUNK):
            found.update(_hydrate(conn, ids[i : i + _CHUNK]))
        return sorted(found.values(), key=lambda r: (-r["started_at"], r["id"]))
    out: list[dict[str, Any]] = []
    for i in range(0, len(selection), _CHUNK):
        chunk = list(selection[i : i + _CHUNK])
        found = _hydrate(conn, chunk)
        out.extend(found[r] for r in chunk if r in found)
    return out


def _hydrate(conn: Connection, ids: list[str]) -> dict[str, dict[str, Any]]:
    # Plain SQL with the ids inlined as parameters: search results are hydrated on every
    # call, and building these statements through the expression layer cost more than
    # running them.
    if not ids:
        return {}
    params: tuple[Any, ...]
    if conn.dialect.paramstyle == "qmark":
        where, params = f"IN ({', '.join('?' * len(ids))})", tuple(ids)
    else:
        where, params = "= ANY(%s)", (list(ids),)

    def query(sql: str) -> list[Any]:
        return list(conn.exec_driver_sql(sql.format(where=where), params).all())

    cols = ", ".join(f"r.{c}" if c != "user" else 'r."user"' for c in _RUN_COLUMNS)
    rows: dict[str, dict[str, Any]] = {}
    for row in query(
        f"SELECT {cols}, e.name FROM runs r JOIN experiments e "
        "ON e.id = r.experiment_id WHERE r.id {where}"
    ):
        rec = dict(zip(_RUN_COLUMNS, row[:-1], strict=True))
        rec.update(experiment=row[-1], params={}, tags={}, metrics={}, artifacts={})
        rows[rec["id"]] = rec
    for run_id, k, v in query("SELECT run_id, key, value FROM run_params WHERE run_id {where}"):
        rows[run_id]["params"][k] = v
    for run_id, k, v in query("SELECT run_id, key, value FROM run_tags WHERE run_id {where}"):
        rows[run_id]["tags"][k] = v
    for run_id, k, v, nan in query(
        "SELECT run_id, key, value, is_nan FROM run_latest_metrics WHERE run_id {where}"
    ):
        rows[run_id]["metrics"][k] = math.nan if nan else v
    for run_id, path, digest, size in query(
        "SELECT run_id, path, digest, size FROM run_artifacts WHERE run_id {where}"
    ):
        rows[run_id]["artifacts"][path] = {"digest": digest, "size": size}
    return rows


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


def search_run_ids(conn: Connection, **filters: Any) -> list[str]:
    """Ids of runs matching every filter (see :func:`search_query`), newest first."""
    return list(conn.execute(search_query(**filters)).scalars())


def search_query(
    *,
    experiment_ids: Sequence[str] | None,
    metric_filters: Sequence[tuple[str, str, float]] = (),
    param_filters: Sequence[tuple[str, str, str]] = (),
    tag_filters: Sequence[tuple[str, str, str]] = (),
    attribute_filters: Sequence[tuple[str, str, Any]] = (),
    limit: int | None = None,
) -> Select[Any]:
    """A query selecting the ids of runs that match every filter, newest first.

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
        stmt = stmt.where(
            runs.c.id.in_(
                select(run_latest_metrics.c.run_id).where(
                    run_latest_metrics.c.key == key,
                    _compare(run_latest_metrics.c.value, op, value),
                )
            )
        )
    if limit is not None:
        stmt = stmt.limit(limit)
    return stmt


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
