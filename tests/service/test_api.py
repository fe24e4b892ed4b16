"""The HTTP API in-process (no broker): roles on every route, uploads, 422s, 413s."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from judge.api import create_app
from judge.store import Store

ROUTES = [
    ("GET", "/v1/jobs"),
    ("GET", "/v1/jobs/{job}"),
    ("GET", "/v1/jobs/{job}/judgments"),
    ("POST", "/v1/jobs/{job}/cancel"),
    ("GET", "/v1/packs"),
    ("GET", "/v1/rubrics"),
    ("POST", "/v1/jobs"),
]
WRITES = {("POST", "/v1/jobs/{job}/cancel"), ("POST", "/v1/jobs")}


@pytest.fixture
def api(judge_home, fake_provider) -> Iterator[tuple[TestClient, Store, dict[str, str]]]:
    store = Store.open()
    tokens = {role: store.create_token(role, f"t-{role}").token
              for role in ("admin", "submitter", "rater", "viewer")}
    with TestClient(create_app(store, max_upload_bytes=20_000)) as client:
        yield client, store, tokens
    store.close()


def _body(api_base: str, n: int = 3, **extra) -> dict:
    return {"items": [{"id": f"x{i}", "input": f"q{i}", "output": f"a{i}"} for i in range(n)],
            "rubrics": ["tone"], "judges": [{"model": "openai/fake", "api_base": api_base}],
            "track": False, **extra}


def _wait(client: TestClient, job_id: str, token: str) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}", headers=_auth(token)).json()
        if job["status"] in ("succeeded", "failed", "cancelled", "budget_exceeded") \
                and job["summary"] is not None:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not end: {job}")


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_submit_inline_runs_in_process_and_pages_judgments(api, fake_provider):
    client, store, tokens = api
    r = client.post("/v1/jobs", json=_body(fake_provider.url, n=5), headers=_auth(tokens["submitter"]))
    assert r.status_code == 202, r.text
    job = _wait(client, r.json()["id"], tokens["viewer"])
    assert job["status"] == "succeeded" and job["done_units"] == job["total_units"] == 5
    page1 = client.get(f"/v1/jobs/{job['id']}/judgments", params={"limit": 3},
                       headers=_auth(tokens["rater"])).json()
    page2 = client.get(f"/v1/jobs/{job['id']}/judgments",
                       params={"offset": page1["next_offset"], "limit": 3},
                       headers=_auth(tokens["rater"])).json()
    assert page1["total"] == 5 and len(page1["items"]) == 3 and page1["next_offset"] == 3
    assert len(page2["items"]) == 2 and page2["next_offset"] is None
    got = {j["item_id"] for j in page1["items"] + page2["items"]}
    assert got == {f"x{i}" for i in range(5)}


def test_same_idempotency_key_returns_the_existing_job(api, fake_provider):
    client, store, tokens = api
    body = _body(fake_provider.url, idempotency_key="nightly-1")
    first = client.post("/v1/jobs", json=body, headers=_auth(tokens["admin"]))
    second = client.post("/v1/jobs", json=body, headers=_auth(tokens["submitter"]))
    assert first.status_code == 202 and second.status_code == 200
    assert first.json()["id"] == second.json()["id"] and second.json()["created"] is False
    _wait(client, first.json()["id"], tokens["admin"])
    assert len(store.list_jobs()) == 1
    other = client.post("/v1/jobs", json={**body, "samples": 2,
                                           "judges": [{"model": "openai/fake", "temperature": 0.5,
                                                       "api_base": fake_provider.url}]},
                        headers=_auth(tokens["admin"]))
    assert other.status_code == 422 and "nightly-1" in other.json()["error"]["message"]


def test_upload_file_multipart(api, fake_provider, tmp_path):
    client, _store, tokens = api
    lines = "\n".join(json.dumps({"id": f"u{i}", "question": f"q{i}", "answer": f"a{i}"})
                      for i in range(4))
    spec = {"rubrics": ["tone"], "judges": [{"model": "openai/fake", "api_base": fake_provider.url}],
            "mapping": {"input": "question", "output": "answer"}, "track": False}
    r = client.post("/v1/jobs", files={"file": ("items.jsonl", lines.encode(), "application/x-ndjson")},
                    data={"spec": json.dumps(spec)}, headers=_auth(tokens["submitter"]))
    assert r.status_code == 202, r.text
    job = _wait(client, r.json()["id"], tokens["viewer"])
    assert job["status"] == "succeeded" and job["total_units"] == 4


@pytest.mark.parametrize("method,path", ROUTES)
def test_roles_on_every_route(api, fake_provider, method, path):
    client, store, tokens = api
    job_id = client.post("/v1/jobs", json=_body(fake_provider.url, n=1),
                         headers=_auth(tokens["admin"])).json()["id"]
    _wait(client, job_id, tokens["admin"])
    url = path.format(job=job_id)
    body = _body(fake_provider.url, n=1) if path == "/v1/jobs" and method == "POST" else None

    def call(headers: dict[str, str]):
        return client.request(method, url, json=body, headers=headers)

    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic x"}):
        r = call(headers)
        assert r.status_code == 401 and "message" in r.json()["error"], (headers, r.text)
    for role, token in tokens.items():
        r = call(_auth(token))
        allowed = role in ("admin", "submitter") or (method, path) not in WRITES
        if allowed:
            assert r.status_code in (200, 202), (role, r.text)
        else:
            assert r.status_code == 403, (role, r.text)
            assert role in r.json()["error"]["message"]


def test_healthz_needs_no_token(api):
    client, _store, _tokens = api
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok", "mode": "in-process"}


def test_clear_422s_and_404(api, fake_provider):
    client, _store, tokens = api
    h = _auth(tokens["submitter"])
    r = client.post("/v1/jobs", json={"items": [], "judges": []}, headers=h)
    assert r.status_code == 422
    locs = {tuple(d["loc"]) for d in r.json()["error"]["details"]}
    assert ("items",) in locs and ("judges",) in locs
    r = client.post("/v1/jobs", json={**_body(fake_provider.url), "jury": "vote"}, headers=h)
    assert r.status_code == 422 and "jury" in r.json()["error"]["message"]
    r = client.post("/v1/jobs", json={**_body(fake_provider.url), "rubrics": ["tonee"]}, headers=h)
    assert r.status_code == 422 and "tone" in r.json()["error"]["message"]
    r = client.post("/v1/jobs", content=b"{not json", headers={**h, "content-type": "application/json"})
    assert r.status_code == 422
    r = client.get("/v1/jobs/no-such-job", headers=h)
    assert r.status_code == 404 and "no-such-job" in r.json()["error"]["message"]


def test_oversized_upload_refused_with_413(api, fake_provider):
    client, store, tokens = api
    big = "x" * 30_000
    r = client.post("/v1/jobs", files={"file": ("items.jsonl", big.encode(), "text/plain")},
                    data={"spec": "{}"}, headers=_auth(tokens["submitter"]))
    assert r.status_code == 413 and "limit" in r.json()["error"]["message"]
    assert store.list_jobs() == []
