"""Jobs: create a job from a spec, split it into chunks, run the chunks (in this process or
on Celery workers through ``tasks/``), and finalize it: aggregate, log the MLflow run, set
the status.

The same functions serve ``judge run`` (in-process, embedded defaults), the HTTP API and
the workers, so everything a task does can be done in-process.

How a distributed job runs
    - :func:`submit` stores the items and the spec (:func:`create_job`), splits the work
      into chunks of whole items worth about ``JUDGE_CHUNK_UNITS`` units each (the store
      keeps each chunk's item ids), and sends one ``judge.run_chunk`` task per chunk by
      NAME through a Celery app made here (:func:`celery_app`): ``judge/`` never imports
      ``tasks/``. Without a broker the chunks run in this process (:func:`run_job`).
    - :func:`run_chunk` leases the chunk in the store (renewed by a heartbeat while it
      runs), loads only that chunk's items, runs the engine on them with the shared
      Redis rate limiter, and writes judgments idempotently (a chunk that runs twice
      stores nothing twice). ``Store.finish_chunk`` tells exactly one caller that it
      finished the job's last chunk; that caller finalizes.
    - A worker that dies stops renewing its lease. :func:`sweep` (run by every worker
      every ``JUDGE_SWEEP_INTERVAL`` seconds under a Redis lock, and by ``judge jobs
      wait``) re-dispatches chunks whose lease expired, and pending chunks of a job that
      made no progress for ``JUDGE_STALL_SECONDS`` (their message may have been lost
      with a Redis restart). Celery's ``visibility_timeout`` is only the last resort.
    - A judgment that failed with HTTP 429 after every retry is held back, not stored:
      the chunk tries those units again after a pause, and then as a Celery retry, so
      a rate limit never turns into a failed judgment that would have succeeded later.
    - Cancel and the budget (``max_calls``, ``max_cost_usd``) are checked before every
      judge call; both end the job in a terminal status and keep what is stored.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from judge.datasets import Item
from judge.errors import JobError, JudgeError
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
    tpm: int | None = Field(default=None, ge=1, description="Tokens per minute per judge model.")
    track: bool = Field(default=True, description="Log the finished job to MLflow.")

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
    tpm: int | None = None, track: bool = True,
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
        tpm=tpm, track=track,
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
    warming = None
    if log_mlflow:
        from judge.tracking import warm_up as warm_up_mlflow

        # MLflow's import and store opening (seconds) overlap with judging, not follow it.
        warming = warm_up_mlflow(spec.experiment)
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
    if warming is not None:
        warming.join()  # never two first-time openings of one MLflow store at once
    finalize(store, job.id, spec, result.judgments, outcome, log_mlflow=log_mlflow)
    return outcome


def load_calibrators(store: Any, rubrics: Sequence[Rubric], judges: Sequence[JudgeModel]
                     ) -> dict[tuple[str, str], Callable[[float], float]]:
    """Stored calibration maps as callables (see :mod:`judge.calibration.runtime`)."""
    if not any(store.latest_calibration(r.id, r.content_hash, j.model)
               for r in rubrics for j in judges):
        return {}  # the common case: skip importing the statistics stack at all
    from judge.calibration.runtime import load_calibrators as load

    return load(store, rubrics, judges)


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


# --- settings of the distributed runtime ---------------------------------------------------

TASK_RUN_CHUNK = "judge.run_chunk"
TASK_SWEEP = "judge.sweep"


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise JudgeError(f"{name}={raw!r} is not a number (default {default}).") from None
    if value <= 0:
        raise JudgeError(f"{name} must be above 0, got {raw!r}.")
    return value


@dataclass(frozen=True)
class ServiceSettings:
    """Knobs of the job runtime, read from the environment (``from_env``).

    | variable | meaning | default |
    | --- | --- | --- |
    | ``JUDGE_CHUNK_UNITS`` | units (judge verdicts) per chunk, in whole items | 50 |
    | ``JUDGE_CHUNK_LEASE_SECONDS`` | a chunk's lease; renewed every quarter of it | 60 |
    | ``JUDGE_STALL_SECONDS`` | re-dispatch pending chunks of a job idle this long | 300 |
    | ``JUDGE_SWEEP_INTERVAL`` | seconds between a worker's sweeps | 15 |
    | ``JUDGE_CHUNK_TIME_LIMIT`` | hard limit on one chunk, seconds (soft: 30 s less) | 1800 |
    | ``JUDGE_VISIBILITY_TIMEOUT`` | Redis broker visibility timeout, seconds | 7200 |
    | ``JUDGE_RATE_LIMIT_WAIT`` | first pause before re-trying 429ed units, seconds | 2 |
    | ``JUDGE_QUEUE`` | Celery queue the chunk tasks go to | judge |
    """

    chunk_units: int = 50
    lease_seconds: float = 60.0
    stall_seconds: float = 300.0
    sweep_interval: float = 15.0
    chunk_time_limit: float = 1800.0
    visibility_timeout: float = 7200.0
    rate_limit_wait: float = 2.0
    rate_limit_rounds: int = 3
    max_chunk_attempts: int = 8
    queue: str = "judge"

    def __post_init__(self) -> None:
        if self.visibility_timeout <= self.chunk_time_limit + 60:
            raise JudgeError(
                f"JUDGE_VISIBILITY_TIMEOUT ({self.visibility_timeout:g}s) must exceed the "
                f"longest chunk, JUDGE_CHUNK_TIME_LIMIT ({self.chunk_time_limit:g}s), by more "
                "than 60s, or Redis would hand a running chunk to a second worker."
            )

    @classmethod
    def from_env(cls) -> ServiceSettings:
        """The settings in the environment now."""
        return cls(
            chunk_units=int(_env_float("JUDGE_CHUNK_UNITS", 50)),
            lease_seconds=_env_float("JUDGE_CHUNK_LEASE_SECONDS", 60.0),
            stall_seconds=_env_float("JUDGE_STALL_SECONDS", 300.0),
            sweep_interval=_env_float("JUDGE_SWEEP_INTERVAL", 15.0),
            chunk_time_limit=_env_float("JUDGE_CHUNK_TIME_LIMIT", 1800.0),
            visibility_timeout=_env_float("JUDGE_VISIBILITY_TIMEOUT", 7200.0),
            rate_limit_wait=_env_float("JUDGE_RATE_LIMIT_WAIT", 2.0),
            queue=os.environ.get("JUDGE_QUEUE") or "judge",
        )


def celery_config(broker_url: str, settings: ServiceSettings | None = None) -> dict[str, Any]:
    """The Celery configuration shared by the workers (``tasks.celery``) and the sender."""
    s = settings or ServiceSettings.from_env()
    transport = {"visibility_timeout": int(s.visibility_timeout)}
    return {
        "broker_url": broker_url,
        "result_backend": broker_url,
        "task_ignore_result": True,  # the store holds every result
        "task_acks_late": True,  # chunks are idempotent: redelivery is safe
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_default_queue": s.queue,
        "task_create_missing_queues": True,
        "broker_transport_options": transport,
        "result_backend_transport_options": transport,
        "task_soft_time_limit": max(1, int(s.chunk_time_limit) - 30),
        "task_time_limit": int(s.chunk_time_limit) + 30,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "task_serializer": "json",
        "accept_content": ["json"],
    }


_APPS: dict[str, Any] = {}
_APPS_LOCK = threading.Lock()


def celery_app(broker_url: str | None = None) -> Any:
    """A Celery app for sending tasks by name (made lazily; one per broker URL)."""
    from judge.config import get_settings

    url = broker_url or get_settings().broker_url
    if not url:
        raise JudgeError("No broker: set JUDGE_BROKER_URL (e.g. redis://localhost:6379/0) to "
                         "queue jobs on workers, or run them in-process with `judge run`.")
    with _APPS_LOCK:
        if url not in _APPS:
            import celery

            app = celery.Celery("judge-client", set_as_current=False)
            app.conf.update(celery_config(url))
            _APPS[url] = app
        return _APPS[url]


# --- creating and starting jobs ----------------------------------------------------------


def pinned_rubrics(spec: JobSpec) -> list[Rubric]:
    """The spec's rubrics from the registry, refused if one changed since submission."""
    from judge.packs import find_rubric

    out = []
    for pin in spec.rubrics:
        rubric = find_rubric(pin.id)
        if rubric.content_hash != pin.hash:
            raise JobError(
                f"Rubric '{pin.id}' changed since the job was submitted: the job pinned "
                f"version {pin.version} (hash {pin.hash[:12]}), this machine has version "
                f"{rubric.version} (hash {rubric.content_hash[:12]}). Install the same pack "
                "version on every worker, or resubmit the job."
            )
        out.append(rubric)
    return out


