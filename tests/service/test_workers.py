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
