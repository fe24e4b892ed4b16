"""Thin Celery tasks: they take ids, open the store and call :mod:`judge.service`."""

from __future__ import annotations

import threading
from typing import Any

from judge.errors import JudgeError
from tasks.celery import app

_STORE: Any = None
_STORE_LOCK = threading.Lock()


def worker_store() -> Any:
    """This worker process's store (opened once, after any fork)."""
    global _STORE
    with _STORE_LOCK:
        if _STORE is None:
            from judge.store import Store

            _STORE = Store.open()
        return _STORE


@app.task(name="judge.run_chunk", bind=True, acks_late=True, max_retries=12)
def run_chunk(self: Any, job_id: str, index: int) -> str:
    """Run chunk ``index`` of job ``job_id``; idempotent, so safe to redeliver."""
    from judge.service import ChunkRetry, fail_job
    from judge.service import run_chunk as run
    from judge.store import JobNotFoundError

    store = worker_store()
    final = self.request.retries >= self.max_retries
    try:
        # The task id is the lease owner: a Celery retry (same id) renews the lease.
        return run(store, job_id, index, owner=self.request.id or f"{job_id}:{index}",
                   final=final)
    except ChunkRetry as exc:
        raise self.retry(countdown=exc.countdown) from None
    except JobNotFoundError:
        return "unknown_job"  # a message for a job this store does not have: drop it
    except JudgeError as exc:
        fail_job(store, job_id, str(exc))
        return "failed"


@app.task(name="judge.sweep", acks_late=True)
def sweep(job_id: str | None = None) -> int:
    """Re-dispatch expired or stalled chunks (see :func:`judge.service.sweep`)."""
    from judge.service import sweep as do_sweep

    return do_sweep(worker_store(), job_id=job_id)
