"""Helpers for the service tests: datasets, specs and waiting on the store."""

from __future__ import annotations

import time
from typing import Any

from judge.datasets import Item
from judge.models import JudgeModel
from judge.service import JobSpec, make_spec, resolve_rubrics
from judge.store import Store


def items(n: int, prefix: str = "it") -> list[Item]:
    """``n`` small items with distinct ids and texts."""
    return [Item(id=f"{prefix}{i:03d}", input=f"question {prefix}{i}",
                 output=f"a plain, polite answer number {i}") for i in range(n)]


def spec(api_base: str, *, rubrics: tuple[str, ...] = ("tone",), track: bool = False,
         dataset_hash: str = "h", **kwargs: Any) -> JobSpec:
    """A job spec against the fake provider (quick retries, no MLflow unless asked)."""
    judge_kw = {k: kwargs.pop(k) for k in ("rpm", "max_attempts") if k in kwargs}
    judge = JudgeModel(model="openai/fake-judge", api_base=api_base, timeout=10,
                       backoff_base=0.05, backoff_max=0.2, retry_after_max=0.2, **judge_kw)
    return make_spec(dataset="test-items", dataset_hash=dataset_hash, pack=None,
                     rubrics=resolve_rubrics(None, rubrics), judges=[judge], track=track,
                     **kwargs)


def wait_terminal(store: Store, job_id: str, timeout: float = 60.0) -> Any:
    """Poll the store until the job ends; fail with its state if it does not."""
    deadline = time.monotonic() + timeout
    job = store.get_job(job_id)
    while time.monotonic() < deadline:
        job = store.get_job(job_id)
        if job.status.terminal:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not end in {timeout}s: {job.status} "
                         f"{job.done_units}/{job.total_units}; chunks "
                         f"{[(c.index, c.status, c.attempts) for c in store.unfinished_chunks(job_id)]}")


def identities(store: Store, job_id: str) -> list[tuple]:
    """The identity of every stored judgment of a job (one row each)."""
    return [j.identity for j in store.iter_judgments(job_id)]
