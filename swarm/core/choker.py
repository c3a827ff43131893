"""Whom we upload to: tit-for-tat with an optimistic unchoke. Pure; time passed in.

Conventions (BitTorrent 3.x/4.x as in BEP 3's choking description, rates from
the engine's ``RateMeter``s):

* every ``rechoke_interval`` (10 s) the ``slots`` best *interested* peers are
  unchoked: while leeching ranked by what they give us (``down_rate``), so
  reciprocation is rewarded; snubbed peers (no block for 60 s although we
  asked) are not reciprocated: they get a regular slot only when no
  unsnubbed interested peer is left to take it; peers with everything never
  give, so they are not ranked as uploaders (they are never interested anyway);
* peers that are not interested but rank above the last regular slot are
  unchoked too (at most ``slots`` of them), "to be ready": if one becomes
  interested it takes a slot at the next rechoke, and until then it costs
  nothing, as it requests nothing;
* one more peer, the optimistic unchoke, is rotated every
  ``optimistic_interval`` (30 s, i.e. every third rechoke) among the choked
  interested peers, peers connected for less than ``NEWCOMER_AGE`` being
  three times as likely, so newcomers get a first piece to trade with, and
  peers that have requested something (allowed-fast pieces count) three
  times as likely again: a connection that only says interested and never
  asks (slot squatting) is served last, in regular slots too;
* peers that take without progressing (``wasteful``: we sent them far more
  than the pieces they announced; a client that never finishes, a free
  rider hiding what it has) come after every other peer, and while any peer
  that is not wasteful is interested they get no slot, the optimistic one
  included (they had their trial): every byte sent to them is uplink (on
  loopback, CPU) the peers that progress wait for. With nobody else
  interested they may have every slot again (the seed serves when it has
  nothing better to do);
* seeding: ranked by what we send them (``up_rate``, libtorrent's
  "fastest upload" seed choker) so the fastest downloaders are served and
  spread the data on, rotated (libtorrent's round robin): a peer that has
  held a regular slot for ``SEED_ROTATION`` goes behind the interested peers
  waiting for one; the optimistic slot lets every peer in over time too.

Ties are broken in favour of peers already unchoked (fewer choke flips), then
at random.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

NEWCOMER_AGE = 60.0
NEWCOMER_WEIGHT = 3
#: A peer that has requested something is this much likelier to be the optimistic unchoke
#: than one that only says interested (a slot squatter never requests).
ASKED_WEIGHT = 3
#: Seeding: a peer that has held a regular slot this long gives it up to a
#: waiting interested peer at the next rechoke (libtorrent's round-robin seed
#: choker rotates by the amount served; three rechoke rounds here).
SEED_ROTATION = 30.0


@dataclass(frozen=True, slots=True)
class PeerInfo:
    key: Hashable
    interested: bool  # the peer is interested in us
    down_rate: float  # bytes/s the peer gives us
    up_rate: float  # bytes/s we give the peer
    snubbed: bool = False
    connected_at: float = 0.0
    is_seed: bool = False  # the peer has everything
    optimistic_ok: bool = True
    asked: bool = False  # the peer has sent us a request (allowed-fast ones count): it uses slots
    wasteful: bool = False  # it takes without progressing: no slot while others want data
    unchoked: bool = False  # we unchoke it now (a free slot is given on interest, between rechokes)


def _progressing_peer_interested(peers: Sequence[PeerInfo]) -> bool:
    """Is a peer that is not wasteful interested? Then the wasteful get no slot."""
    return any(p.interested and not p.wasteful for p in peers)


class Choker:
    def __init__(
        self,
        slots: int = 4,
        *,
        rechoke_interval: float = 10.0,
        optimistic_interval: float = 30.0,
        seed_rotation: float = SEED_ROTATION,
        rng: random.Random | None = None,
    ) -> None:
        if slots < 0:
            raise ValueError("negative slot count")
        self.slots = slots
        self.rechoke_interval = rechoke_interval
        self.optimistic_interval = optimistic_interval
        self._rng = rng if rng is not None else random.Random()
        self.next_at = 0.0
        self.optimistic: Hashable | None = None
        self._optimistic_until = 0.0
        self._regular: set[Hashable] = set()
        self.seed_rotation = seed_rotation
        self._since: dict[Hashable, float] = {}  # regular slot held without a break since

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def wasteful_holds_a_slot(self, peers: Sequence[PeerInfo]) -> bool:
        """Rechoke now, not at the next round: a peer that takes without progressing is
        unchoked while a peer that progresses is interested.

        Why: it may show itself wasteful a second after it got its slot (a free slot on
        interest, or at the last rechoke), and a round is 10 s: an honest download of
        256 MiB takes 2 s on loopback, sharing the seed with it all along."""
        if not _progressing_peer_interested(peers):
            return False
        return any(p.unchoked and p.wasteful for p in peers)

    def rechoke(self, peers: Sequence[PeerInfo], now: float, seeding: bool) -> set[Hashable]:
        """The keys to unchoke now (everyone else choked); schedules the next rechoke."""
        self.next_at = now + self.rechoke_interval
        if self.slots == 0:
            self._regular = set()
            self.optimistic = None
            return set()
        rng = self._rng
        prev = self._regular

        def rate(p: PeerInfo) -> float:
            return p.up_rate if seeding else p.down_rate

        since = self._since
        # seeding: rotate. Whoever has had a slot for seed_rotation goes behind the
        # interested peers waiting for one (else the served stay "fastest" for ever)
        rotate = seeding and any(p.interested and p.key not in prev for p in peers)

        def served(p: PeerInfo) -> bool:
            return rotate and now - since.get(p.key, now) >= self.seed_rotation

        # among equals (all waiting peers have rate 0), peers that have asked for
        # something first: interested-but-silent connections (slot squatters) last
        ranked = sorted(
            (p for p in peers if seeding or not (p.snubbed or p.is_seed)),
            key=lambda p: (p.wasteful, served(p), -rate(p), not p.asked, p.key not in prev, rng.random()),
        )
        # clients that never finish: no slot while others want data
        restrain = _progressing_peer_interested(peers)
        chosen: set[Hashable] = set()
        regular = 0
        ready = 0
        for p in ranked:
            if regular >= self.slots or (restrain and p.wasteful):
                break  # ranked last: everyone after it is wasteful too
            if p.interested:
                chosen.add(p.key)
                regular += 1
            elif ready < self.slots and rate(p) > 0.0:
                chosen.add(p.key)
                ready += 1
        self._regular = set(chosen)
        self._since = {k: since.get(k, now) for k in chosen}

        eligible = [
            p
            for p in peers
            if p.interested and p.optimistic_ok and p.key not in chosen and not (restrain and p.wasteful)
        ]
        current = next((p for p in eligible if p.key == self.optimistic), None)
        if current is None or now >= self._optimistic_until:
            pool = [p for p in eligible if p is not current] or eligible
            if pool:
                weights = [
                    (NEWCOMER_WEIGHT if now - p.connected_at < NEWCOMER_AGE else 1)
                    * (ASKED_WEIGHT if p.asked and not p.wasteful else 1)
                    for p in pool
                ]
                current = rng.choices(pool, weights=weights)[0]
                self._optimistic_until = now + self.optimistic_interval
            else:
                current = None
        self.optimistic = current.key if current is not None else None
        if current is not None:
            chosen.add(current.key)
        if regular < self.slots and not seeding:
            # slots nobody better wants: an idle upload slot helps no one
            spare = sorted(
                (p for p in peers if p.interested and p.key not in chosen and not (restrain and p.wasteful)),
                key=lambda p: (-p.down_rate, rng.random()),
            )
            for p in spare[: self.slots - regular]:
                chosen.add(p.key)
                self._regular.add(p.key)
        return chosen
