"""The store on real SQLite and real PostgreSQL: schema, idempotency, concurrency."""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from judge.datasets import Item
from judge.errors import AuthError, JobError, StoreError
from judge.judgments import Judgment, Status
from judge.store import (
    ChunkStatus,
    JobNotFoundError,
    JobStatus,
    Rating,
    Role,
    Store,
    hash_token,
    head_revision,
    normalise_url,
)
from judge.store._tables import Base, utcnow

TABLES = {
    "datasets",
    "items",
    "jobs",
    "chunks",
    "judgments",
    "cache",
    "raters",
    "ratings",
    "calibrations",
    "api_tokens",
}


def judgment(job_id: str | None, item: int, sample: int = 0, **kw: object) -> Judgment:
    values: dict[str, object] = dict(
        job_id=job_id,
        item_id=f"item-{item}",
        rubric_id="safety",
        rubric_version="1.0.0",
        rubric_hash="rh1",
        judge_model="openai/judge",
        sample_index=sample,
        status="ok",
        score=float(item % 5 + 1),
        attempts=1,
        cost_usd=0.001,
    )
    values.update(kw)
    return Judgment.model_validate(values)


def items(n: int, prefix: str = "") -> list[Item]:
    return [Item(id=f"{prefix}{i}", input=f"q{i}", output=f"a{i}") for i in range(n)]


def new_job(store: Store, total: int = 0, key: str | None = None) -> str:
    ds = store.put_dataset("d", items(3), content_hash=f"hash-{key or id(store)}")
    job, _ = store.create_job({"pack": "healthcare"}, ds, total_units=total, idempotency_key=key)
    return job.id


# -- schema -------------------------------------------------------------------------


def test_migrations_run_from_empty_to_head(empty_database_url: str) -> None:
    store = Store.open(empty_database_url)
    try:
        with store._engine.connect() as conn:  # noqa: SLF001 - checking the real schema
            assert MigrationContext.configure(conn).get_current_revision() == head_revision()
            assert TABLES <= set(inspect(conn).get_table_names())
            # The models and the checked-in migrations describe the same schema.
            diff = compare_metadata(
                MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
            )
            assert diff == []
    finally:
        store.close()
    # Opening an up-to-date store again migrates nothing and keeps data.
    again = Store.open(empty_database_url)
    try:
        assert again.list_jobs() == []
    finally:
        again.close()


def _open_and_write(url: str, worker: int) -> int:
    store = Store.open(url)
    try:
        return store.put_items(store.put_dataset("d", [], "shared"), items(5, f"w{worker}-"))
    finally:
        store.close()


