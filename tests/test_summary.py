"""Aggregation of judgments: per-rubric summaries, job metrics, sample and pair reconciliation.

Judgments are built directly (they are plain data); expected figures are computed from the
same inputs with the standard library.
"""

from __future__ import annotations

import statistics
from typing import Any

import pytest

from judge.judgments import Judgment, Status
from judge.summary import (
    PAIRWISE_SCORE,
    combine_samples,
    job_metrics,
    jury_score,
    reconcile_pair,
    summarize,
    summarize_by_judge,
    summarize_rubric,
)


def jm(item: str = "i1", status: Status = Status.OK, **fields: Any) -> Judgment:
    base: dict[str, Any] = {"item_id": item, "rubric_id": "r", "rubric_version": "1.0.0",
                            "rubric_hash": "h", "judge_model": "openai/a", "status": status}
    return Judgment(**{**base, **fields})


def test_mean_and_std_are_over_ok_scores_only() -> None:
    js = [jm("1", score=4, passed=True), jm("2", score=2, passed=False),
          jm("3", Status.INVALID_OUTPUT, error="bad json"),
          jm("4", Status.PROVIDER_ERROR, error="500"),
          jm("5", Status.ABSTAINED, abstained=True),
          jm("6", Status.CHECK_FAILED, passed=False, score=1),
          jm("7", score=5, passed=True)]
    s = summarize_rubric("r", js)
    assert s.mean == pytest.approx(statistics.fmean([4, 2, 5]))
    assert s.std == pytest.approx(statistics.pstdev([4, 2, 5]))
    assert (s.n, s.errors, s.abstained, s.check_failed, s.total) == (3, 2, 1, 1, 7)
    # a failed check is a fail; errors and abstentions have no verdict
    assert s.pass_rate == pytest.approx(2 / 4)


def test_a_rubric_with_no_verdict_has_no_numbers() -> None:
    s = summarize_rubric("r", [jm(status=Status.INVALID_OUTPUT, error="x")])
    assert (s.mean, s.std, s.pass_rate, s.n, s.errors) == (None, None, None, 0, 1)
    metrics = job_metrics([jm(status=Status.INVALID_OUTPUT, error="x")])
    assert "r/mean" not in metrics and metrics["r/errors"] == 1 and metrics["r/n"] == 0


def test_cost_counts_calls_made_not_cached_verdicts() -> None:
    js = [jm("1", score=3, cost_usd=0.25, tokens_in=10, tokens_out=5, latency_ms=100),
          jm("2", score=3, cost_usd=0.5, tokens_in=20, tokens_out=7, latency_ms=300,
             cached=True),
          jm("3", score=3, latency_ms=200)]
    assert summarize_rubric("r", js).cost_usd == pytest.approx(0.25)
    m = job_metrics(js)
    assert m["judge/cost_usd"] == pytest.approx(0.25)
    assert (m["judge/tokens_in"], m["judge/tokens_out"]) == (10, 5)
    assert m["judge/latency_p50_ms"] == pytest.approx(statistics.median([100, 200]))
    assert (m["judge/judgments"], m["judge/cached"]) == (3, 1)
    unpriced = job_metrics([jm(score=3)])
    assert "judge/cost_usd" not in unpriced, "no price is not a cost of 0"


def test_latency_percentiles_interpolate() -> None:
    lat = [float(x) for x in range(1, 21)]
    m = job_metrics([jm(str(k), score=3, latency_ms=v) for k, v in enumerate(lat)])
    assert m["judge/latency_p50_ms"] == pytest.approx(statistics.median(lat))
    assert m["judge/latency_p95_ms"] == pytest.approx(statistics.quantiles(
        lat, n=20, method="inclusive")[18])


def test_job_metrics_names_rubric_stats_and_per_judge_stats_for_juries() -> None:
    js = [jm("1", score=4, passed=True, rubric_id="pack/x"),
          jm("1", score=2, passed=False, rubric_id="pack/x", judge_model="anthropic/b:1@x")]
    m = job_metrics(js)
    for stat in ("mean", "pass_rate", "std", "n", "errors", "abstained"):
        assert f"pack/x/{stat}" in m
    assert m["pack/x/mean"] == pytest.approx(3.0)
    assert m["pack/x/openai/a/mean"] == 4.0
    # characters MLflow refuses in a key ("@") are replaced, as judge.tracking.metric_key does
    assert m["pack/x/anthropic/b:1_x/mean"] == 2.0
    single = job_metrics(js[:1])
    assert not any(k.startswith("pack/x/openai") for k in single), "per-judge only for juries"
    assert set(summarize_by_judge(js)) == {("pack/x", "openai/a"), ("pack/x", "anthropic/b:1@x")}


def test_combine_samples_median_and_majority_with_spread() -> None:
    value, spread = combine_samples([jm(score=v) for v in (2, 5, 4)], numeric=True)
    assert (value, spread) == (statistics.median([2, 5, 4]), 3)
    ok_and_error = [jm(score=3), jm(status=Status.INVALID_OUTPUT, error="x")]
    assert combine_samples(ok_and_error, numeric=True) == (3, 0)
    labels = [jm(label="A"), jm(label="B"), jm(label="A")]
    value, spread = combine_samples(labels, numeric=False)
    assert value == "A" and spread == pytest.approx(1 / 3)
    tie = [jm(passed=True), jm(passed=False)]
    assert combine_samples(tie, numeric=False) == (None, 0.5), "a tie has no majority"
    assert combine_samples([jm(status=Status.ABSTAINED)], numeric=True) == (None, 0.0)


def test_reconcile_pair_unshuffles_orders_and_flags_flips() -> None:
    def pair(a: str | None, b: str | None, status: Status = Status.OK) -> tuple[Any, Any]:
        return (jm(label=a, order="ab", status=status),
                jm(label=b, order="ba", status=Status.OK))

    assert reconcile_pair(*pair("a", "b")) == ("output", False)
    assert reconcile_pair(*pair("b", "a")) == ("output_b", False)
    assert reconcile_pair(*pair("tie", "tie")) == ("tie", False)
    assert reconcile_pair(*pair("a", "a")) == (None, True), "position bias is inconsistent"
    assert reconcile_pair(*pair("a", "tie")) == (None, True)
    ab, _ = pair("a", "b")
    assert reconcile_pair(ab, None) == (None, False), "never settled from one order alone"
    assert reconcile_pair(*pair(None, "b", Status.INVALID_OUTPUT)) == (None, False)


def test_pairwise_summary_is_a_win_rate_over_consistent_pairs() -> None:
    def both(item: str, ab: str, ba: str, model: str = "openai/a") -> list[Judgment]:
        return [jm(item, label=ab, order="ab", judge_model=model),
                jm(item, label=ba, order="ba", judge_model=model)]

    js = both("1", "a", "b") + both("2", "b", "a") + both("3", "tie", "tie") + \
        both("4", "a", "a") + both("5", "a", "b", model="openai/b")
    s = summarize_rubric("r", js)
    expected = [PAIRWISE_SCORE[w] for w in ("output", "output_b", "tie", "output")]
    assert (s.n, s.inconsistent, s.total) == (4, 1, 10)
    assert s.mean == pytest.approx(statistics.fmean(expected))
    assert job_metrics(js)["r/inconsistent"] == 1
    assert summarize(js)["r"].as_dict() == s.as_dict()


def test_jury_score() -> None:
    assert jury_score([1, 2, 6], "mean") == pytest.approx(3.0)
    assert jury_score([1, 2, 6], "median") == 2
    assert jury_score([], "mean") is None
