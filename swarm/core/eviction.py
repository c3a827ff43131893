"""Which connected peer to drop when the connection pool is full and a newcomer knocks.

Pure; time passed in. Idle peers must not lock out a peer the user named, nor
the rest of the swarm: at the cap the pool (``swarm.parts.pool``) drops the
least useful peer, if one is bad enough, and lets the newcomer in (as
libtorrent does at its limit: it disconnects its lowest-ranking peer rather
than refuse every newcomer). Worst first:

* useless (libtorrent's ``disconnect_peers`` picks similarly): connected for
  at least ``USELESS_AFTER`` seconds, not interested in us, never sent us a
  byte, and has nothing we want (or has not told us what it has); among
  those, the one we heard from least recently;
* unproven: interested, but has never asked us for anything, never sent us a
  byte, has nothing we want and has announced no piece it got since it
  connected, connected for at least ``NEWCOMER_GRACE``; among those, one that
  left an unchoke unused first, then a choked one before one holding an
  unchoke (its trial runs: dropping it would hand the slot to the next
  newcomer, not to a peer that asks), then the one connected longest (a squatter
  says ``interested`` and never requests; an honest peer requests within a
  round trip of an unchoke, or of our BEP 6 allowed-fast set, and one busy
  with other peers announces the pieces it gets, so either leaves this tier
  at once). Oldest first makes the pool a queue: a peer is replaced only
  after every unproven peer older than it. Only a newcomer from an address
  that holds no such silent connection may replace one: a flood from a few
  addresses cannot churn the pool into connections all younger than their
  grace (which would refuse the next honest newcomer), and an address
  already there gains nothing by one more connection that asks for nothing.

Peers that have asked for something, gave us data, or have what we want are
never chosen here (``swarm.core.admission.idle_to_evict`` handles one that
asked once and then left its unchoke unused).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass

#: A peer that gave and wanted nothing for this long may be replaced at the cap.
USELESS_AFTER = 10.0
#: A newly connected peer is not replaced for this long: time to say what it wants and
#: to ask for it (a round trip: we send our allowed-fast set with our bitfield, and it
#: asks for one of those pieces). Short: a leecher arriving just after a burst of
#: squatters is refused, and its client may wait long before it dials again (ours: 10 s).
NEWCOMER_GRACE = 0.5


@dataclass(frozen=True, slots=True)
class PeerUse:
    """What the pool knows of one connection's usefulness."""

    key: Hashable
    interested: bool  # it wants something of ours
    downloaded: int  # payload bytes it sent us
    has_what_we_want: bool  # its bitfield holds a piece we lack and want (False: unknown)
    connected_at: float
    last_recv: float
    asked: bool = False  # it has sent us a request (allowed-fast ones count)
    caught_idle: bool = False  # it was unchoked and left the slot unused
    unchoked: bool = False  # we unchoke it now
    announced: bool = False  # it sent a HAVE for a piece it lacked: it is downloading
    ip: str = ""  # its address


def is_useless(p: PeerUse, now: float, *, after: float = USELESS_AFTER) -> bool:
    return not p.interested and not p.downloaded and not p.has_what_we_want and now - p.connected_at > after


def is_silent(p: PeerUse) -> bool:
    """Interested, and has not asked, given, announced progress, nor anything we want."""
    return p.interested and not (p.asked or p.announced or p.downloaded or p.has_what_we_want)


def is_unproven(p: PeerUse, now: float, *, grace: float = NEWCOMER_GRACE) -> bool:
    """Silent past its grace."""
    return is_silent(p) and now - p.connected_at >= grace


def choose_eviction(
    peers: Iterable[PeerUse],
    now: float,
    *,
    after: float = USELESS_AFTER,
    grace: float = NEWCOMER_GRACE,
    newcomer_ip: str | None = None,
) -> Hashable | None:
    """The key of the peer to drop for a newcomer (from ``newcomer_ip``), or None to
    refuse the newcomer."""
    worst: PeerUse | None = None
    unproven: PeerUse | None = None
    peers = list(peers)
    same_address_silent = newcomer_ip is not None and any(p.ip == newcomer_ip and is_silent(p) for p in peers)

    def queue_place(p: PeerUse) -> tuple[bool, bool, float]:
        return (not p.caught_idle, p.unchoked, p.connected_at)

    for p in peers:
        if is_useless(p, now, after=after):
            if worst is None or p.last_recv < worst.last_recv:
                worst = p
        elif (
            not same_address_silent
            and is_unproven(p, now, grace=grace)
            and (unproven is None or queue_place(p) < queue_place(unproven))
        ):
            unproven = p
    if worst is None:
        worst = unproven
    return worst.key if worst is not None else None
