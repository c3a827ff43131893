"""Who may hold our resources: connection, unchoke slot, metadata replies, dial list.

Pure decisions, time passed in (issue 16: slot squatting, ut_metadata floods,
an unbounded list of addresses to dial). The engine asks; nothing here does I/O.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

#: Connections per remote IP address: several clients on one machine or behind one
#: NAT still trade out of the box (libtorrent allows one unless configured).
DEFAULT_PEERS_PER_IP = 8
#: Addresses we know of / may dial (libtorrent's ``max_peerlist_size``: 3,000).
MAX_KNOWN_ADDRESSES = 3000
#: New addresses one source IP (all its connections, across reconnects) may give us
#: per ``SOURCE_WINDOW`` seconds.
MAX_ADDRESSES_PER_SOURCE = 100
SOURCE_WINDOW = 600.0
#: Source IPs remembered for that budget (oldest forgotten first).
MAX_SOURCES = 1024
#: An unchoked peer that requests nothing for this long gives its slot back (an honest
#: peer requests within a round trip of the unchoke; 15 s covers a stalled disk too).
IDLE_UNCHOKE_AFTER = 15.0
#: An unchoked peer that has asked for nothing since the unchoke gives its slot back after
#: this long when a peer that has asked for something waits for one (round robin: the
#: slot was offered, not used; the passed-over peer gets one again later). An honest peer
#: requests within a round trip of an unchoke; a peer with a slow link that misses it
#: only waits its turn again.
UNUSED_UNCHOKE_AFTER = 1.0
#: An interested peer that has requested nothing for this long may be evicted at the cap
#: (once caught leaving an unchoke unused): a newcomer waits at most about this long.
IDLE_CONNECTION_AFTER = 30.0
#: A peer we sent this much more than the pieces it has announced since it connected
#: takes without progressing (a client that never finishes; a free rider hiding what it
#: has): no unchoke slot while a peer that progresses wants one. Generous: an honest peer's requests in
#: flight and its pieces waiting for a hash check or the disk lag behind what we sent
#: (a swarm leecher buffers at most 96 MiB, ``swarm.parts.download.MAX_BUFFER_BYTES``).
WASTE_SLACK = 128 * 1024 * 1024
#: ut_metadata requests one peer may make: a burst, then this many per second.
METADATA_BURST = 32
METADATA_RATE = 8.0


class TokenBucket:
    """``take(now)`` is False once the peer has spent its burst faster than ``rate``."""

    __slots__ = ("_at", "_tokens", "burst", "rate")

    def __init__(self, burst: float, rate: float, now: float) -> None:
        self.burst = burst
        self.rate = rate
        self._tokens = burst
        self._at = now

    def take(self, now: float) -> bool:
        self._tokens = min(self.burst, self._tokens + max(0.0, now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class SourceBudget:
    """How many new addresses each source IP may still give us in its window.

    Keyed by IP, not connection, so reconnecting does not reset it; at most
    ``max_sources`` IPs are remembered, so the budget itself stays bounded.
    """

    def __init__(
        self,
        per_source: int = MAX_ADDRESSES_PER_SOURCE,
        window: float = SOURCE_WINDOW,
        max_sources: int = MAX_SOURCES,
    ) -> None:
        self.per_source = per_source
        self.window = window
        self.max_sources = max_sources
        self._used: OrderedDict[Hashable, tuple[float, int]] = OrderedDict()

    def left(self, source: Hashable, now: float) -> int:
        start, used = self._used.get(source, (now, 0))
        if now - start >= self.window:
            return self.per_source
        return max(0, self.per_source - used)

    def spend(self, source: Hashable, now: float, n: int = 1) -> None:
        start, used = self._used.pop(source, (now, 0))
        if now - start >= self.window:
            start, used = now, 0
        self._used[source] = (start, used + n)
        while len(self._used) > self.max_sources:
            self._used.popitem(last=False)


@dataclass(frozen=True, slots=True)
class UploadUse:
    """What the engine knows about how a peer uses what we give it."""

    key: Hashable
    interested: bool
    unchoked_at: float | None  # None while choked
    last_request: float  # when it last asked for a block (connect time if never)
    gave_us: int = 0  # bytes it has sent us
    caught_idle: bool = False  # was unchoked and left its slot unused
    asked: bool = False  # it has sent us a request (allowed-fast ones count)
    passed_over: bool = False  # caught idle recently: the choker passes it over for now
    wasteful: bool = False  # takes without progressing (``takes_without_progress``)


def idle_unchoked(peers: Iterable[UploadUse], now: float, after: float = IDLE_UNCHOKE_AFTER) -> set[Hashable]:
    """Unchoked peers that have asked for nothing for ``after`` seconds: their
    slots go to someone who will use them (a squatter says ``interested`` and
    never requests)."""
    return {
        p.key
        for p in peers
        if p.unchoked_at is not None and now - max(p.unchoked_at, p.last_request) >= after
    }


def takes_without_progress(served: int, announced: int, piece_length: int, slack: int = WASTE_SLACK) -> bool:
    """True once we have sent a peer ``slack`` bytes more than the ``announced`` pieces
    (HAVEs since it connected) hold: what it gets does not become pieces it keeps."""
    return served > slack + announced * piece_length


def _asker_waits(peers: list[UploadUse]) -> bool:
    """A choked, interested peer that has asked for something (and progresses) waits."""
    return any(
        p.unchoked_at is None and p.interested and p.asked and not (p.passed_over or p.wasteful) for p in peers
    )


def slots_to_reclaim(
    peers: Iterable[UploadUse],
    now: float,
    idle_after: float = IDLE_UNCHOKE_AFTER,
    unused_after: float = UNUSED_UNCHOKE_AFTER,
) -> set[Hashable]:
    """Unchoked peers whose slots go back: those idle for ``idle_after`` (``idle_unchoked``)
    and, while a choked peer that has asked for something (and progresses) waits, those
    unchoked ``unused_after`` ago that have asked for nothing since, or take without
    progressing. A peer that only says interested, or a client that never finishes,
    keeps a slot from one that will use it for seconds, not ``idle_after``."""
    peers = list(peers)
    reclaim = idle_unchoked(peers, now, idle_after)
    if _asker_waits(peers):
        reclaim.update(
            p.key
            for p in peers
            if p.unchoked_at is not None
            and now - p.unchoked_at >= unused_after
            and (p.last_request < p.unchoked_at or p.wasteful)
        )
    return reclaim


def next_unused_check(
    peers: Iterable[UploadUse], now: float, unused_after: float = UNUSED_UNCHOKE_AFTER
) -> float | None:
    """When ``slots_to_reclaim`` will next find an unused unchoke (a peer that asked
    waits, an unchoke not yet ``unused_after`` old has seen no request), or None: the
    engine looks again then, not at its next tick."""
    peers = list(peers)
    if not _asker_waits(peers):
        return None
    due = [
        p.unchoked_at + unused_after
        for p in peers
        if p.unchoked_at is not None and p.last_request < p.unchoked_at and p.unchoked_at + unused_after > now
    ]
    return min(due, default=None)


def idle_to_evict(
    peers: Iterable[UploadUse], now: float, after: float = IDLE_CONNECTION_AFTER
) -> Hashable | None:
    """At the connection cap: the interested peer idle longest (caught leaving an
    unchoke unused, no request for ``after`` seconds, nothing given to us), or None.
    Interested peers merely waiting for an unchoke are not idle: they never had one."""
    best: UploadUse | None = None
    for p in peers:
        if not (p.interested and p.caught_idle) or p.gave_us or now - p.last_request < after:
            continue
        if best is None or p.last_request < best.last_request:
            best = p
    return best.key if best is not None else None


def ip_at_cap(ips: Iterable[str], ip: str, cap: int) -> bool:
    """True if ``ip`` already holds ``cap`` connections (``cap`` <= 0: no cap)."""
    if cap <= 0:
        return False
    return sum(1 for other in ips if other == ip) >= cap
