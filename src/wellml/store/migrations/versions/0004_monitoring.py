"""monitoring: versioned baselines, monitor kinds and schedules, alerts, retrain triggers,
poisoning checks

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


# The columns monitors and monitor_executions had before this revision (and have after it).
_MONITOR_COLUMNS = ("id", "name", "kind", "endpoint_id", "baseline_id", "config", "created_at")
_EXECUTION_COLUMNS = (
    "id",
    "monitor_id",
    "dataset_version_id",
    "status",
    "report",
    "violations",
    "started_at",
    "ended_at",
    "lineage_execution_id",
)


def _stash() -> bool:
    """On SQLite, move the rows of monitors and their executions aside.

    SQLite alters a table by rebuilding it (copy, drop, rename), and with foreign keys enforced
    it refuses to drop a table whose rows others reference; the migration runs inside a
    transaction, where enforcement cannot be switched off. So the referencing rows wait in
    plain copies while baselines, monitors and executions are rebuilt, and come back after.
    """
    if op.get_bind().dialect.name != "sqlite":
        return False
    for table in ("monitor_executions", "monitors"):
        op.execute(f"CREATE TABLE _stash_{table} AS SELECT * FROM {table}")
        op.execute(f"DELETE FROM {table}")
    return True


def _restore(new_schema: bool) -> None:
    monitors = ", ".join(_MONITOR_COLUMNS)
    op.execute(f"INSERT INTO monitors ({monitors}) SELECT {monitors} FROM _stash_monitors")
    executions = ", ".join(_EXECUTION_COLUMNS)
    if new_schema:
        op.execute(
            f'INSERT INTO monitor_executions ({executions}, kind, "trigger") '
            f"SELECT {', '.join('e.' + c for c in _EXECUTION_COLUMNS)}, m.kind, 'manual' "
            "FROM _stash_monitor_executions e JOIN monitors m ON m.id = e.monitor_id"
        )
    else:
        op.execute(
            f"INSERT INTO monitor_executions ({executions}) "
            f"SELECT {executions} FROM _stash_monitor_executions"
        )
    op.execute("DROP TABLE _stash_monitor_executions")
    op.execute("DROP TABLE _stash_monitors")


def upgrade() -> None:
    stashed = _stash()
    # Baselines become named and versioned; rows written before this get a name of their own.
    with op.batch_alter_table("baselines", schema=None) as batch_op:
        batch_op.add_column(sa.Column("name", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("version", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("parent_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("changes", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("created_by", sa.String(length=255), nullable=True))
    op.execute("UPDATE baselines SET name = 'baseline-' || id, version = 1, created_by = 'unknown'")
    with op.batch_alter_table("baselines", schema=None) as batch_op:
        batch_op.alter_column("name", existing_type=sa.String(length=255), nullable=False)
        batch_op.alter_column("version", existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column("created_by", existing_type=sa.String(length=255), nullable=False)
        batch_op.create_foreign_key(
            op.f("fk_baselines_parent_id_baselines"), "baselines", ["parent_id"], ["id"]
        )
        batch_op.create_unique_constraint(op.f("uq_baselines_name_version"), ["name", "version"])

    with op.batch_alter_table("monitors", schema=None) as batch_op:
        batch_op.add_column(sa.Column("target_dataset", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("last_slot", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("updated_at", sa.Float(), nullable=True))
        batch_op.alter_column("baseline_id", existing_type=sa.String(length=32), nullable=True)

    with op.batch_alter_table("monitor_executions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("trigger", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("slot", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("inputs", sa.JSON(), nullable=True))
    op.execute(
        "UPDATE monitor_executions SET \"trigger\" = 'manual', kind = "
        "(SELECT monitors.kind FROM monitors WHERE monitors.id = monitor_executions.monitor_id)"
    )
    with op.batch_alter_table("monitor_executions", schema=None) as batch_op:
        batch_op.alter_column("kind", existing_type=sa.String(length=32), nullable=False)
        batch_op.alter_column("trigger", existing_type=sa.String(length=16), nullable=False)
        batch_op.create_index(
            "ix_monitor_executions_monitor_started", ["monitor_id", "started_at"], unique=False
        )
    if stashed:
        _restore(new_schema=True)

    op.create_table(
        "alert_events",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("monitor_id", sa.String(length=32), nullable=False),
        sa.Column("execution_id", sa.String(length=32), nullable=True),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("webhook", sa.Text(), nullable=True),
        sa.Column("delivered", sa.Boolean(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["monitor_executions.id"],
            name=op.f("fk_alert_events_execution_id_monitor_executions"),
        ),
        sa.ForeignKeyConstraint(
            ["monitor_id"], ["monitors.id"], name=op.f("fk_alert_events_monitor_id_monitors")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_events")),
    )
    with op.batch_alter_table("alert_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_alert_events_monitor_created", ["monitor_id", "created_at"], unique=False
        )

    op.create_table(
        "retrain_triggers",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("monitor_id", sa.String(length=32), nullable=False),
        sa.Column("execution_id", sa.String(length=32), nullable=False),
        sa.Column("alert_id", sa.String(length=32), nullable=True),
        sa.Column("pipeline", sa.String(length=512), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("claimed_by", sa.String(length=255), nullable=True),
        sa.Column("pipeline_run_id", sa.String(length=32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["alert_events.id"],
            name=op.f("fk_retrain_triggers_alert_id_alert_events"),
        ),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["monitor_executions.id"],
            name=op.f("fk_retrain_triggers_execution_id_monitor_executions"),
        ),
        sa.ForeignKeyConstraint(
            ["monitor_id"], ["monitors.id"], name=op.f("fk_retrain_triggers_monitor_id_monitors")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retrain_triggers")),
    )
    with op.batch_alter_table("retrain_triggers", schema=None) as batch_op:
        batch_op.create_index("ix_retrain_triggers_status", ["status"], unique=False)

    op.create_table(
        "poisoning_checks",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("dataset_version_id", sa.String(length=32), nullable=False),
        sa.Column("previous_version_id", sa.String(length=32), nullable=False),
        sa.Column("blocked", sa.Boolean(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("lineage_execution_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_version_id"],
            ["dataset_versions.id"],
            name=op.f("fk_poisoning_checks_dataset_version_id_dataset_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["lineage_execution_id"],
            ["lineage_executions.id"],
            name=op.f("fk_poisoning_checks_lineage_execution_id_lineage_executions"),
        ),
        sa.ForeignKeyConstraint(
            ["previous_version_id"],
            ["dataset_versions.id"],
            name=op.f("fk_poisoning_checks_previous_version_id_dataset_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_poisoning_checks")),
    )


def downgrade() -> None:
    op.drop_table("poisoning_checks")
    with op.batch_alter_table("retrain_triggers", schema=None) as batch_op:
        batch_op.drop_index("ix_retrain_triggers_status")
    op.drop_table("retrain_triggers")
    with op.batch_alter_table("alert_events", schema=None) as batch_op:
        batch_op.drop_index("ix_alert_events_monitor_created")
    op.drop_table("alert_events")
    # Monitors without a baseline cannot go back to the old schema.
    op.execute(
        "DELETE FROM monitor_executions WHERE monitor_id IN "
        "(SELECT id FROM monitors WHERE baseline_id IS NULL)"
    )
    op.execute("DELETE FROM monitors WHERE baseline_id IS NULL")
    stashed = _stash()
    with op.batch_alter_table("monitor_executions", schema=None) as batch_op:
        batch_op.drop_index("ix_monitor_executions_monitor_started")
        batch_op.drop_column("inputs")
        batch_op.drop_column("slot")
        batch_op.drop_column("trigger")
        batch_op.drop_column("kind")
    with op.batch_alter_table("monitors", schema=None) as batch_op:
        batch_op.alter_column("baseline_id", existing_type=sa.String(length=32), nullable=False)
        batch_op.drop_column("updated_at")
        batch_op.drop_column("last_slot")
        batch_op.drop_column("target_dataset")
    with op.batch_alter_table("baselines", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("uq_baselines_name_version"), type_="unique")
        batch_op.drop_constraint(op.f("fk_baselines_parent_id_baselines"), type_="foreignkey")
        batch_op.drop_column("created_by")
        batch_op.drop_column("changes")
        batch_op.drop_column("parent_id")
        batch_op.drop_column("version")
        batch_op.drop_column("name")
    if stashed:
        _restore(new_schema=False)
