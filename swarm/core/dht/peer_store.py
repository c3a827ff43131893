"""Peers announced to us, bounded so that announcers cannot exhaust our memory.

At most ``max_per_hash`` peers per info-hash (the oldest announcement is
dropped) and ``max_hashes`` info-hashes (the least recently announced one is
dropped); entries expire after ``ttl`` seconds. A get_peers answer carries at
most ``max_reply`` values so it fits one datagram and amplifies nothing.
"""

from __future__ import annotations

from collections import OrderedDict

Peer = tuple[str, int]


class PeerStore:
    __slots__ = ("max_per_hash", "max_hashes", "ttl", "max_reply", "_hashes")

    def __init__(
        self,
        max_per_hash: int = 100,
        max_hashes: int = 5000,
        ttl: float = 1800.0,
        max_reply: int = 50,
    ) -> None:
        self.max_per_hash = max_per_hash
        self.max_hashes = max_hashes
        self.ttl = ttl
        self.max_reply = max_reply
        # info_hash -> (peer -> time announced), both in least-recent-first order
        self._hashes: OrderedDict[bytes, OrderedDict[Peer, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._hashes)

    def peer_count(self) -> int:
        return sum(len(p) for p in self._hashes.values())

    def add(self, info_hash: bytes, peer: Peer, now: float) -> None:
        peers = self._hashes.get(info_hash)
        if peers is None:
            while len(self._hashes) >= self.max_hashes:
                self._hashes.popitem(last=False)
            peers = self._hashes[info_hash] = OrderedDict()
        else:
            self._hashes.move_to_end(info_hash)
        peers.pop(peer, None)
        peers[peer] = now
        while len(peers) > self.max_per_hash:
            peers.popitem(last=False)

    def get(self, info_hash: bytes, now: float) -> list[Peer]:
        """The most recently announced live peers, at most ``max_reply``."""
        peers = self._hashes.get(info_hash)
        if not peers:
            return []
        self._expire_one(info_hash, peers, now)
        return list(reversed(peers))[: self.max_reply]

    def _expire_one(self, info_hash: bytes, peers: OrderedDict[Peer, float], now: float) -> None:
        limit = now - self.ttl
        while peers:
            peer, seen = next(iter(peers.items()))
            if seen > limit:
                break
            del peers[peer]
        if not peers:
            del self._hashes[info_hash]

    def expire(self, now: float) -> None:
        for info_hash, peers in list(self._hashes.items()):
            self._expire_one(info_hash, peers, now)
