"""BEP 16 super-seeding: which single piece a seed reveals to each peer. Pure.

Why: a seed that shows everything sends the pieces the peers happen to ask
for, often the same ones twice, so it uploads ~2 copies of the file before
the swarm has one. A super-seed claims nothing (``have_none``) and reveals
one piece at a time per peer, the one with the fewest copies in the swarm
(known through the peers' HAVEs and bitfields, passed in as availability)
and not already revealed to another peer; so each first copy leaves the seed
once and the peers trade the rest. A peer gets its next piece when it
announces the one it was given (libtorrent's rule: it never stalls in a
swarm of one) or when another peer announces it (BEP 16's: it was shared).
A peer may only request the pieces revealed to it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable

Peer = Hashable


class SuperSeeder:
    """One torrent's reveals: per peer the pieces shown to it and the one outstanding."""

    def __init__(self, num_pieces: int, rng: random.Random | None = None) -> None:
        self.num_pieces = num_pieces
        self._rng = rng if rng is not None else random.Random()
        self._revealed: dict[Peer, set[int]] = {}
        self._pending: dict[Peer, int] = {}  # the piece a peer was given and has not announced
        self._offers = [0] * num_pieces  # peers each piece is pending at

    def revealed(self, peer: Peer) -> set[int]:
        return self._revealed.get(peer, set())

    def may_request(self, peer: Peer, index: int) -> bool:
        return index in self._revealed.get(peer, ())

    def pending(self, peer: Peer) -> int | None:
        return self._pending.get(peer)

    def next_piece(
        self, peer: Peer, peer_has: Callable[[int], bool], availability: Callable[[int], int]
    ) -> int | None:
        """The piece to reveal to ``peer`` now (None: it has one pending, or lacks nothing)."""
        if peer in self._pending:
            return None
        offers = self._offers
        best: int | None = None
        best_key = (0, 0)
        ties = 0
        for i in range(self.num_pieces):
            if peer_has(i):
                continue
            key = (offers[i], availability(i))
            if best is None or key < best_key:
                best, best_key, ties = i, key, 1
            elif key == best_key:
                ties += 1
                if self._rng.randrange(ties) == 0:
                    best = i
        if best is not None:
            self._pending[peer] = best
            self._offers[best] += 1
            self._revealed.setdefault(peer, set()).add(best)
        return best

    def on_have(self, peer: Peer, index: int) -> list[Peer]:
        """``peer`` announced ``index``: the peers now due a new piece (the announcer, if
        that was its piece, and those whose piece it was: it has been shared)."""
        due = [p for p, i in self._pending.items() if i == index]
        for p in due:
            del self._pending[p]
            self._offers[index] -= 1
        return due

    def remove_peer(self, peer: Peer) -> None:
        i = self._pending.pop(peer, None)
        if i is not None:
            self._offers[i] -= 1
        self._revealed.pop(peer, None)
