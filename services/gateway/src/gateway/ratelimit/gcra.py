"""The shared buckets in Redis: one number per principal (GCRA), taken by one atomic Lua script."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import redis.asyncio
from redis.exceptions import NoScriptError

# GCRA: a token bucket of `burst` filling at one token per `interval` is one number, the
# instant (us, Redis' clock) at which the bucket would be full again: take one token by
# moving it one interval on, unless it is more than burst - 1 intervals ahead of now. The key
# expires when the bucket is full again, so an idle principal costs nothing. One call takes a
# token from each key in turn (a principal twice in KEYS is charged twice, in order), and
# answers each key's wait in us, 0 when taken.
GCRA_LUA = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = tonumber(ARGV[1])
local ahead = interval * (tonumber(ARGV[2]) - 1)
local waits = {}
for i, key in ipairs(KEYS) do
  local full_at = tonumber(redis.call('GET', key) or now)
  if full_at < now then full_at = now end
  local wait = full_at - ahead - now
  if wait > 0 then
    waits[i] = math.ceil(wait)
  else
    full_at = full_at + interval
    redis.call('SET', key, string.format('%d', full_at), 'PX', math.ceil((full_at - now) / 1000))
    waits[i] = 0
  end
end
return waits
"""


class RedisBuckets:
    """The buckets in Redis: one EVALSHA per call, whatever the number of principals.

    Nothing connects here: :meth:`start` or the first call does (and a Redis that is not up
    yet is just one more outage to fail open through).
    """

    def __init__(
        self, url: str, *, rate_per_second: float, burst: int, key_prefix: str, timeout: float
    ) -> None:
        # One connection does: calls go one at a time (SharedLimiter sends the next batch when
        # the last one is back), and a spare covers start() racing the first request.
        self._pool = redis.asyncio.BlockingConnectionPool.from_url(
            url,
            max_connections=2,
            timeout=timeout,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
        )
        self._redis = redis.asyncio.Redis(connection_pool=self._pool)
        # Redis names a script by its SHA-1.
        self._sha = hashlib.sha1(GCRA_LUA.encode(), usedforsecurity=False).hexdigest()
        self._args = (max(1, round(1_000_000 / rate_per_second)), burst)
        self._prefix = f"{key_prefix}:rate:"

    async def take(self, principals: Sequence[str]) -> list[float]:
        keys = [self._prefix + principal for principal in principals]
        try:
            waits = await self._redis.evalsha(self._sha, len(keys), *keys, *self._args)
        except NoScriptError:  # Redis restarted, or its script cache was flushed: load it, again
            await self._redis.script_load(GCRA_LUA)
            waits = await self._redis.evalsha(self._sha, len(keys), *keys, *self._args)
        return [int(waited_us) / 1_000_000 for waited_us in waits]

    async def start(self) -> None:
        await self._redis.script_load(GCRA_LUA)

    async def close(self) -> None:
        await self._redis.aclose()
        await self._pool.disconnect()
