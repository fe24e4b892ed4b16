"""judge.tracking against a real MLflow SQLite store in a temp dir, read back with MlflowClient.

MLflow's first migration of a SQLite store takes seconds, so one migrated store is
made per module: tests share it (each in its own experiment), and the embedded-default
test starts from a copy of the freshly migrated database.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from judge import tracking
from judge.errors import JudgeError
from judge.judgments import Judgment, Status
from judge.tracking import TrackingError, log_calibration, log_job, metric_key


@dataclass(frozen=True)
class Store:
    template: Path  # a migrated, otherwise empty database
    uri: str  # the store the tests share


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    root = tmp_path_factory.mktemp("mlflow")
    template = root / "template" / "mlflow.db"
    template.parent.mkdir()
    MlflowClient(tracking_uri=f"sqlite:///{template}").search_experiments()  # migrates
    shared = root / "shared" / "mlflow.db"
    shared.parent.mkdir()
    shutil.copy(template, shared)
    return Store(template=template, uri=f"sqlite:///{shared}")


@pytest.fixture
def mlflow_uri(store: Store, judge_home: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    return store.uri


@pytest.fixture
def experiment(request: pytest.FixtureRequest) -> str:
    """A fresh experiment per test, so tests sharing the store do not see each other."""
    return "t-" + re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name)


def _judgments(job_id: str, n: int, rubric: str = "healthcare/triage") -> list[Judgment]:
    out = []
    for i in range(n):
        ok = i % 10 != 9
        out.append(Judgment(
            job_id=job_id, item_id=f"item-{i}", rubric_id=rubric, rubric_version="1.0.0",
            rubric_hash="h" * 16, judge_model="openai/judge-a", prompt_hash="p" * 16,
            status=Status.OK if ok else Status.INVALID_OUTPUT,
            score=float(1 + i % 5) if ok else None, passed=(i % 5 >= 2) if ok else None,
            rationale=f"rationale {i}", evidence=[f"quote {i}"],
            error=None if ok else "not JSON", tokens_in=100 + i, tokens_out=20,
            latency_ms=float(10 + i), cost_usd=None,
        ))
    return out


def _client(uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=uri)


def _runs_of(uri: str, experiment: str, job_id: str) -> list:
    client = _client(uri)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], f"tags.`judge.job_id` = '{job_id}'")


def test_import_judge_does_not_import_mlflow() -> None:
    code = "import sys, judge, judge.tracking; print('mlflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_log_job_round_trip(mlflow_uri: str, experiment: str, tmp_path: Path) -> None:
    judgments = _judgments("job-1", 30)
    oks = [j.score for j in judgments if j.status == Status.OK]
    metrics = {
        metric_key("healthcare/triage", "mean"): sum(oks) / len(oks),
        metric_key("healthcare/triage", "errors"): 3.0,
        "judge/tokens_in": float(sum(j.tokens_in or 0 for j in judgments)),
        "judge/cost_usd": None,  # no price known: skipped, never logged as 0
    }
    params = {"pack": "healthcare", "pack_version": "1.0.0", "judge_models": ["openai/judge-a"]}
    run_id = log_job("job-1", experiment=experiment, params=params, metrics=metrics,
                     judgments=judgments, tags={"team": "qa"})

    run = _client(mlflow_uri).get_run(run_id)
    assert run.info.run_name == "job-1"
    assert run.info.status == "FINISHED"
    assert run.data.tags["judge.job_id"] == "job-1"
    assert run.data.tags["team"] == "qa"
    assert run.data.params == {"pack": "healthcare", "pack_version": "1.0.0",
                               "judge_models": json.dumps(["openai/judge-a"])}
    assert run.data.metrics == {k: v for k, v in metrics.items() if v is not None}
    assert tracking.read_run_metrics(run_id) == run.data.metrics
    assert tracking.find_run("job-1") == run_id
    assert tracking.find_run("job-1", experiment=experiment) == run_id

    dst = _client(mlflow_uri).download_artifacts(run_id, tracking.TABLE_ARTIFACT, str(tmp_path))
    table = pd.read_json(dst, orient="split")
    assert list(table["item_id"]) == [j.item_id for j in judgments]
    assert list(table["status"]) == [j.status.value for j in judgments]
    assert table["evidence"].iloc[4] == ["quote 4"]
    assert table["score"].isna().sum() == 3
    # MLflow's own table reader finds it too.
    exp_id = _client(mlflow_uri).get_experiment_by_name(experiment).experiment_id
    loaded = _client(mlflow_uri).load_table(exp_id, tracking.TABLE_ARTIFACT, run_ids=[run_id])
    assert len(loaded) == len(judgments)
    assert len(tracking.read_judgments(run_id)) == len(judgments)


def test_rubric_ids_with_slash_give_nested_metric_keys(mlflow_uri: str, experiment: str) -> None:
    assert metric_key("healthcare/triage", "mean") == "healthcare/triage/mean"
    assert metric_key("safety", "pass_rate") == "safety/pass_rate"
    assert (metric_key("legal/citations", "mean", judge_model="ollama/llama3:8b")
            == "legal/citations/ollama/llama3:8b/mean")
    assert metric_key("finance/risk", "mean", judge_model="azure/gpt@eu") == \
        "finance/risk/azure/gpt_eu/mean"
    keys = [metric_key(r, s) for r in ("healthcare/triage", "legal/citations", "safety")
            for s in ("mean", "pass_rate", "std", "n", "errors", "abstained")]
    values = {k: float(i) for i, k in enumerate(keys)}
    run_id = log_job("job-keys", experiment=experiment, params={}, metrics=values, judgments=[])
    assert tracking.read_run_metrics(run_id) == values


def test_batches_beyond_mlflow_limits(mlflow_uri: str, experiment: str) -> None:
    params = {f"rubric/r{i:03d}/hash": f"{i:040x}" for i in range(250)}
    metrics = {metric_key(f"pack/r{i:03d}", s): float(i) for i in range(625)
               for s in ("mean", "pass_rate", "std", "n")}  # 2500 metrics
    tags = {f"t{i}": str(i) for i in range(150)}
    run_id = log_job("job-big", experiment=experiment, params=params, metrics=metrics,
                     judgments=[], tags=tags)
    run = _client(mlflow_uri).get_run(run_id)
    assert run.data.params == params
    assert run.data.metrics == metrics
    assert {k: run.data.tags[k] for k in tags} == tags


def test_logging_twice_updates_the_one_run(mlflow_uri: str, experiment: str) -> None:
    params = {"pack": "healthcare"}
    first = log_job("job-twice", experiment=experiment, params=params,
                    metrics={"healthcare/triage/mean": 3.0}, judgments=_judgments("job-twice", 8))
    second = log_job("job-twice", experiment=experiment, params={**params, "extra": "yes"},
                     metrics={"healthcare/triage/mean": 3.5},
                     judgments=_judgments("job-twice", 5))
    assert first == second
    assert [r.info.run_id for r in _runs_of(mlflow_uri, experiment, "job-twice")] == [first]
    run = _client(mlflow_uri).get_run(first)
    assert run.data.metrics["healthcare/triage/mean"] == 3.5
    assert run.data.params == {"pack": "healthcare", "extra": "yes"}
    history = _client(mlflow_uri).get_metric_history(first, "healthcare/triage/mean")
    assert sorted(m.value for m in history) == [3.0, 3.5]
    # The table is replaced, not appended to (mlflow's log_table would append).
    assert len(tracking.read_judgments(first)) == 5


def test_changed_param_is_refused_before_anything_is_written(
        mlflow_uri: str, experiment: str) -> None:
    run_id = log_job("job-param", experiment=experiment, params={"pack": "healthcare"},
                     metrics={"m/mean": 1.0}, judgments=[])
    with pytest.raises(TrackingError, match=r"pack: 'healthcare' -> 'legal'"):
        log_job("job-param", experiment=experiment, params={"pack": "legal"},
                metrics={"m/mean": 2.0}, judgments=[])
    assert tracking.read_run_metrics(run_id) == {"m/mean": 1.0}


def test_long_param_values_are_truncated_and_flagged(mlflow_uri: str, experiment: str) -> None:
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    long = "x" * (MAX_PARAM_VAL_LENGTH + 50)
    run_id = log_job("job-long", experiment=experiment, params={"rubric_ids": long, "k": "v"},
                     metrics={}, judgments=[])
    run = _client(mlflow_uri).get_run(run_id)
    assert len(run.data.params["rubric_ids"]) == MAX_PARAM_VAL_LENGTH
    assert run.data.params["rubric_ids"].endswith("[truncated]")
    assert run.data.tags["judge.truncated_params"] == "rubric_ids"
    # Logging the same job again compares the truncated values: no false conflict.
    assert log_job("job-long", experiment=experiment, params={"rubric_ids": long},
                   metrics={}, judgments=[]) == run_id


def test_extra_artifacts_files_and_directories(
        mlflow_uri: str, experiment: str, tmp_path: Path) -> None:
    report = tmp_path / "report"
    report.mkdir()
    (report / "report.md").write_text("# report\n")
    (report / "plot.png").write_bytes(b"\x89PNG fake")
    summary = tmp_path / "summary.json"
    summary.write_text("{}")
    run_id = log_job("job-art", experiment=experiment, params={}, metrics={}, judgments=[],
                     artifacts={"report": report, "": summary})
    client = _client(mlflow_uri)
    assert {a.path for a in client.list_artifacts(run_id)} == {
        "report", "summary.json", tracking.TABLE_ARTIFACT}
    assert {a.path for a in client.list_artifacts(run_id, "report")} == {
        "report/report.md", "report/plot.png"}


def test_missing_artifact_fails_before_a_run_exists(
        mlflow_uri: str, experiment: str, tmp_path: Path) -> None:
    with pytest.raises(TrackingError, match="does not exist"):
        log_job("job-missing", experiment=experiment, params={}, metrics={}, judgments=[],
                artifacts={"report": tmp_path / "nope"})
    assert tracking.find_run("job-missing") is None


def test_concurrent_jobs_in_threads_keep_to_their_runs(mlflow_uri: str, experiment: str) -> None:
    def one(i: int) -> str:
        return log_job(f"job-c{i}", experiment=experiment, params={"i": str(i)},
                       metrics={"r/mean": float(i)}, judgments=_judgments(f"job-c{i}", 20))

    with ThreadPoolExecutor(4) as pool:
        run_ids = list(pool.map(one, range(4)))
    assert len(set(run_ids)) == 4
    for i, run_id in enumerate(run_ids):
        run = _client(mlflow_uri).get_run(run_id)
        assert run.data.tags["judge.job_id"] == f"job-c{i}"
        assert run.data.metrics == {"r/mean": float(i)}
        assert run.data.params == {"i": str(i)}


def test_embedded_default_store_lives_in_judge_home(
        store: Store, judge_home: Path, experiment: str) -> None:
    assert "MLFLOW_TRACKING_URI" not in os.environ
    shutil.copy(store.template, judge_home / "mlflow.db")  # skip the slow first migration
    run_id = log_job("job-home", experiment=experiment, params={}, metrics={"a/mean": 1.0},
                     judgments=_judgments("job-home", 3))
    run = _client(f"sqlite:///{judge_home / 'mlflow.db'}").get_run(run_id)
    assert run.info.artifact_uri.startswith((judge_home / "mlartifacts").as_uri() + "/")
    on_disk = list((judge_home / "mlartifacts").rglob(tracking.TABLE_ARTIFACT))
    assert len(on_disk) == 1


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_tracking_server_fails_fast(
        judge_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_closed_port()}")
    start = time.monotonic()
    with pytest.raises(TrackingError) as info:
        log_job("job-down", params={"a": "b"}, metrics={"x/mean": 1.0},
                judgments=_judgments("job-down", 3))
    assert time.monotonic() - start < 10
    assert isinstance(info.value, JudgeError)
    assert info.value.exit_code == 1
    assert "job-down" in str(info.value)
    assert "judge jobs log-mlflow job-down" in str(info.value)


class _Unavailable(http.server.BaseHTTPRequestHandler):
    def _fail(self) -> None:
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _fail

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass


@pytest.fixture
def unavailable_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_server_answering_503_fails_fast_and_env_is_restored(
        judge_home: Path, monkeypatch: pytest.MonkeyPatch, unavailable_server: str) -> None:
    # MLflow's own defaults would retry this for minutes.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", unavailable_server)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    start = time.monotonic()
    with pytest.raises(TrackingError, match="503|retries"):
        log_job("job-503", params={}, metrics={}, judgments=[])
    assert time.monotonic() - start < 10
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ


@dataclass
class _Estimate:
    value: float
    low: float
    high: float


def test_log_calibration(mlflow_uri: str, experiment: str, tmp_path: Path) -> None:
    report = tmp_path / "calib"
    report.mkdir()
    (report / "report.html").write_text("<html></html>")
    stats = {
        "kappa_quadratic": (0.71, 0.62, 0.79),
        "krippendorff_alpha": {"value": 0.66, "low": 0.55, "high": 0.75},
        "spearman": _Estimate(0.8, 0.7, 0.88),
        "mae": 0.42,
        "human_ceiling": {"value": 0.74, "low": None, "high": None},
    }
    kwargs = dict(rubric_id="healthcare/triage", judge_model="openai/judge-a",
                  rubric_hash="r" * 16, prompt_hash="p" * 16, split="test", stats=stats,
                  rubric_version="1.2.0", report_dir=report, experiment=experiment,
                  params={"seed": 7})
    run_id = log_calibration(calibration_id="cal-1", **kwargs)
    run = _client(mlflow_uri).get_run(run_id)
    assert run.data.metrics == {
        "calibration/healthcare/triage/kappa_quadratic": 0.71,
        "calibration/healthcare/triage/kappa_quadratic_low": 0.62,
        "calibration/healthcare/triage/kappa_quadratic_high": 0.79,
        "calibration/healthcare/triage/krippendorff_alpha": 0.66,
        "calibration/healthcare/triage/krippendorff_alpha_low": 0.55,
        "calibration/healthcare/triage/krippendorff_alpha_high": 0.75,
        "calibration/healthcare/triage/spearman": 0.8,
        "calibration/healthcare/triage/spearman_low": 0.7,
        "calibration/healthcare/triage/spearman_high": 0.88,
        "calibration/healthcare/triage/mae": 0.42,
        "calibration/healthcare/triage/human_ceiling": 0.74,
    }
    assert run.data.params == {
        "judge_model": "openai/judge-a", "rubric_id": "healthcare/triage",
        "rubric_hash": "r" * 16, "prompt_hash": "p" * 16, "split": "test",
        "rubric_version": "1.2.0", "seed": "7",
    }
    assert [a.path for a in _client(mlflow_uri).list_artifacts(run_id, "report")] == [
        "report/report.html"]
    # Same calibration id: the same run; no id: a new run each time.
    assert log_calibration(calibration_id="cal-1", **kwargs) == run_id
    assert log_calibration(**kwargs) != run_id


def test_find_run_of_unknown_job_is_none(mlflow_uri: str) -> None:
    assert tracking.find_run("never-logged") is None
    assert tracking.find_run("never-logged", experiment="no-such-experiment") is None


def test_warm_up_then_log(mlflow_uri: str, experiment: str) -> None:
    thread = tracking.warm_up(experiment)
    thread.join(timeout=60)
    assert not thread.is_alive()
    run_id = log_job("job-warm", experiment=experiment, params={}, metrics={"a/n": 2.0},
                     judgments=[])
    assert tracking.read_run_metrics(run_id) == {"a/n": 2.0}


def test_warm_up_swallows_an_unreachable_server(
        judge_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_closed_port()}")
    thread = tracking.warm_up()
    thread.join(timeout=10)
    assert not thread.is_alive()