def test_processes_opening_an_empty_store_together_migrate_once(empty_database_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(3) as pool:
        inserted = pool.starmap(_open_and_write, [(empty_database_url, w) for w in range(3)])
    assert inserted == [5, 5, 5]
    with Store.open(empty_database_url) as store:
        ds = store.find_dataset("shared")
        assert ds is not None and store.count_items(ds.id) == 15


def test_urls_are_normalised_to_psycopg_and_bad_backends_named() -> None:
    assert normalise_url("postgresql://u@h:5432/db") == "postgresql+psycopg://u@h:5432/db"
    assert normalise_url("postgresql+psycopg2://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    with pytest.raises(StoreError, match="Unsupported database backend 'mysql'.*sqlite"):
        normalise_url("mysql://u@h/db")


def test_unreachable_postgresql_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="Cannot open the store"):
        Store.open("postgresql://postgres@127.0.0.1:1/nothing?connect_timeout=2")


# -- datasets and items ---------------------------------------------------------------


def test_put_dataset_is_idempotent_by_content_hash(store: Store) -> None:
    first = store.put_dataset("qa", items(4), content_hash="abc")
    again = store.put_dataset("other name", items(9), content_hash="abc")
    assert again == first
    assert store.count_items(first) == 4
    assert store.get_dataset(first).name == "qa"
    assert store.put_items(first, items(6)) == 2
    with pytest.raises(StoreError, match="Unknown dataset 'nope'"):
        store.get_dataset("nope")


def test_iter_items_streams_page_by_page(store: Store) -> None:
    stored = [Item(id=f"i{i}", output="o", metadata={"n": i, "tags": ["x"]}) for i in range(25)]
    ds = store.put_dataset("big", iter(stored), content_hash="big")
    stream = store.iter_items(ds, batch=10)
    first = [next(stream) for _ in range(10)]
    # Items added after the first page was read still arrive: pages are read lazily.
    store.put_items(ds, [Item(id="late", output="o")])
    rest = list(stream)
    assert first + rest == [*stored, Item(id="late", output="o")]
    got = store.get_items(ds, ["i3", "missing", "i1"])
    assert got == {"i3": stored[3], "i1": stored[1]}


# -- jobs ---------------------------------------------------------------------------


def test_idempotency_key_returns_the_existing_job(store: Store) -> None:
    ds = store.put_dataset("d", items(2), "h")
    spec = {"pack": "finance", "rubrics": [{"id": "finance/x", "version": "1.0.0"}]}
    job, created = store.create_job(spec, ds, total_units=4, idempotency_key="pipeline-42")
    with ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(
                lambda _: store.create_job(spec, ds, 4, idempotency_key="pipeline-42"), range(8)
            )
        )
    assert created
    assert {j.id for j, _ in results} == {job.id}
    assert not any(c for _, c in results)
    assert len(store.list_jobs()) == 1
    with pytest.raises(JobError, match="pipeline-42.*different spec"):
        store.create_job({"pack": "legal"}, ds, 4, idempotency_key="pipeline-42")
    other, created = store.create_job(spec, ds, 4)
    assert created and other.id != job.id


def test_job_status_transitions_and_cancel_is_final(store: Store) -> None:
    job_id = new_job(store)
    assert store.set_job_status(job_id, "running")
    job = store.get_job(job_id)
    assert job.status is JobStatus.RUNNING and job.started_at is not None
    with pytest.raises(JobError, match="cannot go from 'running' to 'queued'"):
        store.set_job_status(job_id, JobStatus.QUEUED)
    assert store.set_job_status(job_id, JobStatus.CANCELLED, error="cancelled by user")
    assert not store.set_job_status(job_id, JobStatus.SUCCEEDED)
    assert not store.set_job_status(job_id, JobStatus.RUNNING)
    job = store.get_job(job_id)
    assert job.status is JobStatus.CANCELLED
    assert job.error == "cancelled by user" and job.finished_at is not None
    assert [j.id for j in store.list_jobs(status="cancelled")] == [job_id]
    assert store.list_jobs(status="running") == []


def test_unknown_job_is_named(store: Store) -> None:
    with pytest.raises(JobNotFoundError, match="Unknown job 'no-such-job'.*judge jobs list"):
        store.get_job("no-such-job")
    with pytest.raises(JobNotFoundError):
        store.set_job_status("no-such-job", "running")
    with pytest.raises(JobNotFoundError):
        store.add_progress("no-such-job", done=1)


def test_progress_counters_are_exact_under_concurrency(store: Store) -> None:
    job_id = new_job(store, total=800)

    def bump(_: int) -> None:
        for _ in range(25):
            store.add_progress(job_id, done=1, errors=1, cost=0.5, calls=2)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(bump, range(8)))
    job = store.get_job(job_id)
    assert (job.done_units, job.error_units, job.calls) == (200, 200, 400)
    assert job.cost_usd == pytest.approx(100.0)
    job = store.update_job(job_id, summary={"safety": {"mean": 3.5}}, mlflow_run_id="run1")
    assert job.summary == {"safety": {"mean": 3.5}} and job.mlflow_run_id == "run1"
    assert job.total_units == 800


# -- judgments ------------------------------------------------------------------------