def plan_chunks(items: Iterable[Item], rubrics: Sequence[Rubric], judges: Sequence[Any],
                samples: int, chunk_units: int) -> tuple[list[list[str]], int]:
    """Split the items into chunks of whole items worth about ``chunk_units`` units.

    Returns:
        (chunks as lists of item ids, total units). Items with no unit are left out.
    """
    from judge.engine import count_units

    chunks: list[list[str]] = []
    current: list[str] = []
    size = total = 0
    for item in items:
        n = count_units([item], rubrics, judges, samples)
        if n == 0:
            continue
        current.append(item.id)
        size += n
        total += n
        if size >= chunk_units:
            chunks.append(current)
            current, size = [], 0
    if current:
        chunks.append(current)
    return chunks, total


def create_job(store: Any, spec: JobSpec, items: Iterable[Item] | None = None, *,
               dataset_id: str | None = None, idempotency_key: str | None = None,
               settings: ServiceSettings | None = None) -> tuple[Any, bool]:
    """Store the items and the spec, plan the chunks; return ``(job, created)``.

    The same spec with the same idempotency key returns the existing job
    (``created`` False); a different spec under a used key is a JobError.
    """
    settings = settings or ServiceSettings.from_env()
    rubrics = pinned_rubrics(spec)
    if dataset_id is None:
        if items is None:
            raise JobError("create_job needs the items or the id of a stored dataset.")
        dataset_id = store.put_dataset(spec.dataset, items, spec.dataset_hash)
    chunks, total = plan_chunks(store.iter_items(dataset_id), rubrics, spec.judges, spec.samples,
                                settings.chunk_units)
    job, created = store.create_job(spec.model_dump(mode="json"), dataset_id, total,
                                    idempotency_key=idempotency_key)
    if not job.status.terminal:
        store.create_chunks(job.id, chunks)  # idempotent: a retried submit adds nothing
    if created and not chunks:
        finalize_job(store, job.id, "succeeded")
    return store.get_job(job.id), created


