"""Initial schema: every table of the judge store.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# JSONB on PostgreSQL, JSON text elsewhere (as judge.store._tables.Json).
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_api_tokens_token_sha256")),
    )
    op.create_table(
        "cache",
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_cache")),
    )
    op.create_table(
        "calibrations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("rubric_id", sa.Text(), nullable=False),
        sa.Column("rubric_version", sa.String(length=64), nullable=False),
        sa.Column("rubric_hash", sa.String(length=128), nullable=False),
        sa.Column("judge_model", sa.Text(), nullable=False),
        sa.Column("prompt_hash", sa.String(length=128), nullable=True),
        sa.Column("split", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("figures", JSON, nullable=False),
        sa.Column("map", JSON, nullable=True),
        sa.Column("approved", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calibrations")),
    )
    op.create_index(
        "ix_calibrations_key",
        "calibrations",
        ["rubric_id", "rubric_hash", "judge_model"],
        unique=False,
    )

    op.create_table(
        "datasets",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datasets")),
        sa.UniqueConstraint("content_hash", name=op.f("uq_datasets_content_hash")),
    )
    op.create_table(
        "raters",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_raters")),
    )
    op.create_table(
        "items",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dataset_id", sa.String(length=32), nullable=False),
        sa.Column("item_id", sa.Text(), nullable=False),
        sa.Column("input", sa.Text(), nullable=False),
        sa.Column("output", sa.Text(), nullable=False),
        sa.Column("output_b", sa.Text(), nullable=True),
        sa.Column("reference", sa.Text(), nullable=True),
        sa.Column("context", sa.Text(), nullable=True),
        sa.Column("metadata", JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_items_dataset_id_datasets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_items")),
        sa.UniqueConstraint("dataset_id", "item_id", name=op.f("uq_items_dataset_id_item_id")),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("dataset_id", sa.String(length=32), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("total_units", sa.Integer(), nullable=False),
        sa.Column("done_units", sa.Integer(), nullable=False),
        sa.Column("error_units", sa.Integer(), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("mlflow_run_id", sa.String(length=64), nullable=True),
        sa.Column("summary", JSON, nullable=True),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_jobs_dataset_id_datasets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_jobs_idempotency_key")),
    )
    op.create_index(op.f("ix_jobs_created_at"), "jobs", ["created_at"], unique=False)
    op.create_index("ix_jobs_status_created", "jobs", ["status", "created_at"], unique=False)

    op.create_table(
        "ratings",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dataset_id", sa.String(length=32), nullable=False),
        sa.Column("item_id", sa.Text(), nullable=False),
        sa.Column("rubric_id", sa.Text(), nullable=False),
        sa.Column("rubric_version", sa.String(length=64), nullable=True),
        sa.Column("rater_id", sa.String(length=255), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("label", sa.Text(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("rated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source_hash", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_ratings_dataset_id_datasets"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["rater_id"], ["raters.id"], name=op.f("fk_ratings_rater_id_raters")
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_ratings")),
        sa.UniqueConstraint(
            "dataset_id",
            "item_id",
            "rubric_id",
            "rater_id",
            name=op.f("uq_ratings_dataset_id_item_id_rubric_id_rater_id"),
        ),
    )
    op.create_index("ix_ratings_rubric", "ratings", ["rubric_id"], unique=False)

    op.create_table(
        "chunks",
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("chunk_index", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("units", JSON, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("lease_owner", sa.String(length=255), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_chunks_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", "chunk_index", name=op.f("pk_chunks")),
    )
    op.create_index(
        "ix_chunks_status_lease", "chunks", ["status", "lease_expires_at"], unique=False
    )

    op.create_table(
        "judgments",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("identity_key", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=True),
        sa.Column("item_id", sa.Text(), nullable=False),
        sa.Column("rubric_id", sa.Text(), nullable=False),
        sa.Column("rubric_version", sa.String(length=64), nullable=False),
        sa.Column("rubric_hash", sa.String(length=128), nullable=False),
        sa.Column("judge_model", sa.Text(), nullable=False),
        sa.Column("prompt_hash", sa.String(length=128), nullable=True),
        sa.Column("sample_index", sa.Integer(), nullable=False),
        sa.Column("pair_order", sa.String(length=8), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("calibrated_score", sa.Float(), nullable=True),
        sa.Column("label", sa.Text(), nullable=True),
        sa.Column("passed", sa.Boolean(), nullable=True),
        sa.Column("abstained", sa.Boolean(), nullable=False),
        sa.Column("rationale", sa.Text(), nullable=True),
        sa.Column("evidence", JSON, nullable=False),
        sa.Column("findings", JSON, nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("tokens_in", sa.Integer(), nullable=True),
        sa.Column("tokens_out", sa.Integer(), nullable=True),
        sa.Column("cost_usd", sa.Float(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("cached", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_judgments_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_judgments")),
        sa.UniqueConstraint("identity_key", name=op.f("uq_judgments_identity_key")),
    )
    op.create_index("ix_judgments_job_rubric", "judgments", ["job_id", "rubric_id"], unique=False)
    op.create_index(
        "ix_judgments_rubric_model", "judgments", ["rubric_id", "judge_model"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_judgments_rubric_model", table_name="judgments")
    op.drop_index("ix_judgments_job_rubric", table_name="judgments")

    op.drop_table("judgments")
    op.drop_index("ix_chunks_status_lease", table_name="chunks")

    op.drop_table("chunks")
    op.drop_index("ix_ratings_rubric", table_name="ratings")

    op.drop_table("ratings")
    op.drop_index("ix_jobs_status_created", table_name="jobs")
    op.drop_index(op.f("ix_jobs_created_at"), table_name="jobs")

    op.drop_table("jobs")
    op.drop_table("items")
    op.drop_table("raters")
    op.drop_table("datasets")
    op.drop_index("ix_calibrations_key", table_name="calibrations")

    op.drop_table("calibrations")
    op.drop_table("cache")
    op.drop_table("api_tokens")