def test_judgments_round_trip_every_field(store: Store) -> None:
    job_id = new_job(store)
    full = judgment(
        job_id,
        1,
        prompt_hash="ph",
        calibrated_score=2.5,
        label="safe",
        passed=True,
        rationale="fine «ünïcode»",
        evidence=["quote 1", "quote 2"],
        findings=[{"check": "regex", "ok": False}],
        error=None,
        tokens_in=10,
        tokens_out=5,
        latency_ms=12.5,
        cached=True,
        order="ab",
        attempts=2,
    )
    failed = judgment(job_id, 2, status="invalid_output", score=None, error="bad json")
    assert store.write_judgments([full, failed]) == 2
    stored = store.judgments(job_id)
    assert sorted(stored, key=lambda j: j.item_id) == [full, failed]
    assert store.judgments(job_id, offset=1, limit=5) == stored[1:]
    assert store.count_judgments(job_id, Status.INVALID_OUTPUT) == 1


def test_writing_twice_stores_once(store: Store) -> None:
    job_id = new_job(store)
    batch = [judgment(job_id, i, s) for i in range(50) for s in range(2)]
    batch.append(judgment(job_id, 0, 0, status="provider_error", score=None))  # same identity
    assert store.write_judgments(batch) == 100
    assert store.write_judgments(batch) == 0
    assert store.count_judgments(job_id) == 100
    job = store.get_job(job_id)
    assert (job.done_units, job.calls) == (100, 100)
    assert job.cost_usd == pytest.approx(0.1)
    # Identity includes the pair order and a missing job id; NULLs still dedupe.
    free = [
        judgment(None, 1),
        judgment(None, 1),
        judgment(None, 1, order="ab"),
        judgment(None, 1, order="ba"),
    ]
    assert store.write_judgments(free) == 3
    assert store.write_judgments(free) == 0
    assert len(store.judgments(rubric_id="safety", judge_model="openai/judge")) == 103


def test_judgment_for_unknown_job_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="refused a write"):
        store.write_judgments([judgment("ghost-job", 1)])


def test_concurrent_thread_writers_never_lose_or_duplicate(store: Store) -> None:
    job_id = new_job(store)
    expected = {judgment(job_id, i, s).identity for i in range(120) for s in range(3)}

    def write(worker: int) -> int:
        # Overlapping slices, in different orders, several batches each.
        mine = [
            judgment(job_id, i, s) for i in range(120) for s in range(3) if (i + worker) % 3 != 0
        ]
        if worker % 2:
            mine.reverse()
        return sum(store.write_judgments(mine[k : k + 70]) for k in range(0, len(mine), 70))

    with ThreadPoolExecutor(6) as pool:
        inserted = sum(pool.map(write, range(6)))
    stored = store.judgments(job_id)
    assert inserted == len(expected) == len(stored)
    assert {j.identity for j in stored} == expected
    assert store.get_job(job_id).done_units == len(expected)


def _process_writer(url: str, job_id: str, worker: int) -> int:
    store = Store.open(url)
    try:
        mine = [judgment(job_id, i) for i in range(worker * 300, worker * 300 + 600)]
        return sum(store.write_judgments(mine[k : k + 100]) for k in range(0, 600, 100))
    finally:
        store.close()


def test_two_processes_writing_overlapping_judgments(store: Store) -> None:
    job_id = new_job(store)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        inserted = pool.starmap(_process_writer, [(store.url, job_id, w) for w in range(2)])
    assert sum(inserted) == 900  # items 0..899, 300..599 written by both
    stored = store.judgments(job_id)
    assert Counter(j.item_id for j in stored) == {f"item-{i}": 1 for i in range(900)}
    assert store.get_job(job_id).done_units == 900


