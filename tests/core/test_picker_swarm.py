"""The pure decision makers together: a simulated swarm of one seed and 8 leechers.

Each node has a Choker, each leecher a PiecePicker; a tick is one second and
every node uploads at most ``UPLOAD`` blocks per tick to the peers it
unchoked. With rarest first and tit-for-tat the leechers should trade most
of the data among themselves and finish far sooner than the seed alone could
serve them.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

import pytest

from swarm.core.bitfield import Bitfield
from swarm.core.choker import Choker, PeerInfo
from swarm.core.picker import Block, PiecePicker
from swarm.core.rate import RateMeter

BS = 16384
PIECES = 64
BLOCKS_PER_PIECE = 4
UPLOAD = 4  # blocks per tick per node
DEPTH = 6  # requests outstanding per (leecher, uploader)


@dataclass
class Node:
    name: str
    have: Bitfield
    choker: Choker
    picker: PiecePicker | None = None
    unchoked: set[str] = field(default_factory=set)
    queues: dict[str, deque[Block]] = field(default_factory=dict)  # requester -> blocks
    up: dict[str, RateMeter] = field(default_factory=dict)
    down: dict[str, RateMeter] = field(default_factory=dict)
    outstanding: dict[str, set[Block]] = field(default_factory=dict)  # uploader -> ours


def simulate(seed: int, leechers: int = 8) -> tuple[int, float, int, dict[str, int]]:
    rng = random.Random(seed)
    total = PIECES * BLOCKS_PER_PIECE * BS
    nodes = {"seed": Node("seed", Bitfield(PIECES, full=True), Choker(3, rng=rng))}
    for k in range(leechers):
        name = f"L{k}"
        picker = PiecePicker(
            PIECES, BLOCKS_PER_PIECE * BS, total, rng=random.Random(seed * 100 + k)
        )
        nodes[name] = Node(name, Bitfield(PIECES), Choker(3, rng=rng), picker)
    for n in nodes.values():
        for m in nodes.values():
            if m is n:
                continue
            n.queues[m.name] = deque()
            n.up[m.name] = RateMeter()
            n.down[m.name] = RateMeter()
            n.outstanding[m.name] = set()
            if n.picker is not None:
                if m.have.all():
                    n.picker.add_peer_have_all(m.name)
                else:
                    n.picker.add_peer(m.name, m.have)
    from_seed = from_peers = wasted = 0
    # stagger rechokes as real peers would be
    for n in nodes.values():
        n.choker.next_at = rng.uniform(0, 10)

    def leeching(n: Node) -> bool:
        return n.picker is not None and not n.picker.is_complete()

    t = 0
    while any(leeching(n) for n in nodes.values()) and t < 1000:
        now = float(t)
        # choking
        for n in nodes.values():
            if not n.choker.due(now):
                continue
            infos = [
                PeerInfo(
                    key=m.name,
                    interested=m.picker is not None and m.picker.is_interesting(n.name),
                    down_rate=n.down[m.name].rate(now),
                    up_rate=n.up[m.name].rate(now),
                    is_seed=m.have.all(),
                    connected_at=0.0,
                )
                for m in nodes.values()
                if m is not n
            ]
            new = n.choker.rechoke(infos, now, seeding=n.have.all())
            for gone in n.unchoked - new:  # a choke drops the queued requests (BEP 3)
                m = nodes[gone]
                dropped = list(n.queues[gone])
                n.queues[gone].clear()
                if m.picker is not None:
                    m.picker.cancel_requests(n.name, dropped)
                m.outstanding[n.name].difference_update(dropped)
            n.unchoked = new
        # requests
        for m in nodes.values():
            if not leeching(m):
                continue
            assert m.picker is not None
            for n in nodes.values():
                if m.name not in n.unchoked or not m.picker.is_interesting(n.name):
                    continue
                room = DEPTH - len(m.outstanding[n.name])
                if room > 0:
                    got = m.picker.pick(n.name, None if n.have.all() else n.have, room)
                    n.queues[m.name].extend(got)
                    m.outstanding[n.name].update(got)
        # uploads
        for n in nodes.values():
            budget = UPLOAD
            order = [k for k in n.queues if n.queues[k]]
            rng.shuffle(order)
            while budget and order:
                for k in list(order):
                    q = n.queues[k]
                    if not q or not budget:
                        order.remove(k)
                        continue
                    blk = q.popleft()
                    budget -= 1
                    m = nodes[k]
                    assert m.picker is not None
                    m.outstanding[n.name].discard(blk)
                    n.up[k].add(blk.length, now)
                    m.down[n.name].add(blk.length, now)
                    useful = m.picker.is_needed(blk.index, blk.begin)
                    done, cancels = m.picker.on_block(n.name, blk.index, blk.begin)
                    if not useful:
                        wasted += 1
                        continue
                    if n.name == "seed":
                        from_seed += 1
                    else:
                        from_peers += 1
                    for other, c in cancels:
                        nodes[other].queues[k].remove(c)  # type: ignore[index]
                        m.outstanding[other].discard(c)  # type: ignore[index]
                    if done:
                        for other, c in m.picker.piece_passed(blk.index):
                            nodes[other].queues[k].remove(c)  # type: ignore[index]
                            m.outstanding[other].discard(c)  # type: ignore[index]
                        m.have.set(blk.index)
                        for o in nodes.values():
                            if o.picker is not None and o is not m:
                                o.picker.peer_have(m.name, blk.index)
        t += 1
    per_node = {n.name: n.have.count for n in nodes.values()}
    return t, from_peers / max(1, from_seed + from_peers), wasted, per_node


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_swarm_shares_and_completes(seed: int) -> None:
    ticks, shared, wasted, per_node = simulate(seed)
    assert all(c == PIECES for c in per_node.values()), per_node
    seed_alone = PIECES * BLOCKS_PER_PIECE * 8 // UPLOAD  # 512 ticks
    assert ticks < seed_alone // 3, ticks
    assert shared > 0.6, shared  # most blocks came from other leechers
    assert wasted <= 0.05 * PIECES * BLOCKS_PER_PIECE * 8
