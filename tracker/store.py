"""Swarm state behind the tracker: the ``Store`` interface and its in-memory version.

The HTTP layer validates and resolves the peer's address; a store only keeps
peers and answers. Every method takes the time as ``now`` (unix seconds) so
that expiry is tested with a simulated clock and so that several worker
processes sharing one Redis store agree on it.
"""

from __future__ import annotations

import random
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


class _Pool:
    """Peers of one kind (seeds or leechers) in a list for O(1) random picks and removal."""

    __slots__ = ("ids", "index")

    def __init__(self) -> None:
        self.ids: list[bytes] = []
        self.index: dict[bytes, int] = {}

    def add(self, pid: bytes) -> None:
        if pid not in self.index:
            self.index[pid] = len(self.ids)
            self.ids.append(pid)

    def remove(self, pid: bytes) -> None:
        i = self.index.pop(pid, None)
        if i is None:
            return
        last = self.ids.pop()
        if i < len(self.ids):
            self.ids[i] = last
            self.index[last] = i

    def __len__(self) -> int:
        return len(self.ids)


#: A peer: (compact address, is a seed, expiry time). A tuple, not an object: the
#: garbage collector stops tracking tuples of atomic values, which keeps its full
#: passes cheap with a million peers in memory.
_Peer = tuple[bytes, bool, float]


@dataclass(slots=True)
class _Swarm:
    peers: dict[bytes, _Peer] = field(default_factory=dict)
    seeds: _Pool = field(default_factory=_Pool)
    leechers: _Pool = field(default_factory=_Pool)
    completed: int = 0

    def drop(self, pid: bytes) -> int:
        peer = self.peers.pop(pid, None)
        if peer is None:
            return 0
        (self.seeds if peer[1] else self.leechers).remove(pid)
        return 1


class MemoryStore:
    """All state in this process's dicts: the default for a LAN tracker."""

    def __init__(
        self,
        *,
        peer_ttl: float = 3600.0,
        max_swarms: int = 100_000,
        max_peers_per_swarm: int = 20_000,
        max_peers: int = 1_000_000,
        rng: random.Random | None = None,
    ) -> None:
        self.peer_ttl = peer_ttl
        self.max_swarms = max_swarms
        self.max_peers_per_swarm = max_peers_per_swarm
        self.max_peers = max_peers  # all swarms together; a few hundred bytes each
        self.peer_count = 0
        self.rng = rng or random.Random()
        self.swarms: dict[bytes, _Swarm] = {}
        self.total_completed = 0

    async def announce(self, req: AnnounceRequest, addr: bytes, now: float) -> AnnounceResult:
        return self.announce_sync(req, addr, now)

    def announce_sync(self, req: AnnounceRequest, addr: bytes, now: float) -> AnnounceResult:
        swarm = self.swarms.get(req.info_hash)
        if req.event == "stopped":
            if swarm is not None:
                self.peer_count -= swarm.drop(req.peer_id)
                if not swarm.peers and not swarm.completed:
                    del self.swarms[req.info_hash]
                return AnnounceResult([], len(swarm.seeds), len(swarm.leechers))
            return AnnounceResult([], 0, 0)
        if swarm is None:
            if len(self.swarms) >= self.max_swarms:
                raise StoreFull("tracker is full: too many swarms")
            if self.peer_count >= self.max_peers:
                raise StoreFull("tracker is full: too many peers")
            swarm = self.swarms[req.info_hash] = _Swarm()
        seed = req.left == 0
        peer = swarm.peers.get(req.peer_id)
        if peer is None:
            if len(swarm.peers) >= self.max_peers_per_swarm:
                raise StoreFull("tracker is full: too many peers in this swarm")
            if self.peer_count >= self.max_peers:
                raise StoreFull("tracker is full: too many peers")
            self.peer_count += 1
            (swarm.seeds if seed else swarm.leechers).add(req.peer_id)
        elif peer[1] != seed:
            (swarm.seeds if peer[1] else swarm.leechers).remove(req.peer_id)
            (swarm.seeds if seed else swarm.leechers).add(req.peer_id)
        swarm.peers[req.peer_id] = (addr, seed, now + self.peer_ttl)
        if req.event == "completed":
            swarm.completed += 1
            self.total_completed += 1
        return AnnounceResult(
            self._pick(swarm, req.peer_id, seed, req.numwant, now),
            len(swarm.seeds),
            len(swarm.leechers),
        )

    def _pick(self, swarm: _Swarm, asker: bytes, seed: bool, want: int, now: float) -> PeerList:
        """Up to ``want`` random peers, never the asker; a seed gets leechers first.

        Seeds still get seeds to fill their answer: aria2c announces ``left=0``
        while it fetches a magnet's metadata, and "no seeds for a seed" left it
        with no peers at all.
        """
        if want <= 0:
            return []
        peers = swarm.peers

        def live(window: list[bytes]) -> PeerList:
            return [(pid, e[0]) for pid in window if pid != asker and (e := peers[pid])[2] > now]

        if not seed:
            return live(self._window(swarm.seeds.ids, swarm.leechers.ids, want + 1))[:want]
        leechers = swarm.leechers.ids
        out = live(self._window([], leechers, want))[:want]
        if len(out) < want and len(leechers) > want:
            # the window held peers past their time (not yet swept): look at every
            # leecher before handing a seed any seed
            out = live(leechers)[:want]
        if len(out) < want:
            room = want - len(out)
            out += live(self._window([], swarm.seeds.ids, room + 1))[:room]
        return out

    def _window(self, first: list[bytes], second: list[bytes], k: int) -> list[bytes]:
        """``k`` ids at a random offset in ``first + second``, wrapping around:
        O(k) list slicing instead of a random sample; the pools' order is
        arrival order scrambled by swap-removals."""
        a, total = len(first), len(first) + len(second)
        if total <= k:
            return first + second
        window: list[bytes] = []
        pos = self.rng.randrange(total)
        while len(window) < k:
            if pos < a:
                chunk = first[pos : pos + k - len(window)]
            else:
                chunk = second[pos - a : pos - a + k - len(window)]
            window += chunk
            pos = (pos + len(chunk)) % total
        return window

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
            stale = [pid for pid, p in swarm.peers.items() if p[2] <= now]
            for pid in stale:
                self.peer_count -= swarm.drop(pid)
            gone += len(stale)
            if not swarm.peers:
                del self.swarms[h]
        return gone

    async def close(self) -> None:
        self.swarms.clear()
        self.peer_count = 0


def open_store(url: str, *, peer_ttl: float) -> Store:
    """A store from a ``--store`` URL: ``memory:`` or ``redis://HOST:PORT/DB``."""
    from swarm.errors import BadInput

    if url in ("", "memory", "memory:"):
        return MemoryStore(peer_ttl=peer_ttl)
    if url.startswith(("redis://", "rediss://", "unix://")):
        try:
            from tracker.redis_store import RedisStore
        except ImportError as exc:  # redis-py missing
            raise BadInput(f"--store {url}: the redis package is not installed ({exc})") from None
        store: Store = RedisStore(url, peer_ttl=peer_ttl)
        return store
    raise BadInput(f"--store {url}: expected memory: or redis://HOST:PORT/DB")
