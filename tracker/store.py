"""Swarm state behind the tracker: the ``Store`` interface and its in-memory version.

The HTTP layer validates and resolves the peer's address; a store only keeps
peers and answers. Every method takes the time as ``now`` (unix seconds) so
that expiry is tested with a simulated clock and so that several worker
processes sharing one Redis store agree on it.
"""

from __future__ import annotations

import random
from array import array
from dataclasses import dataclass, field
from typing import Protocol

from swarm.core.announce import AnnounceRequest, ScrapeStats
from swarm.errors import TrackerError

#: ``(peer_id, compact address)`` pairs, as ``encode_announce_response`` takes them.
PeerList = list[tuple[bytes, bytes]]


class StoreFull(TrackerError):
    """A cap on swarms or peers is reached; the message is the failure reason."""


class StoreUnavailable(TrackerError):
    """The storage back-end cannot be reached; announces fail fast until it returns."""

    def __init__(self, detail: str = "") -> None:
        super().__init__("tracker storage unavailable")
        self.detail = detail


@dataclass(frozen=True, slots=True)
class AnnounceResult:
    """Peers picked for the asker; their ids may be ``b""`` when the request is compact."""

    peers: PeerList
    complete: int  # seeders
    incomplete: int  # leechers


class Store(Protocol):
    async def announce(self, req: AnnounceRequest, addr: bytes, now: float) -> AnnounceResult:
        """Record ``req`` from the peer at compact ``addr`` and pick peers for it."""
        ...

    async def scrape(self, info_hashes: list[bytes]) -> dict[bytes, ScrapeStats]:
        """Stats of the given swarms (known ones only); an empty list means all."""
        ...

    async def stats(self) -> dict[str, int]:
        """Totals: swarms, peers, seeders, leechers, completed."""
        ...

    async def expire(self, now: float) -> int:
        """Drop peers not heard from in time; return how many went."""
        ...

    async def close(self) -> None: ...


#: aria2c's peer id prefix (see ``seeds_for_seed``).
SEEDS_FOR_SEED_PREFIX = b"A2-"


def seeds_for_seed(req: AnnounceRequest) -> bool:
    """Whether a seed's answer may list other seeds, after every leecher.

    Seeds get no seeds: two seeds have nothing to trade. The exception is
    aria2c (peer id ``A2-``), which announces ``left=0`` while it fetches a
    magnet's metadata: without seeds it got no peers at all and its magnet
    download through this tracker never started.
    """
    return req.peer_id.startswith(SEEDS_FOR_SEED_PREFIX)


class _Pool:
    """Peers of one kind (seeds or leechers) in parallel arrays: O(1) add and
    swap-removal, and a run of peers is a slice.

    Slices, not per-peer objects, because picking 50 peers among a hundred
    thousand is bound by cache misses: a dict lookup, a tuple and a float per
    peer cost more than the rest of an announce. Here a pick touches only the
    address objects it returns and a contiguous array of expiry times.
    """

    __slots__ = ("ids", "addrs", "expires", "index", "packed", "ipv6", "earliest")

    def __init__(self) -> None:
        self.ids: list[bytes] = []
        self.addrs: list[bytes] = []  # compact address, same position as ids
        self.expires: array[float] = array("d")
        self.index: dict[bytes, int] = {}
        #: The addresses again, 6 bytes each (zeros for an IPv6 peer): a UDP answer to
        #: an IPv4 swarm is a slice of it, one copy, no address object touched.
        self.packed = bytearray()
        self.ipv6 = 0  # IPv6 peers here; ``packed`` is used only while there are none
        #: No peer here expires before this (a lower bound, made exact by each sweep):
        #: while it is in the future a pick need not look at the expiry times at all.
        self.earliest = _NEVER

    def put(self, pid: bytes, addr: bytes, expires: float) -> int:
        """Add or refresh ``pid``; its position."""
        return self.put_at(self.index.get(pid), pid, addr, expires)

    def put_at(self, i: int | None, pid: bytes, addr: bytes, expires: float) -> int:
        """``put`` for a caller that has looked ``pid`` up already: ``i`` is its
        position here, or ``None`` when it is not here."""
        v4 = len(addr) == 6
        if expires < self.earliest:
            self.earliest = expires
        if i is None:
            i = self.index[pid] = len(self.ids)
            self.ids.append(pid)
            self.addrs.append(addr)
            self.expires.append(expires)
            self.packed += addr if v4 else _NOT_IPV4
        else:
            self.ipv6 -= len(self.addrs[i]) != 6
            self.addrs[i] = addr
            self.expires[i] = expires
            self.packed[6 * i : 6 * i + 6] = addr if v4 else _NOT_IPV4
        self.ipv6 += not v4
        return i

    def remove(self, pid: bytes) -> bool:
        i = self.index.pop(pid, None)
        if i is None:
            return False
        self.ipv6 -= len(self.addrs[i]) != 6
        last_id, last_addr, last_exp = self.ids.pop(), self.addrs.pop(), self.expires.pop()
        packed = self.packed
        if i < len(self.ids):
            self.ids[i], self.addrs[i], self.expires[i] = last_id, last_addr, last_exp
            self.index[last_id] = i
            packed[6 * i : 6 * i + 6] = packed[-6:]
        del packed[-6:]
        return True

    def __len__(self) -> int:
        return len(self.ids)


