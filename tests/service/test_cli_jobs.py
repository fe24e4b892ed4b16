"""``judge submit`` and ``judge jobs`` through judge.cli.main: in-process and on workers."""

from __future__ import annotations

import json
from pathlib import Path

from judge.store import Store
from tests.cli import run


def _dataset(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps({"id": f"c{i}", "input": f"q{i}", "output": f"a{i}"}) + "\n"
                            for i in range(n)))
    return path


def test_submit_in_process_idempotent_then_read_back(capsys, judge_home, fake_provider, tmp_path):
    data = _dataset(tmp_path, 6)
    args = ["submit", str(data), "-r", "tone", "-r", "safety", "-m", "openai/fake",
            "--api-base", fake_provider.url, "--idempotency-key", "ci-42", "--no-mlflow", "--json"]
    code, out, err = run(capsys, *args)
    assert code == 0, err
    first = json.loads(out)
    assert first["created"] is True and first["status"] == "succeeded"
    assert first["done_units"] == first["total_units"] == 12
    calls = fake_provider.count
    code, out, err = run(capsys, *args)
    second = json.loads(out)
    assert code == 0 and second["id"] == first["id"] and second["created"] is False
    assert fake_provider.count == calls  # nothing ran again

    code, out, _ = run(capsys, "jobs", "status", first["id"], "--json")
    assert json.loads(out)["summary"]["rubrics"]["tone"]["total"] == 6
    listed = json.loads(run(capsys, "jobs", "list", "--json")[1])
    assert [j["id"] for j in listed] == [first["id"]]
    out_file = tmp_path / "out.jsonl"
    code, out, _ = run(capsys, "jobs", "results", first["id"], "--out", str(out_file), "--json")
    rows = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert code == 0 and len(rows) == 12 and {r["job_id"] for r in rows} == {first["id"]}
    code, out, err = run(capsys, "jobs", "status", "nope")
    assert code == 2 and "nope" in err


def test_budget_exceeded_keeps_finished_judgments(capsys, judge_home, fake_provider, tmp_path):
    data = _dataset(tmp_path, 10)
    code, out, err = run(capsys, "submit", str(data), "-r", "tone", "-m", "openai/fake",
                         "--api-base", fake_provider.url, "--max-calls", "5", "-c", "1",
                         "--no-mlflow", "--json")
    job = json.loads(out)
    assert code == 1, err
    assert job["status"] == "budget_exceeded" and "budget" in job["error"]
    assert job["calls"] == 5 == fake_provider.count
    store = Store.open()
    assert store.count_judgments(job["id"]) == job["done_units"] == 5 < job["total_units"]
    assert job["summary"]["rubrics"]["tone"]["total"] == 5
    store.close()


def test_log_mlflow_for_an_existing_job(capsys, judge_home, fake_provider, tmp_path):
    from judge.tracking import find_run, read_judgments

    data = _dataset(tmp_path, 3)
    code, out, err = run(capsys, "submit", str(data), "-r", "tone", "-m", "openai/fake",
                         "--api-base", fake_provider.url, "--no-mlflow", "--json")
    job_id = json.loads(out)["id"]
    assert find_run(job_id) is None
    code, out, err = run(capsys, "jobs", "log-mlflow", job_id, "--json")
    assert code == 0, err
    run_id = json.loads(out)["mlflow_run_id"]
    assert find_run(job_id) == run_id
    assert len(read_judgments(run_id)) == 3
    status = json.loads(run(capsys, "jobs", "status", job_id, "--json")[1])
    assert status["mlflow_run_id"] == run_id


def test_submit_wait_on_two_workers_prints_what_judge_run_prints(
        capsys, service_env, spawn_worker, fake_provider, tmp_path, monkeypatch, repo_root):
    from judge.tracking import find_run
    from tests.fixtures.services import wait_ready

    service_env["JUDGE_CHUNK_UNITS"] = "20"
    monkeypatch.setenv("JUDGE_CHUNK_UNITS", "20")
    lines = (repo_root / "packs/finance/data/items.jsonl").read_text().splitlines()[:6]
    data = tmp_path / "finance.jsonl"
    data.write_text("\n".join(lines) + "\n")
    workers = [spawn_worker(service_env, concurrency=2, wait=False) for _ in range(2)]
    for w in workers:
        wait_ready(w)
    common = [str(data), "--pack", "finance", "-m", "openai/x", "--api-base", fake_provider.url]
    code, out, err = run(capsys, "submit", *common, "--wait", "--json")
    assert code == 0, err + workers[0].output()[-2000:]
    submitted = json.loads(out)
    assert submitted["status"] == "succeeded"
    assert submitted["done_units"] == submitted["total_units"] > 20
    assert find_run(submitted["id"]) == submitted["mlflow_run_id"] is not None
    monkeypatch.delenv("JUDGE_BROKER_URL")
    code, out, err = run(capsys, "run", *common, "--no-cache", "--json")
    assert code == 0, err
    ran = json.loads(out)
    assert submitted["summary"]["rubrics"] == ran["summary"]
