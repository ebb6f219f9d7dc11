"""serving: versioned endpoint configurations, deployment steps, supervisor events, token rate
limits, batch transform jobs and chunks

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("config_version", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("runtime", sa.JSON(), nullable=True))
    with op.batch_alter_table("endpoint_deployments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("strategy", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("from_version", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("to_version", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("steps", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("reason", sa.Text(), nullable=True))
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rate_limit", sa.JSON(), nullable=True))
    op.create_table(
        "endpoint_configs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("endpoint_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("lineage_artifact_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["endpoints.id"],
            name=op.f("fk_endpoint_configs_endpoint_id_endpoints"),
        ),
        sa.ForeignKeyConstraint(
            ["lineage_artifact_id"],
            ["lineage_artifacts.id"],
            name=op.f("fk_endpoint_configs_lineage_artifact_id_lineage_artifacts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_endpoint_configs")),
        sa.UniqueConstraint(
            "endpoint_id", "version", name=op.f("uq_endpoint_configs_endpoint_id_version")
        ),
    )
    op.create_table(
        "endpoint_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("endpoint_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("variant", sa.String(length=255), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["endpoint_id"], ["endpoints.id"], name=op.f("fk_endpoint_events_endpoint_id_endpoints")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_endpoint_events")),
    )
    with op.batch_alter_table("endpoint_events", schema=None) as batch_op:
        batch_op.create_index("ix_endpoint_events_endpoint_at", ["endpoint_id", "at"], unique=False)
    op.create_table(
        "batch_jobs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("model_version_id", sa.String(length=32), nullable=False),
        sa.Column("input_uri", sa.Text(), nullable=False),
        sa.Column("output_uri", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("chunks_total", sa.Integer(), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("user", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("ended_at", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("lineage_execution_id", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["lineage_execution_id"],
            ["lineage_executions.id"],
            name=op.f("fk_batch_jobs_lineage_execution_id_lineage_executions"),
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_batch_jobs_model_version_id_model_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batch_jobs")),
    )
    op.create_table(
        "batch_chunks",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("chunk", sa.Integer(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("done_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["batch_jobs.id"], name=op.f("fk_batch_chunks_job_id_batch_jobs")
        ),
        sa.PrimaryKeyConstraint("job_id", "chunk", name=op.f("pk_batch_chunks")),
    )
    # Endpoints written before this get their current configuration as version 1, in the
    # variant form, so that every endpoint has a history to roll back to.
    conn = op.get_bind()
    endpoints = sa.table(
        "endpoints",
        sa.column("id", sa.String),
        sa.column("config", sa.JSON),
        sa.column("created_at", sa.Float),
        sa.column("lineage_artifact_id", sa.String),
        sa.column("config_version", sa.Integer),
    )
    configs = sa.table(
        "endpoint_configs",
        sa.column("id", sa.String),
        sa.column("endpoint_id", sa.String),
        sa.column("version", sa.Integer),
        sa.column("config", sa.JSON),
        sa.column("created_at", sa.Float),
        sa.column("created_by", sa.String),
        sa.column("lineage_artifact_id", sa.String),
    )
    for row in conn.execute(sa.select(endpoints)).mappings().all():
        conn.execute(
            sa.insert(configs).values(
                id=row["id"],
                endpoint_id=row["id"],
                version=1,
                config=row["config"],
                created_at=row["created_at"],
                created_by="unknown",
                lineage_artifact_id=row["lineage_artifact_id"],
            )
        )
        conn.execute(
            sa.update(endpoints).where(endpoints.c.id == row["id"]).values(config_version=1)
        )


def downgrade() -> None:
    op.drop_table("batch_chunks")
    op.drop_table("batch_jobs")
    with op.batch_alter_table("endpoint_events", schema=None) as batch_op:
        batch_op.drop_index("ix_endpoint_events_endpoint_at")
    op.drop_table("endpoint_events")
    op.drop_table("endpoint_configs")
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.drop_column("rate_limit")
    with op.batch_alter_table("endpoint_deployments", schema=None) as batch_op:
        batch_op.drop_column("reason")
        batch_op.drop_column("steps")
        batch_op.drop_column("to_version")
        batch_op.drop_column("from_version")
        batch_op.drop_column("strategy")
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.drop_column("runtime")
        batch_op.drop_column("config_version")
