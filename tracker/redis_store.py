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
import hashlib
import math
import time
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from swarm.core.announce import AnnounceRequest, ScrapeStats
from tracker.store import (
    MAX_PEERS_PER_SOURCE,
    AnnounceResult,
    StoreFull,
    StoreUnavailable,
    seeds_for_seed,
)

# Peer entries per source (IPv4 address or IPv6 /64, as ``store.source_of``) in the
# hash SRC, so that one client cannot fill the tracker: counted when an entry is
# made, given back when it is stopped or swept (the sweeps read the addresses first).
_SOURCES = """
local SRC = KEYS[3]
local function source(a)
  if #a == 6 then return a:sub(1, 4) end
  return a:sub(1, 8)
end
local function uncount(addrs)
  for _, a in ipairs(addrs) do
    if a then
      local k = source(a)
      if redis.call('HINCRBY', SRC, k, '-1') <= 0 then redis.call('HDEL', SRC, k) end
    end
  end
end
"""

# One script call carries a whole batch of announces (redis-py's cost is per
# command, not per argument). KEYS: index, total_completed, sources. ARGV: prefix, ttl,
# keep (key TTL), gap, max_peers, max_swarms, max_per_source, then 6 per announce: info-hash hex,
# peer id, addr, kind, numwant, now ('' = the previous one's). kind: 'S' seed,
# 'F' a seed that may be given seeds (see store.seeds_for_seed), 'L' leecher,
# 'X' stopped; lower case 's' / 'f' / 'l' when the answer needs peer ids
# (not compact); 'c' after it when completing. Returns, per announce in order:
# seeds, leechers, k, then the k picked peers' addresses, or k (peer id, addr)
# pairs when ids are wanted (a compact answer has no ids: half the reply);
# seeds -1 / -2 / -3 when a swarm / the tracker / the sender's share is full.
#
# The four key TTLs and the swarm's index score are refreshed only when the
# last refresh is ``gap`` seconds old (or this announce created a key): the
# index score is ``refresh time + ttl + gap``, so it both says when that was and
# never drops a swarm before its last peer is due. Numbers handed to redis.call
# go as strings: Lua formats a number argument with printf on every call.
_ANNOUNCE = (
    _SOURCES
    + """
local I, T = KEYS[1], KEYS[2]
local P, ttl, keep, gap = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local maxp, maxs, maxsrc = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local call = redis.call
local out, o = {}, 0
local now, nows, due

local function sweep(z, A)
  local gone = call('ZRANGEBYSCORE', z, '-inf', nows, 'LIMIT', '0', '200')
  if #gone > 0 then
    call('ZREM', z, unpack(gone))
    uncount(call('HMGET', A, unpack(gone)))
    call('HDEL', A, unpack(gone))
  end
end

-- A uniform sample of n members of z (size members) into picked, up to want.
-- A count between size/3 and size/1.5 makes Redis copy the whole set; 2n draws
-- with repeats cost O(n) and their first distinct members are as uniform.
local function take(picked, z, size, n, pid, want)
  if n <= 0 then return end
  if 2 * size >= 3 * n and size <= 3 * n then
    local got, seen, start = call('ZRANDMEMBER', z, tostring(-2 * n)), {}, #picked
    for _, p in ipairs(got) do
      if p ~= pid and not seen[p] then
        seen[p] = true
        picked[#picked + 1] = p
        if #picked == want or #picked - start == n then return end
      end
    end
    for i = #picked, start + 1, -1 do picked[i] = nil end  -- too few distinct
  end
  local got = call('ZRANDMEMBER', z, tostring(n))
  for _, p in ipairs(got) do
    if p ~= pid and #picked < want then picked[#picked + 1] = p end
  end
end

-- Add or refresh the asker: seeds and leechers after it, or -1 / -2 when full.
local function record(ih, pid, addr, kind, seed, S, L, A)
  local sc = call('ZSCORE', I, ih)
  local refresh = (not sc) or tonumber(sc) - ttl <= now
  local new = call('HSET', A, pid, addr) == 1
  local ns, nl = call('ZCARD', S), call('ZCARD', L)  -- without this peer if new
  if new then
    if ns + nl >= maxp then
      call('HDEL', A, pid)
      return -1, 0
    end
    if ns + nl == 0 then
      refresh = true
      if not sc then
        call('ZREMRANGEBYSCORE', I, '-inf', nows)
        if call('ZCARD', I) >= maxs then
          call('HDEL', A, pid)
          return -2, 0
        end
      end
    end
    local k = source(addr)
    if tonumber(call('HGET', SRC, k) or '0') >= maxsrc then
      call('HDEL', A, pid)
      return -3, 0
    end
    call('HINCRBY', SRC, k, '1')
    call('EXPIRE', SRC, keep)  -- counts left by swarms that expired unswept go in time
  end
  local mine, other = L, S
  if seed then mine, other = S, L end
  if call('ZADD', mine, due, pid) == 1 then
    local moved = not new and call('ZREM', other, pid) == 1
    if seed then
      ns = ns + 1
      if moved then nl = nl - 1 end
      if ns == 1 then refresh = true end  -- the key was just made
    else
      nl = nl + 1
      if moved then ns = ns - 1 end
      if nl == 1 then refresh = true end
    end
  end
  local C = P .. 'c:' .. ih
  if #kind > 1 then
    if call('INCR', C) == 1 then refresh = true end
    call('INCR', T)
  end
  if refresh then
    call('EXPIRE', S, keep)
    call('EXPIRE', L, keep)
    call('EXPIRE', A, keep)
    call('EXPIRE', C, keep)
    call('ZADD', I, tostring(math.ceil(now + ttl + gap)), ih)
  end
  return ns, nl
end

local function one(ih, pid, addr, kind, want)
  local S, L, A = P .. 's:' .. ih, P .. 'l:' .. ih, P .. 'a:' .. ih
  sweep(S, A)
  sweep(L, A)
  local c = kind:byte(1)
  -- an entry may be changed only from the IP that made it: peer ids are public
  local cur = call('HGET', A, pid)
  local foreign = cur and cur:sub(1, -3) ~= addr:sub(1, -3)
  if c == 88 then  -- 'X'
    if cur and not foreign then
      call('ZREM', S, pid)
      call('ZREM', L, pid)
      call('HDEL', A, pid)
      uncount({cur})
    end
    return call('ZCARD', S), call('ZCARD', L)
  end
  local seed = c == 83 or c == 115 or c == 70 or c == 102  -- 'S' 's' 'F' 'f'
  local ns, nl
  if foreign then  -- someone else's entry: answer, but change nothing of it
    ns, nl = call('ZCARD', S), call('ZCARD', L)
  else
    ns, nl = record(ih, pid, addr, kind, seed, S, L, A)
    if ns < 0 then return ns, nl end
  end
  if want <= 0 then return ns, nl end
  local fill = c == 70 or c == 102
  if seed and nl == 0 and not fill then return ns, nl end  -- seeds get no seeds
  if not seed or ns == 1 or nl == 0 then
    -- any peers will do (a seed alone among leechers, or a seed that may have
    -- seeds among seeds only, gets the same): a random sample straight from
    -- the hash, addresses included
    local n, k = ns + nl, want + 1
    if 2 * n >= 3 * k and n <= 3 * k then
      -- HRANDFIELD with count k copies the whole hash when 3k > size (30+ us at
      -- 100 peers); 2k draws with repeats cost O(k), and their first distinct
      -- peers are just as uniform a sample. Too few distinct: the exact call.
      local got = call('HRANDFIELD', A, tostring(-2 * k), 'WITHVALUES')
      local seen, found, m = {}, {}, 0
      for i = 1, #got, 2 do
        local p = got[i]
        if p ~= pid and not seen[p] then
          seen[p] = true
          found[2 * m + 1], found[2 * m + 2] = p, got[i + 1]
          m = m + 1
          if m == want then return ns, nl, found end
        end
      end
    end
    return ns, nl, call('HRANDFIELD', A, tostring(k), 'WITHVALUES')
  end
  -- a seed: leechers only, or first and then seeds to fill (aria2c's magnets)
  local picked = {}
  take(picked, L, nl, want + 1, pid, want)
  if fill and #picked < want then take(picked, S, ns, want - #picked + 1, pid, want) end
  if #picked == 0 then return ns, nl end
  local addrs = call('HMGET', A, unpack(picked))
  local found = {}
  for i, p in ipairs(picked) do
    found[2 * i - 1] = p
    found[2 * i] = addrs[i]
  end
  return ns, nl, found
end

for j = 8, #ARGV, 6 do
  if ARGV[j + 5] ~= '' then
    nows = ARGV[j + 5]
    now = tonumber(nows)
    due = tostring(math.ceil(now + ttl))
  end
  local pid, kind, want = ARGV[j + 1], ARGV[j + 3], tonumber(ARGV[j + 4])
  local ns, nl, found = one(ARGV[j], pid, ARGV[j + 2], kind, want)
  out[o + 1] = ns
  out[o + 2] = nl
  local at = o + 3
  o = at
  local k = 0
  if found then
    local ids = kind:byte(1) > 96  -- lower case: peer ids wanted
    for i = 1, #found, 2 do
      local p, a = found[i], found[i + 1]
      if a and p ~= pid and k < want then
        if ids then
          out[o + 1] = p
          o = o + 1
        end
        out[o + 1] = a
        o = o + 1
        k = k + 1
      end
    end
  end
  out[at] = k
end
return out
"""
)

