"""The ``Store`` interface on Redis, so that several tracker processes share swarms.

Per swarm (hex info-hash ``H``): ``{P}s:H`` and ``{P}l:H`` sorted sets of seed
and leecher peer ids scored by expiry time, ``{P}a:H`` a hash peer id ->
compact address, ``{P}c:H`` the completed counter. ``{P}index`` scores every
swarm by when it goes quiet. An announce is one round trip (a Lua script that
sweeps expired peers, records the peer, counts completion, picks peers and
refreshes key TTLs), so quiet swarms vanish by themselves.

When Redis cannot be reached, calls fail at once with ``StoreUnavailable``
(no retries piling up behind a dead server); for ``cooldown`` seconds after a
failure we do not even try, then the next request probes again.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from swarm.core.announce import AnnounceRequest, ScrapeStats
from tracker.store import AnnounceResult, PeerList, StoreFull, StoreUnavailable

# KEYS: seeds, leechers, addrs, completed, index, total_completed
# ARGV: ih, peer_id, addr, now, ttl, seed(0/1), event, numwant, max_peers, max_swarms
_ANNOUNCE = """
local S, L, A, C, I, T = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local ih, pid, addr = ARGV[1], ARGV[2], ARGV[3]
local now, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local seed, event, want = ARGV[6] == '1', ARGV[7], tonumber(ARGV[8])
local maxp, maxs = tonumber(ARGV[9]), tonumber(ARGV[10])

local function sweep(z)
  local gone = redis.call('ZRANGEBYSCORE', z, '-inf', now, 'LIMIT', 0, 200)
  if #gone > 0 then
    redis.call('ZREM', z, unpack(gone))
    redis.call('HDEL', A, unpack(gone))
  end
end
sweep(S)
sweep(L)

if event == 'stopped' then
  redis.call('ZREM', S, pid)
  redis.call('ZREM', L, pid)
  redis.call('HDEL', A, pid)
  return {redis.call('ZCARD', S), redis.call('ZCARD', L)}
end

local known = redis.call('HEXISTS', A, pid) == 1
if not known then
  local size = redis.call('HLEN', A)
  if size >= maxp then return {-1} end
  if size == 0 and redis.call('ZSCORE', I, ih) == false then
    redis.call('ZREMRANGEBYSCORE', I, '-inf', now)
    if redis.call('ZCARD', I) >= maxs then return {-2} end
  end
end
redis.call('HSET', A, pid, addr)
if seed then
  redis.call('ZADD', S, now + ttl, pid)
  redis.call('ZREM', L, pid)
else
  redis.call('ZADD', L, now + ttl, pid)
  redis.call('ZREM', S, pid)
end
if event == 'completed' then
  redis.call('INCR', C)
  redis.call('INCR', T)
end
local keep = math.ceil(ttl * 2)
for _, k in ipairs({S, L, A, C}) do redis.call('EXPIRE', k, keep) end
redis.call('ZADD', I, now + ttl, ih)

local ns, nl = redis.call('ZCARD', S), redis.call('ZCARD', L)
local out = {ns, nl}
if want <= 0 then return out end
local picked = {}
local function take(z, n)
  if n <= 0 then return end
  local got = redis.call('ZRANDMEMBER', z, n)
  for _, p in ipairs(got) do
    if p ~= pid and #picked < want then picked[#picked + 1] = p end
  end
end
if seed then
  -- leechers first, then seeds to fill (aria2c announces left=0 for a magnet)
  take(L, want + 1)
  if #picked < want then take(S, want - #picked + 1) end