def dispatch(job_id: str, indexes: Iterable[int], *, broker_url: str | None = None,
             settings: ServiceSettings | None = None) -> int:
    """Send one ``judge.run_chunk`` task per chunk index; return how many were sent."""
    settings = settings or ServiceSettings.from_env()
    app = celery_app(broker_url)
    n = 0
    for index in indexes:
        app.send_task(TASK_RUN_CHUNK, args=[job_id, int(index)], queue=settings.queue)
        n += 1
    return n


def submit(store: Any, spec: JobSpec, items: Iterable[Item] | None = None, *,
           dataset_id: str | None = None, idempotency_key: str | None = None,
           broker_url: str | None = None, background: bool = True,
           settings: ServiceSettings | None = None) -> tuple[Any, bool]:
    """Create a job and start it: on the workers with a broker, else in this process
    (in a background thread unless ``background`` is False). Returns ``(job, created)``.
    """
    from judge.config import get_settings

    settings = settings or ServiceSettings.from_env()
    broker_url = broker_url or get_settings().broker_url
    job, created = create_job(store, spec, items, dataset_id=dataset_id,
                              idempotency_key=idempotency_key, settings=settings)
    if not created or job.status.terminal:
        return job, created
    if broker_url:
        dispatch(job.id, [c.index for c in store.unfinished_chunks(job.id)],
                 broker_url=broker_url, settings=settings)
    elif background:
        threading.Thread(target=_run_job_logged, args=(store, job.id, settings),
                         name=f"judge-job-{job.id[:8]}", daemon=True).start()
    else:
        run_job(store, job.id, settings=settings)
    return store.get_job(job.id), created


def _run_job_logged(store: Any, job_id: str, settings: ServiceSettings) -> None:
    try:
        run_job(store, job_id, settings=settings)
    except BaseException as exc:  # a background thread has nobody to raise to
        log.exception("job %s failed", job_id)
        fail_job(store, job_id, f"{type(exc).__name__}: {exc}")


def run_job(store: Any, job_id: str, *, settings: ServiceSettings | None = None) -> Any:
    """Run every unfinished chunk of a job in this process, one after another."""
    settings = settings or ServiceSettings.from_env()
    owner = f"inprocess-{uuid.uuid4()}"
    for chunk in store.unfinished_chunks(job_id):
        if store.get_job(job_id).status.terminal:
            break
        run_chunk(store, job_id, chunk.index, owner=owner, final=True, settings=settings)
    return store.get_job(job_id)