def test_iter_judgments_streams_in_stored_order(store: Store) -> None:
    job_id = new_job(store)
    batch = [judgment(job_id, i) for i in range(23)]
    store.write_judgments(batch)
    stream = store.iter_judgments(job_id, batch=5)
    head = [next(stream) for _ in range(5)]
    store.write_judgments([judgment(job_id, 99)])  # pages are read lazily
    streamed = head + list(stream)
    assert {j.identity for j in streamed} == {j.identity for j in [*batch, judgment(job_id, 99)]}
    assert streamed == store.judgments(job_id)
    assert store.judgments(job_id, rubric_id="safety", limit=2) == streamed[:2]


# -- cache --------------------------------------------------------------------------


def test_cache_is_idempotent_and_keeps_the_first_payload(store: Store) -> None:
    assert store.cache_put_many({"k1": {"score": 4}, "k2": {"score": 1, "e": ["q"]}}) == 2
    assert store.cache_put_many({"k1": {"score": 5}, "k3": {"score": 2}}) == 1
    got = store.cache_get_many(["k1", "k2", "k3", "nope"])
    assert got == {"k1": {"score": 4}, "k2": {"score": 1, "e": ["q"]}, "k3": {"score": 2}}
    many = {f"key{i}": {"i": i} for i in range(1200)}
    assert store.cache_put_many(many) == 1200
    assert len(store.cache_get_many(many)) == 1200


# -- chunks -------------------------------------------------------------------------


def test_chunk_leases_expire_and_can_be_reclaimed(store: Store) -> None:
    job_id = new_job(store)
    units = [[{"item": "a", "rubric": "safety"}], [{"item": "b", "rubric": "safety"}]]
    assert store.create_chunks(job_id, units) == 2
    assert store.create_chunks(job_id, units) == 0
    now = utcnow()
    assert store.claim_chunk(job_id, 0, "worker-a", lease_seconds=30, now=now)
    assert not store.claim_chunk(job_id, 0, "worker-b", lease_seconds=30, now=now)
    assert store.claim_chunk(job_id, 0, "worker-a", 30, now=now)  # renewal by the holder
    assert store.expired_chunks(now=now + timedelta(seconds=10)) == []
    expired = store.expired_chunks(now=now + timedelta(seconds=31))
    assert [(c.job_id, c.index, c.lease_owner) for c in expired] == [(job_id, 0, "worker-a")]
    later = now + timedelta(seconds=31)
    assert store.claim_chunk(job_id, 0, "worker-b", 30, now=later)
    chunk = store.get_chunk(job_id, 0)
    assert (chunk.status, chunk.lease_owner, chunk.attempts) == (ChunkStatus.RUNNING, "worker-b", 2)
    assert chunk.units == units[0]
    assert [c.index for c in store.unfinished_chunks(job_id)] == [0, 1]

    first = store.finish_chunk(job_id, 0)
    assert first.newly_finished and first.remaining == 1 and not first.last
    assert not store.claim_chunk(job_id, 0, "worker-c", 30, now=later + timedelta(hours=1))
    assert store.claim_chunk(job_id, 1, "worker-c", 30)
    last = store.finish_chunk(job_id, 1)
    assert last.last
    assert not store.finish_chunk(job_id, 1).last  # a chunk run twice finalizes once
    assert store.unfinished_chunks(job_id) == []
    with pytest.raises(JobError, match="has no chunk 7"):
        store.get_chunk(job_id, 7)


def test_exactly_one_finisher_sees_the_last_chunk(store: Store) -> None:
    job_id = new_job(store)
    store.create_chunks(job_id, [[i] for i in range(16)])
    barrier = threading.Barrier(8)

    def finish(i: int) -> list[bool]:
        barrier.wait()
        return [store.finish_chunk(job_id, k).last for k in (i, i + 8)]

    with ThreadPoolExecutor(8) as pool:
        lasts = [x for xs in pool.map(finish, range(8)) for x in xs]
    assert lasts.count(True) == 1


# -- ratings ------------------------------------------------------------------------


