"""`judge run`, through the real CLI entry point: the fake provider over litellm's HTTP path,
the embedded SQLite store and the embedded MLflow store under a temp JUDGE_HOME."""

from __future__ import annotations

import json
import re
import shutil
import socket
import statistics
from pathlib import Path
from typing import Any

import pytest
import yaml

from judge.judgments import Status
from judge.store import Store
from judge.testing import FakeProvider, invalid_json, server_error, verdict
from judge.tracking import find_run, read_run_metrics
from tests.cli import run

ACME = Path(__file__).resolve().parent / "data" / "packs" / "acme"
JOB_RE = re.compile(r"job ([0-9a-f-]{36})")


@pytest.fixture
def acme(capsys: pytest.CaptureFixture[str], judge_home: Path) -> str:
    """The acme test pack, installed into the judge home with `judge packs install`."""
    code, _out, err = run(capsys, "packs", "install", str(ACME))
    assert code == 0, err
    return "acme"


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    path = tmp_path / "data.jsonl"
    rows = [{"id": f"q{k}", "input": f"How do I do task {k}?",
             "output": f"Step one, then step two for task {k}."} for k in range(6)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def judge_args(fake: FakeProvider, *models: str) -> list[str]:
    out = []
    for m in models or ("openai/some-model",):
        out += ["--judge-model", m]
    return [*out, "--api-base", fake.url, "--max-attempts", "2", "--timeout", "10"]


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    code, out, err = run(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def stored_ok_means(job_id: str) -> dict[str, float]:
    with Store.open() as store:
        judgments = store.judgments(job_id)
    by_rubric: dict[str, list[float]] = {}
    for j in judgments:
        if j.status == Status.OK and j.score is not None:
            by_rubric.setdefault(j.rubric_id, []).append(j.score)
    return {rid: statistics.fmean(v) for rid, v in by_rubric.items()}


def mlflow_runs(home: Path) -> list[Any]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    exp = client.get_experiment_by_name("judge")
    return client.search_runs([exp.experiment_id]) if exp is not None else []


# --- acceptance ------------------------------------------------------------------------


def test_run_prints_table_logs_mlflow_and_reruns_from_the_cache(
    capsys: pytest.CaptureFixture[str], fake_provider: FakeProvider, acme: str,
    dataset: Path, judge_home: Path,
) -> None:
    code, out, err = run(capsys, "run", str(dataset), "--pack", acme, *judge_args(fake_provider))
    assert code == 0, err
    rubric_ids = ("acme/clarity", "acme/refusal", "safety")
    assert all(rid in out for rid in rubric_ids) and "pass rate" in out and "…" not in out
    assert "18 judgments (0 cached), 18 provider calls" in out
    job_id = JOB_RE.search(out).group(1)  # type: ignore[union-attr]
    assert fake_provider.count == 18

    runs = mlflow_runs(judge_home)
    assert len(runs) == 1 and runs[0].data.tags["judge.job_id"] == job_id
    metrics = read_run_metrics(runs[0].info.run_id)
    means = stored_ok_means(job_id)
    assert set(means) == set(rubric_ids)
    for rid, mean in means.items():
        assert metrics[f"{rid}/mean"] == pytest.approx(mean)
        assert metrics[f"{rid}/n"] == 6 and metrics[f"{rid}/errors"] == 0
    assert {"judge/tokens_in", "judge/latency_p50_ms", "judge/latency_p95_ms"} <= set(metrics)

    # the same command again: no request, the same numbers
    again = run_json(capsys, "run", str(dataset), "--pack", acme, *judge_args(fake_provider))
    assert fake_provider.count == 18 and again["provider_calls"] == 0
    assert set(again) >= {"job_id", "status", "mlflow_run_id", "provider_calls", "summary",
                          "summary_by_judge", "skipped_missing_inputs", "gates_failed",
                          "warnings"}
    assert again["status"] == "succeeded" and again["job_id"] != job_id
    assert again["gates_failed"] == [] and again["warnings"] == []
    for rid in rubric_ids:
        s = again["summary"][rid]
        assert s["mean"] == pytest.approx(metrics[f"{rid}/mean"])
        assert set(s) >= {"mean", "std", "pass_rate", "n", "errors", "abstained",
                          "check_failed", "total", "cost_usd"}
    assert again["mlflow_run_id"] == find_run(again["job_id"])
    assert stored_ok_means(again["job_id"]) == pytest.approx(means)
    assert read_run_metrics(again["mlflow_run_id"])["judge/cached"] == 18

    # --no-cache asks again
    forced = run_json(capsys, "run", str(dataset), "--pack", acme, "--no-cache",
                      *judge_args(fake_provider))
    assert forced["provider_calls"] == 18 and fake_provider.count == 36


def test_changed_rubric_text_misses_the_cache(
    capsys: pytest.CaptureFixture[str], fake_provider: FakeProvider, judge_home: Path,
    dataset: Path, tmp_path: Path,
) -> None:
    pack = tmp_path / "acme"
    shutil.copytree(ACME, pack)
    assert run(capsys, "packs", "install", str(pack))[0] == 0
    args = ["run", str(dataset), "--rubric", "acme/clarity", "--rubric", "acme/refusal",
            *judge_args(fake_provider)]
    first = run_json(capsys, *args)
    assert first["provider_calls"] == 12
    # one word of one rubric changes; the pack is re-installed under a newer version
    clarity = pack / "rubrics" / "clarity.yaml"
    clarity.write_text(clarity.read_text().replace("Rate how clearly", "Judge how clearly"))
    manifest = yaml.safe_load((pack / "pack.yaml").read_text())
    manifest["version"] = "1.2.1"
    (pack / "pack.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    code, _out, err = run(capsys, "packs", "install", str(pack))
    assert code == 0, err
    second = run_json(capsys, *args)
    assert second["provider_calls"] == 6 and fake_provider.count == 18
    with Store.open() as store:
        js = store.judgments(second["job_id"])
    assert {(j.rubric_id, j.cached) for j in js} == {("acme/clarity", False),
                                                     ("acme/refusal", True)}


def test_garbage_answers_count_as_errors_and_never_enter_a_mean(
    capsys: pytest.CaptureFixture[str], fake_provider: FakeProvider, acme: str,
    dataset: Path, judge_home: Path,
) -> None:
    for k in (1, 3):
        fake_provider.script(invalid_json(), match=f"task {k}?", forever=True)
    data = run_json(capsys, "run", str(dataset), "--rubric", "acme/clarity",
                    *judge_args(fake_provider))
    with Store.open() as store:
        js = store.judgments(data["job_id"])
    bad = [j for j in js if j.status == Status.INVALID_OUTPUT]
    assert sorted(j.item_id for j in bad) == ["q1", "q3"]
    assert all(j.score is None and j.error for j in bad)
    s = data["summary"]["acme/clarity"]
    assert (s["errors"], s["n"]) == (2, 4)
    ok_mean = stored_ok_means(data["job_id"])["acme/clarity"]
    assert s["mean"] == pytest.approx(ok_mean)
    metrics = read_run_metrics(data["mlflow_run_id"])
    assert metrics["acme/clarity/errors"] == 2
    assert metrics["acme/clarity/mean"] == pytest.approx(ok_mean)


def test_jury_logs_per_judge_metrics(
    capsys: pytest.CaptureFixture[str], fake_provider: FakeProvider, acme: str,
    dataset: Path, judge_home: Path,
) -> None:
    code, out, err = run(capsys, "run", str(dataset), "--rubric", "acme/clarity",
                         *judge_args(fake_provider, "openai/judge-a", "openai/judge-b"))
    assert code == 0, err
    assert "per judge model" in out and "acme/clarity · openai/judge-b" in out
    job_id = JOB_RE.search(out).group(1)  # type: ignore[union-attr]
    metrics = read_run_metrics(find_run(job_id))  # type: ignore[arg-type]
    with Store.open() as store:
        js = store.judgments(job_id)
    for model in ("openai/judge-a", "openai/judge-b"):
        scores = [j.score for j in js if j.judge_model == model and j.status == Status.OK]
        assert len(scores) == 6
        assert metrics[f"acme/clarity/{model}/mean"] == pytest.approx(statistics.fmean(scores))
        assert metrics[f"acme/clarity/{model}/n"] == 6
    assert {r["model"] for r in fake_provider.requests} == {"judge-a", "judge-b"}


# --- options and exit codes ------------------------------------------------------------


def test_samples_at_temperature_zero_is_a_user_error(
    capsys: pytest.CaptureFixture[str], fake_provider: FakeProvider, acme: str, dataset: Path,
) -> None:
    code, out, err = run(capsys, "run", str(dataset), "--rubric", "acme/clarity",
                         "--samples", "3", *judge_args(fake_provider))
    assert code == 2 and "temperature 0" in err and "--samples 1" in err
    assert fake_provider.count == 0 and "Traceback" not in err + out


def test_samples_at_temperature_above_zero(
    capsys: pytest.CaptureFixture[str], fake_provider: FakeProvider, acme: str, dataset: Path,
) -> None:
    data = run_json(capsys, "run", str(dataset), "--rubric", "acme/clarity", "--samples", "3",
                    "--temperature", "0.7", *judge_args(fake_provider))
    assert data["provider_calls"] == 18 and data["summary"]["acme/clarity"]["total"] == 18
    assert {r["temperature"] for r in fake_provider.requests} == {0.7}


def test_fail_under_gates_exit_codes(
    capsys: pytest.CaptureFixture[str], fake_provider: FakeProvider, acme: str, dataset: Path,
) -> None:
    fake_provider.script(verdict(rationale="clear enough", score=2), forever=True)
    base = ["run", str(dataset), "--rubric", "acme/clarity", *judge_args(fake_provider)]
    code, out, _err = run(capsys, *base, "--fail-under", "acme/clarity=2.5")
    assert code == 1 and "gate failed" in out and "acme/clarity mean 2.0 < 2.5" in out
    code, out, err = run(capsys, *base, "--fail-under", "acme/clarity=2",
                         "--fail-under", "acme/clarity:pass_rate=1.0")
    assert code == 0, err
    code, out, _ = run(capsys, *base, "--fail-under", "acme/clarity=2.5", "--json")
    assert code == 1 and json.loads(out)["gates_failed"] == ["acme/clarity mean 2.0 < 2.5"]
    calls = fake_provider.count
    for bad in ("acme/clarity", "acme/clarity=high", "acme/clarity:median=3", "acme/clarty=3"):
        code, out, err = run(capsys, *base, "--fail-under", bad)
        assert code == 2 and "error:" in err and "Traceback" not in err, bad
    assert "Did you mean: acme/clarity" in err
    assert fake_provider.count == calls, "a bad gate is refused before any call"


def test_every_call_failing_exits_1(
    capsys: pytest.CaptureFixture[str], fake_provider: FakeProvider, acme: str, dataset: Path,
) -> None:
    fake_provider.script(server_error(503), forever=True)
    code, out, err = run(capsys, "run", str(dataset), "--rubric", "acme/clarity",
                         "--max-attempts", "1", "--judge-model", "openai/down",
                         "--api-base", fake_provider.url)
    assert code == 1 and "every judgment" in err and "acme/clarity" in out


def test_mlflow_unreachable_still_succeeds_with_a_warning(
    capsys: pytest.CaptureFixture[str], fake_provider: FakeProvider, acme: str, dataset: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    code, out, err = run(capsys, "run", str(dataset), "--rubric", "acme/clarity", "--json",
                         *judge_args(fake_provider))
    assert code == 0, err
    data = json.loads(out)
    assert data["status"] == "succeeded" and data["mlflow_run_id"] is None
    assert any("judge jobs log-mlflow" in w for w in data["warnings"])
    with Store.open() as store:
        assert store.count_judgments(data["job_id"], "ok") == 6
        assert store.get_job(data["job_id"]).status == "succeeded"


def test_out_writes_every_judgment(
    capsys: pytest.CaptureFixture[str], fake_provider: FakeProvider, acme: str, dataset: Path,
    tmp_path: Path,
) -> None:
    out_file = tmp_path / "judgments.jsonl"
    data = run_json(capsys, "run", str(dataset), "--rubric", "acme/clarity", "--out",
                    str(out_file), *judge_args(fake_provider))
    rows = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert len(rows) == 6 and {r["job_id"] for r in rows} == {data["job_id"]}
    assert {r["item_id"] for r in rows} == {f"q{k}" for k in range(6)}


def test_checks_settle_items_without_calls(
    capsys: pytest.CaptureFixture[str], fake_provider: FakeProvider, acme: str, tmp_path: Path,
) -> None:
    path = tmp_path / "d.jsonl"
    rows = [{"id": "ok", "input": "q", "output": "Open settings and reset."},
            {"id": "jargon", "input": "q", "output": "This is a P1 escalation, wait."}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = run_json(capsys, "run", str(path), "--rubric", "acme/clarity",
                    *judge_args(fake_provider))
    assert data["provider_calls"] == 1 and fake_provider.requests_matching("P1 escalation") == []
    assert data["summary"]["acme/clarity"]["check_failed"] == 1


def _pairwise_pack(root: Path) -> Path:
    pack = root / "duel"
    (pack / "rubrics").mkdir(parents=True)
    (pack / "pack.yaml").write_text(yaml.safe_dump({
        "name": "duel", "version": "0.1.0", "title": "Duel (test)", "domain": "testing",
        "description": "One pairwise rubric, for judge's tests.", "requires": ">=0.1",
        "rubrics": [{"file": "rubrics/better.yaml"}],
    }, sort_keys=False))
    (pack / "rubrics" / "better.yaml").write_text(yaml.safe_dump({
        "id": "duel/better", "version": "1.0.0", "dimension": "preference",
        "title": "Better answer", "description": "Which of two answers helps more.",
        "inputs": ["input", "output", "output_b"],
        "scale": {"type": "pairwise", "allow_tie": True},
        "instructions": "Pick the answer that helps the customer more.",
    }, sort_keys=False))
    return pack


def test_pairwise_rubric_judges_both_orders_and_reports_flips(
    capsys: pytest.CaptureFixture[str], fake_provider: FakeProvider, judge_home: Path,
    tmp_path: Path,
) -> None:
    code, _out, err = run(capsys, "packs", "install", str(_pairwise_pack(tmp_path)))
    assert code == 0, err
    path = tmp_path / "pairs.jsonl"
    rows = [{"id": f"p{k}", "input": f"question {k}", "output": f"answer A{k}",
             "output_b": f"answer B{k}"} for k in range(4)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # a position-biased judge: whatever is shown first wins, for p0 and p1
    for k in (0, 1):
        fake_provider.script(verdict(rationale="first", winner="a"), match=f"question {k}",
                             forever=True)
    # p2: `output` wins in both orders; p3: `output_b` wins in both orders
    from judge.datasets import Item
    from judge.packs import find_rubric
    from judge.prompts import build_messages

    rubric = find_rubric("duel/better")
    for k, ab, ba in ((2, "a", "b"), (3, "b", "a")):
        item = Item.model_validate(rows[k])
        for order, winner in (("ab", ab), ("ba", ba)):
            fake_provider.script(verdict(rationale="r", winner=winner),
                                 match=build_messages(rubric, item, order=order).user)
    code, out, err = run(capsys, "run", str(path), "--pack", "duel",
                         *judge_args(fake_provider))
    assert code == 0, err
    job_id = JOB_RE.search(out).group(1)  # type: ignore[union-attr]
    assert "flips" in out and "changed with the order" in out
    with Store.open() as store:
        js = store.judgments(job_id)
    assert sorted((j.item_id, j.order) for j in js) == [
        (f"p{k}", o) for k in range(4) for o in ("ab", "ba")]
    metrics = read_run_metrics(find_run(job_id))  # type: ignore[arg-type]
    assert metrics["duel/better/inconsistent"] == 2 and metrics["duel/better/n"] == 2
    # the win rate of `output` over the consistent pairs: p2 won, p3 lost
    assert metrics["duel/better/mean"] == pytest.approx(statistics.fmean([1.0, 0.0]))
    assert fake_provider.count == 8


def test_summary_table_never_truncates_ids_or_numbers(capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    from judge.cli.run_cmd import print_summary

    row = {"n": 123, "mean": 3.14159, "pass_rate": 0.875, "errors": 4, "abstained": 2,
           "check_failed": 1, "cost_usd": 0.01234, "inconsistent": 3}
    long_id = "healthcare/a-very-long-rubric-name-about-medication-safety-in-older-adults"
    capsys.readouterr()
    print_summary({long_id: row, f"{long_id} · openai/some-judge-model": row}, title="job t")
    out = capsys.readouterr().out
    assert long_id in out and f"{long_id} · openai/some-judge-model" in out
    for text in ("3.142", "87.5%", "123", "0.0123", "flips"):
        assert text in out
    assert "…" not in out


@pytest.mark.parametrize(("option", "value", "named"), [
    ("--temperature", "5", "temperature"), ("--timeout", "0", "timeout"),
    ("--max-attempts", "0", "max_attempts"), ("--concurrency", "0", "concurrency"),
])
def test_bad_judge_settings_are_user_errors(
    capsys: pytest.CaptureFixture[str], fake_provider: FakeProvider, acme: str, dataset: Path,
    option: str, value: str, named: str,
) -> None:
    code, out, err = run(capsys, "run", str(dataset), "--rubric", "acme/clarity",
                         *judge_args(fake_provider), option, value)
    assert code == 2 and named in err and "Traceback" not in err + out
    assert fake_provider.count == 0


def test_unapproved_judges_warn_and_require_calibrated_refuses(
    capsys: pytest.CaptureFixture[str], judge_home: Path, fake_provider: FakeProvider,
    dataset: Path,
) -> None:
    from judge.packs import find_rubric

    args = ["run", str(dataset), "--rubric", "tone", *judge_args(fake_provider)]
    code, _out, err = run(capsys, *args, "--require-calibrated")
    assert code == 2
    assert "--require-calibrated" in err and "openai/some-model on tone" in err
    assert fake_provider.count == 0  # refused before any judge call

    code, _out, err = run(capsys, *args)
    assert code == 0
    assert "not approved by calibration" in err

    # An approved calibration of this judge on this exact rubric version lifts both.
    tone = find_rubric("tone")
    with Store.open() as store:
        store.save_calibration(
            rubric_id=tone.id, rubric_version=tone.version, rubric_hash=tone.content_hash,
            judge_model="openai/some-model", prompt_hash=None, split="all",
            figures={"primary": "cohen_kappa_quadratic"}, approved=True)
    code, _out, err = run(capsys, *args, "--require-calibrated")
    assert code == 0, err
    assert "not approved" not in err
