"""The Redis token bucket shared by workers (real Redis)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

from judge.ratelimit import ModelLimit, RedisRateLimiter
from tests.fixtures.services import free_port


def _acquire_in_threads(limiters: list[RedisRateLimiter], per: int, tokens: int = 0) -> float:
    """Each limiter (a 'worker') acquires ``per`` times on its own thread and loop."""

    def work(limiter: RedisRateLimiter) -> None:
        async def go() -> None:
            for _ in range(per):
                await limiter.acquire("openai/m", tokens)
            await limiter.aclose()

        asyncio.run(go())

    threads = [threading.Thread(target=work, args=(lim,)) for lim in limiters]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return time.monotonic() - started


def test_two_workers_share_one_request_bucket(redis_url):
    prefix = f"test:{uuid.uuid4().hex}"
    limit = {"openai/m": ModelLimit(rpm=600, burst=2)}  # 10 requests a second in all
    workers = [RedisRateLimiter(redis_url, limit, prefix=prefix, max_sleep=0.05)
               for _ in range(2)]
    elapsed = _acquire_in_threads(workers, per=10)
    # 20 requests, 2 at once then 10/s: at least 1.8 s, whoever asks.
    assert elapsed >= 1.8 * 0.95


def test_token_bucket_limits_tokens_per_minute(redis_url):
    prefix = f"test:{uuid.uuid4().hex}"
    limit = {"openai/m": ModelLimit(tpm=60_000)}  # 1000 tokens a second, 1000 at once
    elapsed = _acquire_in_threads([RedisRateLimiter(redis_url, limit, prefix=prefix,
                                                    max_sleep=0.05)], per=4, tokens=500)
    assert elapsed >= 1.0 * 0.95


def test_unlimited_model_passes_at_once(redis_url):
    limiter = RedisRateLimiter(redis_url, {"openai/m": ModelLimit(rpm=1)})

    async def go() -> None:
        for _ in range(50):
            await limiter.acquire("openai/other")

    started = time.monotonic()
    asyncio.run(go())
    assert time.monotonic() - started < 1.0


def test_redis_unreachable_falls_back_to_a_local_bucket(caplog):
    limiter = RedisRateLimiter(f"redis://127.0.0.1:{free_port()}/0",
                               {"openai/m": ModelLimit(rpm=6000, burst=5)})

    async def go() -> None:
        for _ in range(5):
            await limiter.acquire("openai/m")

    asyncio.run(go())  # no exception: limited in-process while Redis is away
    assert "unreachable" in caplog.text and "in-process" in caplog.text
