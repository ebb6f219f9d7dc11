"""schedules: pipeline schedules and triggers, their firings, tuning studies and trials

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pipeline_schedules",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("pipeline", sa.String(length=512), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("cron", sa.String(length=255), nullable=True),
        sa.Column("dataset", sa.String(length=255), nullable=True),
        sa.Column("dataset_param", sa.String(length=255), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("executor", sa.String(length=255), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("cursor", sa.Float(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pipeline_schedules")),
        sa.UniqueConstraint("name", name=op.f("uq_pipeline_schedules_name")),
    )
    op.create_table(
        "pipeline_firings",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("schedule_id", sa.String(length=32), nullable=True),
        sa.Column("retrain_trigger_id", sa.String(length=32), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("pipeline", sa.String(length=512), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("claimed_by", sa.String(length=255), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("pipeline_run_id", sa.String(length=32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("claimed_at", sa.Float(), nullable=False),
        sa.Column("ended_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["pipeline_run_id"],
            ["pipeline_runs.id"],
            name=op.f("fk_pipeline_firings_pipeline_run_id_pipeline_runs"),
        ),
        sa.ForeignKeyConstraint(
            ["retrain_trigger_id"],
            ["retrain_triggers.id"],
            name=op.f("fk_pipeline_firings_retrain_trigger_id_retrain_triggers"),
        ),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["pipeline_schedules.id"],
            name=op.f("fk_pipeline_firings_schedule_id_pipeline_schedules"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pipeline_firings")),
        sa.UniqueConstraint("schedule_id", "key", name=op.f("uq_pipeline_firings_schedule_id_key")),
    )
    with op.batch_alter_table("pipeline_firings", schema=None) as batch_op:
        batch_op.create_index("ix_pipeline_firings_status", ["status"], unique=False)

    op.create_table(
        "tuning_studies",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("metric", sa.String(length=255), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("search_space", sa.JSON(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("parent_run_id", sa.String(length=32), nullable=True),
        sa.Column("best_trial", sa.Integer(), nullable=True),
        sa.Column("best_value", sa.Float(), nullable=True),
        sa.Column("best_params", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("ended_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["parent_run_id"], ["runs.id"], name=op.f("fk_tuning_studies_parent_run_id_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tuning_studies")),
    )
    with op.batch_alter_table("tuning_studies", schema=None) as batch_op:
        batch_op.create_index(
            "ix_tuning_studies_name_created", ["name", "created_at"], unique=False
        )
    op.create_table(
        "tuning_trials",
        sa.Column("study_id", sa.String(length=32), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("intermediate", sa.JSON(), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("ended_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_tuning_trials_run_id_runs")),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["tuning_studies.id"],
            name=op.f("fk_tuning_trials_study_id_tuning_studies"),
        ),
        sa.PrimaryKeyConstraint("study_id", "number", name=op.f("pk_tuning_trials")),
    )


def downgrade() -> None:
    op.drop_table("tuning_trials")
    with op.batch_alter_table("tuning_studies", schema=None) as batch_op:
        batch_op.drop_index("ix_tuning_studies_name_created")
    op.drop_table("tuning_studies")
    with op.batch_alter_table("pipeline_firings", schema=None) as batch_op:
        batch_op.drop_index("ix_pipeline_firings_status")
    op.drop_table("pipeline_firings")
    op.drop_table("pipeline_schedules")
