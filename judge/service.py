"""Jobs: create a job from a spec, run it (in-process here; on Celery workers through
``tasks/``), and finalize it: aggregate, log the MLflow run, set the status.

The same functions serve ``judge run`` (in-process, embedded defaults) and the workers,
so everything a task does can be done in-process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from judge.datasets import Item
from judge.errors import JudgeError
from judge.judgments import Judgment
from judge.models import JudgeModel
from judge.rubrics import Rubric

log = logging.getLogger(__name__)


class RubricPin(BaseModel):
    """A rubric as a job used it: id, version and content hash."""

    model_config = ConfigDict(extra="forbid")

    id: str
    version: str
    hash: str


class Budget(BaseModel):
    """Limits after which a job stops with ``budget_exceeded``."""

    model_config = ConfigDict(extra="forbid")

    max_cost_usd: float | None = Field(default=None, gt=0)
    max_calls: int | None = Field(default=None, gt=0)


class JobSpec(BaseModel):
    """Everything needed to run (or re-run) a job. Never holds a secret."""

    model_config = ConfigDict(extra="forbid")

    dataset: str
    dataset_hash: str
    pack: str | None = None
    pack_version: str | None = None
    rubrics: list[RubricPin]
    judges: list[JudgeModel]
    samples: int = 1
    concurrency: int = 16
    jury: str = "mean"
    use_cache: bool = True
    experiment: str = "judge"
    budget: Budget = Field(default_factory=Budget)

    def params(self) -> dict[str, str]:
        """MLflow params describing the job."""
        params = {
            "dataset": self.dataset,
            "dataset_hash": self.dataset_hash,
            "pack": self.pack or "",
            "pack_version": self.pack_version or "",
            "judge_models": ",".join(j.model for j in self.judges),
            "samples": str(self.samples),
            "temperature": ",".join(str(j.temperature) for j in self.judges),
            "max_tokens": ",".join(str(j.max_tokens) for j in self.judges),
            "jury": self.jury,
            "use_cache": str(self.use_cache),
        }
        for pin in self.rubrics:
            params[f"rubric/{pin.id}"] = f"{pin.version}@{pin.hash[:12]}"
        return params


def resolve_rubrics(pack: str | None, rubric_ids: Sequence[str] = ()) -> list[Rubric]:
    """The rubrics a job uses: the ids given, else every rubric of the pack."""
    from judge.packs import find_rubric, get_pack

    if rubric_ids:
        return [find_rubric(r) for r in rubric_ids]
    if pack is None:
        raise JudgeError("Name the rubrics to use: --pack P and/or --rubric ID.")
    return list(get_pack(pack).rubrics)


def strip_secrets(judge: JudgeModel) -> JudgeModel:
    """A copy of a judge model without its API key, for storing in a spec."""
    return judge.model_copy(update={"api_key": None})


def make_spec(
    *, dataset: str, dataset_hash: str, pack: str | None, rubrics: Sequence[Rubric],
    judges: Sequence[JudgeModel], samples: int = 1, concurrency: int = 16, jury: str = "mean",
    use_cache: bool = True, experiment: str = "judge", budget: Budget | None = None,
) -> JobSpec:
    """Build a validated job spec."""
    from judge.engine import check_sampling

    check_sampling(judges, samples)
    pack_version = None
    if pack is not None:
        from judge.packs import get_pack

        pack_version = get_pack(pack).manifest.version
    return JobSpec(
        dataset=dataset, dataset_hash=dataset_hash, pack=pack, pack_version=pack_version,
        rubrics=[RubricPin(id=r.id, version=r.version, hash=r.content_hash) for r in rubrics],
        judges=[strip_secrets(j) for j in judges], samples=samples, concurrency=concurrency,
        jury=jury, use_cache=use_cache, experiment=experiment, budget=budget or Budget(),
    )


@dataclass
class JobOutcome:
    """A finished job: its record, judgments, summary and where it was logged."""

    job_id: str
    status: str
    result: Any  # judge.engine.EvaluationResult
    mlflow_run_id: str | None = None
    warnings: list[str] = field(default_factory=list)


def run_inprocess(
    items: Sequence[Item],
    rubrics: Sequence[Rubric],
    judges: Sequence[JudgeModel],
    spec: JobSpec,
    *,
    store: Any = None,
    progress: Callable[[Judgment], None] | None = None,
    idempotency_key: str | None = None,
    log_mlflow: bool = True,
) -> JobOutcome:
    """Create a job, run it in this process, finalize it; the embedded-defaults path."""
    from judge.engine import count_units, evaluate_async
    from judge.store import Store

    store = store or Store.open()
    dataset_id = store.put_dataset(spec.dataset, items, spec.dataset_hash)
    total = count_units(items, rubrics, judges, spec.samples)
    job, _created = store.create_job(spec.model_dump(mode="json"), dataset_id, total,
                                     idempotency_key=idempotency_key)
    store.set_job_status(job.id, "running")
    calibrators = load_calibrators(store, rubrics, judges)
    try:
        result = asyncio.run(evaluate_async(
            items, rubrics, judges, samples=spec.samples, concurrency=spec.concurrency,
            jury=spec.jury, store=store, job_id=job.id, use_cache=spec.use_cache,
            calibrators=calibrators, progress=progress,
        ))
    except BaseException as exc:
        store.set_job_status(job.id, "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    # Progress counters were kept by the store as each batch of judgments was written.
    outcome = JobOutcome(job_id=job.id, status="succeeded", result=result)
    finalize(store, job.id, spec, result.judgments, outcome, log_mlflow=log_mlflow)
    return outcome


def load_calibrators(store: Any, rubrics: Sequence[Rubric], judges: Sequence[JudgeModel]
                     ) -> dict[tuple[str, str], Callable[[float], float]]:
    """Fitted calibration maps for (rubric hash, judge model), where one is stored."""
    out: dict[tuple[str, str], Callable[[float], float]] = {}
    try:
        from judge.calibration.maps import map_from_dict
    except ImportError:
        return out
    for r in rubrics:
        for j in judges:
            cal = store.latest_calibration(r.id, r.content_hash, j.model)
            if cal is not None and getattr(cal, "map", None):
                out[(r.content_hash, j.model)] = map_from_dict(cal.map).apply
    return out


def finalize(
    store: Any, job_id: str, spec: JobSpec, judgments: list[Judgment], outcome: JobOutcome,
    *, log_mlflow: bool = True, status: str = "succeeded",
) -> None:
    """Aggregate, log the MLflow run (a failure there is a warning), set the final status."""
    from judge.summary import job_metrics, summarize

    summary = {rid: s.as_dict() for rid, s in summarize(judgments).items()}
    metrics = job_metrics(judgments)
    store.update_job(job_id, summary={"rubrics": summary, "metrics": metrics})
    if log_mlflow:
        run_id, warning = log_job_to_mlflow(job_id, spec, judgments, metrics)
        outcome.mlflow_run_id = run_id
        if warning:
            outcome.warnings.append(warning)
        if run_id:
            store.update_job(job_id, mlflow_run_id=run_id)
    store.set_job_status(job_id, status)
    outcome.status = status


def log_job_to_mlflow(
    job_id: str, spec: JobSpec, judgments: list[Judgment], metrics: dict[str, float]
) -> tuple[str | None, str | None]:
    """Log a job's run; returns (run id, None) or (None, warning) if MLflow failed."""
    from judge.tracking import TrackingError, log_job

    try:
        run_id = log_job(
            job_id, experiment=spec.experiment, params=spec.params(), metrics=metrics,
            judgments=[j.model_dump(mode="json") for j in judgments],
        )
    except TrackingError as exc:
        msg = (f"MLflow logging failed ({exc}); the judgments are in the store. "
               f"Log them later with: judge jobs log-mlflow {job_id}")
        log.warning(msg)
        return None, msg
    return run_id, None