# --- running one chunk -------------------------------------------------------------------


class ChunkRetry(JobError):
    """Units of a chunk were rate limited (HTTP 429) after every retry: try it later."""

    exit_code = 1

    def __init__(self, job_id: str, index: int, units: int, countdown: float):
        self.job_id, self.index, self.units, self.countdown = job_id, index, units, countdown
        super().__init__(f"Chunk {index} of job {job_id}: {units} unit(s) still rate limited "
                         f"(HTTP 429); retrying in {countdown:g}s.")


_LOOP: asyncio.AbstractEventLoop | None = None
_LOOP_PID: int | None = None
_LOOP_LOCK = threading.Lock()


def run_async(coro: Any) -> Any:
    """Run a coroutine on this process's one long-lived event loop and wait for it.

    Worker threads all share one loop, so litellm's pooled async clients are never
    used from a loop other than the one that made them.
    """
    global _LOOP, _LOOP_PID
    with _LOOP_LOCK:
        if _LOOP is None or _LOOP_PID != os.getpid() or _LOOP.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="judge-loop", daemon=True).start()
            _LOOP, _LOOP_PID = loop, os.getpid()
        loop = _LOOP
    return asyncio.run_coroutine_threadsafe(coro, loop).result()


def _rate_limited(j: Judgment) -> bool:
    if j.status != "provider_error" or not j.error:
        return False
    return "RateLimitError" in j.error or "429" in j.error


class _ChunkWriter:
    """The store as the engine sees it for one chunk: 429ed judgments are held back."""

    def __init__(self, store: Any, job_id: str):
        self.store = store
        self.job_id = job_id
        self.hold = True
        self.held: set[str] = set()  # item ids with a held-back unit

    def cache_get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        return self.store.cache_get_many(keys)

    def cache_put_many(self, entries: Any) -> int:
        return self.store.cache_put_many(entries)

    def write_judgments(self, judgments: Iterable[Judgment]) -> int:
        keep, calls, cost = [], 0, 0.0
        for j in judgments:
            if self.hold and _rate_limited(j):
                self.held.add(j.item_id)
                calls += j.attempts
                cost += j.cost_usd or 0.0
            else:
                keep.append(j)
        if calls:  # the requests happened: the counters say so, exactly
            self.store.add_progress(self.job_id, calls=calls, cost=cost)
        return self.store.write_judgments(keep)


class _ChunkState:
    """What the heartbeat learns, and the budget and cancel checks before each call."""

    def __init__(self, job: Any, budget: Budget):
        self.job = job
        self.budget = budget
        self.started = 0
        self.cost = 0.0
        self.reason: str | None = None

    def on_judgment(self, j: Judgment) -> None:
        if not j.cached:
            self.cost += j.cost_usd or 0.0

    def should_stop(self) -> bool:
        if self.reason is not None:
            return True
        if self.job.status.terminal:
            self.reason = "terminal"
            return True
        b = self.budget
        if (b.max_calls is not None and self.job.calls + self.started >= b.max_calls) or (
                b.max_cost_usd is not None and self.job.cost_usd + self.cost >= b.max_cost_usd):
            self.reason = "budget"
            return True
        self.started += 1
        return False


def _limiter(spec: JobSpec) -> Any:
    from judge.config import get_settings
    from judge.models import LocalRateLimiter

    limited = [j for j in spec.judges if j.rpm or spec.tpm]
    if not limited:
        return None
    broker = get_settings().broker_url
    if broker and broker.startswith(("redis://", "rediss://", "unix://")):
        from judge.ratelimit import ModelLimit, RedisRateLimiter

        return RedisRateLimiter(broker, {j.model: ModelLimit(rpm=j.rpm, tpm=spec.tpm)
                                         for j in limited})
    rpms = [j.rpm for j in limited if j.rpm]
    return LocalRateLimiter(min(rpms)) if rpms else None


