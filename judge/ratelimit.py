"""A token bucket in Redis per judge model (requests and tokens per minute), shared by
every worker that talks to the same Redis, so N workers together stay under one
provider limit.

Each acquire runs one Lua script: it refills the model's buckets from Redis's own clock
(so workers' clocks need not agree), takes one request and ``tokens`` tokens if both
buckets hold enough, and otherwise returns how long to wait. Callers sleep that long and
try again. When Redis cannot be reached (a restart), the limiter falls back to an
in-process bucket for that model and tries Redis again later: a Redis hiccup slows
nothing to zero and fails no judgment.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from judge.errors import ConfigError
from judge.models import LocalRateLimiter

log = logging.getLogger(__name__)

KEY_PREFIX = "judge:ratelimit"

# KEYS: rpm bucket, tpm bucket. ARGV: rpm rate/s, rpm capacity, tpm rate/s, tpm capacity,
# tokens wanted. A rate of 0 means "no such limit". Returns the seconds to wait, as text.
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function level(key, rate, cap)
  local v = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = tonumber(v[1]) or cap
  local ts = tonumber(v[2]) or now
  return math.min(cap, tokens + math.max(0, now - ts) * rate)
end
local wait = 0
local r_rate, r_cap = tonumber(ARGV[1]), tonumber(ARGV[2])
local t_rate, t_cap = tonumber(ARGV[3]), tonumber(ARGV[4])
local want = math.min(tonumber(ARGV[5]), t_cap)
local r_level, t_level = 0, 0
if r_rate > 0 then
  r_level = level(KEYS[1], r_rate, r_cap)
  if r_level < 1 then wait = math.max(wait, (1 - r_level) / r_rate) end
end
if t_rate > 0 then
  t_level = level(KEYS[2], t_rate, t_cap)
  if t_level < want then wait = math.max(wait, (want - t_level) / t_rate) end
end
if wait == 0 then
  if r_rate > 0 then
    redis.call('HSET', KEYS[1], 'tokens', r_level - 1, 'ts', now)
    redis.call('EXPIRE', KEYS[1], math.ceil(r_cap / r_rate) + 60)
  end
  if t_rate > 0 then
    redis.call('HSET', KEYS[2], 'tokens', t_level - want, 'ts', now)
    redis.call('EXPIRE', KEYS[2], math.ceil(t_cap / t_rate) + 60)
  end
end
return tostring(wait)
"""


@dataclass(frozen=True)
class ModelLimit:
    """A provider limit for one judge model: requests and/or tokens per minute.

    ``burst`` is how many requests may go at once after a quiet spell (default: one
    second's worth, at least 1); the token bucket holds one second's worth of tokens,
    at least one request's.
    """

    rpm: int | None = None
    tpm: int | None = None
    burst: int | None = None

    def __post_init__(self) -> None:
        for name in ("rpm", "tpm", "burst"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"Rate limit {name} must be at least 1, got {value}.")


class RedisRateLimiter:
    """The shared limiter: ``await limiter.acquire(model, tokens)`` before each request.

    Implements :class:`judge.models.RateLimiter`. Models without a limit pass at once.

    Args:
        url: Redis URL (normally the broker's, ``JUDGE_BROKER_URL``).
        limits: limit per judge model string.
        prefix: key prefix, so tests and deployments sharing a Redis do not collide.
        max_sleep: longest single sleep between tries (keeps a waiter responsive).
    """

    def __init__(self, url: str, limits: Mapping[str, ModelLimit], *, prefix: str = KEY_PREFIX,
                 max_sleep: float = 1.0, retry_redis_after: float = 5.0):
        self.url = url
        self.limits = dict(limits)
        self.prefix = prefix
        self.max_sleep = max_sleep
        self.retry_redis_after = retry_redis_after
        self._clients: dict[int, Any] = {}  # one client per event loop
        self._fallback: dict[str, LocalRateLimiter] = {}
        self._redis_down_until = 0.0

    def _client(self) -> Any:
        import redis.asyncio as aioredis

        loop = asyncio.get_running_loop()
        client = self._clients.get(id(loop))
        if client is None:
            client = aioredis.Redis.from_url(self.url, socket_timeout=5,
                                             socket_connect_timeout=2)
            self._clients[id(loop)] = client
        return client

    def keys(self, model: str) -> tuple[str, str]:
        """The Redis keys of a model's request and token buckets."""
        return f"{self.prefix}:{model}:rpm", f"{self.prefix}:{model}:tpm"

    def _args(self, limit: ModelLimit, tokens: int) -> list[float]:
        r_rate = (limit.rpm or 0) / 60.0
        r_cap = float(limit.burst or max(1, (limit.rpm or 0) // 60))
        t_rate = (limit.tpm or 0) / 60.0
        t_cap = float(max(tokens, (limit.tpm or 0) // 60, 1))
        return [r_rate, r_cap, t_rate, t_cap, float(tokens if limit.tpm else 0)]

    async def wait_time(self, model: str, tokens: int = 0) -> float:
        """Take a request (and ``tokens``) if the buckets allow; else the seconds to wait."""
        limit = self.limits[model]
        raw = await self._client().eval(_SCRIPT, 2, *self.keys(model),
                                        *self._args(limit, tokens))
        return float(raw)

    async def acquire(self, model: str, tokens: int = 0) -> None:
        """Return when one request of about ``tokens`` tokens to ``model`` may go."""
        limit = self.limits.get(model)
        if limit is None or (limit.rpm is None and limit.tpm is None):
            return
        while True:
            if time.monotonic() < self._redis_down_until:
                await self._local(model, limit).acquire(model, tokens)
                return
            try:
                wait = await self.wait_time(model, tokens)
            except (OSError, ConnectionError, TimeoutError) as exc:
                self._redis_unreachable(exc)
                continue
            except Exception as exc:  # redis.exceptions.ConnectionError and kin
                if type(exc).__module__.startswith("redis"):
                    self._redis_unreachable(exc)
                    continue
                raise
            if wait <= 0:
                return
            await asyncio.sleep(min(wait, self.max_sleep))

    async def aclose(self) -> None:
        """Close this event loop's Redis connections."""
        loop = asyncio.get_running_loop()
        client = self._clients.pop(id(loop), None)
        if client is not None:
            try:
                await client.aclose()
            except Exception:  # closing a connection to a Redis that is gone
                pass

    def _redis_unreachable(self, exc: BaseException) -> None:
        log.warning("rate limiter: Redis at %s unreachable (%s); limiting in-process for "
                    "%.0fs", self.url, exc, self.retry_redis_after)
        self._redis_down_until = time.monotonic() + self.retry_redis_after
        self._clients.clear()

    def _local(self, model: str, limit: ModelLimit) -> LocalRateLimiter:
        if model not in self._fallback:
            rpm = limit.rpm or max(1, (limit.tpm or 60_000) // 1000)
            self._fallback[model] = LocalRateLimiter(rpm, burst=limit.burst)
        return self._fallback[model]
