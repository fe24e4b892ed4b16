"""The judgment: one judge model's verdict on one item for one rubric and sample."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Status(StrEnum):
    """How a judgment ended. Only ``ok`` judgments carry a judge's score."""

    OK = "ok"
    ABSTAINED = "abstained"
    INVALID_OUTPUT = "invalid_output"
    PROVIDER_ERROR = "provider_error"
    CHECK_FAILED = "check_failed"


ERROR_STATUSES = frozenset({Status.INVALID_OUTPUT, Status.PROVIDER_ERROR})


class Judgment(BaseModel):
    """A verdict, or the record of why there is none. Never a made-up number."""

    model_config = ConfigDict(extra="forbid")

    job_id: str | None = None
    item_id: str
    rubric_id: str
    rubric_version: str
    rubric_hash: str
    judge_model: str
    prompt_hash: str | None = None
    sample_index: int = 0
    status: Status
    score: float | None = None
    calibrated_score: float | None = None
    label: str | None = None
    passed: bool | None = None
    abstained: bool = False
    rationale: str | None = None
    evidence: list[str] = Field(default_factory=list)
    findings: list[dict[str, Any]] = Field(default_factory=list)
    error: str | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    cost_usd: float | None = None
    latency_ms: float | None = None
    attempts: int = 0
    cached: bool = False
    order: str | None = Field(
        default=None, description="For pairwise rubrics: 'ab' or 'ba', the order shown."
    )

    @property
    def identity(self) -> tuple[str | None, str, str, str, str, int, str | None]:
        """What makes a judgment unique within a job: written twice, stored once."""
        return (self.job_id, self.item_id, self.rubric_id, self.rubric_hash, self.judge_model,
                self.sample_index, self.order)