#: ``_Pool.packed``'s entry for an IPv6 peer (never read: see ``_Pool.ipv6``).
_NOT_IPV4 = bytes(6)
_NEVER = float("inf")

#: A run of peers to answer with: ``pool.ids[lo:hi]``.
_Run = tuple[_Pool, int, int]


@dataclass(slots=True)
class _Swarm:
    seeds: _Pool = field(default_factory=_Pool)
    leechers: _Pool = field(default_factory=_Pool)
    completed: int = 0
    creator: bytes = b""  # the address that made it, for the per-source swarm cap

    def __len__(self) -> int:
        return len(self.seeds) + len(self.leechers)

    def find(self, pid: bytes) -> tuple[_Pool, int] | None:
        """The pool holding ``pid`` and its position there."""
        for pool in (self.seeds, self.leechers):
            i = pool.index.get(pid)
            if i is not None:
                return pool, i
        return None


def _span(first: bytearray, second: bytearray, n_first: int, lo: int, hi: int) -> bytearray:
    """Entries ``lo:hi`` of two packed pools laid end to end (6 bytes each)."""
    if hi <= n_first:
        return first[6 * lo : 6 * hi]
    if lo >= n_first:
        return second[6 * (lo - n_first) : 6 * (hi - n_first)]
    return first[6 * lo :] + second[: 6 * (hi - n_first)]


def same_source(stored: bytes, addr: bytes) -> bool:
    """Whether two compact addresses share their IP (the port may change).

    A peer's entry may be changed only from the address that created it:
    non-compact answers publish peer ids, so a peer id alone proves nothing.
    """
    return stored[:-2] == addr[:-2]


def source_of(addr: bytes) -> bytes:
    """What per-source caps count under: the IPv4 address, or the IPv6 /64 (one
    host commonly holds a whole /64, so its addresses are one source)."""
    return addr[:4] if len(addr) == 6 else addr[:8]


#: Swarms and peer entries one source may add (a tenth of the global caps): enough for
#: a NAT'd site, too few for one client to lock everyone out.
MAX_SWARMS_PER_SOURCE = 10_000
MAX_PEERS_PER_SOURCE = 100_000


