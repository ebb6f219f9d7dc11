"""SQL the lens review reads: records across capabilities, read-only, plus review snapshots."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, insert, select

from wellml.store.metadata import new_id, now
from wellml.store.tables import (
    baselines,
    capture_files,
    dataset_profiles,
    dataset_versions,
    datasets,
    endpoint_deployments,
    endpoints,
    feature_definitions,
    feature_materializations,
    lens_answers,
    lens_reviews,
    lineage_artifacts,
    lineage_executions,
    model_events,
    model_versions,
    monitor_executions,
    monitors,
    quality_results,
    registered_models,
    review_items,
    review_queues,
    run_params,
    runs,
    tokens,
)


def _all(conn: Connection, stmt: Any) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in conn.execute(stmt)]


def model_versions_all(conn: Connection) -> list[dict[str, Any]]:
    """Every model version with its model name."""
    return _all(
        conn,
        select(model_versions, registered_models.c.name).join(
            registered_models, registered_models.c.id == model_versions.c.model_id
        ),
    )


def model_events_all(conn: Connection) -> list[dict[str, Any]]:
    """Every registry event."""
    return _all(conn, select(model_events).order_by(model_events.c.id))


def endpoints_all(conn: Connection) -> list[dict[str, Any]]:
    """Every endpoint (deleted ones excepted)."""
    return _all(conn, select(endpoints).where(endpoints.c.status != "deleted"))


def deployments_all(conn: Connection) -> list[dict[str, Any]]:
    """Every deployment, oldest first."""
    return _all(conn, select(endpoint_deployments).order_by(endpoint_deployments.c.started_at))


def runs_all(conn: Connection, since: float | None = None) -> list[dict[str, Any]]:
    """Every run (started since ``since``) with its lineage execution's code and environment,
    and its param count."""
    params = (
        select(run_params.c.run_id, func.count().label("n_params"))
        .group_by(run_params.c.run_id)
        .subquery()
    )
    stmt = (
        select(
            runs,
            lineage_executions.c.code_commit,
            lineage_executions.c.code_dirty,
            lineage_executions.c.environment_id,
            func.coalesce(params.c.n_params, 0).label("n_params"),
        )
        .join(lineage_executions, lineage_executions.c.id == runs.c.lineage_execution_id)
        .join(params, params.c.run_id == runs.c.id, isouter=True)
    )
    if since is not None:
        stmt = stmt.where(runs.c.started_at >= since)
    return _all(conn, stmt)


def dataset_versions_all(conn: Connection) -> list[dict[str, Any]]:
    """Every dataset version with its dataset's name, owner and description."""
    return _all(
        conn,
        select(
            dataset_versions,
            datasets.c.name,
            datasets.c.owner,
            datasets.c.description.label("dataset_description"),
        ).join(datasets, datasets.c.id == dataset_versions.c.dataset_id),
    )


def profiled_version_ids(conn: Connection) -> dict[str, float]:
    """``{dataset_version_id: profiled_at}``."""
    return dict(
        conn.execute(select(dataset_profiles.c.dataset_version_id, dataset_profiles.c.created_at))
        .tuples()
        .all()
    )


def quality_results_all(conn: Connection) -> list[dict[str, Any]]:
    """Every quality evaluation (without the full report)."""
    return _all(
        conn,
        select(
            quality_results.c.id,
            quality_results.c.dataset_version_id,
            quality_results.c.passed,
            quality_results.c.created_at,
            quality_results.c.report,
        ),
    )


def monitors_all(conn: Connection) -> list[dict[str, Any]]:
    """Every monitor with its baseline's dataset version."""
    return _all(
        conn,
        # Outer: model-quality, bias and attribution monitors have no baseline row.
        select(
            monitors, baselines.c.dataset_version_id.label("baseline_dataset_version_id")
        ).outerjoin(baselines, baselines.c.id == monitors.c.baseline_id),
    )


