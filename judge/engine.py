"""The engine: fan out item × rubric × judge × sample (× order for pairwise rubrics) on
asyncio with a concurrency bound per judge model, settle what deterministic checks can
without a call, serve repeats from the content-addressed cache, write judgments to the
store in batches as they finish, and aggregate them."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from judge.checks import run_checks
from judge.datasets import Item
from judge.errors import JudgeError
from judge.judgments import Judgment, Status
from judge.rubrics import BinaryScale, CategoricalScale, LikertScale, Rubric
from judge.summary import (
    JURY_METHODS,
    PAIRWISE_SCORE,
    ItemVerdict,
    RubricSummary,
    _majority,
    combine_samples,
    job_metrics,
    jury_score,
    reconcile_pair,
    summarize,
    summarize_by_judge,
)

if TYPE_CHECKING:
    import pandas as pd

    from judge.models import JudgeModel, RateLimiter
    from judge.store import Store

#: statuses worth caching: a provider error or invalid output must be retried on a rerun.
_CACHEABLE = frozenset({Status.OK, Status.ABSTAINED})
_WRITE_BATCH = 256


@dataclass(frozen=True)
class Unit:
    """One judge call's worth of work."""

    item: Item
    rubric: Rubric
    judge: JudgeModel
    sample_index: int
    order: str | None


Calibrator = Callable[[float], float]


def missing_inputs(rubric: Rubric, item: Item) -> list[str]:
    """The fields a rubric needs that the item lacks (an empty ``input`` is allowed)."""
    return [f for f in rubric.inputs if f != "input" and not item.field(f)]


def plan_units(
    items: Iterable[Item], rubrics: Sequence[Rubric], judges: Sequence[JudgeModel], samples: int
) -> Iterator[Unit]:
    """Every unit of work, item-major so partial results cover whole items first.

    An item that lacks a field the rubric needs (a reference for factuality, a context for
    groundedness) is not judged on that rubric: a judge cannot assess what it is not shown.
    """
    for item in items:
        for rubric in rubrics:
            if missing_inputs(rubric, item):
                continue
            orders: tuple[str | None, ...] = ("ab", "ba") if rubric.pairwise else (None,)
            for judge in judges:
                for sample in range(samples):
                    for order in orders:
                        yield Unit(item, rubric, judge, sample, order)


def count_units(
    items: Iterable[Item], rubrics: Sequence[Rubric], judges: Sequence[Any], samples: int
) -> int:
    """How many units (and so judgments) the items make."""
    per = {r.id: (2 if r.pairwise else 1) * len(judges) * samples for r in rubrics}
    return sum(per[r.id] for item in items for r in rubrics if not missing_inputs(r, item))


