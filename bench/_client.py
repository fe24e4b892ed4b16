"""One measured client, run in its own process: ``python bench/_client.py [--serve] SPEC``.

Each client does the same work — N items × the given rubrics, one verdict per pair, C
calls in flight — against the same fake endpoint, then prints one JSON line (a list: one result per concurrency level) with its
wall time, its own CPU time (user + system, all threads, from ``getrusage``) over the
timed section only, and its peak RSS. Imports, client construction, opening the store
and a short warm-up happen before the clock starts, so every client is measured warm.

Modes:
    aiohttp     POST the chat-completions body, parse it, validate the verdict: the floor.
    litellm     ``litellm.acompletion`` with the tools body instructor would send.
    instructor  ``instructor.from_litellm(litellm.acompletion)``, TOOLS mode, the judge's
                own verdict model (what ``judge.models`` stands on).
    judge       ``judge.engine.evaluate_async`` (``db``: a SQLite/PostgreSQL URL, or None).
    sinks       store writes per second (``db``), no provider involved.
    mlflow      ``judge.tracking.log_job`` of N synthetic judgments (``tracking_uri``).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

# A model litellm has a price for, as a real judge would be (the fake answers any name):
# an unknown name sends litellm down its slower "no price found" diagnostics per call.
MODEL = "openai/gpt-4.1-mini"
API_KEY = "sk-bench-fake"
WARMUP = 8


def make_items(n: int, offset: int = 0) -> list[Any]:
    """Synthetic items of realistic size (a question, a ~600-character answer)."""
    from judge.datasets import Item

    out = []
    for i in range(offset, offset + n):
        out.append(Item(
            id=f"item-{i}",
            input=f"Question {i}: how should a customer dispute a duplicate card charge "
                  f"of {i % 97 + 3}.{i % 89:02d} USD made on {1 + i % 28} March?",
            output=(f"Answer {i}. Thank you for reaching out. First, check whether the second "
                    "charge is a pending authorisation that will drop off within a few days. "
                    "If it has posted, contact the merchant with both transaction references "
                    "and ask for a refund of the duplicate. If the merchant does not respond "
                    "within ten business days, open a dispute with your card issuer through the "
                    "app or by phone, quoting the dates and amounts; keep copies of receipts "
                    "and of your messages to the merchant. " * 1),
        ))
    return out


class _GcClock:
    """Seconds spent in the garbage collector (all generations), via ``gc.callbacks``."""

    def __init__(self) -> None:
        import gc

        self.total = 0.0
        self.full = 0  # generation-2 collections: they walk every live object
        self._t0 = 0.0
        gc.callbacks.append(self._cb)

    def _cb(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.total += time.perf_counter() - self._t0
            self.full += info.get("generation") == 2


GC = _GcClock()


def _rusage() -> tuple[float, float]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024.0


def _judge(url: str) -> Any:
    from judge.models import JudgeModel

    return JudgeModel(model=MODEL, api_base=url, api_key=API_KEY)


def _rubrics(ids: list[str]) -> list[Any]:
    from judge.packs import find_rubric

    return [find_rubric(r) for r in ids]


def _requests(items: list[Any], rubrics: list[Any]) -> list[tuple[Any, list[dict[str, str]]]]:
    """(verdict model, messages) per call, built before the clock: prompts are judge work."""
    from judge.models import verdict_model
    from judge.prompts import build_messages

    return [(verdict_model(r), build_messages(r, it).messages) for it in items for r in rubrics]


def _start_profile(spec: dict[str, Any]) -> Any:
    if not spec.get("profile"):
        return None
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.001, async_mode="disabled")
    profiler.start()
    return profiler


def _stop_profile(profiler: Any, spec: dict[str, Any]) -> None:
    """Save the session (``PATH.pyisession``) and a text tree (``PATH.txt``)."""
    if profiler is None:
        return
    profiler.stop()
    base = Path(spec["profile"])
    profiler.last_session.save(str(base.with_suffix(".pyisession")))
    base.with_suffix(".txt").write_text(profiler.output_text(unicode=False, color=False))


async def _pool(work: list[Any], concurrency: int, call: Any) -> int:
    """C workers draining one list: the same shape as the engine's fan-out."""
    errors = 0

    async def worker() -> None:
        nonlocal errors
        while work:
            job = work.pop()
            try:
                await call(job)
            except Exception as exc:  # counted, and the first few are shown
                errors += 1
                if errors <= 3:
                    print(f"bench client error: {exc!r}"[:300], file=sys.stderr)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(work)))))
    return errors


