"""The Python client for pipelines: queue a judge job and read it back.

Two transports, one interface::

    from judge.client import Client

    client = Client(url="http://judge.internal:8000", token="...")   # the HTTP API
    client = Client(broker="redis://redis:6379/0")                   # store + broker directly
    job = client.submit(items, rubrics=["tone"], judges=["openai/gpt-4.1-mini"],
                        idempotency_key="nightly-2026-01-01")
    job.wait(timeout=3600)
    print(job.status()["summary"])
    verdicts = job.judgments()

With ``broker`` (or ``JUDGE_BROKER_URL``) the client writes the job to the store
(``JUDGE_DATABASE_URL``) and sends the chunks to the workers itself; with neither
``url`` nor a broker it runs the job in this process (the embedded defaults).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from judge.datasets import Item
from judge.errors import JobError, JudgeError
from judge.judgments import Judgment

TERMINAL = frozenset({"succeeded", "failed", "cancelled", "budget_exceeded"})


class Client:
    """A connection to the judge service.

    Args:
        url: base URL of the HTTP API (``judge serve``); uses ``token``.
        broker: Celery broker URL; default ``JUDGE_BROKER_URL``. Ignored with ``url``.
        token: bearer token for the HTTP API.
        store: a :class:`judge.store.Store` (default: ``Store.open()``), without ``url``.
        timeout: seconds per HTTP request.
    """

    def __init__(self, url: str | None = None, *, broker: str | None = None,
                 token: str | None = None, store: Any = None, timeout: float = 30.0):
        self.url = url.rstrip("/") if url else None
        self.broker = broker
        self.token = token
        self.timeout = timeout
        self._store = store
        self._http: Any = None

    # -- transport ---------------------------------------------------------------------

    @property
    def store(self) -> Any:
        if self._store is None:
            from judge.store import Store

            self._store = Store.open()
        return self._store

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        if self._http is None:
            headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
            self._http = httpx.Client(base_url=self.url or "", headers=headers,
                                      timeout=self.timeout)
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:500]
            raise JobError(f"{method} {path} failed with HTTP {response.status_code}: {message}")
        return response.json()

    # -- jobs --------------------------------------------------------------------------

    def submit(self, items: Iterable[Item | dict[str, Any]] | str | Path, *,
               judges: Sequence[str | dict[str, Any]], pack: str | None = None,
               rubrics: Sequence[str] = (), samples: int = 1, concurrency: int = 16,
               jury: str = "mean", use_cache: bool = True, experiment: str = "judge",
               idempotency_key: str | None = None, max_cost_usd: float | None = None,
               max_calls: int | None = None, track: bool = True,
               dataset: str | None = None) -> JobHandle:
        """Queue a job: items (or a JSONL/CSV path) × rubrics × judge models.

        ``judges`` are litellm model strings or dicts of :class:`judge.models.JudgeModel`
        fields (``{"model": ..., "api_base": ..., "rpm": ...}``). The same arguments
        with the same ``idempotency_key`` return the job already queued.
        """
        if isinstance(items, str | Path):
            from judge.datasets import read_items

            dataset = dataset or str(items)
            items = read_items(Path(items))
        rows = [i if isinstance(i, Item) else Item.model_validate(i) for i in items]
        judge_specs = [{"model": j} if isinstance(j, str) else dict(j) for j in judges]
        budget: dict[str, Any] = {"max_cost_usd": max_cost_usd, "max_calls": max_calls}
        if self.url:
            body = {"items": [i.model_dump(mode="json") for i in rows], "pack": pack,
                    "rubrics": list(rubrics), "judges": judge_specs, "samples": samples,
                    "concurrency": concurrency, "jury": jury, "use_cache": use_cache,
                    "experiment": experiment, "idempotency_key": idempotency_key,
                    "budget": budget, "track": track, "dataset": dataset or "client"}
            data = self._request("POST", "/v1/jobs", json=body)
            return JobHandle(self, data["id"])
        from judge import service
        from judge.models import JudgeModel

        spec = service.make_spec(
            dataset=dataset or "client", dataset_hash=items_hash(rows), pack=pack,
            rubrics=service.resolve_rubrics(pack, rubrics),
            judges=[JudgeModel.model_validate(j) for j in judge_specs], samples=samples,
            concurrency=concurrency, jury=jury, use_cache=use_cache, experiment=experiment,
            budget=service.Budget(**budget), track=track)
        job, _ = service.submit(self.store, spec, rows, idempotency_key=idempotency_key,
                                broker_url=self.broker)
        return JobHandle(self, job.id)

    def job(self, job_id: str) -> JobHandle:
        """A handle on an existing job."""
        return JobHandle(self, job_id)

    def close(self) -> None:
        """Close the HTTP connection (the store stays open if it was given)."""
        if self._http is not None:
            self._http.close()


class JobHandle:
    """A queued job: poll it, wait for it, read its judgments, cancel it."""

    def __init__(self, client: Client, job_id: str):
        self.client = client
        self.id = job_id

    def __repr__(self) -> str:
        return f"JobHandle({self.id!r})"

    def status(self) -> dict[str, Any]:
        """The job as JSON: status, counters (``done_units``/``total_units``), summary."""
        if self.client.url:
            return self.client._request("GET", f"/v1/jobs/{self.id}")
        return job_view(self.client.store.get_job(self.id))

    def wait(self, timeout: float | None = None, poll: float = 1.0,
             on_progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Poll until the job ends; returns its final status.

        Raises:
            JobError: ``timeout`` seconds passed first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        last_sweep = time.monotonic()
        while True:
            state = self.status()
            if on_progress is not None:
                on_progress(state)
            if state["status"] in TERMINAL and state.get("summary") is not None:
                return state
            if deadline is not None and time.monotonic() > deadline:
                raise JobError(f"Job {self.id} still {state['status']} after {timeout}s "
                               f"({state['done_units']}/{state['total_units']} units).")
            if not self.client.url and time.monotonic() - last_sweep > 5:
                self._sweep()
                last_sweep = time.monotonic()
            time.sleep(poll)

    def _sweep(self) -> None:
        from judge.config import get_settings
        from judge.service import sweep

        broker = self.client.broker or get_settings().broker_url
        if broker:
            try:
                sweep(self.client.store, job_id=self.id, broker_url=broker)
            except Exception:  # the broker away for a moment: the workers sweep too
                pass

    def judgments(self, page_size: int = 1000) -> list[Judgment]:
        """Every stored judgment of the job."""
        if not self.client.url:
            return list(self.client.store.iter_judgments(self.id))
        out: list[Judgment] = []
        offset: int | None = 0
        while offset is not None:
            page = self.client._request("GET", f"/v1/jobs/{self.id}/judgments",
                                        params={"offset": offset, "limit": page_size})
            out += [Judgment.model_validate(j) for j in page["items"]]
            offset = page["next_offset"]
        return out

    def cancel(self) -> dict[str, Any]:
        """Cancel the job; what is done is kept."""
        if self.client.url:
            return self.client._request("POST", f"/v1/jobs/{self.id}/cancel")
        from judge.service import cancel_job

        return job_view(cancel_job(self.client.store, self.id))


def job_view(job: Any) -> dict[str, Any]:
    """A job record as the JSON the API, the CLI and the client return."""
    data = job.model_dump(mode="json")
    data["progress"] = (job.done_units / job.total_units) if job.total_units else 1.0
    return data


def items_hash(items: Sequence[Item]) -> str:
    """Content hash of inline items (the dataset hash of a job without a file)."""
    import hashlib
    import json

    h = hashlib.sha256()
    for i in items:
        h.update(json.dumps(i.model_dump(mode="json"), sort_keys=True).encode())
        h.update(b"\n")
    return h.hexdigest()


__all__ = ["Client", "JobHandle", "JudgeError", "items_hash", "job_view"]
