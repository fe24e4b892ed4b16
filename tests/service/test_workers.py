"""Jobs on real ``judge worker`` processes through a real Redis, with the fake provider."""

from __future__ import annotations

import time

from judge import service
from judge.store import Store
from tests.service.helpers import identities, items, spec, wait_terminal


def _running_chunks(store: Store, job_id: str) -> int:
    return sum(1 for c in store.unfinished_chunks(job_id) if c.status == "running")


def test_sigkill_worker_mid_job_second_worker_finishes_exactly_once(
        service_env, spawn_worker, fake_provider):
    fake_provider.latency_ms = 700
    store = Store.open(service_env["JUDGE_DATABASE_URL"])
    a = spawn_worker(service_env, concurrency=1, wait=False)
    b = spawn_worker(service_env, concurrency=1, wait=False)
    from tests.fixtures.services import wait_ready

    wait_ready(a)
    wait_ready(b)
    job, created = service.submit(store, spec(fake_provider.url), items(24))
    assert created and job.total_units == 24
    deadline = time.monotonic() + 60
    while _running_chunks(store, job.id) < 2:  # both workers hold a chunk
        assert time.monotonic() < deadline, "the two workers never both ran a chunk"
        time.sleep(0.05)
    a.kill()
    done = wait_terminal(store, job.id, timeout=90)
    assert done.status == "succeeded", b.output()[-3000:]
    ids = identities(store, job.id)
    assert len(ids) == 24 and len(set(ids)) == 24
    assert {i[1] for i in ids} == {it.id for it in items(24)}
    assert done.done_units == 24 and store.count_judgments(job.id) == 24
    assert not store.unfinished_chunks(job.id)
    # The killed worker's chunk went to the survivor: some chunk changed hands.
    attempts = [store.get_chunk(job.id, i).attempts for i in range(6)]
    assert max(attempts) >= 2, attempts
    store.close()


def test_redis_restart_mid_job_job_completes(tmp_path, private_redis, spawn_worker,
                                             fake_provider, monkeypatch):
    from tests.fixtures.services import make_service_env

    env = make_service_env(tmp_path, private_redis.url)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    fake_provider.latency_ms = 300
    store = Store.open(env["JUDGE_DATABASE_URL"])
    w = spawn_worker(env, concurrency=2)
    job, _ = service.submit(store, spec(fake_provider.url), items(32))
    deadline = time.monotonic() + 60
    while store.get_job(job.id).done_units == 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    private_redis.stop()  # queued messages are lost with it: no persistence
    time.sleep(1.5)
    private_redis.start()
    done = wait_terminal(store, job.id, timeout=90)
    assert done.status == "succeeded", w.output()[-3000:]
    ids = identities(store, job.id)
    assert len(ids) == 32 == len(set(ids)) == done.done_units
    store.close()


def test_cancel_stops_remaining_chunks_and_keeps_what_is_done(service_env, spawn_worker,
                                                             fake_provider):
    fake_provider.latency_ms = 400
    store = Store.open(service_env["JUDGE_DATABASE_URL"])
    spawn_worker(service_env, concurrency=1)
    job, _ = service.submit(store, spec(fake_provider.url, concurrency=2), items(40))
    deadline = time.monotonic() + 60
    while store.get_job(job.id).done_units < 4:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    cancelled = service.cancel_job(store, job.id)
    assert cancelled.status == "cancelled"
    time.sleep(2.0)  # calls in flight at the cancel may still land
    settled = store.count_judgments(job.id)
    time.sleep(2.0)
    assert store.count_judgments(job.id) == settled  # nothing new after the cancel settled
    assert 4 <= settled < 40
    final = store.get_job(job.id)
    assert final.status == "cancelled" and final.done_units == settled
    assert final.summary is not None and final.summary["rubrics"]["tone"]["total"] <= settled
    assert store.unfinished_chunks(job.id)  # the remaining chunks never ran
    store.close()


def test_429s_for_a_while_shared_bucket_nothing_failed(service_env, spawn_worker,
                                                       fake_provider, redis_url):
    import redis

    from judge.testing.fake_provider import rate_limit

    fake_provider.script(*[rate_limit(retry_after=0) for _ in range(12)])
    store = Store.open(service_env["JUDGE_DATABASE_URL"])
    spawn_worker(service_env, concurrency=2, wait=False)
    w2 = spawn_worker(service_env, concurrency=2)
    from tests.fixtures.services import wait_ready

    wait_ready(w2)
    rpm = 300  # 5 requests a second for every worker together
    started = time.monotonic()
    job, _ = service.submit(store, spec(fake_provider.url, rpm=rpm, max_attempts=2), items(16))
    done = wait_terminal(store, job.id, timeout=90)
    elapsed = time.monotonic() - started
    assert done.status == "succeeded"
    statuses = [j.status for j in store.iter_judgments(job.id)]
    assert statuses == ["ok"] * 16  # every 429ed unit was retried, none stored as failed
    assert done.error_units == 0
    requests = fake_provider.count
    assert requests >= 16 + 12
    assert done.calls == requests  # the held-back 429 attempts are counted too
    # One shared bucket: all the requests of both workers went at most 5/s (burst 5).
    assert elapsed >= (requests - 5) / (rpm / 60) * 0.95
    bucket = redis.Redis.from_url(redis_url).keys("judge:ratelimit:openai/fake-judge:*")
    assert bucket
    store.close()


def test_postgresql_store_shared_by_workers(tmp_path, redis_url, pg_database_url,
                                            spawn_worker, fake_provider, monkeypatch):
    from tests.fixtures.services import make_service_env, wait_ready

    env = make_service_env(tmp_path, redis_url, database_url=pg_database_url)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    fake_provider.latency_ms = 50
    store = Store.open(pg_database_url)
    a = spawn_worker(env, concurrency=2, wait=False)
    b = spawn_worker(env, concurrency=2, wait=False)
    wait_ready(a)
    wait_ready(b)
    job, _ = service.submit(store, spec(fake_provider.url, rubrics=("tone", "safety"),
                                        dataset_hash="pg"), items(20))
    done = wait_terminal(store, job.id, timeout=90)
    assert done.status == "succeeded"
    ids = identities(store, job.id)
    assert len(ids) == 40 == len(set(ids)) == done.done_units == done.total_units
    assert set(done.summary["rubrics"]) == {"tone", "safety"}
    store.close()
