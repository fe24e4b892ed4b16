"""The store's tables as typed SQLAlchemy declarative models.

These models are private: the store's public methods return plain records, never ORM
objects. The schema itself is created and changed only by the Alembic migrations in
``judge/migrations``; a test keeps these models and the migrations in sync.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# JSONB on PostgreSQL (indexable, compact), plain JSON text elsewhere.
Json = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend.

    SQLite has no timezone type, so values are stored as naive UTC there and given
    back their UTC zone on the way out; PostgreSQL stores ``timestamptz``.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store only takes aware datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    # Named constraints, so later migrations (batch mode on SQLite) can refer to them.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map = {dict[str, Any]: Json, list[Any]: Json, datetime: UTCDateTime}


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime]


class ItemRow(Base):
    __tablename__ = "items"
    __table_args__ = (UniqueConstraint("dataset_id", "item_id"),)

    # A surrogate key keeps the dataset's order and lets iter_items page by key.
    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    item_id: Mapped[str] = mapped_column(Text)
    input: Mapped[str] = mapped_column(Text)
    output: Mapped[str] = mapped_column(Text)
    output_b: Mapped[str | None] = mapped_column(Text)
    reference: Mapped[str | None] = mapped_column(Text)
    context: Mapped[str | None] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata")


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_created", "status", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(index=True)
    updated_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(32))
    spec: Mapped[dict[str, Any]]
    dataset_id: Mapped[str | None] = mapped_column(ForeignKey("datasets.id"))
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    total_units: Mapped[int] = mapped_column(Integer)
    done_units: Mapped[int] = mapped_column(Integer)
    error_units: Mapped[int] = mapped_column(Integer)
    calls: Mapped[int] = mapped_column(Integer)
    cost_usd: Mapped[float] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    summary: Mapped[dict[str, Any] | None] = mapped_column(Json)


class Chunk(Base):
    __tablename__ = "chunks"
    __table_args__ = (Index("ix_chunks_status_lease", "status", "lease_expires_at"),)

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    chunk_index: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    units: Mapped[list[Any]]
    status: Mapped[str] = mapped_column(String(16))
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer)
    finished_at: Mapped[datetime | None]


class JudgmentRow(Base):
    __tablename__ = "judgments"
    __table_args__ = (
        Index("ix_judgments_job_rubric", "job_id", "rubric_id"),
        Index("ix_judgments_rubric_model", "rubric_id", "judge_model"),
    )

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # sha256 of the Judgment's identity tuple (NULLs included): one unique column that
    # behaves the same on every backend, where a composite key would treat NULLs as distinct.
    identity_key: Mapped[str] = mapped_column(String(64), unique=True)
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    item_id: Mapped[str] = mapped_column(Text)
    rubric_id: Mapped[str] = mapped_column(Text)
    rubric_version: Mapped[str] = mapped_column(String(64))
    rubric_hash: Mapped[str] = mapped_column(String(128))
    judge_model: Mapped[str] = mapped_column(Text)
    prompt_hash: Mapped[str | None] = mapped_column(String(128))
    sample_index: Mapped[int] = mapped_column(Integer)
    pair_order: Mapped[str | None] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(32))
    score: Mapped[float | None] = mapped_column(Float)
    calibrated_score: Mapped[float | None] = mapped_column(Float)
    label: Mapped[str | None] = mapped_column(Text)
    passed: Mapped[bool | None] = mapped_column(Boolean)
    abstained: Mapped[bool] = mapped_column(Boolean)
    rationale: Mapped[str | None] = mapped_column(Text)
    evidence: Mapped[list[Any]]
    findings: Mapped[list[Any]]
    error: Mapped[str | None] = mapped_column(Text)
    tokens_in: Mapped[int | None] = mapped_column(Integer)
    tokens_out: Mapped[int | None] = mapped_column(Integer)
    cost_usd: Mapped[float | None] = mapped_column(Float)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    attempts: Mapped[int] = mapped_column(Integer)
    cached: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime]


class CacheEntry(Base):
    __tablename__ = "cache"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class Rater(Base):
    __tablename__ = "raters"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    created_at: Mapped[datetime]


class RatingRow(Base):
    __tablename__ = "ratings"
    __table_args__ = (
        UniqueConstraint("dataset_id", "item_id", "rubric_id", "rater_id"),
        Index("ix_ratings_rubric", "rubric_id"),
    )

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    item_id: Mapped[str] = mapped_column(Text)
    rubric_id: Mapped[str] = mapped_column(Text)
    rubric_version: Mapped[str | None] = mapped_column(String(64))
    rater_id: Mapped[str] = mapped_column(ForeignKey("raters.id"))
    score: Mapped[float | None] = mapped_column(Float)
    label: Mapped[str | None] = mapped_column(Text)
    comment: Mapped[str | None] = mapped_column(Text)
    rated_at: Mapped[datetime | None]
    source_hash: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime]


class CalibrationRow(Base):
    __tablename__ = "calibrations"
    __table_args__ = (Index("ix_calibrations_key", "rubric_id", "rubric_hash", "judge_model"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rubric_id: Mapped[str] = mapped_column(Text)
    rubric_version: Mapped[str] = mapped_column(String(64))
    rubric_hash: Mapped[str] = mapped_column(String(128))
    judge_model: Mapped[str] = mapped_column(Text)
    prompt_hash: Mapped[str | None] = mapped_column(String(128))
    split: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    figures: Mapped[dict[str, Any]]
    map: Mapped[dict[str, Any] | None] = mapped_column(Json)
    approved: Mapped[bool] = mapped_column(Boolean)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(16))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