_TOOLS: dict[Any, dict[str, Any]] = {}


def _tools(model: Any) -> dict[str, Any]:
    """The tools body instructor's TOOLS mode sends, built once per verdict model."""
    if model in _TOOLS:
        return _TOOLS[model]
    import instructor

    schema = instructor.openai_schema(model).openai_schema
    _TOOLS[model] = {"tools": [{"type": "function", "function": schema}],
                     "tool_choice": {"type": "function", "function": {"name": schema["name"]}}}
    return _TOOLS[model]


Runner = Any  # async (level, run index) -> result dict


async def _baseline(spec: dict[str, Any]) -> tuple[Runner, Any]:
    """Set up a baseline client, warm it, and return (run one level, close)."""
    mode, url = spec["mode"], spec["url"]
    rubrics = _rubrics(spec["rubrics"])
    judge = _judge(url)
    kwargs = judge.completion_kwargs()
    warm = _requests(make_items(WARMUP, offset=10_000_000), rubrics)
    timed = _requests(make_items(spec["items"]), rubrics)
    session: Any = None

    if mode == "aiohttp":
        import aiohttp

        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            headers={"Authorization": f"Bearer {API_KEY}"})
        endpoint = url.rstrip("/") + "/chat/completions"

        async def call(job: Any) -> None:
            model, messages = job
            body = {"model": "fake-judge", "messages": messages,
                    "temperature": judge.temperature, "max_tokens": judge.max_tokens,
                    **_tools(model)}
            async with session.post(endpoint, json=body) as resp:
                data = await resp.json()
            args = data["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
            model.model_validate_json(args)
    elif mode == "litellm":
        from judge.models import _litellm

        litellm = _litellm()

        async def call(job: Any) -> None:
            model, messages = job
            resp = await litellm.acompletion(messages=messages, **_tools(model), **kwargs)
            model.model_validate_json(resp.choices[0].message.tool_calls[0].function.arguments)
    elif mode == "instructor":
        import instructor

        from judge.models import _litellm

        client = instructor.from_litellm(_litellm().acompletion)

        async def call(job: Any) -> None:
            model, messages = job
            await client.create(messages=messages, response_model=model,
                                max_retries=judge.max_reasks, **kwargs)
    else:
        raise SystemExit(f"unknown mode {mode!r}")

    await _pool(list(warm), 64, call)

    async def run(level: int, index: int) -> dict[str, Any]:
        profiler = _start_profile(spec)
        cpu0, _ = _rusage()
        t0 = time.perf_counter()
        errors = await _pool(list(reversed(timed)), level, call)
        elapsed = time.perf_counter() - t0
        cpu1, rss = _rusage()
        _stop_profile(profiler, spec)
        return {"concurrency": level, "n": len(timed), "calls": len(timed), "errors": errors,
                "elapsed": elapsed, "cpu": cpu1 - cpu0, "rss_mb": rss}

    async def close() -> None:
        if session is not None:
            await session.close()

    return run, close


def _levels(conc: int | list[int]) -> list[int]:
    """Concurrency levels to run in turn (one process: imports are paid once)."""
    return [conc] if isinstance(conc, int) else list(conc)


async def _judge_client(spec: dict[str, Any]) -> tuple[Runner, Any]:
    """Set up judge.evaluate_async, warm it, and return (run one level, close)."""
    from judge.engine import evaluate_async

    rubrics = _rubrics(spec["rubrics"])
    judge = _judge(spec["url"])
    # Warm-up without a store: it must not seed the cache a timed run may read.
    await evaluate_async(make_items(WARMUP, offset=10_000_000), rubrics, [judge],
                         concurrency=64)
    items = make_items(spec["items"])

    async def run(level: int, index: int) -> dict[str, Any]:
        store = None
        if spec.get("db"):
            from judge.store import Store

            # "{run}" in the URL: a fresh database per run, so no run reads another's cache.
            store = Store.open(spec["db"].replace("{run}", f"{level}-{index}"))
        profiler = _start_profile(spec)
        gc0, full0 = GC.total, GC.full
        cpu0, _ = _rusage()
        t0 = time.perf_counter()
        result = await evaluate_async(items, rubrics, [judge], concurrency=level, store=store,
                                      job_id=spec.get("job_id"))
        elapsed = time.perf_counter() - t0
        cpu1, rss = _rusage()
        _stop_profile(profiler, spec)
        if store is not None:
            store.close()
        errors = sum(1 for j in result.judgments if j.status.value not in ("ok", "abstained"))
        return {"concurrency": level, "n": len(result.judgments),
                "calls": result.provider_calls, "errors": errors,
                "cached": sum(1 for j in result.judgments if j.cached),
                "elapsed": elapsed, "cpu": cpu1 - cpu0, "rss_mb": rss,
                "gc_s": GC.total - gc0, "gc_full": GC.full - full0}

    async def close() -> None:
        return None

    return run, close


async def _client(spec: dict[str, Any], serve: bool) -> list[dict[str, Any]]:
    """Run the levels in ``spec`` (one shot), or serve ``{"concurrency": C}`` lines from
    stdin until EOF: the orchestrator then interleaves clients level by level, so a burst
    of load from elsewhere on the machine hits them all alike."""
    setup = _judge_client if spec["mode"] == "judge" else _baseline
    run, close = await setup(spec)
    results = []
    try:
        if not serve:
            for i, level in enumerate(_levels(spec["concurrency"])):
                results.append(await run(level, i))
            return results
        print("BENCH_READY", flush=True)
        index = 0
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line.strip():
                return results
            level = int(json.loads(line)["concurrency"])
            out = await run(level, index)
            index += 1
            print("BENCH_RESULT " + json.dumps([out]), flush=True)
    finally:
        await close()


def synthetic_judgments(n: int, job_id: str | None) -> list[Any]:
    """n judgments shaped like the engine's (ok, a rationale, tokens, latency)."""
    from judge.judgments import Judgment, Status

    return [Judgment(
        job_id=job_id, item_id=f"item-{i}", rubric_id="tone", rubric_version="1.0.0",
        rubric_hash="h" * 64, judge_model=MODEL, prompt_hash="p" * 64, status=Status.OK,
        score=float(1 + i % 5), passed=i % 5 >= 2,
        rationale=f"Deterministic fake verdict (seed {i % 1000}).", evidence=[],
        tokens_in=420, tokens_out=60, latency_ms=200.0 + i % 7, attempts=1,
    ) for i in range(n)]


def _run_sinks(spec: dict[str, Any]) -> list[dict[str, Any]]:
    from judge.store import Store

    store = Store.open(spec["db"])
    batch = spec.get("batch", 256)
    judgments = synthetic_judgments(spec["items"], None)
    store.write_judgments(judgments[:1])  # connect and warm the statement cache
    cpu0, _ = _rusage()
    t0 = time.perf_counter()
    written = 0
    for i in range(1, len(judgments), batch):  # the first was the warm-up write
        written += store.write_judgments(judgments[i:i + batch])
    elapsed = time.perf_counter() - t0
    cpu1, rss = _rusage()
    store.close()
    return [{"n": written, "calls": 0, "errors": len(judgments) - 1 - written,
             "elapsed": elapsed, "cpu": cpu1 - cpu0, "rss_mb": rss}]


def _run_mlflow(spec: dict[str, Any]) -> list[dict[str, Any]]:
    os.environ["MLFLOW_TRACKING_URI"] = spec["tracking_uri"]
    from judge.tracking import log_job

    judgments = [j.model_dump(mode="json") for j in synthetic_judgments(spec["items"], "job")]
    t0 = time.perf_counter()
    log_job("bench-warm", params={"p": "1"}, metrics={"tone/mean": 3.0}, judgments=judgments[:10])
    cold = time.perf_counter() - t0  # import MLflow, create the store and the experiment
    cpu0, _ = _rusage()
    t0 = time.perf_counter()
    log_job("bench-job", params={"dataset": "bench", "rubric/tone": "1.0.0"},
            metrics={"tone/mean": 3.0, "tone/pass_rate": 0.6}, judgments=judgments)
    elapsed = time.perf_counter() - t0
    cpu1, rss = _rusage()
    return [{"n": len(judgments), "calls": 0, "errors": 0, "elapsed": elapsed,
             "cold": cold, "cpu": cpu1 - cpu0, "rss_mb": rss}]


def main() -> None:
    serve = sys.argv[1] == "--serve"
    spec = json.loads(sys.argv[-1])
    mode = spec["mode"]
    if mode == "sinks":
        out = _run_sinks(spec)
    elif mode == "mlflow":
        out = _run_mlflow(spec)
    else:
        out = asyncio.run(_client(spec, serve))
        if serve:
            return
    print("BENCH_RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
