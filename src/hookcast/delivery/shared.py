"""What worker processes share through Redis (``HOOKCAST_REDIS_URL``): per-endpoint rate
limits, and how many workers are alive, which divides each endpoint's concurrency cap.

The same GCRA as :mod:`hookcast.domain.limits`, kept in Redis as one theoretical arrival
time per endpoint, taken atomically by a Lua script on Redis's own clock (so workers on
machines with skewed clocks agree). One round trip per claimed batch covers every
rate-limited endpoint in it, whatever the number of deliveries.

Each worker also beats a heartbeat every second into one sorted set; the number
of live workers divides every endpoint's concurrency cap (rounded up, so N workers hold at
most cap + N - 1 attempts to one endpoint at once).

Without Redis each worker process enforces an endpoint's limit and cap on its own (N workers
may send up to N times either). If Redis stops answering, workers fall back to that local
limit and say so in the log, and use Redis again when it is back: delivery never stops
because Redis did.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from hookcast.domain.limits import emission_interval_us

log = logging.getLogger("hookcast.limits")

# KEYS: one per endpoint. ARGV: count, interval_us, burst_us per key.
# Returns granted, wait_us per key: how many may go now, and how long until the next may.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {}
for i, key in ipairs(KEYS) do
  local n = tonumber(ARGV[3 * i - 2])
  local interval = tonumber(ARGV[3 * i - 1])
  local burst = tonumber(ARGV[3 * i])
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  local k = math.floor((burst - (tat - now)) / interval)
  if k < 0 then k = 0 end
  if k > n then k = n end
  tat = tat + k * interval
  if k > 0 then
    redis.call('SET', key, string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
  end
  local wait = tat + interval - now - burst
  if wait < 0 then wait = 0 end
  out[#out + 1] = k
  out[#out + 1] = wait
end
return out
"""

_RETRY_S = 5.0


@dataclass(frozen=True, slots=True)
class RateAsk:
    endpoint_id: str
    count: int
    limit: int
    period_s: int


@dataclass(slots=True)
class RateGrant:
    #: how many deliveries may go now
    granted: int
    #: microseconds until the next one may go, then one per interval
    wait_us: int
    interval_us: int


HEARTBEAT_S = 1.0
_ALIVE_MS = 10_000

# KEYS[1]: the workers' sorted set. ARGV: worker id, how long a heartbeat counts (ms).
# Records this worker's beat (on Redis's clock), forgets silent ones, returns how many live.
_BEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return redis.call('ZCARD', KEYS[1])
"""


class RedisRateLimiter:
    def __init__(self, url: str, prefix: str = "hookcast:rl:") -> None:
        import redis.asyncio as aioredis

        self._client: Any = aioredis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._script: Any = self._client.register_script(_TAKE)
        self._beat: Any = self._client.register_script(_BEAT)
        self._prefix = prefix
        self._down_until = 0.0

    async def ping(self) -> None:
        await self._client.ping()

    async def close(self) -> None:
        await self._client.aclose()

    async def heartbeat(self, worker_id: str, workers_key: str = "hookcast:workers") -> int:
        """Record that *worker_id* is alive; how many workers are (1 when Redis is down)."""
        try:
            return max(int(await self._beat(keys=[workers_key], args=[worker_id, _ALIVE_MS])), 1)
        except Exception:
            return 1

    async def leave(self, worker_id: str, workers_key: str = "hookcast:workers") -> None:
        try:
            await self._client.zrem(workers_key, worker_id)
        except Exception:
            return

    async def take(self, asks: list[RateAsk]) -> dict[str, RateGrant] | None:
        """Grants per endpoint; None when Redis cannot be used (enforce locally then)."""
        if not asks:
            return {}
        if time.monotonic() < self._down_until:
            return None
        keys, argv, intervals = [], [], []
        for ask in asks:
            interval = emission_interval_us(ask.limit, ask.period_s)
            keys.append(self._prefix + ask.endpoint_id)
            argv += [ask.count, interval, interval * ask.limit]
            intervals.append(interval)
        try:
            raw = await self._script(keys=keys, args=argv)
        except Exception as exc:
            self._down_until = time.monotonic() + _RETRY_S
            log.warning(
                "limits.redis_unavailable",
                extra={"error": str(exc) or type(exc).__name__, "retry_in_s": _RETRY_S},
            )
            return None
        return {
            ask.endpoint_id: RateGrant(int(raw[2 * i]), int(raw[2 * i + 1]), intervals[i])
            for i, ask in enumerate(asks)
        }
