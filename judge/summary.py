"""Aggregation of judgments: over samples, over a jury of judges, over orders for pairwise
rubrics, and the per-rubric summary statistics that the CLI prints and MLflow logs."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from judge.judgments import ERROR_STATUSES, Judgment, Status

JURY_METHODS = ("mean", "median", "majority")


@dataclass
class RubricSummary:
    """Figures for one rubric (optionally one judge model) over a job's judgments.

    ``mean``/``std`` are over the scores of ``ok`` judgments only: an error or an
    abstention never contributes a number. ``pass_rate`` is over judgments with a
    verdict (``ok`` and ``check_failed``; a failed deterministic check is a fail).
    ``cost_usd`` is what this job spent: cached verdicts cost nothing again.

    For a pairwise rubric the unit is a pair judged in both orders: ``n`` counts the
    consistent pairs, ``mean`` is the win rate of ``output`` over ``output_b`` among them
    (a tie is worth 0.5), and ``inconsistent`` counts the pairs whose verdict flipped
    with the order (they enter no figure).
    """

    rubric_id: str
    judge_model: str | None = None
    n: int = 0
    mean: float | None = None
    std: float | None = None
    pass_rate: float | None = None
    errors: int = 0
    abstained: int = 0
    check_failed: int = 0
    total: int = 0
    cost_usd: float | None = None
    inconsistent: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize_rubric(
    rubric_id: str, judgments: Iterable[Judgment], judge_model: str | None = None
) -> RubricSummary:
    """Summarise the judgments of one rubric (and judge model, if given)."""
    s = RubricSummary(rubric_id=rubric_id, judge_model=judge_model)
    scores: list[float] = []
    verdicts: list[bool] = []
    costs: list[float] = []
    pairs: dict[tuple[str, str, int], dict[str, Judgment]] = defaultdict(dict)
    for j in judgments:
        s.total += 1
        if j.cost_usd is not None and not j.cached:
            costs.append(j.cost_usd)
        if j.order is not None:
            pairs[(j.item_id, j.judge_model, j.sample_index)][j.order] = j
        if j.status == Status.OK:
            if j.score is not None:
                scores.append(j.score)
            if j.passed is not None:
                verdicts.append(j.passed)
        elif j.status == Status.CHECK_FAILED:
            s.check_failed += 1
            verdicts.append(False)
        elif j.status == Status.ABSTAINED:
            s.abstained += 1
        elif j.status in ERROR_STATUSES:
            s.errors += 1
    if pairs:
        scores = []
        for pair in pairs.values():
            winner, flipped = reconcile_pair(pair.get("ab"), pair.get("ba"))
            if flipped:
                s.inconsistent += 1
            elif winner is not None:
                scores.append(PAIRWISE_SCORE[winner])
    s.n = len(scores)
    if scores:
        s.mean = statistics.fmean(scores)
        s.std = statistics.pstdev(scores) if len(scores) > 1 else 0.0
    if verdicts:
        s.pass_rate = sum(verdicts) / len(verdicts)
    s.cost_usd = sum(costs) if costs else None
    return s


def summarize(judgments: Iterable[Judgment]) -> dict[str, RubricSummary]:
    """Per-rubric summaries over every judge model."""
    by_rubric: dict[str, list[Judgment]] = defaultdict(list)
    for j in judgments:
        by_rubric[j.rubric_id].append(j)
    return {rid: summarize_rubric(rid, js) for rid, js in sorted(by_rubric.items())}


def summarize_by_judge(judgments: Iterable[Judgment]) -> dict[tuple[str, str], RubricSummary]:
    """Per (rubric, judge model) summaries, for juries."""
    groups: dict[tuple[str, str], list[Judgment]] = defaultdict(list)
    for j in judgments:
        groups[(j.rubric_id, j.judge_model)].append(j)
    return {k: summarize_rubric(k[0], js, k[1]) for k, js in sorted(groups.items())}


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def job_metrics(judgments: list[Judgment]) -> dict[str, float]:
    """The metrics logged for a job: ``<rubric>/<stat>``, per judge for juries, and totals."""
    metrics: dict[str, float] = {}
    for rid, s in summarize(judgments).items():
        _put_summary(metrics, rid, s)
    by_judge = summarize_by_judge(judgments)
    if len({k[1] for k in by_judge}) > 1:
        for (rid, model), s in by_judge.items():
            _put_summary(metrics, rid, s, model)
    # Tokens, cost and latency are what this job spent: a cached verdict made no call.
    calls = [j for j in judgments if not j.cached]
    metrics["judge/tokens_in"] = float(sum(j.tokens_in or 0 for j in calls))
    metrics["judge/tokens_out"] = float(sum(j.tokens_out or 0 for j in calls))
    costs = [j.cost_usd for j in calls if j.cost_usd is not None]
    if costs:
        metrics["judge/cost_usd"] = float(sum(costs))
    lat = [j.latency_ms for j in calls if j.latency_ms is not None]
    p50, p95 = _percentile(lat, 0.5), _percentile(lat, 0.95)
    if p50 is not None and p95 is not None:
        metrics["judge/latency_p50_ms"] = p50
        metrics["judge/latency_p95_ms"] = p95
    metrics["judge/judgments"] = float(len(judgments))
    metrics["judge/cached"] = float(sum(1 for j in judgments if j.cached))
    return metrics


def _put_summary(metrics: dict[str, float], rubric_id: str, s: RubricSummary,
                 judge_model: str | None = None) -> None:
    from judge.tracking import metric_key

    def put(stat: str, value: float) -> None:
        metrics[metric_key(rubric_id, stat, judge_model)] = float(value)

    for stat in ("mean", "pass_rate", "std"):
        value = getattr(s, stat)
        if value is not None:
            put(stat, value)
    put("n", s.n)
    put("errors", s.errors)
    put("abstained", s.abstained)
    put("check_failed", s.check_failed)
    if s.inconsistent:
        put("inconsistent", s.inconsistent)


# --- per-item aggregation ------------------------------------------------------------------


@dataclass
class ItemVerdict:
    """The aggregated verdict for one item on one rubric: over samples, orders and a jury.

    ``status`` is ``ok``, ``check_failed`` (settled by a deterministic check),
    ``inconsistent`` (pairwise: the verdict flipped with the order), ``tie`` (the judges
    or samples split evenly between labels) or ``no_verdict`` (no judge gave one).
    ``per_judge`` holds each judge's value after its samples were combined,
    ``sample_spread`` how far each judge's samples spread, and ``disagreement`` how far
    the judges disagree (the standard deviation of their scores, or for labels the share
    of judges not in the majority).
    """

    item_id: str
    rubric_id: str
    score: float | None
    label: str | None
    passed: bool | None
    status: str
    per_judge: dict[str, float | str | None] = field(default_factory=dict)
    sample_spread: dict[str, float] = field(default_factory=dict)
    disagreement: float | None = None
    inconsistent: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _majority(values: list[Any]) -> Any:
    counts = Counter(values).most_common()
    if len(counts) > 1 and counts[0][1] == counts[1][1]:
        return None  # a tie has no majority; reported, not broken arbitrarily
    return counts[0][0]


def combine_samples(js: list[Judgment], numeric: bool) -> tuple[float | str | None, float]:
    """Combine one judge's samples of a unit: the median score (``numeric``: likert) or
    the majority label (categorical labels; binary verdicts as ``"True"``/``"False"``).

    Returns the combined value (None without an ``ok`` sample, or for a tie between
    labels) and the spread: max - min of the scores, or the share of samples that
    disagree with the most common label.
    """
    ok = [j for j in js if j.status == Status.OK]
    if not ok:
        return None, 0.0
    if numeric:
        scores = [j.score for j in ok if j.score is not None]
        if not scores:
            return None, 0.0
        return statistics.median(scores), (max(scores) - min(scores))
    labels = [j.label if j.label is not None else str(j.passed) for j in ok]
    top_count = Counter(labels).most_common(1)[0][1]
    return _majority(labels), 1.0 - top_count / len(labels)


def reconcile_pair(ab: Judgment | None, ba: Judgment | None) -> tuple[str | None, bool]:
    """Reconcile a pairwise verdict judged in both orders.

    Returns the winner in item terms (``output``, ``output_b`` or ``tie``) and whether the
    two orders disagree. An order-dependent verdict has no winner: it is inconsistent.
    """

    def unshuffle(j: Judgment | None) -> str | None:
        if j is None or j.status != Status.OK or j.label is None:
            return None
        if j.label == "tie":
            return "tie"
        first_is_output = j.order != "ba"
        return "output" if (j.label == "a") == first_is_output else "output_b"

    a, b = unshuffle(ab), unshuffle(ba)
    if a is None or b is None:
        return None, False  # one order has no verdict: never settle it from the other alone
    if a != b:
        return None, True
    return a, False


PAIRWISE_SCORE = {"output": 1.0, "tie": 0.5, "output_b": 0.0}


def jury_score(values: list[float], method: str) -> float | None:
    """Combine the judges' scores by ``mean`` or ``median``."""
    if not values:
        return None
    return statistics.fmean(values) if method == "mean" else statistics.median(values)
