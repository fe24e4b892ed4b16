"""The judge store: datasets, jobs, judgments, cache, chunks, ratings, calibrations, tokens.

SQLite under ``$JUDGE_HOME`` by default; PostgreSQL through ``JUDGE_DATABASE_URL``
(``postgresql://…`` is driven by psycopg 3). One :class:`Store` per process::

    from judge.store import Store
    with Store.open() as store:            # migrates the schema to head first
        ds = store.put_dataset("qa", items, content_hash)
        job, created = store.create_job(spec, ds, total_units=n, idempotency_key=key)
        store.write_judgments(judgments)   # returns how many were new

Long-lived processes (Celery workers, the API) use ``Store.shared()``: one store per
process and URL, re-opened in a forked child.

Guarantees
    - ``Store.open`` runs the Alembic migrations in ``judge/migrations`` to head, once
      even when many processes start together (PostgreSQL advisory lock; on SQLite a
      lock file beside the database). SQLite runs in WAL mode with a busy timeout and
      foreign keys on; its write transactions begin IMMEDIATE.
    - Every method is its own short transaction and returns plain pydantic records
      (:class:`JobRecord`, :class:`ChunkRecord`, :class:`~judge.judgments.Judgment`,
      :class:`~judge.datasets.Item`…), never live ORM objects.
    - A judgment's identity is ``Judgment.identity`` (job id, item id, rubric id,
      rubric hash, judge model, sample index, pair order). It is stored as
      ``identity_key``, the sha256 of that tuple with NULLs kept as ``null``, under a
      unique index; writes are ``INSERT … ON CONFLICT DO NOTHING`` on it, so a
      judgment written twice, by one process or several, is stored once.
    - Job counters are exact: ``write_judgments`` adds what it newly stored to its
      job's ``done_units``, ``error_units``, ``calls`` and ``cost_usd`` in the same
      transaction; ``add_progress`` adds anything else with ``SET x = x + n``.
    - Job statuses: queued → running → succeeded | failed | cancelled |
      budget_exceeded; the last four are terminal and ``set_job_status`` leaves a job
      there (returning False), so a cancelled job stays cancelled.
    - Chunks carry leases: ``claim_chunk`` succeeds for a pending chunk, an expired
      lease or the current holder (renewal); ``expired_chunks`` lists those to
      re-dispatch; ``finish_chunk`` tells exactly one caller it finished the job's last
      chunk (``.last``), and that caller finalizes.
    - The same idempotency key returns the same job (a different spec under a used
      key is a :class:`~judge.errors.JobError`); the same dataset content hash returns
      the same dataset; re-imported ratings, cache entries and chunks add nothing.
    - API tokens are stored as sha256 only; the plaintext is returned once.

API (see each method's docstring)
    datasets   put_dataset, put_items, get_dataset, find_dataset, iter_items,
               get_items, count_items
    jobs       create_job, get_job, list_jobs, set_job_status, add_progress, update_job
    judgments  write_judgments, judgments, iter_judgments, count_judgments
    cache      cache_get_many, cache_put_many
    chunks     create_chunks, get_chunk, claim_chunk, finish_chunk, expired_chunks,
               unfinished_chunks
    ratings    put_ratings, ratings
    calibrate  save_calibration, latest_calibration, list_calibrations
    tokens     create_token, role_for_token, revoke_token, list_tokens

A new schema change is a new Alembic revision in ``judge/migrations/versions``
(``alembic -c judge/migrations/alembic.ini revision --autogenerate``, then review);
a test fails while the models in ``_tables.py`` and the migrations disagree.
"""

from judge.store._engine import head_revision, normalise_url
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
from judge.store._store import JobNotFoundError, Store, hash_token, identity_key

__all__ = [
    "TERMINAL_JOB_STATUSES",
    "CalibrationRecord",
    "ChunkFinish",
    "ChunkRecord",
    "ChunkStatus",
    "DatasetRecord",
    "IssuedToken",
    "JobNotFoundError",
    "JobRecord",
    "JobStatus",
    "Rating",
    "Role",
    "Store",
    "TokenRecord",
    "hash_token",
    "head_revision",
    "identity_key",
    "normalise_url",
]