def run_chunk(store: Any, job_id: str, index: int, *, owner: str, final: bool = False,
              settings: ServiceSettings | None = None) -> str:
    """Run one chunk of a job (what the ``judge.run_chunk`` task does).

    Returns:
        ``done``, ``skipped`` (job already ended), ``busy`` (another owner holds the
        chunk, or it is done), ``cancelled``, ``budget_exceeded``, ``lease_lost`` or
        ``timed_out`` (the lease expires and a sweep re-dispatches it).

    Raises:
        ChunkRetry: units were still rate limited and ``final`` is False.
        JobError: the job cannot run (e.g. a rubric changed); the job is then failed.
    """
    settings = settings or ServiceSettings.from_env()
    job = store.get_job(job_id)
    if job.status.terminal:
        return "skipped"
    warm_up()  # slow first imports happen before the lease starts ticking
    if not store.claim_chunk(job_id, index, owner, settings.lease_seconds):
        return "busy"
    chunk = store.get_chunk(job_id, index)
    if chunk.attempts > settings.max_chunk_attempts:
        fail_job(store, job_id, f"chunk {index} was started {chunk.attempts} times without "
                                f"finishing (limit {settings.max_chunk_attempts}).")
        return "skipped"
    store.set_job_status(job_id, "running")
    spec = JobSpec.model_validate(job.spec)
    try:
        rubrics = pinned_rubrics(spec)
    except JudgeError as exc:
        fail_job(store, job_id, str(exc))
        raise
    items = list(store.get_items(job.dataset_id, chunk.units).values())
    calibrators = load_calibrators(store, rubrics, spec.judges)
    state = _ChunkState(store.get_job(job_id), spec.budget)
    writer = _ChunkWriter(store, job_id)
    # The heartbeat is a thread, not a task on the event loop: a loop busy or blocked for
    # a while (a slow import, a big parse) must not let the lease lapse.
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(store, job_id, index, owner, settings,
                                                     state, stop), daemon=True,
                            name=f"judge-lease-{index}")
    beat.start()
    try:
        reason = run_async(_run_chunk_async(store, job_id, index, owner, spec, items, rubrics,
                                            calibrators, state, writer, settings, final))
    finally:
        stop.set()
        beat.join(settings.lease_seconds)
    if reason == "budget":
        if store.set_job_status(job_id, "budget_exceeded",
                                error=f"budget reached: {spec.budget.model_dump()}"):
            finalize_job(store, job_id, "budget_exceeded")
        return "budget_exceeded"
    if reason == "terminal":
        return str(store.get_job(job_id).status)
    if reason is not None:
        return reason
    if writer.held:
        raise ChunkRetry(job_id, index, len(writer.held), settings.rate_limit_wait * 8)
    if store.finish_chunk(job_id, index).last:
        finalize_job(store, job_id, "succeeded")
    return "done"


def warm_up() -> None:
    """Import the engine and the provider clients now (seconds, once per process)."""
    from judge import engine  # noqa: F401
    from judge.models import _client

    _client()


def _heartbeat(store: Any, job_id: str, index: int, owner: str, settings: ServiceSettings,
               state: _ChunkState, stop: threading.Event) -> None:
    """Renew the chunk's lease and refresh the job (cancel, budget) until ``stop``."""
    while not stop.wait(settings.lease_seconds / 4):
        try:
            if not store.claim_chunk(job_id, index, owner, settings.lease_seconds):
                state.reason = "lease_lost"
                return
            state.job = store.get_job(job_id)
        except Exception as exc:  # the database away for a moment: try again next beat
            log.warning("heartbeat of chunk %s of job %s: %s", index, job_id, exc)


async def _run_chunk_async(store: Any, job_id: str, index: int, owner: str, spec: JobSpec,
                           items: list[Item], rubrics: list[Rubric], calibrators: Any,
                           state: _ChunkState, writer: _ChunkWriter,
                           settings: ServiceSettings, final: bool) -> str | None:
    from judge.engine import evaluate_async

    limiter = _limiter(spec)
    try:
        async with asyncio.timeout(settings.chunk_time_limit):
            todo = items
            for round_ in range(settings.rate_limit_rounds + 1):
                writer.held.clear()
                writer.hold = not (final and round_ == settings.rate_limit_rounds)
                await evaluate_async(
                    todo, rubrics, spec.judges, samples=spec.samples,
                    concurrency=spec.concurrency, jury=spec.jury,
                    store=writer,  # type: ignore[arg-type]  # the engine uses 3 methods
                    job_id=job_id,
                    use_cache=spec.use_cache, limiter=limiter, calibrators=calibrators,
                    progress=state.on_judgment, should_stop=state.should_stop,
                )
                if state.reason is not None or not writer.held:
                    break
                if round_ < settings.rate_limit_rounds:
                    await asyncio.sleep(settings.rate_limit_wait * 2**round_)
                todo = [i for i in items if i.id in writer.held]
    except TimeoutError:
        log.warning("chunk %s of job %s hit the time limit (%gs); it will be re-dispatched",
                    index, job_id, settings.chunk_time_limit)
        return "timed_out"
    finally:
        if limiter is not None and hasattr(limiter, "aclose"):
            await limiter.aclose()
    return state.reason