# KEYS: seeds, leechers, sources, addrs, index ; ARGV: now, info-hash hex -> number of
# peers removed. A swarm left empty leaves the index at once (announces keep its score
# up to ``gap`` past its last peer's expiry).
_SWEEP = (
    _SOURCES
    + """
local removed = 0
for _, z in ipairs({KEYS[1], KEYS[2]}) do
  local gone = redis.call('ZRANGEBYSCORE', z, '-inf', ARGV[1], 'LIMIT', 0, 1000)
  if #gone > 0 then
    redis.call('ZREM', z, unpack(gone))
    uncount(redis.call('HMGET', KEYS[4], unpack(gone)))
    redis.call('HDEL', KEYS[4], unpack(gone))
    removed = removed + #gone
  end
end
if redis.call('ZCARD', KEYS[1]) + redis.call('ZCARD', KEYS[2]) == 0 then
  redis.call('ZREM', KEYS[5], ARGV[2])
end
return removed
"""
)


def _pack_py(args: list[Any]) -> bytes:
    """``args`` (bytes, str or int) as one RESP command."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if not isinstance(a, bytes):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


try:
    from hiredis import pack_command as _pack_hiredis  # the same in C
except ImportError:  # redis-py without hiredis
    _pack = _pack_py
else:

    def _pack(args: list[Any]) -> bytes:
        return _pack_hiredis(tuple(args))  # type: ignore[no-any-return]


#: Most swarms listed by a full scrape or the status page.
MAX_LISTED = 10_000

#: A queued announce: info-hash hex, peer id, addr, kind, numwant, now, its future.
#: A lower-case kind asks for peer ids too (not compact).
_Pending = tuple[str, bytes, bytes, bytes, int, float, "asyncio.Future[AnnounceResult]"]


class RedisStore:
    #: Most announces in one script call (a bigger queue goes in several).
    batch_size = 128
    #: Script calls in flight at once; announces made meanwhile wait for the next.
    max_inflight = 1

    def __init__(
        self,
        url: str,
        *,
        peer_ttl: float = 3600.0,
        prefix: str = "swarm:",
        max_swarms: int = 1_000_000,
        max_peers_per_swarm: int = 20_000,
        max_peers_per_source: int = MAX_PEERS_PER_SOURCE,
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
        self._sha = hashlib.sha1(_ANNOUNCE.encode()).hexdigest()
        self._sweep = self.redis.register_script(_SWEEP)
        gap = min(60.0, peer_ttl / 10)
        self._sources = self.prefix + b"sources"
        self._head = (
            self.prefix + b"index", self.prefix + b"completed", self._sources, self.prefix,
            repr(peer_ttl), math.ceil(peer_ttl * 2), repr(gap), max_peers_per_swarm, max_swarms,
            max_peers_per_source,
        )  # fmt: skip
        self._down_until = 0.0
        self._pending: list[_Pending] = []
        self._scheduled = False
        self._flushing: set[asyncio.Task[None]] = set()

    def _keys(self, info_hash: bytes) -> list[bytes]:
        h = info_hash.hex().encode()
        p = self.prefix
        return [p + b"s:" + h, p + b"l:" + h, p + b"a:" + h, p + b"c:" + h]

    def _cooling_off(self) -> StoreUnavailable | None:
        """The error to give without trying Redis, while a recent failure cools off."""
        if time.monotonic() < self._down_until:
            return StoreUnavailable("redis down (cooling off)")
        return None

    def _failed(self, exc: Exception) -> StoreUnavailable:
        """Start the cool-off after a Redis error; the error to give for it."""
        self._down_until = time.monotonic() + self.cooldown
        return StoreUnavailable(f"{type(exc).__name__}: {exc}")

    @staticmethod
    def _fail_all(items: list[_Pending], error: StoreUnavailable) -> None:
        for item in items:
            if not item[6].done():
                item[6].set_exception(error)

    async def _call(self, coro: Any) -> Any:
        if (error := self._cooling_off()) is not None:
            coro.close()
            raise error
        try:
            return await coro
        except (RedisError, OSError) as exc:
            raise self._failed(exc) from None

    async def announce(self, req: AnnounceRequest, addr: bytes, now: float) -> AnnounceResult:
        if (error := self._cooling_off()) is not None:
            raise error
        event = req.event
        if event == "stopped":
            kind = b"X"
        else:
            if req.left == 0:
                kind = b"F" if seeds_for_seed(req) else b"S"
                if event == "completed":
                    kind += b"c"
            else:
                kind = b"Lc" if event == "completed" else b"L"
            if not req.compact and not req.no_peer_id:
                kind = kind.lower()  # the answer lists peer ids: the script returns them too
        fut: asyncio.Future[AnnounceResult] = asyncio.get_running_loop().create_future()
        self._pending.append((req.info_hash.hex(), req.peer_id, addr, kind, req.numwant, now, fut))
        if not self._scheduled and len(self._flushing) < self.max_inflight:
            self._scheduled = True
            fut.get_loop().call_soon(self._start_flush)
        return await fut

    def _start_flush(self) -> None:
        """Send the queued announces, ``batch_size`` to a script call: redis-py's
        cost is per command, so one call for many announces is what makes it cheap."""
        self._scheduled = False
        if self._pending and (error := self._cooling_off()) is not None:  # failed meanwhile
            self._fail_all(self._pending, error)
            self._pending = []
            return
        while self._pending and len(self._flushing) < self.max_inflight:
            batch = self._pending[: self.batch_size]
            del self._pending[: self.batch_size]
            task = asyncio.get_running_loop().create_task(self._flush(batch))
            self._flushing.add(task)
            task.add_done_callback(self._flushed)

    def _flushed(self, task: asyncio.Task[None]) -> None:
        self._flushing.discard(task)
        if self._pending and not self._scheduled:  # queued while that batch was out
            self._scheduled = True
            task.get_loop().call_soon(self._start_flush)

    async def _flush(self, batch: list[_Pending]) -> None:
        try:
            out = await self._run_batch(batch)
        except (RedisError, OSError) as exc:
            self._fail_all(batch, self._failed(exc))
            return
        i = 0
        for item in batch:
            seeds, leechers, k = out[i], out[i + 1], out[i + 2]
            i += 3
            ids = item[3][0] > 96  # lower-case kind: (peer id, addr) pairs, else addrs
            j = i + 2 * k if ids else i + k
            fut = item[6]
            if fut.done():  # the asker went away
                pass
            elif seeds >= 0:
                if ids:
                    peers = list(zip(out[i:j:2], out[i + 1 : j : 2], strict=True))
                else:  # a compact answer has no peer ids
                    peers = [(b"", a) for a in out[i:j]]
                fut.set_result(AnnounceResult(peers, seeds, leechers))
            elif seeds == -1:
                fut.set_exception(StoreFull("tracker is full: too many peers in this swarm"))
            elif seeds == -3:
                fut.set_exception(StoreFull("tracker is full: too many peers from your address"))
            else:
                fut.set_exception(StoreFull("tracker is full: too many swarms"))
            i = j

    async def _run_batch(self, batch: list[_Pending]) -> list[Any]:
        args: list[Any] = [b"EVALSHA", self._sha, 3, *self._head]
        last = None
        for ih, pid, addr, kind, numwant, now, _ in batch:
            args += (ih, pid, addr, kind, numwant, b"" if now == last else repr(now))
            last = now
        try:
            return await self._send(args)
        except NoScriptError:  # Redis restarted or SCRIPT FLUSH: nothing of it ran
            args[1] = self._sha = await self.redis.script_load(_ANNOUNCE)
            return await self._send(args)

    async def _send(self, args: list[Any]) -> list[Any]:
        """One command on a pooled connection, packed here in one piece: redis-py's
        own packing and ``execute_command`` cost more than the script for a batch."""
        packed = _pack(args)
        pool = self.redis.connection_pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await conn.send_packed_command(packed, check_health=False)
            out: list[Any] = await conn.read_response()
            return out
        finally:
            await pool.release(conn)

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
        # swarms gone quiet are swept too (not just dropped from the index), so that
        # their peers' per-source counts are given back; an emptied swarm leaves the index
        index = self.prefix + b"index"
        removed = 0
        for h in await self._listed():
            s, lee, a, _ = self._keys(h)
            swept = self._sweep(keys=[s, lee, self._sources, a, index], args=[repr(now), h.hex()])
            removed += int(await self._call(swept))
        return removed

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` when Redis cannot be reached (a start-up check)."""
        await self._call(self.redis.ping())

    async def close(self) -> None:
        await self.redis.aclose()
