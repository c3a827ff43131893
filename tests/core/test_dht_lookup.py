"""Iterative lookups over a simulated network (no sockets, time injected)."""

from __future__ import annotations

import random

import pytest

from swarm.core.dht.krpc import NodeInfo
from swarm.core.dht.lookup import Lookup
from swarm.core.dht.node_id import distance, int_to_id
from swarm.core.dht.routing import RoutingTable


class SimNet:
    """N nodes, each answering from its own routing table."""

    def __init__(self, n: int, seed: int, dead_fraction: float = 0.0) -> None:
        rng = random.Random(seed)
        self.rng = rng
        self.ids = [int_to_id(rng.getrandbits(160)) for _ in range(n)]
        self.addr = {i: ("127.0.0.1", 10000 + n) for n, i in enumerate(self.ids)}
        self.by_addr = {a: i for i, a in self.addr.items()}
        self.dead = set(rng.sample(self.ids, int(n * dead_fraction)))
        self.tables: dict[bytes, RoutingTable] = {}
        for me in self.ids:
            t = RoutingTable(me, now=0.0)
            # Each node has met everyone, in its own order; its table keeps
            # k per bucket, so it knows its neighbourhood well and the rest coarsely.
            for other in rng.sample(self.ids, n):
                if other != me:
                    t.on_response(other, *self.addr[other], 0.0)
            self.tables[me] = t
        self.peers: dict[bytes, set[tuple[str, int]]] = {}

    def answer(self, node: bytes, target: bytes) -> list[NodeInfo]:
        return self.tables[node].closest(target, 8)

    def run(self, lk: Lookup, start: float = 0.0) -> tuple[int, float]:
        """Drive the lookup to completion; returns (rounds, elapsed)."""
        now = start
        rounds = 0
        while not lk.done:
            actions = lk.next_queries(now)
            if not actions:
                # Waiting on dead nodes: jump to the next timeout.
                deadline = lk.next_deadline()
                if deadline is None:
                    assert lk.done, "stuck: nothing in flight and not done"
                    break
                now = deadline
                continue
            rounds += 1
            assert rounds < 100
            for a in actions:
                node = self.by_addr[a.addr]
                if node in self.dead:
                    continue
                values = list(self.peers.get(lk.target, ())) if lk.get_peers else []
                lk.on_response(
                    a.addr, node, self.answer(node, lk.target), values, b"tok" + node[:2], now
                )
            now += 0.05
        return rounds, now - start


@pytest.fixture(scope="module")
def net() -> SimNet:
    return SimNet(500, seed=42, dead_fraction=0.1)


@pytest.mark.parametrize("trial", range(10))
def test_converges_on_true_closest(net: SimNet, trial: int) -> None:
    rng = random.Random(trial)
    target = int_to_id(rng.getrandbits(160))
    start = rng.choice([i for i in net.ids if i not in net.dead])
    lk = Lookup(target, net.tables[start].closest(target, 8), own_id=start)
    rounds, _ = net.run(lk)
    live = sorted(
        (i for i in net.ids if i not in net.dead and i != start), key=lambda i: distance(i, target)
    )
    got = [n.id.hex() for n, _tok in lk.result().closest]
    assert got == [i.hex() for i in live[:8]]
    assert rounds <= 30
    assert lk.result().queries <= 60


def test_bootstrap_from_unknown_id_router(net: SimNet) -> None:
    router = net.ids[0]
    me = int_to_id(12345)
    lk = Lookup(me, [net.addr[router]], own_id=me)
    net.run(lk)
    live = sorted((i for i in net.ids if i not in net.dead), key=lambda i: distance(i, me))
    assert [n.id.hex() for n, _ in lk.result().closest] == [i.hex() for i in live[:8]]


def test_get_peers_collects_values_and_tokens(net: SimNet) -> None:
    target = int_to_id(999)
    net.peers[target] = {("127.0.0.1", 6881), ("127.0.0.1", 6882)}
    try:
        start = next(i for i in net.ids if i not in net.dead)
        lk = Lookup(target, net.tables[start].closest(target), get_peers=True, own_id=start)
        net.run(lk)
        res = lk.result()
        assert set(res.peers) == net.peers[target]
        assert all(tok == b"tok" + n.id[:2] for n, tok in res.closest)
    finally:
        del net.peers[target]


def test_all_dead_terminates_via_timeouts() -> None:
    seeds = [NodeInfo(int_to_id(i + 1), "127.0.0.1", 2000 + i) for i in range(10)]
    lk = Lookup(int_to_id(0), seeds, timeout=2.0)
    now = 0.0
    sent = 0
    while not lk.done:
        sent += len(lk.next_queries(now))
        now += 1.0
        assert now < 100
    assert sent == 10
    assert lk.result().closest == [] and lk.inflight == 0


def test_alpha_bound_and_duplicates() -> None:
    seeds = [NodeInfo(int_to_id(i + 1), "127.0.0.1", 2000 + i) for i in range(10)]
    lk = Lookup(int_to_id(0), seeds)
    first = lk.next_queries(0.0)
    assert len(first) == 3 and lk.next_queries(0.1) == []
    a = first[0]
    assert a.node_id is not None
    lk.on_response(a.addr, a.node_id, (), (), None, 0.2)
    assert lk.on_response(a.addr, a.node_id, (), (("1.2.3.4", 5),), None, 0.2) == []  # duplicate
    assert lk.on_response(("127.0.0.1", 1), a.node_id, (), (), None, 0.2) == []  # unsolicited
    assert len(lk.next_queries(0.3)) == 1


def test_own_id_never_a_candidate() -> None:
    me = int_to_id(77)
    lk = Lookup(me, [NodeInfo(me, "127.0.0.1", 1)], own_id=me)
    assert lk.next_queries(0.0) == [] and lk.done
