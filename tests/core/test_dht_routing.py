"""Routing table: bucket splitting, node states, replacement, refresh, persistence."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarm.core.dht.krpc import KRPCError, NodeInfo
from swarm.core.dht.node_id import ID_SPACE, distance, id_to_int, int_to_id
from swarm.core.dht.routing import GOOD_FOR, MAX_FAILS, REFRESH_AFTER, RoutingTable, load_state

OWN = int_to_id(0)


def far(i: int) -> bytes:
    """Ids in the top half of the space: never share a bucket with OWN = 0."""
    return int_to_id((1 << 159) | i)


def test_fills_then_splits_only_own_bucket() -> None:
    t = RoutingTable(OWN, now=0.0)
    for i in range(8):
        assert t.on_response(far(i), "127.0.0.1", 1000 + i, 0.0) == []
    assert len(t.buckets) == 1 and len(t) == 8
    # A ninth node near us: the single bucket holds our id, so it splits.
    assert t.on_response(int_to_id(5), "127.0.0.1", 2000, 0.0) == []
    assert len(t.buckets) == 2 and len(t) == 9
    # The far bucket [2^159, 2^160) does not contain our id: it never splits.
    assert t.on_response(far(100), "127.0.0.1", 3000, 0.0) == []  # all good: no room
    assert len(t) == 9 and t.get(far(100)) is None
    assert [len(b.nodes) for b in t.buckets] == [1, 8]


def test_many_random_nodes_stay_bounded() -> None:
    rng = random.Random(1)
    own = int_to_id(rng.getrandbits(160))
    t = RoutingTable(own, now=0.0)
    for i in range(5000):
        t.on_response(int_to_id(rng.getrandbits(160)), "10.0.0.1", i + 1, 0.0)
    assert all(len(b.nodes) <= 8 for b in t.buckets)
    assert len(t) <= 8 * len(t.buckets)
    assert 8 * 8 <= len(t) <= 8 * 20  # ~ k * log2(5000)
    # Buckets tile the space without gaps.
    assert t.buckets[0].lo == 0 and t.buckets[-1].hi == ID_SPACE
    assert all(a.hi == b.lo for a, b in zip(t.buckets, t.buckets[1:], strict=False))


def test_states() -> None:
    t = RoutingTable(OWN, now=0.0)
    t.on_response(far(1), "127.0.0.1", 1, 0.0)
    node = t.get(far(1))
    assert node is not None
    assert node.state(GOOD_FOR - 1) == "good"
    assert node.state(GOOD_FOR) == "questionable"
    # A node that once answered and has queried us lately is still good.
    t.on_query(far(1), "127.0.0.1", 1, GOOD_FOR)
    assert node.state(GOOD_FOR + 10) == "good"
    for _ in range(MAX_FAILS):
        t.failed(far(1), 10.0)
    assert node.state(10.0) == "bad"
    assert t.closest(far(1)) == []


def test_bad_node_replaced_immediately() -> None:
    t = RoutingTable(OWN, now=0.0)
    for i in range(8):
        t.on_response(far(i), "127.0.0.1", 1000 + i, 0.0)
    for _ in range(MAX_FAILS):
        t.failed(far(3), 1.0)
    assert t.on_response(far(50), "127.0.0.1", 5000, 2.0) == []
    assert t.get(far(50)) is not None and t.get(far(3)) is None and len(t) == 8


def test_questionable_nodes_pinged_before_replacement() -> None:
    t = RoutingTable(OWN, now=0.0)
    for i in range(8):
        t.on_response(far(i), "127.0.0.1", 1000 + i, 0.0)
    later = GOOD_FOR + 1
    t.on_response(far(0), "127.0.0.1", 1000, later)  # still good
    to_ping = t.on_response(far(50), "127.0.0.1", 5000, later)
    assert {n.id for n in to_ping} == {far(i) for i in range(1, 8)}
    assert t.get(far(50)) is None
    # Asking again right away does not ping them again.
    assert t.on_response(far(51), "127.0.0.1", 5001, later + 1) == []
    # Node 2 answers the ping; node 5 fails it twice: the newest newcomer takes its place.
    t.on_response(far(2), "127.0.0.1", 1002, later + 2)
    for _ in range(MAX_FAILS):
        t.failed(far(5), later + 3)
    assert t.get(far(5)) is None
    assert t.get(far(51)) is not None
    assert t.get(far(2)) is not None and len(t) == 8


def test_same_address_other_id_rejected() -> None:
    t = RoutingTable(OWN, now=0.0)
    t.on_response(far(1), "127.0.0.1", 7, 0.0)
    t.on_response(far(2), "127.0.0.1", 7, 0.0)
    assert len(t) == 1
    # And a known id answering from another address does not move.
    t.on_response(far(1), "127.0.0.1", 8, 0.0)
    assert t.get(far(1)) is not None and t.get(far(1)).port == 7  # type: ignore[union-attr]


def test_on_query_asks_for_ping_of_unknown_only() -> None:
    t = RoutingTable(OWN, now=0.0)
    assert t.on_query(far(1), "127.0.0.1", 7, 0.0) is True
    t.on_response(far(1), "127.0.0.1", 7, 0.0)
    assert t.on_query(far(1), "127.0.0.1", 7, 1.0) is False
    assert t.on_query(OWN, "127.0.0.1", 9, 1.0) is False
    assert len(t) == 1  # a query alone never inserts


def test_closest_is_sorted_by_xor() -> None:
    rng = random.Random(7)
    t = RoutingTable(int_to_id(rng.getrandbits(160)), now=0.0)
    for i in range(300):
        t.on_response(int_to_id(rng.getrandbits(160)), "10.0.0.2", i + 1, 0.0)
    target = int_to_id(rng.getrandbits(160))
    got = t.closest(target, 8)
    assert len(got) == 8
    d = [distance(n.id, target) for n in got]
    assert d == sorted(d)
    all_d = sorted(distance(n.id, target) for n in t.nodes())
    assert d == all_d[:8]


def test_refresh_due() -> None:
    t = RoutingTable(OWN, now=0.0)
    for i in range(9):
        t.on_response(int_to_id(i * (1 << 150) + 1), "127.0.0.1", i + 1, 0.0)
    assert t.refresh_due(REFRESH_AFTER - 1) == []
    targets = t.refresh_due(REFRESH_AFTER)
    assert len(targets) == len(t.buckets)
    for target, bucket in zip(targets, t.buckets, strict=True):
        assert bucket.covers(id_to_int(target))
    assert t.refresh_due(REFRESH_AFTER + 1) == []  # marked refreshed


def test_to_ping_reports_questionable_once() -> None:
    t = RoutingTable(OWN, now=0.0)
    t.on_response(far(1), "127.0.0.1", 1, 0.0)
    assert t.to_ping(10.0) == []
    assert [n.id for n in t.to_ping(GOOD_FOR)] == [far(1)]
    assert t.to_ping(GOOD_FOR + 1) == []


def test_save_load() -> None:
    t = RoutingTable(OWN, now=0.0)
    t.on_response(far(1), "127.0.0.1", 1, 0.0)
    t.on_response(far(2), "::1", 2, 0.0)
    own, nodes = load_state(t.to_bytes())
    assert own == OWN
    assert set(nodes) == {NodeInfo(far(1), "127.0.0.1", 1), NodeInfo(far(2), "::1", 2)}


@pytest.mark.parametrize(
    "bad", [b"", b"le", b"d2:id3:abce", b"d2:id20:" + b"x" * 20 + b"5:nodes3:abce"]
)
def test_load_state_rejects_garbage(bad: bytes) -> None:
    with pytest.raises(KRPCError):
        load_state(bad)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 2**160 - 1),
    st.lists(
        st.tuples(
            st.sampled_from(["resp", "query", "fail"]),
            st.integers(0, 2**160 - 1),
            st.integers(1, 40),
            st.floats(0, 5000),
        ),
        max_size=300,
    ),
)
def test_table_invariants_under_random_events(
    own: int, events: list[tuple[str, int, int, float]]
) -> None:
    t = RoutingTable(int_to_id(own), now=0.0)
    now = 0.0
    for kind, nid, port, dt in events:
        now += dt
        node_id = int_to_id(nid)
        if kind == "resp":
            for info in t.on_response(node_id, "10.0.0.1", port, now):
                assert t.get(info.id) is not None
        elif kind == "query":
            t.on_query(node_id, "10.0.0.1", port, now)
        else:
            t.failed(node_id, now)
    assert t.buckets[0].lo == 0 and t.buckets[-1].hi == ID_SPACE
    assert all(a.hi == b.lo for a, b in zip(t.buckets, t.buckets[1:], strict=False))
    ids = set()
    addrs = set()
    for b in t.buckets:
        assert len(b.nodes) <= t.k and len(b.replacements) <= t.k
        for n in b.nodes:
            assert b.covers(n.int_id) and n.id != t.own_id
            ids.add(n.id)
            addrs.add((n.host, n.port))
    assert len(ids) == len(t) == len(addrs)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_load_state_fuzz(data: bytes) -> None:
    try:
        own, nodes = load_state(data)
    except KRPCError:
        return
    assert len(own) == 20 and all(len(n.id) == 20 for n in nodes)
