"""The :class:`Store`: every durable thing judge keeps, behind short transactions."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import JSON, Connection, Engine, and_, case, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from judge.config import get_settings
from judge.datasets import Item
from judge.errors import AuthError, JobError, StoreError
from judge.judgments import ERROR_STATUSES, Judgment, Status
from judge.store._engine import make_engine, migrate, normalise_url
from judge.store._records import (
    TERMINAL_JOB_STATUSES,
    CalibrationRecord,
    ChunkFinish,
    ChunkRecord,
    ChunkStatus,
    DatasetRecord,
    IssuedToken,
    JobRecord,
    JobStatus,
    Rating,
    Role,
    TokenRecord,
)
from judge.store._tables import (
    ApiToken,
    CacheEntry,
    CalibrationRow,
    Chunk,
    Dataset,
    ItemRow,
    Job,
    JudgmentRow,
    Rater,
    RatingRow,
    utcnow,
)

T = TypeVar("T")

# Which statuses a job may enter each status from; terminal statuses are never left.
_ENTER_FROM: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset(),
    JobStatus.RUNNING: frozenset({JobStatus.QUEUED}),
    **{s: frozenset({JobStatus.QUEUED, JobStatus.RUNNING}) for s in TERMINAL_JOB_STATUSES},
}
_IN_CHUNK = 500  # keys per IN (...) list: well inside every backend's parameter limit
_WRITE_RETRIES = 5
_SHARED: dict[tuple[int, str], Store] = {}
_SHARED_LOCK = threading.Lock()


class JobNotFoundError(JobError):
    """A job id that is not in the store."""

    def __init__(self, job_id: str):
        self.job_id = job_id
        super().__init__(
            f"Unknown job '{job_id}': no job with that id in the store. "
            "`judge jobs list` shows the stored jobs."
        )


def identity_key(judgment: Judgment) -> str:
    """sha256 of a judgment's identity (NULLs included): its unique key in the store."""
    raw = json.dumps(list(judgment.identity), separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(raw.encode()).hexdigest()


def hash_token(token: str) -> str:
    """The sha256 under which an API token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def _json(value: Any) -> Any:
    """A JSON-safe deep copy, so what is stored compares equal to what is read back."""
    return json.loads(json.dumps(value, ensure_ascii=False, default=str))


def _batched(values: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


class Store:
    """The judge store on SQLite (embedded default) or PostgreSQL.

    Open it with :meth:`open`, once per process (after any fork), and close it when
    done. Every method runs its own short transaction and returns plain records.
    """

    def __init__(self, engine: Engine, url: str):
        self._engine = engine
        # SQLite write transactions take the write lock at BEGIN (see _engine.make_engine).
        self._write_engine = engine.execution_options(sqlite_begin="IMMEDIATE")
        self.url = url
        self.dialect: str = engine.dialect.name

    # -- lifecycle ---------------------------------------------------------------------

    @classmethod
    def open(cls, url: str | None = None) -> Store:
        """Connect and migrate the schema to the newest revision.

        Args:
            url: SQLAlchemy URL; default ``judge.config.get_settings().database_url``
                (``JUDGE_DATABASE_URL`` or SQLite under ``$JUDGE_HOME``).
                ``postgresql://`` uses psycopg 3.

        Raises:
            StoreError: the database is unreachable, unsupported or from a newer judge.
        """
        url = normalise_url(url or get_settings().database_url)
        engine = make_engine(url)
        try:
            migrate(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, url)

    @classmethod
    def shared(cls, url: str | None = None) -> Store:
        """This process's store for ``url`` (default as in :meth:`open`), opened once.

        For long-lived processes that reach the store from many places (Celery tasks,
        API handlers). A forked child gets its own, never its parent's connections.
        Do not close a shared store.
        """
        key = (os.getpid(), normalise_url(url or get_settings().database_url))
        with _SHARED_LOCK:
            store = _SHARED.get(key)
            if store is None:
                store = _SHARED[key] = cls.open(key[1])
            return store

    def close(self) -> None:
        """Release every pooled connection."""
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self._engine.url.render_as_string(hide_password=True)!r})"

    # -- plumbing ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._engine.connect() as conn:
            yield conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        try:
            with self._write_engine.begin() as conn:
                yield conn
        except IntegrityError as exc:
            raise StoreError(f"The store refused a write: {exc.orig}") from exc

    def _retrying(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` in a write transaction, again on a deadlock or a locked database.

        Only for idempotent writes: a retried transaction must do no harm.
        """
        for attempt in range(_WRITE_RETRIES):
            try:
                with self._write() as conn:
                    return fn(conn)
            except OperationalError as exc:
                if attempt == _WRITE_RETRIES - 1 or not _transient(exc):
                    raise
                time.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")

    def _insert(self, table: Any) -> Any:
        dialect = postgresql if self.dialect == "postgresql" else sqlite
        return dialect.insert(table)

    def _insert_many(self, conn: Connection, stmt: Any, rows: Sequence[dict[str, Any]]) -> list:
        """Execute an ``INSERT … RETURNING col`` for many rows; return the returned values.

        Every row must have the same keys. On PostgreSQL this drives psycopg's pipelined
        ``executemany`` directly: SQLAlchemy's multi-row VALUES path spends most of its
        time in psycopg re-parsing a huge statement (about 2k rows/s against 15k/s).
        """
        if not rows:
            return []
        if self.dialect != "postgresql":
            out: list = []
            for part in _batched(rows, 1000):
                out.extend(conn.execute(stmt, list(part)).scalars())
            return out
        import psycopg
        from psycopg.types.json import Jsonb

        table = stmt.table
        json_cols = [k for k in rows[0] if isinstance(table.c[k].type, JSON)]
        sql = str(stmt.compile(dialect=conn.dialect, column_keys=list(rows[0])))
        params = []
        for row in rows:
            row = dict(row)
            for k in json_cols:
                if row[k] is not None:
                    row[k] = Jsonb(row[k])
            params.append(row)
        cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cur.executemany(sql, params, returning=True)
            out = []
            while True:
                out.extend(r[0] for r in cur.fetchall())
                if not cur.nextset():
                    return out
        except psycopg.Error as exc:
            # Into SQLAlchemy's classes (IntegrityError, OperationalError…), as the
            # SQLAlchemy path would raise, for _write and _retrying to handle.
            raise DBAPIError.instance(sql, None, exc, psycopg.Error) from exc
        finally:
            cur.close()

    # -- datasets and items -------------------------------------------------------------

    def put_dataset(self, name: str, items: Iterable[Item], content_hash: str) -> str:
        """Store a dataset and its items once per content hash; return the dataset id.

        If a dataset with this ``content_hash`` exists, its id is returned and ``items``
        is not read. Items are written in batches, so ``items`` may be a generator.
        """
        existing = self.find_dataset(content_hash)
        if existing is not None:
            return existing.id

        def write(conn: Connection) -> str:
            new_id = uuid.uuid4().hex
            stmt = (
                self._insert(Dataset)
                .values(id=new_id, name=name, content_hash=content_hash, created_at=utcnow())
                .on_conflict_do_nothing(index_elements=["content_hash"])
                .returning(Dataset.id)
            )
            if conn.execute(stmt).scalar() is None:  # another process stored it first
                return conn.execute(
                    select(Dataset.id).where(Dataset.content_hash == content_hash)
                ).scalar_one()
            self._insert_items(conn, new_id, items)
            return new_id

        with self._write() as conn:
            return write(conn)

    def put_items(self, dataset_id: str, items: Iterable[Item]) -> int:
        """Add items to a dataset, skipping ids it already has; return how many were new."""
        with self._write() as conn:
            return self._insert_items(conn, dataset_id, items)

    def _insert_items(self, conn: Connection, dataset_id: str, items: Iterable[Item]) -> int:
        stmt = (
            self._insert(ItemRow)
            .on_conflict_do_nothing(index_elements=["dataset_id", "item_id"])
            .returning(ItemRow.pk)
        )
        inserted = 0
        batch: list[dict[str, Any]] = []
        for item in items:
            batch.append(
                {
                    "dataset_id": dataset_id,
                    "item_id": item.id,
                    "input": item.input,
                    "output": item.output,
                    "output_b": item.output_b,
                    "reference": item.reference,
                    "context": item.context,
                    "metadata": _json(item.metadata),
                }
            )
            if len(batch) == 1000:
                inserted += len(self._insert_many(conn, stmt, batch))
                batch = []
        return inserted + len(self._insert_many(conn, stmt, batch))

    def get_dataset(self, dataset_id: str) -> DatasetRecord:
        """The dataset with this id.

        Raises:
            StoreError: no such dataset.
        """
        with self._read() as conn:
            row = conn.execute(select(Dataset).where(Dataset.id == dataset_id)).one_or_none()
        if row is None:
            raise StoreError(f"Unknown dataset '{dataset_id}': no dataset with that id.")
        return DatasetRecord.model_validate(row, from_attributes=True)

    def find_dataset(self, content_hash: str) -> DatasetRecord | None:
        """The dataset stored with this content hash, if any."""
        with self._read() as conn:
            row = conn.execute(
                select(Dataset).where(Dataset.content_hash == content_hash)
            ).one_or_none()
        return None if row is None else DatasetRecord.model_validate(row, from_attributes=True)

    def iter_items(self, dataset_id: str, batch: int = 1000) -> Iterator[Item]:
        """Stream a dataset's items in their stored order, ``batch`` rows per query."""
        last = 0
        while True:
            with self._read() as conn:
                rows = conn.execute(
                    select(ItemRow)
                    .where(ItemRow.dataset_id == dataset_id, ItemRow.pk > last)
                    .order_by(ItemRow.pk)
                    .limit(batch)
                ).all()
            if not rows:
                return
            last = rows[-1].pk
            yield from (_item(row) for row in rows)

    def get_items(self, dataset_id: str, item_ids: Iterable[str]) -> dict[str, Item]:
        """The items with these ids, by id; ids not in the dataset are absent."""
        ids = list(dict.fromkeys(item_ids))
        found: dict[str, Item] = {}
        with self._read() as conn:
            for part in _batched(ids, _IN_CHUNK):
                rows = conn.execute(
                    select(ItemRow).where(
                        ItemRow.dataset_id == dataset_id, ItemRow.item_id.in_(part)
                    )
                )
                found.update((row.item_id, _item(row)) for row in rows)
        return {i: found[i] for i in ids if i in found}

    def count_items(self, dataset_id: str) -> int:
        """How many items the dataset has."""
        with self._read() as conn:
            return conn.execute(
                select(func.count()).select_from(ItemRow).where(ItemRow.dataset_id == dataset_id)
            ).scalar_one()

    # -- jobs ------------------------------------------------------------------------

    def create_job(
        self,
        spec: Mapping[str, Any],
        dataset_id: str | None = None,
        total_units: int = 0,
        idempotency_key: str | None = None,
    ) -> tuple[JobRecord, bool]:
        """Create a queued job, or return the one already made with ``idempotency_key``.

        Returns:
            ``(job, created)``; ``created`` is False when the key already named a job.

        Raises:
            JobError: the key names a job whose spec differs from ``spec``.
        """
        spec = _json(dict(spec))
        now = utcnow()
        values = {
            "id": str(uuid.uuid4()),
            "created_at": now,
            "updated_at": now,
            "status": JobStatus.QUEUED.value,
            "spec": spec,
            "dataset_id": dataset_id,
            "idempotency_key": idempotency_key,
            "total_units": total_units,
            "done_units": 0,
            "error_units": 0,
            "calls": 0,
            "cost_usd": 0.0,
        }
        stmt = self._insert(Job).values(**values).returning(*Job.__table__.c)
        if idempotency_key is not None:
            stmt = stmt.on_conflict_do_nothing(index_elements=["idempotency_key"])
        with self._write() as conn:
            row = conn.execute(stmt).one_or_none()
            if row is None:
                row = conn.execute(select(Job).where(Job.idempotency_key == idempotency_key)).one()
        job = _job(row)
        if row.id == values["id"]:
            return job, True
        if _canonical(job.spec) != _canonical(spec):
            raise JobError(
                f"Idempotency key '{idempotency_key}' already names job {job.id}, submitted "
                "with a different spec. Resubmit the same spec to get that job back, or use "
                "a new key for a new job."
            )
        return job, False

    def get_job(self, job_id: str) -> JobRecord:
        """The job with this id.

        Raises:
            JobNotFoundError: no such job.
        """
        with self._read() as conn:
            row = conn.execute(select(Job).where(Job.id == job_id)).one_or_none()
        if row is None:
            raise JobNotFoundError(job_id)
        return _job(row)

    def list_jobs(
        self, limit: int = 50, status: JobStatus | str | None = None, offset: int = 0
    ) -> list[JobRecord]:
        """Jobs, newest first, optionally only those with ``status``."""
        query = select(Job).order_by(Job.created_at.desc(), Job.id).limit(limit).offset(offset)
        if status is not None:
            query = query.where(Job.status == JobStatus(status).value)
        with self._read() as conn:
            return [_job(row) for row in conn.execute(query)]

    def set_job_status(
        self, job_id: str, status: JobStatus | str, error: str | None = None
    ) -> bool:
        """Move a job to ``status`` (atomically); return whether it changed.

        queued → running → succeeded | failed | cancelled | budget_exceeded (queued may
        also go straight to any of those four). A job in one of those four terminal
        statuses stays there: a later call returns False and changes nothing, so a
        chunk finishing after a cancel cannot revive the job. ``error`` is recorded
        with the change.

        Raises:
            JobNotFoundError: no such job.
            JobError: a move that is never allowed (e.g. running → queued).
        """
        status = JobStatus(status)
        now = utcnow()
        values: dict[str, Any] = {"status": status.value, "updated_at": now}
        if error is not None:
            values["error"] = error
        if status is JobStatus.RUNNING:
            values["started_at"] = func.coalesce(Job.started_at, now)
        if status.terminal:
            values["finished_at"] = now
        sources = [s.value for s in _ENTER_FROM[status]]
        with self._write() as conn:
            changed = conn.execute(
                update(Job).where(Job.id == job_id, Job.status.in_(sources)).values(**values)
            ).rowcount
            if changed:
                return True
            current = conn.execute(select(Job.status).where(Job.id == job_id)).scalar()
        if current is None:
            raise JobNotFoundError(job_id)
        current = JobStatus(current)
        if current is status or current.terminal:
            return False
        allowed = sorted(s.value for s, src in _ENTER_FROM.items() if current in src)
        raise JobError(
            f"Job {job_id} cannot go from '{current.value}' to '{status.value}'. "
            f"From '{current.value}' it can go to: {', '.join(allowed)}."
        )

    def add_progress(
        self,
        job_id: str,
        *,
        done: int = 0,
        errors: int = 0,
        cost: float = 0.0,
        calls: int = 0,
    ) -> JobRecord:
        """Atomically add to a job's counters (``UPDATE … SET x = x + n``); return the job.

        ``write_judgments`` already counts the judgments it stores; use this for work
        that stores none (e.g. provider calls whose judgments were refused).

        Raises:
            JobNotFoundError: no such job.
        """
        with self._write() as conn:
            row = self._bump(conn, job_id, done=done, errors=errors, cost=cost, calls=calls)
        if row is None:
            raise JobNotFoundError(job_id)
        return _job(row)

    def _bump(
        self, conn: Connection, job_id: str, *, done: int, errors: int, cost: float, calls: int
    ) -> Any:
        return conn.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(
                done_units=Job.done_units + done,
                error_units=Job.error_units + errors,
                cost_usd=Job.cost_usd + cost,
                calls=Job.calls + calls,
                updated_at=utcnow(),
            )
            .returning(*Job.__table__.c)
        ).one_or_none()

    def update_job(
        self,
        job_id: str,
        *,
        total_units: int | None = None,
        summary: Mapping[str, Any] | None = None,
        mlflow_run_id: str | None = None,
    ) -> JobRecord:
        """Set a job's total units, summary or MLflow run id (arguments left None are kept).

        Raises:
            JobNotFoundError: no such job.
        """
        values: dict[str, Any] = {"updated_at": utcnow()}
        if total_units is not None:
            values["total_units"] = total_units
        if summary is not None:
            values["summary"] = _json(dict(summary))
        if mlflow_run_id is not None:
            values["mlflow_run_id"] = mlflow_run_id
        with self._write() as conn:
            row = conn.execute(
                update(Job).where(Job.id == job_id).values(**values).returning(*Job.__table__.c)
            ).one_or_none()
        if row is None:
            raise JobNotFoundError(job_id)
        return _job(row)

    # -- judgments -------------------------------------------------------------------

    def write_judgments(self, judgments: Iterable[Judgment], progress: bool = True) -> int:
        """Store judgments, each identity once; return how many were new.

        Idempotent and safe under concurrent writers (``INSERT … ON CONFLICT DO
        NOTHING`` on the identity key). With ``progress`` (the default), each job's
        counters grow in the same transaction by what was newly stored: ``done_units``
        by the judgments, ``error_units`` by those with an error status, ``calls`` by
        the attempts of uncached ones and ``cost_usd`` by their cost; so a chunk that
        runs twice counts once.

        Raises:
            StoreError: a judgment names a job that does not exist.
        """
        now = utcnow()
        unique: dict[str, Judgment] = {}
        for j in judgments:
            unique.setdefault(identity_key(j), j)
        if not unique:
            return 0
        # One global order: concurrent PostgreSQL writers then cannot deadlock on the
        # unique index by taking overlapping keys in opposite orders.
        keys = sorted(unique)
        rows = [_judgment_row(k, unique[k], now) for k in keys]
        stmt = (
            self._insert(JudgmentRow)
            .on_conflict_do_nothing(index_elements=["identity_key"])
            .returning(JudgmentRow.identity_key)
        )

        def write(conn: Connection) -> int:
            new: list[str] = self._insert_many(conn, stmt, rows)
            if progress:
                self._count_new(conn, [unique[k] for k in new])
            return len(new)

        return self._retrying(write)

    def _count_new(self, conn: Connection, new: list[Judgment]) -> None:
        per_job: dict[str, dict[str, Any]] = {}
        for j in new:
            if j.job_id is None:
                continue
            c = per_job.setdefault(j.job_id, {"done": 0, "errors": 0, "cost": 0.0, "calls": 0})
            c["done"] += 1
            c["errors"] += j.status in ERROR_STATUSES
            if not j.cached:
                c["cost"] += j.cost_usd or 0.0
                c["calls"] += j.attempts
        for job_id in sorted(per_job):
            self._bump(conn, job_id, **per_job[job_id])

    def judgments(
        self,
        job_id: str | None = None,
        *,
        rubric_id: str | None = None,
        judge_model: str | None = None,
        offset: int = 0,
        limit: int | None = None,
    ) -> list[Judgment]:
        """Stored judgments in a stable storage order; None filters are not applied.

        Storage order is the order of the writes; within one write, by identity key.
        """
        query = self._judgment_query(job_id, rubric_id, judge_model).offset(offset)
        if limit is not None:
            query = query.limit(limit)
        with self._read() as conn:
            return [_judgment(row) for row in conn.execute(query)]

    def iter_judgments(
        self,
        job_id: str | None = None,
        *,
        rubric_id: str | None = None,
        judge_model: str | None = None,
        batch: int = 1000,
    ) -> Iterator[Judgment]:
        """Stream judgments like :meth:`judgments`, ``batch`` rows per query."""
        last = 0
        while True:
            query = (
                self._judgment_query(job_id, rubric_id, judge_model)
                .where(JudgmentRow.pk > last)
                .limit(batch)
            )
            with self._read() as conn:
                rows = conn.execute(query).all()
            if not rows:
                return
            last = rows[-1].pk
            yield from (_judgment(row) for row in rows)

    def _judgment_query(
        self, job_id: str | None, rubric_id: str | None, judge_model: str | None
    ) -> Any:
        query = select(JudgmentRow).order_by(JudgmentRow.pk)
        if job_id is not None:
            query = query.where(JudgmentRow.job_id == job_id)
        if rubric_id is not None:
            query = query.where(JudgmentRow.rubric_id == rubric_id)
        if judge_model is not None:
            query = query.where(JudgmentRow.judge_model == judge_model)
        return query

    def count_judgments(self, job_id: str, status: Status | str | None = None) -> int:
        """How many judgments a job has stored, optionally only those with ``status``."""
        query = select(func.count()).select_from(JudgmentRow).where(JudgmentRow.job_id == job_id)
        if status is not None:
            query = query.where(JudgmentRow.status == Status(status).value)
        with self._read() as conn:
            return conn.execute(query).scalar_one()

    # -- cache -----------------------------------------------------------------------

    def cache_get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The cached payloads for those keys that have one."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, dict[str, Any]] = {}
        with self._read() as conn:
            for part in _batched(wanted, _IN_CHUNK):
                rows = conn.execute(
                    select(CacheEntry.key, CacheEntry.payload).where(CacheEntry.key.in_(part))
                )
                found.update((row.key, row.payload) for row in rows)
        return found

    def cache_put_many(self, entries: Mapping[str, Mapping[str, Any]]) -> int:
        """Cache payloads by key; a key already cached keeps its first payload.

        Returns:
            How many keys were new.
        """
        if not entries:
            return 0
        now = utcnow()
        rows = [
            {"key": k, "payload": _json(dict(entries[k])), "created_at": now}
            for k in sorted(entries)
        ]
        stmt = (
            self._insert(CacheEntry)
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(CacheEntry.key)
        )

        return self._retrying(lambda conn: len(self._insert_many(conn, stmt, rows)))

    # -- chunks ----------------------------------------------------------------------

    def create_chunks(self, job_id: str, chunks: Sequence[list[Any]]) -> int:
        """Store a job's chunks, numbered by position; existing numbers are kept.

        Each chunk is a JSON-serialisable list of work units, opaque to the store.

        Returns:
            How many chunks were new.
        """
        rows = [
            {
                "job_id": job_id,
                "chunk_index": i,
                "units": _json(list(units)),
                "status": ChunkStatus.PENDING.value,
                "attempts": 0,
            }
            for i, units in enumerate(chunks)
        ]
        if not rows:
            return 0
        stmt = (
            self._insert(Chunk)
            .on_conflict_do_nothing(index_elements=["job_id", "chunk_index"])
            .returning(Chunk.chunk_index)
        )
        with self._write() as conn:
            return len(self._insert_many(conn, stmt, rows))

    def get_chunk(self, job_id: str, index: int) -> ChunkRecord:
        """One chunk of a job.

        Raises:
            JobError: the job has no chunk with that index.
        """
        with self._read() as conn:
            row = conn.execute(
                select(Chunk).where(Chunk.job_id == job_id, Chunk.chunk_index == index)
            ).one_or_none()
        if row is None:
            raise JobError(f"Job {job_id} has no chunk {index}.")
        return _chunk(row)

    def claim_chunk(
        self,
        job_id: str,
        index: int,
        owner: str,
        lease_seconds: float,
        now: datetime | None = None,
    ) -> bool:
        """Lease a chunk to ``owner`` for ``lease_seconds``; return whether it got it.

        A chunk can be claimed when pending, when its lease has expired, or by the
        owner already holding it (which renews the lease). A done chunk is never
        claimed again. ``attempts`` counts the claims that changed hands.
        """
        now = now or utcnow()
        expires = now + timedelta(seconds=lease_seconds)
        holds = and_(Chunk.status == ChunkStatus.RUNNING.value, Chunk.lease_owner == owner)
        with self._write() as conn:
            return bool(
                conn.execute(
                    update(Chunk)
                    .where(
                        Chunk.job_id == job_id,
                        Chunk.chunk_index == index,
                        or_(
                            Chunk.status == ChunkStatus.PENDING.value,
                            and_(
                                Chunk.status == ChunkStatus.RUNNING.value,
                                Chunk.lease_expires_at < now,
                            ),
                            holds,
                        ),
                    )
                    .values(
                        status=ChunkStatus.RUNNING.value,
                        lease_owner=owner,
                        lease_expires_at=expires,
                        attempts=Chunk.attempts + case((holds, 0), else_=1),
                    )
                ).rowcount
            )

    def finish_chunk(self, job_id: str, index: int) -> ChunkFinish:
        """Mark a chunk done and count the job's chunks still not done, atomically.

        Exactly one caller per job sees ``result.last``: the one whose call finished the
        job's last unfinished chunk; that caller finalizes the job.
        """
        with self._write() as conn:
            if self.dialect == "postgresql":
                # Serialise finishers of one job, so two chunks finishing together
                # cannot each see the other as unfinished.
                conn.execute(select(Job.id).where(Job.id == job_id).with_for_update())
            newly = conn.execute(
                update(Chunk)
                .where(
                    Chunk.job_id == job_id,
                    Chunk.chunk_index == index,
                    Chunk.status != ChunkStatus.DONE.value,
                )
                .values(status=ChunkStatus.DONE.value, finished_at=utcnow(), lease_expires_at=None)
            ).rowcount
            remaining = conn.execute(
                select(func.count())
                .select_from(Chunk)
                .where(Chunk.job_id == job_id, Chunk.status != ChunkStatus.DONE.value)
            ).scalar_one()
        return ChunkFinish(newly_finished=bool(newly), remaining=remaining)

    def expired_chunks(
        self, now: datetime | None = None, job_id: str | None = None
    ) -> list[ChunkRecord]:
        """Running chunks whose lease has expired (their worker is presumed lost)."""
        query = select(Chunk).where(
            Chunk.status == ChunkStatus.RUNNING.value, Chunk.lease_expires_at < (now or utcnow())
        )
        if job_id is not None:
            query = query.where(Chunk.job_id == job_id)
        with self._read() as conn:
            return [
                _chunk(r) for r in conn.execute(query.order_by(Chunk.job_id, Chunk.chunk_index))
            ]

    def unfinished_chunks(self, job_id: str) -> list[ChunkRecord]:
        """A job's chunks that are pending or running, in index order."""
        with self._read() as conn:
            rows = conn.execute(
                select(Chunk)
                .where(Chunk.job_id == job_id, Chunk.status != ChunkStatus.DONE.value)
                .order_by(Chunk.chunk_index)
            )
            return [_chunk(r) for r in rows]

    # -- human ratings -----------------------------------------------------------------

    def put_ratings(self, ratings: Iterable[Rating]) -> int:
        """Store ratings (and their raters); return how many were new.

        A rating is identified by (dataset, item, rubric, rater): importing the same
        ratings again adds nothing. The dataset must exist (``put_dataset``); the
        items need not.

        Raises:
            StoreError: a rating names a dataset that does not exist.
        """
        rows = [r.model_dump() for r in ratings]
        if not rows:
            return 0
        now = utcnow()
        for row in rows:
            row["created_at"] = now
        raters = [{"id": r, "created_at": now} for r in sorted({row["rater_id"] for row in rows})]
        rater_stmt = (
            self._insert(Rater).on_conflict_do_nothing(index_elements=["id"]).returning(Rater.id)
        )
        stmt = (
            self._insert(RatingRow)
            .on_conflict_do_nothing(
                index_elements=["dataset_id", "item_id", "rubric_id", "rater_id"]
            )
            .returning(RatingRow.pk)
        )

        def write(conn: Connection) -> int:
            self._insert_many(conn, rater_stmt, raters)
            return len(self._insert_many(conn, stmt, rows))

        return self._retrying(write)

    def ratings(self, rubric_id: str | None = None, dataset_id: str | None = None) -> list[Rating]:
        """Stored ratings in the order they were stored; None filters are not applied."""
        cols = [RatingRow.__table__.c[name] for name in Rating.model_fields]
        query = select(*cols).order_by(RatingRow.pk)
        if rubric_id is not None:
            query = query.where(RatingRow.rubric_id == rubric_id)
        if dataset_id is not None:
            query = query.where(RatingRow.dataset_id == dataset_id)
        with self._read() as conn:
            return [Rating.model_validate(dict(r._mapping)) for r in conn.execute(query)]

    # -- calibrations ------------------------------------------------------------------

    def save_calibration(
        self,
        *,
        rubric_id: str,
        rubric_version: str,
        rubric_hash: str,
        judge_model: str,
        prompt_hash: str | None,
        split: str,
        figures: Mapping[str, Any],
        map: Mapping[str, Any] | None = None,
        approved: bool = False,
    ) -> CalibrationRecord:
        """Store a new calibration version; earlier versions are kept."""
        values = {
            "rubric_id": rubric_id,
            "rubric_version": rubric_version,
            "rubric_hash": rubric_hash,
            "judge_model": judge_model,
            "prompt_hash": prompt_hash,
            "split": split,
            "created_at": utcnow(),
            "figures": _json(dict(figures)),
            "map": None if map is None else _json(dict(map)),
            "approved": approved,
        }
        with self._write() as conn:
            row = conn.execute(
                self._insert(CalibrationRow).values(**values).returning(*CalibrationRow.__table__.c)
            ).one()
        return CalibrationRecord.model_validate(row, from_attributes=True)

    def latest_calibration(
        self,
        rubric_id: str,
        rubric_hash: str,
        judge_model: str,
        prompt_hash: str | None = None,
        approved_only: bool = False,
    ) -> CalibrationRecord | None:
        """The newest calibration of this judge on this exact rubric, if any.

        ``prompt_hash`` None matches any prompt; ``approved_only`` skips unapproved ones.
        """
        query = (
            select(CalibrationRow)
            .where(
                CalibrationRow.rubric_id == rubric_id,
                CalibrationRow.rubric_hash == rubric_hash,
                CalibrationRow.judge_model == judge_model,
            )
            .order_by(CalibrationRow.id.desc())
            .limit(1)
        )
        if prompt_hash is not None:
            query = query.where(CalibrationRow.prompt_hash == prompt_hash)
        if approved_only:
            query = query.where(CalibrationRow.approved.is_(True))
        with self._read() as conn:
            row = conn.execute(query).one_or_none()
        return None if row is None else CalibrationRecord.model_validate(row, from_attributes=True)

    def list_calibrations(
        self, rubric_id: str | None = None, judge_model: str | None = None
    ) -> list[CalibrationRecord]:
        """Stored calibrations, newest first; None filters are not applied."""
        query = select(CalibrationRow).order_by(CalibrationRow.id.desc())
        if rubric_id is not None:
            query = query.where(CalibrationRow.rubric_id == rubric_id)
        if judge_model is not None:
            query = query.where(CalibrationRow.judge_model == judge_model)
        with self._read() as conn:
            return [
                CalibrationRecord.model_validate(r, from_attributes=True)
                for r in conn.execute(query)
            ]

    # -- API tokens ------------------------------------------------------------------

    def create_token(self, role: Role | str, name: str) -> IssuedToken:
        """Issue an API token; only its sha256 is stored, so show ``.token`` now or never.

        Raises:
            AuthError: ``role`` is not one of admin, submitter, rater, viewer.
        """
        try:
            role = Role(role)
        except ValueError:
            raise AuthError(
                f"Unknown role '{role}'. Roles: {', '.join(r.value for r in Role)}."
            ) from None
        token = "jdg_" + secrets.token_urlsafe(32)
        record = IssuedToken(id=uuid.uuid4().hex[:16], name=name, role=role, token=token)
        with self._write() as conn:
            conn.execute(
                self._insert(ApiToken).values(
                    id=record.id,
                    name=name,
                    role=role.value,
                    token_sha256=hash_token(token),
                    created_at=utcnow(),
                )
            )
        return record

    def role_for_token(self, token: str) -> Role | None:
        """The role of a live token; None for an unknown or revoked one."""
        with self._read() as conn:
            role = conn.execute(
                select(ApiToken.role).where(
                    ApiToken.token_sha256 == hash_token(token), ApiToken.revoked_at.is_(None)
                )
            ).scalar()
        return None if role is None else Role(role)

    def revoke_token(self, token_id: str) -> bool:
        """Revoke a token by id; return False if it was unknown or already revoked."""
        with self._write() as conn:
            return bool(
                conn.execute(
                    update(ApiToken)
                    .where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
                    .values(revoked_at=utcnow())
                ).rowcount
            )

    def list_tokens(self) -> list[TokenRecord]:
        """Every token's metadata (never the token), oldest first."""
        with self._read() as conn:
            rows = conn.execute(select(ApiToken).order_by(ApiToken.created_at, ApiToken.id))
            return [
                TokenRecord(
                    id=r.id,
                    name=r.name,
                    role=Role(r.role),
                    created_at=r.created_at,
                    revoked_at=r.revoked_at,
                )
                for r in rows
            ]