class MemoryStore:
    """All state in this process's dicts: the default for a LAN tracker."""

    def __init__(
        self,
        *,
        peer_ttl: float = 3600.0,
        max_swarms: int = 100_000,
        max_peers_per_swarm: int = 20_000,
        max_peers: int = 1_000_000,
        max_swarms_per_source: int = MAX_SWARMS_PER_SOURCE,
        max_peers_per_source: int = MAX_PEERS_PER_SOURCE,
        rng: random.Random | None = None,
    ) -> None:
        self.peer_ttl = peer_ttl
        self.max_swarms = max_swarms
        self.max_peers_per_swarm = max_peers_per_swarm
        self.max_peers = max_peers  # all swarms together; about 200 bytes each
        self.peer_count = 0
        # the caps above are global: one source must not fill them and lock everyone
        # out for the peers' lifetime, so it gets a share (see ``source_of``)
        self.max_swarms_per_source = max_swarms_per_source
        self.max_peers_per_source = max_peers_per_source
        self.swarms_by_source: dict[bytes, int] = {}
        self.peers_by_source: dict[bytes, int] = {}
        self.rng = rng or random.Random()
        self.swarms: dict[bytes, _Swarm] = {}
        self.total_completed = 0

    async def announce(self, req: AnnounceRequest, addr: bytes, now: float) -> AnnounceResult:
        return self.announce_sync(req, addr, now)

    def announce_sync(self, req: AnnounceRequest, addr: bytes, now: float) -> AnnounceResult:
        ids, addrs, seeders, leechers = self.announce_fields(
            req.info_hash, req.peer_id, req.left, req.event, req.numwant, addr, now
        )
        return AnnounceResult(list(zip(ids, addrs, strict=True)), seeders, leechers)

    def announce_fields(
        self,
        info_hash: bytes,
        pid: bytes,
        left: int,
        event: str,
        numwant: int,
        addr: bytes,
        now: float,
        with_ids: bool = True,
        packed: bytearray | None = None,
    ) -> tuple[list[bytes], list[bytes], int, int]:
        """``announce_sync`` from the request's fields: ``(peer ids, compact addresses,
        seeders, leechers)``. The UDP path calls it straight from the datagram with
        ``with_ids`` off (its answer has no ids): no request object, no id copies; and
        with ``packed``: for an IPv4 asker in a swarm of IPv4 peers only, the picked
        addresses go there, 6 bytes each, sliced from the pools (the list stays empty)."""
        swarm = self.swarms.get(info_hash)
        if event == "stopped":
            if swarm is not None:
                found = swarm.find(pid)
                if found is not None and same_source(found[0].addrs[found[1]], addr):
                    self._remove(found[0], pid, found[0].addrs[found[1]])
                if not len(swarm) and not swarm.completed:
                    self._drop_swarm(info_hash)
                return [], [], len(swarm.seeds), len(swarm.leechers)
            return [], [], 0, 0
        if swarm is None:
            if len(self.swarms) >= self.max_swarms:
                raise StoreFull("tracker is full: too many swarms")
            if self.peer_count >= self.max_peers:
                raise StoreFull("tracker is full: too many peers")
            self._count(self.swarms_by_source, addr, self.max_swarms_per_source, "swarms")
            swarm = self.swarms[info_hash] = _Swarm(creator=addr)
        seed = left == 0
        mine, other = (swarm.seeds, swarm.leechers) if seed else (swarm.leechers, swarm.seeds)
        at = mine.index.get(pid)
        if at is not None:
            theirs: tuple[_Pool, int] | None = (mine, at)
        else:  # in the other pool (a leecher turned seed), or new: ``find`` without ``mine``
            elsewhere = other.index.get(pid)
            theirs = None if elsewhere is None else (other, elsewhere)
        if theirs is None or same_source(theirs[0].addrs[theirs[1]], addr):
            theirs = mine, self._record(swarm, pid, event, addr, now, mine, other, at)
        # else someone else's entry: answer, but change nothing of it
        ids: list[bytes] = []
        addrs: list[bytes] = []
        fill = seed and pid.startswith(SEEDS_FOR_SEED_PREFIX)
        if packed is not None and len(addr) == 6 and not swarm.seeds.ipv6 + swarm.leechers.ipv6:
            self._pick(swarm, theirs, seed, numwant, now, None, packed, fill)
        else:
            self._pick(swarm, theirs, seed, numwant, now, ids if with_ids else None, addrs, fill)
        return ids, addrs, len(swarm.seeds.ids), len(swarm.leechers.ids)

    def announce_v4(
        self, info_hash: bytes, pid: bytes, left: int, event: str, numwant: int, addr: bytes,
        now: float,
    ) -> tuple[bytes | bytearray, int, int] | None:
        """UDP's common case in one step: ``(packed peers, seeders, leechers)``, or
        ``None``, having changed nothing, for anything else (the caller then takes
        ``announce_fields``). The case: an IPv4 asker (``addr`` 6 bytes) in a known
        swarm of IPv4 peers none of which is past its time, not stopping, new or
        refreshing its own entry, not aria2c's seed. Half the cost of the general
        path, which looks the peer id up five times and builds runs and lists: on a
        loaded tracker this is where the time goes."""
        swarm = self.swarms.get(info_hash)
        if swarm is None or event == "stopped":
            return None
        seeds, leechers = swarm.seeds, swarm.leechers
        if seeds.ipv6 or leechers.ipv6 or seeds.earliest <= now or leechers.earliest <= now:
            return None
        seed = left == 0
        if seed and pid.startswith(SEEDS_FOR_SEED_PREFIX):
            return None  # aria2c's seed may get seeds: the general path
        mine, other = (seeds, leechers) if seed else (leechers, seeds)
        at = mine.index.get(pid)
        if at is None:
            if pid in other.index:
                return None
            if len(seeds.ids) + len(leechers.ids) >= self.max_peers_per_swarm:
                return None
            if self.peer_count >= self.max_peers:
                return None
            by_source, key = self.peers_by_source, addr[:4]
            n = by_source.get(key, 0)
            if n >= self.max_peers_per_source:
                return None
            by_source[key] = n + 1
            self.peer_count += 1
        elif mine.addrs[at][:4] != addr[:4]:
            return None  # someone else's entry: the general path
        at = mine.put_at(at, pid, addr, now + self.peer_ttl)
        if event == "completed":
            swarm.completed += 1
            self.total_completed += 1
        ns, nl = len(seeds.ids), len(leechers.ids)
        if numwant <= 0:
            return b"", ns, nl
        if seed:  # leechers only, and the asker is not among them
            if nl <= numwant:
                return leechers.packed[:], ns, nl
            pos = int(self.rng.random() * nl)  # randrange costs 5x more; nl < 2**53
            end = pos + numwant
            if end <= nl:
                return leechers.packed[6 * pos : 6 * end], ns, nl
            return leechers.packed[6 * pos :] + leechers.packed[: 6 * (end - nl)], ns, nl
        # a leecher: seeds and leechers laid end to end, a window of numwant + 1 at a
        # random offset (wrapping around), then the asker (or the window's last) out
        total, me = ns + nl, ns + at
        if total <= numwant + 1:
            out = seeds.packed + leechers.packed
            del out[6 * me : 6 * me + 6]
            return out, ns, nl
        pos = int(self.rng.random() * total)
        end = pos + numwant + 1
        out = _span(seeds.packed, leechers.packed, ns, pos, min(end, total))
        if end > total:
            out += _span(seeds.packed, leechers.packed, ns, 0, end - total)
        skip = me - pos if me >= pos else me + total - pos
        if skip > numwant:
            skip = numwant
        del out[6 * skip : 6 * skip + 6]
        return out, ns, nl

    def _record(
        self,
        swarm: _Swarm,
        pid: bytes,
        event: str,
        addr: bytes,
        now: float,
        mine: _Pool,
        other: _Pool,
        at: int | None,
    ) -> int:
        """Add or refresh the asker in ``mine`` (``at``: its place there, if any)."""
        if at is None:
            if other.remove(pid):
                pass  # a leecher turned seed (or back): same peer, other pool
            elif len(swarm) >= self.max_peers_per_swarm:
                raise StoreFull("tracker is full: too many peers in this swarm")
            elif self.peer_count >= self.max_peers:
                raise StoreFull("tracker is full: too many peers")
            else:
                self._count(self.peers_by_source, addr, self.max_peers_per_source, "peers")
                self.peer_count += 1
        at = mine.put_at(at, pid, addr, now + self.peer_ttl)
        if event == "completed":
            swarm.completed += 1
            self.total_completed += 1
        return at

    @staticmethod
    def _count(counts: dict[bytes, int], addr: bytes, cap: int, what: str) -> None:
        """One more of ``what`` from ``addr``'s source, unless it has ``cap`` already."""
        key = source_of(addr)
        n = counts.get(key, 0)
        if n >= cap:
            raise StoreFull(f"tracker is full: too many {what} from your address")
        counts[key] = n + 1

    @staticmethod
    def _uncount(counts: dict[bytes, int], addr: bytes) -> None:
        key = source_of(addr)
        n = counts.get(key, 0) - 1
        if n > 0:
            counts[key] = n
        else:
            counts.pop(key, None)

    def _remove(self, pool: _Pool, pid: bytes, addr: bytes) -> None:
        pool.remove(pid)
        self.peer_count -= 1
        self._uncount(self.peers_by_source, addr)

    def _drop_swarm(self, info_hash: bytes) -> None:
        self._uncount(self.swarms_by_source, self.swarms.pop(info_hash).creator)

    def _pick(
        self,
        swarm: _Swarm,
        asker: tuple[_Pool, int],
        seed: bool,
        want: int,
        now: float,
        ids: list[bytes] | None,
        addrs: list[bytes] | bytearray,
        fill: bool = False,
    ) -> None:
        """Up to ``want`` random live peers into ``addrs`` (and their ids into ``ids``,
        unless ``None``), never the asker; a seed gets leechers only, or (``fill``, see
        ``seeds_for_seed``) leechers first, then seeds. A bytearray ``addrs`` takes the
        pools' ``packed`` IPv4 addresses, 6 bytes a peer."""
        if want <= 0:
            return
        unit = 6 if isinstance(addrs, bytearray) else 1
        if not seed:
            self._take(
                self._window((swarm.seeds, swarm.leechers), want + 1), asker, now, ids, addrs
            )
        else:
            leechers = swarm.leechers
            self._take(self._window((leechers,), want), asker, now, ids, addrs)
            if len(addrs) < want * unit and len(leechers) > want:
                # the window held peers past their time (not yet swept): look at every
                # leecher before handing a seed any seed
                if ids is not None:
                    ids.clear()
                addrs.clear()
                self._take([(leechers, 0, len(leechers))], asker, now, ids, addrs)
            if fill and len(addrs) < want * unit:
                room = want - len(addrs) // unit
                self._take(self._window((swarm.seeds,), room + 1), asker, now, ids, addrs)
        if len(addrs) > want * unit:
            del addrs[want * unit :]
            if ids is not None:
                del ids[want:]

    @staticmethod
    def _take(
        runs: list[_Run],
        asker: tuple[_Pool, int],
        now: float,
        ids: list[bytes] | None,
        addrs: list[bytes] | bytearray,
    ) -> None:
        """Append the live peers of ``runs`` but the asker, a slice at a time."""
        asker_pool, asker_at = asker
        for pool, lo, hi in runs:
            parts: tuple[tuple[int, int], ...]
            if pool is asker_pool and lo <= asker_at < hi:
                parts = ((lo, asker_at), (asker_at + 1, hi))
            else:
                parts = ((lo, hi),)
            for a, b in parts:
                if a >= b:
                    continue
                if pool.earliest > now or min(pool.expires[a:b]) > now:
                    if ids is not None:
                        ids += pool.ids[a:b]
                    if isinstance(addrs, bytearray):
                        addrs += pool.packed[6 * a : 6 * b]
                    else:
                        addrs += pool.addrs[a:b]
                    continue
                exp = pool.expires
                for i in range(a, b):  # some are past their time: skip those
                    if exp[i] > now:
                        if ids is not None:
                            ids.append(pool.ids[i])
                        if isinstance(addrs, bytearray):
                            addrs += pool.packed[6 * i : 6 * i + 6]
                        else:
                            addrs.append(pool.addrs[i])

    def _window(self, pools: tuple[_Pool, ...], k: int) -> list[_Run]:
        """``k`` peers at a random offset in the pools laid end to end, wrapping
        around: O(k) slices instead of a random sample; the pools' order is
        arrival order scrambled by swap-removals."""
        sizes = [len(p.ids) for p in pools]
        total = sum(sizes)
        if total <= k:
            return [(p, 0, n) for p, n in zip(pools, sizes, strict=True) if n]
        runs: list[_Run] = []
        pos = int(self.rng.random() * total)  # randrange costs 5x more; total < 2**53
        while k > 0:
            off = pos
            i = 0
            while off >= sizes[i]:  # the pool holding position ``pos``, and where in it
                off -= sizes[i]
                i += 1
            n = min(k, sizes[i] - off)
            runs.append((pools[i], off, off + n))
            k -= n
            pos = (pos + n) % total
        return runs

    async def scrape(self, info_hashes: list[bytes]) -> dict[bytes, ScrapeStats]:
        keys = info_hashes or list(self.swarms)
        out: dict[bytes, ScrapeStats] = {}
        for h in keys:
            s = self.swarms.get(h)
            if s is not None:
                out[h] = ScrapeStats(len(s.seeds), s.completed, len(s.leechers))
        return out

    async def stats(self) -> dict[str, int]:
        seeders = sum(len(s.seeds) for s in self.swarms.values())
        leechers = sum(len(s.leechers) for s in self.swarms.values())
        return {
            "swarms": len(self.swarms),
            "peers": seeders + leechers,
            "seeders": seeders,
            "leechers": leechers,
            "completed": self.total_completed,
        }

    async def expire(self, now: float) -> int:
        gone = 0
        for h in list(self.swarms):
            swarm = self.swarms[h]
            for pool in (swarm.seeds, swarm.leechers):
                if pool.earliest > now:
                    continue
                stale = [
                    (pool.ids[i], pool.addrs[i]) for i, e in enumerate(pool.expires) if e <= now
                ]
                for pid, addr in stale:
                    self._remove(pool, pid, addr)
                gone += len(stale)
                pool.earliest = min(pool.expires, default=_NEVER)
            if not len(swarm):
                self._drop_swarm(h)
        return gone

    async def close(self) -> None:
        self.swarms.clear()
        self.swarms_by_source.clear()
        self.peers_by_source.clear()
        self.peer_count = 0