def test_reimporting_ratings_adds_nothing(store: Store) -> None:
    ds = store.put_dataset("k-qa", items(3), "kqa")
    rows = [
        Rating(
            dataset_id=ds,
            item_id=str(i),
            rubric_id="healthcare/nli",
            rater_id=f"dr{r}",
            label="entailment",
            score=None,
            comment="ok",
            source_hash="file1",
        )
        for i in range(3)
        for r in range(3)
    ]
    assert store.put_ratings(rows) == 9
    assert store.put_ratings(rows) == 0
    assert store.ratings(rubric_id="healthcare/nli") == rows
    assert store.ratings(rubric_id="other") == []
    with pytest.raises(StoreError, match="refused a write"):
        store.put_ratings([rows[0].model_copy(update={"dataset_id": "ghost"})])


# -- calibrations --------------------------------------------------------------------


def test_calibrations_are_versioned(store: Store) -> None:
    key = dict(
        rubric_id="safety",
        rubric_version="1.0.0",
        rubric_hash="rh1",
        judge_model="openai/judge",
        split="cv5",
    )
    first = store.save_calibration(
        **key, prompt_hash="p1", figures={"kappa": [0.5, 0.4, 0.6]}, approved=True
    )
    second = store.save_calibration(
        **key,
        prompt_hash="p2",
        figures={"kappa": [0.3, 0.2, 0.4]},
        map={"x": [1, 2], "y": [1.5, 2]},
        approved=False,
    )
    latest = store.latest_calibration("safety", "rh1", "openai/judge")
    assert latest == second and latest.map == {"x": [1, 2], "y": [1.5, 2]}
    assert store.latest_calibration("safety", "rh1", "openai/judge", approved_only=True) == first
    assert store.latest_calibration("safety", "rh1", "openai/judge", prompt_hash="p1") == first
    assert store.latest_calibration("safety", "other-hash", "openai/judge") is None
    assert store.list_calibrations("safety") == [second, first]


# -- tokens ---------------------------------------------------------------------------


def test_tokens_are_stored_hashed_and_revocable(store: Store) -> None:
    issued = store.create_token("submitter", "ci pipeline")
    viewer = store.create_token(Role.VIEWER, "dashboard")
    assert store.role_for_token(issued.token) is Role.SUBMITTER
    assert store.role_for_token(viewer.token) is Role.VIEWER
    assert store.role_for_token("jdg_not-a-token") is None
    engine = create_engine(store.url)
    try:
        with engine.connect() as conn:
            rows = [tuple(map(str, r)) for r in conn.execute(text("SELECT * FROM api_tokens"))]
    finally:
        engine.dispose()
    assert not any(issued.token in v for r in rows for v in r)
    assert any(hash_token(issued.token) in r for r in rows)
    assert store.revoke_token(issued.id)
    assert not store.revoke_token(issued.id)
    assert store.role_for_token(issued.token) is None
    assert [(t.name, t.revoked_at is not None) for t in store.list_tokens()] == [
        ("ci pipeline", True),
        ("dashboard", False),
    ]
    with pytest.raises(AuthError, match="Unknown role 'root'.*admin, submitter, rater, viewer"):
        store.create_token("root", "x")


def test_open_defaults_to_sqlite_under_judge_home(
    judge_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Store.open() as store:
        assert store.dialect == "sqlite"
        assert store.url == f"sqlite:///{judge_home / 'judge.db'}"
        store.create_token("viewer", "v")
    assert (judge_home / "judge.db").is_file()
    monkeypatch.setenv("JUDGE_DATABASE_URL", "mysql://nobody@127.0.0.1/judge")
    with pytest.raises(StoreError, match="Unsupported database backend 'mysql'"):
        Store.open()


def test_shared_store_is_one_per_process_and_url(judge_home: Path, pg_database_url: str) -> None:
    local = Store.shared()
    assert Store.shared() is local
    assert Store.shared(f"sqlite:///{judge_home / 'judge.db'}") is local
    remote = Store.shared(pg_database_url)
    assert remote is not local and remote.dialect == "postgresql"
    assert Store.shared(pg_database_url) is remote