def monitor_executions_all(conn: Connection, since: float | None = None) -> list[dict[str, Any]]:
    """Monitor executions (since ``since``), without reports."""
    stmt = select(
        monitor_executions.c.id,
        monitor_executions.c.monitor_id,
        monitor_executions.c.status,
        monitor_executions.c.started_at,
        monitor_executions.c.violations,
    )
    if since is not None:
        stmt = stmt.where(monitor_executions.c.started_at >= since)
    return _all(conn, stmt)


def tokens_all(conn: Connection) -> list[dict[str, Any]]:
    """Every token, without secrets."""
    return _all(
        conn,
        select(
            tokens.c.id,
            tokens.c.principal,
            tokens.c.scopes,
            tokens.c.expires_at,
            tokens.c.revoked_at,
            tokens.c.last_used_at,
        ),
    )


def answers(conn: Connection) -> dict[str, dict[str, Any]]:
    """Manual answers by practice id."""
    return {r["practice_id"]: r for r in _all(conn, select(lens_answers))}


def put_answer(conn: Connection, practice_id: str, choice: str, note: str, user: str) -> None:
    """Record (or replace) the answer to a manual practice."""
    conn.execute(lens_answers.delete().where(lens_answers.c.practice_id == practice_id))
    conn.execute(
        insert(lens_answers).values(
            practice_id=practice_id, choice=choice, note=note, answered_by=user, answered_at=now()
        )
    )


def add_review(
    conn: Connection, summary: dict[str, Any], results: list[dict[str, Any]], user: str
) -> str:
    """Store a review snapshot."""
    rid = new_id()
    conn.execute(
        insert(lens_reviews).values(
            id=rid, created_at=now(), created_by=user, summary=summary, results=results
        )
    )
    return rid


def reviews(conn: Connection, limit: int = 20) -> list[dict[str, Any]]:
    """Review snapshots, newest first (summaries only)."""
    return _all(
        conn,
        select(
            lens_reviews.c.id,
            lens_reviews.c.created_at,
            lens_reviews.c.created_by,
            lens_reviews.c.summary,
        )
        .order_by(lens_reviews.c.created_at.desc())
        .limit(limit),
    )


def feature_definitions_all(conn: Connection) -> list[dict[str, Any]]:
    """Every version of every feature store definition."""
    return _all(conn, select(feature_definitions))


def materializations_all(conn: Connection) -> list[dict[str, Any]]:
    """Every feature materialization."""
    return _all(conn, select(feature_materializations))


def executions_of_kind(
    conn: Connection, kind: str, since: float | None = None
) -> list[dict[str, Any]]:
    """Lineage executions of one kind (optionally since a time), newest first."""
    stmt = select(lineage_executions).where(lineage_executions.c.kind == kind)
    if since is not None:
        stmt = stmt.where(lineage_executions.c.started_at >= since)
    return _all(conn, stmt.order_by(lineage_executions.c.started_at.desc()))


def artifacts_of_kind(conn: Connection, kind: str) -> list[dict[str, Any]]:
    """Lineage artifacts of one kind (Clarify reports, monitor reports, ...), oldest first."""
    stmt = select(lineage_artifacts).where(lineage_artifacts.c.kind == kind)
    return _all(conn, stmt.order_by(lineage_artifacts.c.created_at))


def review_queues_all(conn: Connection) -> list[dict[str, Any]]:
    """Every endpoint's review queue settings."""
    return _all(conn, select(review_queues))


def review_items_all(conn: Connection) -> list[dict[str, Any]]:
    """Every review item's endpoint, status, prediction, label and times (no inputs)."""
    return _all(
        conn,
        select(
            review_items.c.endpoint_id,
            review_items.c.status,
            review_items.c.prediction,
            review_items.c.label,
            review_items.c.created_at,
            review_items.c.reviewed_at,
        ),
    )


def capture_rows_since(conn: Connection, since: float) -> dict[str, int]:
    """Rows captured per endpoint id in files written since ``since``."""
    rows = conn.execute(
        select(capture_files.c.endpoint_id, func.sum(capture_files.c.rows))
        .where(capture_files.c.last_at >= since)
        .group_by(capture_files.c.endpoint_id)
    )
    return {str(eid): int(n or 0) for eid, n in rows}