def open_store(
    url: str,
    *,
    peer_ttl: float,
    max_swarms_per_source: int | None = None,
    max_peers_per_source: int | None = None,
) -> Store:
    """A store from a ``--store`` URL: ``memory:`` or ``redis://HOST:PORT/DB``.

    ``None`` keeps the per-source caps' defaults; a Redis store caps peers per source
    (its swarms per source are bounded by that)."""
    from swarm.errors import BadInput

    if url in ("", "memory", "memory:"):
        return MemoryStore(
            peer_ttl=peer_ttl,
            max_swarms_per_source=max_swarms_per_source or MAX_SWARMS_PER_SOURCE,
            max_peers_per_source=max_peers_per_source or MAX_PEERS_PER_SOURCE,
        )
    if url.startswith(("redis://", "rediss://", "unix://")):
        try:
            from tracker.redis_store import RedisStore
        except ImportError as exc:  # redis-py missing
            raise BadInput(
                f"--store {url}: the redis package is not installed ({exc}); "
                "install it with: pip install 'swarm[redis]'"
            ) from None
        store: Store = RedisStore(
            url,
            peer_ttl=peer_ttl,
            max_peers_per_source=max_peers_per_source or MAX_PEERS_PER_SOURCE,
        )
        return store
    raise BadInput(f"--store {url}: expected memory: or redis://HOST:PORT/DB")
