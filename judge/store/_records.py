"""Records the store returns: frozen pydantic models, detached from any session."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class JobStatus(StrEnum):
    """Where a job is. The last four are terminal: once there, a job stays there."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    BUDGET_EXCEEDED = "budget_exceeded"

    @property
    def terminal(self) -> bool:
        """True for a status a job never leaves."""
        return self in TERMINAL_JOB_STATUSES


TERMINAL_JOB_STATUSES = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.BUDGET_EXCEEDED}
)


class ChunkStatus(StrEnum):
    """A chunk is pending until a worker claims it, running under a lease, then done."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"


class Role(StrEnum):
    """API token roles, from most to least powerful."""

    ADMIN = "admin"
    SUBMITTER = "submitter"
    RATER = "rater"
    VIEWER = "viewer"


class DatasetRecord(_Record):
    """A stored dataset: its items are read with ``Store.iter_items``."""

    id: str
    name: str
    content_hash: str
    created_at: datetime


class JobRecord(_Record):
    """A job as stored, with its exact progress counters.

    ``done_units`` counts stored judgments, ``error_units`` those with an error status,
    ``calls`` provider requests and ``cost_usd`` their cost (see ``Store.write_judgments``).
    """

    id: str
    status: JobStatus
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    spec: dict[str, Any]
    dataset_id: str | None
    idempotency_key: str | None
    total_units: int
    done_units: int
    error_units: int
    calls: int
    cost_usd: float
    error: str | None
    mlflow_run_id: str | None
    summary: dict[str, Any] | None


class ChunkRecord(_Record):
    """A slice of a job's work, claimed by one worker at a time under a lease."""

    job_id: str
    index: int
    units: list[Any]
    status: ChunkStatus
    lease_owner: str | None
    lease_expires_at: datetime | None
    attempts: int
    finished_at: datetime | None


class ChunkFinish(_Record):
    """What ``Store.finish_chunk`` did: the caller that sees ``last`` finalizes the job."""

    newly_finished: bool = Field(description="This call moved the chunk to done.")
    remaining: int = Field(description="Chunks of the job not yet done, after this call.")

    @property
    def last(self) -> bool:
        """True for exactly one caller per job: the one that finished its last chunk."""
        return self.newly_finished and self.remaining == 0


class Rating(_Record):
    """One human rating of an item on a rubric."""

    dataset_id: str
    item_id: str
    rubric_id: str
    rubric_version: str | None = None
    rater_id: str
    score: float | None = None
    label: str | None = None
    comment: str | None = None
    rated_at: datetime | None = None
    source_hash: str | None = Field(
        default=None, description="sha256 of the file the rating was imported from."
    )


class CalibrationRecord(_Record):
    """One stored calibration of a judge model on a rubric (a version among several)."""

    id: int
    rubric_id: str
    rubric_version: str
    rubric_hash: str
    judge_model: str
    prompt_hash: str | None
    split: str
    created_at: datetime
    figures: dict[str, Any]
    map: dict[str, Any] | None
    approved: bool


class TokenRecord(_Record):
    """An API token's metadata. The token itself is never stored, only its sha256."""

    id: str
    name: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None


class IssuedToken(_Record):
    """A newly created token: ``token`` is the plaintext, shown once and never stored."""

    id: str
    name: str
    role: Role
    token: str