# --- ending jobs -------------------------------------------------------------------------


def finalize_job(store: Any, job_id: str, status: str = "succeeded") -> Any:
    """Aggregate a job's stored judgments, log its MLflow run (if the spec says so; a
    failure there is a warning), and set ``status`` (kept if the job already ended)."""
    job = store.get_job(job_id)
    spec = JobSpec.model_validate(job.spec)
    judgments = list(store.iter_judgments(job_id))
    outcome = JobOutcome(job_id=job_id, status=status, result=None)
    finalize(store, job_id, spec, judgments, outcome, log_mlflow=spec.track, status=status)
    return store.get_job(job_id)


def fail_job(store: Any, job_id: str, error: str) -> bool:
    """End a job as failed with ``error`` (no-op if it already ended)."""
    return bool(store.set_job_status(job_id, "failed", error=error[:4000]))


def cancel_job(store: Any, job_id: str) -> Any:
    """Cancel a job: chunks not yet started never start, running ones stop before their
    next judge call, and every judgment already stored is kept and summarised."""
    if store.set_job_status(job_id, "cancelled"):
        finalize_job(store, job_id, "cancelled")
    return store.get_job(job_id)


def log_stored_job(store: Any, job_id: str) -> str:
    """Log an existing job's stored judgments to MLflow (e.g. when MLflow was down);
    returns the run id.

    Raises:
        judge.tracking.TrackingError: MLflow is still unreachable.
    """
    from judge.summary import job_metrics
    from judge.tracking import log_job

    job = store.get_job(job_id)
    spec = JobSpec.model_validate(job.spec)
    judgments = list(store.iter_judgments(job_id))
    run_id = log_job(job_id, experiment=spec.experiment, params=spec.params(),
                     metrics=job_metrics(judgments),
                     judgments=[j.model_dump(mode="json") for j in judgments],
                     tags={"judge.status": str(job.status)})
    store.update_job(job_id, mlflow_run_id=run_id)
    return run_id


def sweep(store: Any, *, job_id: str | None = None, broker_url: str | None = None,
          settings: ServiceSettings | None = None) -> int:
    """Re-dispatch what a lost worker or a lost message left behind; return how many
    chunk tasks were sent.

    For each unfinished job (or just ``job_id``): chunks whose lease expired; and, if the
    job made no progress for ``stall_seconds``, its pending chunks. Duplicates are
    harmless: a second task for a chunk finds it leased or done and returns. A job whose
    chunks are all done but that was never finalized is finalized here.
    """
    settings = settings or ServiceSettings.from_env()
    if job_id is not None:
        jobs = [store.get_job(job_id)]
    else:
        jobs = store.list_jobs(limit=1000, status="running") + \
            store.list_jobs(limit=1000, status="queued")
    now = datetime.now(UTC)
    sent = 0
    for job in jobs:
        if job.status.terminal:
            continue
        unfinished = store.unfinished_chunks(job.id)
        idle_for = (now - job.updated_at).total_seconds()
        idle = idle_for > settings.stall_seconds
        if not unfinished:
            # The last finisher is finalizing (MLflow can be slow); only a job left like
            # this for longer than a chunk may take lost its finisher.
            if idle_for > settings.chunk_time_limit:
                finalize_job(store, job.id, "succeeded")
            continue
        redo = {c.index for c in store.expired_chunks(job_id=job.id)}
        if idle:
            redo |= {c.index for c in unfinished if c.status == "pending"}
            store.add_progress(job.id)  # touch updated_at: one re-dispatch per stall period
        if redo:
            log.info("sweep: re-dispatching chunks %s of job %s", sorted(redo), job.id)
            sent += dispatch(job.id, sorted(redo), broker_url=broker_url, settings=settings)
    return sent
