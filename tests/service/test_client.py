"""judge.client against a real uvicorn serving the API, and directly on the store;
`judge tokens create`."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from judge.api import create_app
from judge.client import Client
from judge.errors import JobError
from judge.store import Store
from tests.fixtures.services import free_port


@pytest.fixture
def served(judge_home, fake_provider) -> Iterator[tuple[str, Store]]:
    store = Store.open()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(store), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", store
    server.should_exit = True
    thread.join(10)
    store.close()


def _items(n: int) -> list[dict]:
    return [{"id": f"p{i}", "input": f"q{i}", "output": f"a{i}"} for i in range(n)]


def test_client_over_http_submit_wait_judgments(served, fake_provider):
    url, store = served
    token = store.create_token("submitter", "pipeline").token
    client = Client(url=url, token=token)
    judges = [{"model": "openai/fake", "api_base": fake_provider.url}]
    job = client.submit(_items(7), rubrics=["tone"], judges=judges, track=False,
                        idempotency_key="pipe-1")
    final = job.wait(timeout=60, poll=0.1)
    assert final["status"] == "succeeded" and final["done_units"] == 7
    got = job.judgments(page_size=3)  # three pages
    assert sorted(j.item_id for j in got) == [f"p{i}" for i in range(7)]
    again = client.submit(_items(7), rubrics=["tone"], judges=judges, track=False,
                          idempotency_key="pipe-1")
    assert again.id == job.id
    viewer = Client(url=url, token=store.create_token("viewer", "dash").token)
    assert viewer.job(job.id).status()["status"] == "succeeded"
    with pytest.raises(JobError, match="403"):
        viewer.submit(_items(1), rubrics=["tone"], judges=judges)
    with pytest.raises(JobError, match="401"):
        Client(url=url).job(job.id).status()


def test_client_direct_on_the_store_in_process(judge_home, fake_provider):
    store = Store.open()
    client = Client(store=store)
    job = client.submit(_items(4), rubrics=["tone", "safety"],
                        judges=[{"model": "openai/fake", "api_base": fake_provider.url}],
                        track=False)
    final = job.wait(timeout=60, poll=0.1)
    assert final["status"] == "succeeded" and final["done_units"] == 8
    assert len(job.judgments()) == 8
    assert final["summary"]["rubrics"]["safety"]["total"] == 4
    store.close()


def test_tokens_create_prints_once_and_stores_a_hash(judge_home, capsys):
    from judge.cli import main

    main(["tokens", "create", "--role", "rater", "--name", "expert-1", "--json"])
    issued = json.loads(capsys.readouterr().out)
    assert issued["role"] == "rater" and issued["name"] == "expert-1"
    store = Store.open()
    assert store.role_for_token(issued["token"]) == "rater"
    main(["tokens", "list", "--json"])
    listed = json.loads(capsys.readouterr().out)
    assert [t["name"] for t in listed] == ["expert-1"]
    assert issued["token"] not in json.dumps(listed)
    store.close()