# -- row conversions -----------------------------------------------------------------


def _transient(exc: DBAPIError) -> bool:
    text = str(exc.orig).lower()
    return "deadlock" in text or "database is locked" in text or "could not serialize" in text


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _item(row: Any) -> Item:
    return Item(
        id=row.item_id,
        input=row.input,
        output=row.output,
        output_b=row.output_b,
        reference=row.reference,
        context=row.context,
        metadata=row.metadata,
    )


def _job(row: Any) -> JobRecord:
    return JobRecord.model_validate(row, from_attributes=True)


def _chunk(row: Any) -> ChunkRecord:
    return ChunkRecord(
        job_id=row.job_id,
        index=row.chunk_index,
        units=row.units,
        status=ChunkStatus(row.status),
        lease_owner=row.lease_owner,
        lease_expires_at=row.lease_expires_at,
        attempts=row.attempts,
        finished_at=row.finished_at,
    )


_JUDGMENT_FIELDS = [f for f in Judgment.model_fields if f != "order"]


def _judgment_row(key: str, j: Judgment, now: datetime) -> dict[str, Any]:
    row = {f: getattr(j, f) for f in _JUDGMENT_FIELDS}
    row.update(
        identity_key=key,
        pair_order=j.order,
        status=j.status.value,
        evidence=_json(j.evidence),
        findings=_json(j.findings),
        created_at=now,
    )
    return row


def _judgment(row: Any) -> Judgment:
    values = {f: getattr(row, f) for f in _JUDGMENT_FIELDS}
    return Judgment(order=row.pair_order, **values)
