"""review queue: human review of low-confidence predictions

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "review_queues",
        sa.Column("endpoint_id", sa.String(length=32), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("scanned_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["endpoint_id"], ["endpoints.id"], name=op.f("fk_review_queues_endpoint_id_endpoints")
        ),
        sa.PrimaryKeyConstraint("endpoint_id", name=op.f("pk_review_queues")),
    )
    op.create_table(
        "review_items",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("endpoint_id", sa.String(length=32), nullable=False),
        sa.Column("inference_id", sa.String(length=255), nullable=False),
        sa.Column("row", sa.Integer(), nullable=False),
        sa.Column("model_version", sa.String(length=255), nullable=False),
        sa.Column("capture_version_id", sa.String(length=32), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("prediction", sa.JSON(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("label", sa.JSON(), nullable=True),
        sa.Column("reviewer", sa.String(length=255), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("ground_truth", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("reviewed_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["capture_version_id"],
            ["dataset_versions.id"],
            name=op.f("fk_review_items_capture_version_id_dataset_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["endpoint_id"], ["endpoints.id"], name=op.f("fk_review_items_endpoint_id_endpoints")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_items")),
        sa.UniqueConstraint(
            "endpoint_id",
            "inference_id",
            "row",
            name=op.f("uq_review_items_endpoint_id_inference_id_row"),
        ),
    )
    with op.batch_alter_table("review_items", schema=None) as batch_op:
        batch_op.create_index(
            "ix_review_items_endpoint_status", ["endpoint_id", "status", "confidence"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("review_items", schema=None) as batch_op:
        batch_op.drop_index("ix_review_items_endpoint_status")
    op.drop_table("review_items")
    op.drop_table("review_queues")
