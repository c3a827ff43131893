"""Which connected peer to drop when the connection pool is full and a newcomer knocks.

Pure; time passed in. Idle peers must not lock out a peer the user named, nor
the rest of the swarm: at the cap the pool (``swarm.parts.pool``) drops the
peer that has been useless longest, if any. "Useless" (libtorrent's
``disconnect_peers`` picks similarly): connected for at least
``USELESS_AFTER`` seconds, not interested in us, never sent us a byte, and
has nothing we want (or has not told us what it has). Among those, the one
we heard from least recently goes.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass

#: A peer that gave and wanted nothing for this long may be replaced at the cap.
USELESS_AFTER = 10.0


@dataclass(frozen=True, slots=True)
class PeerUse:
    """What the pool knows of one connection's usefulness."""

    key: Hashable
    interested: bool  # it wants something of ours
    downloaded: int  # payload bytes it sent us
    has_what_we_want: bool  # its bitfield holds a piece we lack and want (False: unknown)
    connected_at: float
    last_recv: float


def is_useless(p: PeerUse, now: float, *, after: float = USELESS_AFTER) -> bool:
    return not p.interested and not p.downloaded and not p.has_what_we_want and now - p.connected_at > after


def choose_eviction(peers: Iterable[PeerUse], now: float, *, after: float = USELESS_AFTER) -> Hashable | None:
    """The key of the peer to drop for a newcomer, or None to refuse the newcomer."""
    worst: PeerUse | None = None
    for p in peers:
        if is_useless(p, now, after=after) and (worst is None or p.last_recv < worst.last_recv):
            worst = p
    return worst.key if worst is not None else None