def cache_key(unit: Unit, prompt_hash: str) -> str:
    """Content address of a unit's verdict: judge, sampling, rubric, prompt, item, sample.

    The judge is its model string and ``api_base``: ``openai/<name>`` served by two
    different OpenAI-compatible servers is two different judges.
    """
    j = unit.judge
    payload = json.dumps(
        [j.model, j.api_base, j.sampling_params(), unit.rubric.content_hash, prompt_hash,
         unit.item.content_key(), unit.sample_index, unit.order],
        default=str, sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def check_sampling(judges: Sequence[JudgeModel], samples: int) -> None:
    """Refuse several samples at temperature 0: they would repeat one verdict."""
    if samples < 1:
        raise JudgeError(f"samples must be at least 1, got {samples}.")
    cold = [j.model for j in judges if samples > 1 and j.temperature == 0]
    if cold:
        raise JudgeError(
            f"--samples {samples} with temperature 0 for {', '.join(cold)} would repeat one "
            "verdict. Set a temperature above 0 (e.g. --temperature 0.7) or use --samples 1."
        )


@dataclass
class EvaluationResult:
    """What an evaluation produced: every judgment, and aggregates over them."""

    judgments: list[Judgment]
    rubrics: dict[str, Rubric]
    judge_models: list[str]
    job_id: str | None = None
    provider_calls: int = 0
    jury: str = "mean"
    stopped: bool = False
    elapsed_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> dict[str, RubricSummary]:
        """Per-rubric figures (mean, pass rate, n, errors, abstained…)."""
        return summarize(self.judgments)

    @property
    def summary_by_judge(self) -> dict[tuple[str, str], RubricSummary]:
        """Per (rubric id, judge model) figures, for a jury."""
        return summarize_by_judge(self.judgments)

    def metrics(self) -> dict[str, float]:
        """The metrics logged to MLflow for this evaluation."""
        return job_metrics(self.judgments)

    def verdicts(self) -> list[ItemVerdict]:
        """One aggregated verdict per item and rubric (samples, orders, then the jury)."""
        return aggregate(self.judgments, self.rubrics, self.jury)

    def to_pandas(self) -> pd.DataFrame:
        """The judgments as a DataFrame, one row per judgment."""
        import pandas as pd

        return pd.DataFrame([j.model_dump(mode="json") for j in self.judgments])


def aggregate(
    judgments: Iterable[Judgment], rubrics: dict[str, Rubric], jury: str = "mean"
) -> list[ItemVerdict]:
    """Aggregate judgments into one verdict per (item, rubric)."""
    if jury not in JURY_METHODS:
        raise JudgeError(f"Unknown jury method '{jury}'. Options: {', '.join(JURY_METHODS)}.")
    groups: dict[tuple[str, str], dict[str, list[Judgment]]] = defaultdict(lambda: defaultdict(list))
    for j in judgments:
        groups[(j.item_id, j.rubric_id)][j.judge_model].append(j)
    out: list[ItemVerdict] = []
    for (item_id, rubric_id), by_judge in groups.items():
        rubric = rubrics.get(rubric_id)
        out.append(_aggregate_item(item_id, rubric_id, rubric, by_judge, jury))
    return out


def _aggregate_item(
    item_id: str, rubric_id: str, rubric: Rubric | None, by_judge: dict[str, list[Judgment]],
    jury: str,
) -> ItemVerdict:
    numeric = rubric is not None and isinstance(rubric.scale, LikertScale | CategoricalScale)
    categorical = rubric is not None and isinstance(rubric.scale, CategoricalScale)
    per_judge: dict[str, float | str | None] = {}
    spread: dict[str, float] = {}
    inconsistent = False
    checked = all(j.status == Status.CHECK_FAILED for js in by_judge.values() for j in js)
    for model, js in by_judge.items():
        if rubric is not None and rubric.pairwise:
            winners = []
            for sample in sorted({j.sample_index for j in js}):
                ab = next((j for j in js if j.sample_index == sample and j.order == "ab"), None)
                ba = next((j for j in js if j.sample_index == sample and j.order == "ba"), None)
                winner, flipped = reconcile_pair(ab, ba)
                inconsistent |= flipped
                if winner is not None:
                    winners.append(winner)
            per_judge[model] = _majority(winners) if winners else None
        elif categorical:
            # Labels combine by majority over samples; the jury then works on their scores.
            label_value, sp = combine_samples(js, numeric=False)
            per_judge[model] = (None if label_value is None
                                else rubric.scale.score_of(str(label_value)))  # type: ignore[union-attr]
            spread[model] = sp
        else:
            value, sp = combine_samples(js, numeric)
            per_judge[model] = value  # binary verdicts combine as the labels "True"/"False"
            spread[model] = sp
    values = [v for v in per_judge.values() if v is not None]
    score: float | None = None
    label: str | None = None
    disagreement: float | None = None
    if rubric is not None and rubric.pairwise:
        label = _majority(values) if values else None
        score = PAIRWISE_SCORE.get(label) if label else None
        disagreement = _label_disagreement(values)
    elif numeric:
        nums = [float(v) for v in values]
        score = jury_score(nums, "median" if jury == "median" else "mean")
        if jury == "majority" and nums:
            top = _majority(nums)
            score = float(top) if top is not None else None
        disagreement = statistics.pstdev(nums) if len(nums) > 1 else 0.0 if nums else None
        if isinstance(rubric.scale, CategoricalScale) and score is not None:  # type: ignore[union-attr]
            label = _nearest_label(rubric.scale, score)  # type: ignore[union-attr]
    else:
        label = _majority(values) if values else None
        disagreement = _label_disagreement(values)
    passed: bool | None = None
    if rubric is not None:
        if isinstance(rubric.scale, BinaryScale):
            passed = None if label is None else label == "True"
            score = None if passed is None else float(passed)
        elif score is not None and not rubric.pairwise:
            passed = rubric.passes(score=score)
    if checked:
        status, passed = Status.CHECK_FAILED.value, False
    elif inconsistent and label is None:
        status = "inconsistent"
    elif score is None and label is None:
        # Judges that answered but split evenly is a tie, not a missing verdict.
        status = "tie" if values else "no_verdict"
    else:
        status = Status.OK.value
    return ItemVerdict(item_id, rubric_id, score, label, passed, status, per_judge, spread,
                       disagreement, inconsistent)


def _label_disagreement(values: list[Any]) -> float | None:
    if not values:
        return None
    top = max(values.count(v) for v in set(values))
    return 1.0 - top / len(values)


def _nearest_label(scale: CategoricalScale, score: float) -> str:
    return min(scale.labels, key=lambda lab: abs(lab.score - score)).label


class _RpmLimiter:
    """Each judge's own ``rpm``, in this process (a shared limiter, e.g. the service's
    Redis token bucket, is passed to :func:`evaluate_async` instead)."""

    def __init__(self, judges: Sequence[JudgeModel]):
        from judge.models import LocalRateLimiter

        self._by_model = {j.model: LocalRateLimiter(j.rpm) for j in judges if j.rpm}

    async def acquire(self, model: str, tokens: int = 0) -> None:
        bucket = self._by_model.get(model)
        if bucket is not None:
            await bucket.acquire(model, tokens)


class _Sink:
    """Buffers finished judgments and writes them to the store and cache in batches."""

    def __init__(self, store: Store | None, use_cache: bool):
        self.store = store
        self.use_cache = use_cache
        self.pending: list[Judgment] = []
        self.cache_pending: dict[str, dict[str, Any]] = {}

    def add(self, judgment: Judgment, key: str | None) -> None:
        self.pending.append(judgment)
        if key is not None and self.use_cache and not judgment.cached \
                and judgment.status in _CACHEABLE:
            # The calibration map may change between runs: it is reapplied, not cached.
            payload = judgment.model_dump(mode="json",
                                          exclude={"job_id", "cached", "calibrated_score"})
            self.cache_pending[key] = payload

    def full(self) -> bool:
        return len(self.pending) >= _WRITE_BATCH

    def take(self) -> tuple[list[Judgment], dict[str, dict[str, Any]]]:
        """Hand over what is buffered and start a new buffer."""
        batch, cache = self.pending, self.cache_pending
        self.pending, self.cache_pending = [], {}
        return batch, cache

    def write(self, batch: list[Judgment], cache: dict[str, dict[str, Any]]) -> None:
        """Write one batch (in a worker thread: a store write must not stall the calls)."""
        if self.store is None:
            return
        if batch:
            self.store.write_judgments(batch)
        if cache:
            self.store.cache_put_many(cache)

    def flush(self) -> None:
        self.write(*self.take())


class _GcPause:
    """Fewer, cheaper garbage collections while an evaluation runs.

    A judge call allocates many short-lived objects (litellm, pydantic), and full
    collections walk every long-lived one (imported modules, finished judgments): about a
    tenth of the CPU per judgment. Objects alive at the start are frozen out of the
    collector and the young generation is collected less often; both are undone when the
    last concurrent evaluation in the process ends.
    """

    _depth = 0
    _saved: tuple[int, int, int] = (700, 10, 10)

    def __enter__(self) -> None:
        if _GcPause._depth == 0:
            _GcPause._saved = gc.get_threshold()
            gc.freeze()
            gen0, gen1, gen2 = _GcPause._saved
            gc.set_threshold(max(gen0, 20_000), gen1, gen2)
        _GcPause._depth += 1

    def __exit__(self, *exc: object) -> None:
        _GcPause._depth -= 1
        if _GcPause._depth == 0:
            gc.set_threshold(*_GcPause._saved)
            gc.unfreeze()


async def evaluate_async(
    items: Iterable[Item],
    rubrics: Sequence[Rubric],
    judges: Sequence[JudgeModel],
    *,
    samples: int = 1,
    concurrency: int = 16,
    jury: str = "mean",
    store: Store | None = None,
    job_id: str | None = None,
    use_cache: bool = True,
    limiter: RateLimiter | None = None,
    calibrators: dict[tuple[str, str], Calibrator] | None = None,
    progress: Callable[[Judgment], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> EvaluationResult:
    """Judge every item on every rubric with every judge; see :func:`evaluate`."""
    from judge.models import judge_once
    from judge.prompts import build_messages

    check_sampling(judges, samples)
    names = [j.model for j in judges]
    if len(set(names)) != len(names):
        # Judgments and the jury are keyed by model string: two judges must differ in it.
        raise JudgeError(f"A judge model is named twice: {names}. Each judge of a jury "
                         "needs its own model string.")
    if concurrency < 1:
        raise JudgeError(f"concurrency must be at least 1, got {concurrency}.")
    if jury not in JURY_METHODS:
        raise JudgeError(f"Unknown jury method '{jury}'. Options: {', '.join(JURY_METHODS)}.")
    items = list(items)
    if limiter is None and any(j.rpm for j in judges):
        limiter = _RpmLimiter(judges)
    started = time.perf_counter()
    prompt_hashes = {
        r.id: build_messages(r, items[0] if items else Item(id="-")).prompt_hash for r in rubrics
    }
    calibrators = calibrators or {}
    results: list[Judgment] = []
    sink = _Sink(store, use_cache)
    calls = 0
    stopped = False

    writing: asyncio.Task[None] | None = None

    def finish(j: Judgment, key: str | None) -> None:
        nonlocal writing
        if j.status == Status.OK and j.score is not None:
            cal = calibrators.get((j.rubric_hash, j.judge_model))
            if cal is not None:
                j.calibrated_score = float(cal(j.score))
        results.append(j)
        sink.add(j, key)
        if progress is not None:
            progress(j)
        # One batch in flight at a time, in a thread; meanwhile the buffer keeps filling.
        if sink.full() and (writing is None or writing.done()):
            if writing is not None:
                writing.result()  # a failed write surfaces here, not silently
            writing = asyncio.get_running_loop().create_task(
                asyncio.to_thread(sink.write, *sink.take()))

    # Deterministic checks and the cache settle what they can before any call is made.
    to_call: dict[str, list[tuple[Unit, str]]] = defaultdict(list)
    units = list(plan_units(items, rubrics, judges, samples))
    keys = {id(u): cache_key(u, prompt_hashes[u.rubric.id]) for u in units}
    cached: dict[str, dict[str, Any]] = {}
    if store is not None and use_cache:
        cached = store.cache_get_many(list(set(keys.values())))
    findings_memo: dict[tuple[str, str], list[Any]] = {}
    followers: dict[str, list[Unit]] = {}
    for u in units:
        memo_key = (u.item.id, u.rubric.id)
        if memo_key not in findings_memo:
            findings_memo[memo_key] = run_checks(u.rubric, u.item)
        findings = findings_memo[memo_key]
        key = keys[id(u)]
        if findings:
            finish(_check_judgment(u, findings, prompt_hashes[u.rubric.id], job_id), None)
        elif key in cached:
            finish(_from_cache(cached[key], u, job_id), key)
        elif use_cache and key in followers:
            # The same content twice in one job (two ids, one text): one call answers both.
            followers[key].append(u)
        else:
            followers[key] = []
            to_call[u.judge.model].append((u, key))

    async def worker(queue: list[tuple[Unit, str]]) -> None:
        nonlocal calls, stopped
        while queue:
            if should_stop is not None and should_stop():
                stopped = True
                return
            unit, key = queue.pop()
            calls += 1
            j = await judge_once(unit.judge, unit.rubric, unit.item, sample_index=unit.sample_index,
                                 order=unit.order, limiter=limiter, job_id=job_id)
            finish(j, key)
            waiting = followers.pop(key, [])
            if j.status in _CACHEABLE:
                payload = j.model_dump(mode="json", exclude={"job_id", "cached"})
                for f in waiting:
                    finish(_from_cache(payload, f, job_id), None)
            elif waiting:
                # No verdict to share: the next one with this content makes its own call.
                followers[key] = waiting[1:]
                queue.append((waiting[0], key))

    tasks = []
    for work in to_call.values():
        work.reverse()  # pop() from the end keeps the planned (item-major) order
        n = min(concurrency, len(work))
        tasks += [asyncio.create_task(worker(work)) for _ in range(n)]
    try:
        if tasks:
            with _GcPause():
                await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        if writing is not None:
            await writing
        await asyncio.to_thread(sink.flush)
    skipped = {
        r.id: n for r in rubrics
        if (n := sum(1 for item in items if missing_inputs(r, item)))
    }
    return EvaluationResult(
        extra={"skipped_missing_inputs": skipped},
        judgments=results,
        rubrics={r.id: r for r in rubrics},
        judge_models=[j.model for j in judges],
        job_id=job_id,
        provider_calls=calls,
        jury=jury,
        stopped=stopped,
        elapsed_s=time.perf_counter() - started,
    )


def _from_cache(payload: dict[str, Any], unit: Unit, job_id: str | None) -> Judgment:
    """A cached verdict as this job's judgment of ``unit`` (the same content, maybe another
    item id); the calibration map is reapplied, not copied."""
    data = dict(payload)
    data.update(job_id=job_id, cached=True, item_id=unit.item.id)
    data.pop("calibrated_score", None)
    return Judgment.model_validate(data)


def _check_judgment(unit: Unit, findings: list[Any], prompt_hash: str, job_id: str | None
                    ) -> Judgment:
    scores = [f.score_on_fail for f in findings if f.score_on_fail is not None]
    return Judgment(
        job_id=job_id, item_id=unit.item.id, rubric_id=unit.rubric.id,
        rubric_version=unit.rubric.version, rubric_hash=unit.rubric.content_hash,
        judge_model=unit.judge.model, prompt_hash=prompt_hash, sample_index=unit.sample_index,
        order=unit.order, status=Status.CHECK_FAILED, passed=False,
        score=min(scores) if scores else None,
        rationale="Settled by deterministic checks: " + "; ".join(
            f"{f.check_id} ({f.detail})" for f in findings),
        findings=[f.as_dict() for f in findings],
    )


def evaluate(
    items: Iterable[Item],
    rubrics: Sequence[Rubric | str],
    judges: Sequence[JudgeModel | str],
    **kwargs: Any,
) -> EvaluationResult:
    """Judge items on rubrics with one or more judge models (a jury), in-process.

    Args:
        items: the items to judge.
        rubrics: rubrics, or rubric ids resolved through the pack registry.
        judges: judge models, or litellm model strings.
        samples: verdicts per unit (needs temperature > 0 when above 1).
        concurrency: calls in flight per judge model.
        limiter: waited on before every call; default: each judge's ``rpm``, if set.
        jury: how several judges' scores combine: mean, median or majority.
        store: where judgments and the cache go (None: nowhere, and no cache).
        use_cache: serve repeats from the cache (``--no-cache`` sets it False).

    Returns:
        An :class:`EvaluationResult` with ``.judgments``, ``.summary`` and ``.to_pandas()``.
    """
    from judge.models import JudgeModel

    resolved = [_resolve_rubric(r) for r in rubrics]
    models = [j if isinstance(j, JudgeModel) else JudgeModel.parse(j) for j in judges]
    return asyncio.run(evaluate_async(items, resolved, models, **kwargs))


def _resolve_rubric(r: Rubric | str) -> Rubric:
    if isinstance(r, Rubric):
        return r
    from judge.packs import find_rubric

    return find_rubric(r)