else
  local total = ns + nl
  if total <= want + 1 then
    take(S, ns)
    take(L, nl)
  else
    local from_s = math.floor(want * ns / total + 0.5)
    take(S, from_s + 1)
    take(L, want - #picked + 1)
    take(S, want - #picked + 1)
  end
end
if #picked > 0 then
  local addrs = redis.call('HMGET', A, unpack(picked))
  for i, p in ipairs(picked) do
    if addrs[i] then
      out[#out + 1] = p
      out[#out + 1] = addrs[i]
    end
  end
end
return out
"""

# KEYS: seeds, leechers, addrs ; ARGV: now -> number of peers removed
_SWEEP = """
local removed = 0
for _, z in ipairs({KEYS[1], KEYS[2]}) do
  local gone = redis.call('ZRANGEBYSCORE', z, '-inf', ARGV[1], 'LIMIT', 0, 1000)
  if #gone > 0 then
    redis.call('ZREM', z, unpack(gone))
    redis.call('HDEL', KEYS[3], unpack(gone))
    removed = removed + #gone
  end
end
return removed
"""

#: Most swarms listed by a full scrape or the status page.
MAX_LISTED = 10_000


class RedisStore:
    def __init__(
        self,
        url: str,
        *,
        peer_ttl: float = 3600.0,
        prefix: str = "swarm:",
        max_swarms: int = 1_000_000,
        max_peers_per_swarm: int = 20_000,
        timeout: float = 1.0,
        cooldown: float = 1.0,
    ) -> None:
        self.url = url
        self.peer_ttl = peer_ttl
        self.prefix = prefix.encode()
        self.max_swarms, self.max_peers = max_swarms, max_peers_per_swarm
        self.cooldown = cooldown
        self.redis: Redis = Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self._announce = self.redis.register_script(_ANNOUNCE)
        self._sweep = self.redis.register_script(_SWEEP)
        self._down_until = 0.0
        self._pending: list[tuple[list[bytes], list[Any], asyncio.Future[Any]]] = []
        self._flushing: set[asyncio.Task[None]] = set()

    def _keys(self, info_hash: bytes) -> list[bytes]:
        h = info_hash.hex().encode()
        p = self.prefix
        return [p + b"s:" + h, p + b"l:" + h, p + b"a:" + h, p + b"c:" + h]

    async def _call(self, coro: Any) -> Any:
        if time.monotonic() < self._down_until:
            coro.close()
            raise StoreUnavailable("redis down (cooling off)")
        try:
            return await coro
        except (RedisError, OSError) as exc:
            self._down_until = time.monotonic() + self.cooldown
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from None

    async def announce(self, req: AnnounceRequest, addr: bytes, now: float) -> AnnounceResult:
        keys = self._keys(req.info_hash) + [self.prefix + b"index", self.prefix + b"completed"]
        args = [
            req.info_hash.hex(), req.peer_id, addr, repr(now), repr(self.peer_ttl),
            1 if req.left == 0 else 0, req.event, req.numwant, self.max_peers, self.max_swarms,
        ]  # fmt: skip
        if time.monotonic() < self._down_until:
            raise StoreUnavailable("redis down (cooling off)")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((keys, args, fut))
        if len(self._pending) == 1:
            asyncio.get_running_loop().call_soon(self._start_flush)
        out = await fut
        if out[0] == -1:
            raise StoreFull("tracker is full: too many peers in this swarm")
        if out[0] == -2:
            raise StoreFull("tracker is full: too many swarms")
        peers: PeerList = [(bytes(out[i]), bytes(out[i + 1])) for i in range(2, len(out) - 1, 2)]
        return AnnounceResult(peers, int(out[0]), int(out[1]))

    def _start_flush(self) -> None:
        """Send every announce queued during this loop iteration in one pipeline:
        redis-py's per-command overhead, not Redis, is the cost of a lone call."""
        batch, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._flush(batch))
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _flush(self, batch: list[tuple[list[bytes], list[Any], asyncio.Future[Any]]]) -> None:
        try:
            results = await self._run_batch(batch)
            if any(isinstance(r, NoScriptError) for r in results):  # Redis restarted
                self._announce.sha = await self.redis.script_load(_ANNOUNCE)
                results = await self._run_batch(batch)
        except (RedisError, OSError) as exc:
            self._down_until = time.monotonic() + self.cooldown
            error = StoreUnavailable(f"{type(exc).__name__}: {exc}")
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(error)
            return
        for (_, _, fut), result in zip(batch, results, strict=True):
            if fut.done():
                continue
            if isinstance(result, Exception):
                fut.set_exception(StoreUnavailable(f"{type(result).__name__}: {result}"))
            else:
                fut.set_result(result)

    async def _run_batch(
        self, batch: list[tuple[list[bytes], list[Any], asyncio.Future[Any]]]
    ) -> list[Any]:
        sha = self._announce.sha
        if len(batch) == 1:  # the common case at low load: skip the pipeline's bookkeeping
            keys, args, _ = batch[0]
            try:
                return [await self.redis.evalsha(sha, len(keys), *keys, *args)]
            except NoScriptError as exc:
                return [exc]
        pipe = self.redis.pipeline(transaction=False)
        for keys, args, _ in batch:
            pipe.evalsha(sha, len(keys), *keys, *args)
        return list(await pipe.execute(raise_on_error=False))

    async def _listed(self) -> list[bytes]:
        # quiet swarms stay listed until the next expire(), as in MemoryStore
        raw = await self._call(self.redis.zrange(self.prefix + b"index", 0, MAX_LISTED - 1))
        return [bytes.fromhex(h.decode()) for h in raw]

    async def scrape(self, info_hashes: list[bytes]) -> dict[bytes, ScrapeStats]:
        hashes = info_hashes or await self._listed()
        if not hashes:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for h in hashes:
            s, lee, _, c = self._keys(h)
            pipe.zcard(s)
            pipe.zcard(lee)
            pipe.get(c)
        res = await self._call(pipe.execute())
        out: dict[bytes, ScrapeStats] = {}
        for i, h in enumerate(hashes):
            seeds, leechers, completed = res[3 * i : 3 * i + 3]
            if seeds or leechers or completed:
                out[h] = ScrapeStats(int(seeds), int(completed or 0), int(leechers))
        return out

    async def stats(self) -> dict[str, int]:
        files = await self.scrape([])
        total = await self._call(self.redis.get(self.prefix + b"completed"))
        seeders = sum(s.complete for s in files.values())
        leechers = sum(s.incomplete for s in files.values())
        return {
            "swarms": len(files),
            "peers": seeders + leechers,
            "seeders": seeders,
            "leechers": leechers,
            "completed": int(total or 0),
        }

    async def expire(self, now: float) -> int:
        index = self.prefix + b"index"
        await self._call(self.redis.zremrangebyscore(index, "-inf", now))
        removed = 0
        for h in await self._listed():
            s, lee, a, _ = self._keys(h)
            removed += int(await self._call(self._sweep(keys=[s, lee, a], args=[repr(now)])))
        return removed

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` when Redis cannot be reached (a start-up check)."""
        await self._call(self.redis.ping())

    async def close(self) -> None:
        await self.redis.aclose()
