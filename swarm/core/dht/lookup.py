"""Iterative Kademlia lookups (find_node / get_peers) as a pure state machine.

The caller asks ``next_queries(now)`` what to send, feeds back responses and
timeouts, and stops when ``done``. At most ``alpha`` queries are in flight;
the lookup ends once the k closest live candidates have all answered (so no
closer unqueried node remains) or nothing is left to ask. Candidates are keyed
by address: bootstrap routers have no known id until they answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from swarm.core.dht.krpc import NodeInfo, Peer
from swarm.core.dht.node_id import ID_SPACE, id_to_int

ALPHA = 3
K = 8
QUERY_TIMEOUT = 2.0
MAX_CANDIDATES = 256
MAX_QUERIES = 200
MAX_PEERS = 2000

NEW, INFLIGHT, ANSWERED, FAILED = "new", "inflight", "answered", "failed"


@dataclass(slots=True)
class Candidate:
    addr: Peer
    id: bytes | None
    dist: int
    state: str = NEW
    deadline: float = 0.0
    token: bytes | None = None


@dataclass(frozen=True, slots=True)
class QueryAction:
    """Send the lookup's query (find_node or get_peers of ``target``) to ``addr``."""

    addr: Peer
    node_id: bytes | None


@dataclass(slots=True)
class LookupResult:
    #: the k closest nodes that answered, nearest first, with their get_peers tokens
    closest: list[tuple[NodeInfo, bytes | None]] = field(default_factory=list)
    peers: list[Peer] = field(default_factory=list)
    queries: int = 0


class Lookup:
    def __init__(
        self,
        target: bytes,
        seeds: Iterable[NodeInfo | Peer],
        *,
        get_peers: bool = False,
        own_id: bytes | None = None,
        k: int = K,
        alpha: int = ALPHA,
        timeout: float = QUERY_TIMEOUT,
        max_queries: int = MAX_QUERIES,
    ) -> None:
        self.target = target
        self.get_peers = get_peers
        self.k = k
        self.alpha = alpha
        self.timeout = timeout
        self.max_queries = max_queries
        self._t = id_to_int(target)
        self._own = own_id
        self._cands: dict[Peer, Candidate] = {}
        self._peers: dict[Peer, None] = {}
        self.queries = 0
        self.inflight = 0
        for seed in seeds:
            if isinstance(seed, NodeInfo):
                self._add(seed.addr, seed.id)
            else:
                self._add(seed, None)

    def _add(self, addr: Peer, node_id: bytes | None) -> None:
        if addr in self._cands or (node_id is not None and node_id == self._own):
            return
        dist = ID_SPACE if node_id is None else id_to_int(node_id) ^ self._t
        self._cands[addr] = Candidate(addr, node_id, dist)
        if len(self._cands) > MAX_CANDIDATES:
            # Forget the farthest candidate we have not asked yet.
            spare = [c for c in self._cands.values() if c.state == NEW]
            if spare:
                del self._cands[max(spare, key=lambda c: c.dist).addr]

    def _ranked(self) -> list[Candidate]:
        live = [c for c in self._cands.values() if c.state != FAILED]
        live.sort(key=lambda c: c.dist)
        return live[: self.k]

    def _expire(self, now: float) -> None:
        for c in self._cands.values():
            if c.state == INFLIGHT and now >= c.deadline:
                c.state = FAILED
                self.inflight -= 1

    @property
    def done(self) -> bool:
        top = self._ranked()
        if all(c.state == ANSWERED for c in top):
            return True
        return self.queries >= self.max_queries and self.inflight == 0

    def next_queries(self, now: float) -> list[QueryAction]:
        """Queries to send now (marks them in flight); empty when done or waiting."""
        self._expire(now)
        if self.done:
            return []
        out = []
        for c in self._ranked():
            if self.inflight >= self.alpha or self.queries >= self.max_queries:
                break
            if c.state == NEW:
                c.state = INFLIGHT
                c.deadline = now + self.timeout
                self.inflight += 1
                self.queries += 1
                out.append(QueryAction(c.addr, c.id))
        return out

    def next_deadline(self) -> float | None:
        """When the oldest in-flight query times out (for the caller's wait)."""
        times = [c.deadline for c in self._cands.values() if c.state == INFLIGHT]
        return min(times) if times else None

    def on_response(
        self,
        addr: Peer,
        responder_id: bytes,
        nodes: Iterable[NodeInfo] = (),
        values: Iterable[Peer] = (),
        token: bytes | None = None,
        now: float = 0.0,
    ) -> list[Peer]:
        """Consume an answer from ``addr``; returns the peers not seen before."""
        c = self._cands.get(addr)
        if c is None or c.state not in (INFLIGHT, FAILED):
            return []  # unsolicited or duplicate
        if c.state == INFLIGHT:
            self.inflight -= 1
        c.state = ANSWERED
        c.id = responder_id
        c.dist = id_to_int(responder_id) ^ self._t
        c.token = token
        for n in nodes:
            self._add(n.addr, n.id)
        fresh = []
        for p in values:
            if p not in self._peers and len(self._peers) < MAX_PEERS:
                self._peers[p] = None
                fresh.append(p)
        return fresh

    def on_timeout(self, addr: Peer, now: float = 0.0) -> None:
        c = self._cands.get(addr)
        if c is not None and c.state == INFLIGHT:
            c.state = FAILED
            self.inflight -= 1

    def result(self) -> LookupResult:
        answered = sorted(
            (c for c in self._cands.values() if c.state == ANSWERED and c.id is not None),
            key=lambda c: c.dist,
        )[: self.k]
        closest = [(NodeInfo(c.id, c.addr[0], c.addr[1]), c.token) for c in answered if c.id]
        return LookupResult(closest, list(self._peers), self.queries)
