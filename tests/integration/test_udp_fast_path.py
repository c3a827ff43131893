"""UDP's fast path (``Tracker.udp_announce_datagram``: the datagram's fields straight
into the memory store) answers byte for byte as the general path (``AnnounceRequest``,
``announce_sync``) over a mixed stream: events, seeds and leechers, aria2c seeds, odd
numwant, IPv4 and IPv6 sources, an allow list, ``--trust-ip``, refusals, a full store."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from typing import Any

import pytest

from swarm.core import announce as a
from tracker.app import TRACKER_KEY, TrackerConfig, make_app
from tracker.store import MemoryStore
from tracker.udp import UdpFront

HASHES = [bytes([n]) * 20 for n in range(6)]


class Sent:
    """A transport that keeps what the front end sends."""

    def __init__(self) -> None:
        self.out: list[tuple[bytes, Any]] = []

    def sendto(self, body: bytes, addr: Any) -> None:
        self.out.append((body, addr))

    def is_closing(self) -> bool:
        return False


def front(config: TrackerConfig, fast: bool) -> tuple[UdpFront, Sent]:
    store = MemoryStore(rng=random.Random(5), max_peers_per_swarm=40)
    tracker = make_app(store, config)[TRACKER_KEY]
    if not fast:
        tracker._announce_fields = None  # the general path only
    sent = Sent()
    f = UdpFront(tracker, a.UdpConnectionIds(b"s" * 32))
    f.transport = sent  # type: ignore[assignment]
    return f, sent


def stream(
    rng: random.Random, ids: a.UdpConnectionIds, n: int, ipv6: bool = True
) -> list[tuple[bytes, Any]]:
    sources: list[Any] = [(f"10.0.0.{i}", 6000 + i) for i in range(1, 30)]
    if ipv6:
        sources += [(f"2001:db8::{i:x}", 7000 + i, 0, 0) for i in range(1, 10)]
    sources += [("::ffff:10.0.1.1", 8000, 0, 0)]
    pids = [b"-UL0001-" + rng.randbytes(12) for _ in range(150)] + [b"A2-1-36-0-" + bytes(10)]
    out = []
    for _ in range(n):
        src = rng.choice(sources)
        family = socket.AF_INET6 if ":" in src[0] and "ffff" not in src[0] else socket.AF_INET
        packed = socket.inet_pton(family, src[0].removeprefix("::ffff:"))
        cid = ids.issue(packed, time.time())
        pkt = bytearray(
            a.udp_announce_request(
                cid, rng.getrandbits(32), rng.choice(HASHES), rng.choice(pids), 0,
                rng.choice([0, 0, 500]), 0, rng.choice(["", "started", "completed", "stopped"]),
                rng.getrandbits(32), rng.choice([-1, 0, 3, 50, 500]), rng.randrange(1, 65536),
                rng.choice([0, 0, 0, 0x0A000063]),
            )
        )  # fmt: skip
        odd = rng.random()
        if odd < 0.03:
            pkt[83] = 9  # an unknown event (offset 80 + 3: low byte of the event field)
        elif odd < 0.06:
            pkt[96:98] = b"\0\0"  # port 0
        elif odd < 0.08:
            pkt[56] = 0xFF  # "downloaded" past 2**63 - 1
        out.append((bytes(pkt), src))
    return out


@pytest.mark.parametrize(
    ("config", "ipv6"),
    [
        (TrackerConfig(), True),
        (TrackerConfig(), False),  # IPv4 swarms: answers sliced from the packed pools
        (TrackerConfig(allow=frozenset(HASHES[:3])), True),
        (TrackerConfig(trust_ip=True), True),
    ],
    ids=["open", "ipv4-only", "allow-list", "trust-ip"],
)
def test_fast_path_answers_as_the_general_path(config: TrackerConfig, ipv6: bool) -> None:
    fast, fast_sent = front(config, fast=True)
    slow, slow_sent = front(config, fast=False)
    datagrams = stream(random.Random(9), fast.ids, 3000, ipv6)
    for data, addr in datagrams:
        fast.datagram_received(data, addr)
        slow.datagram_received(data, addr)
    assert len(fast_sent.out) == len(slow_sent.out) == len(datagrams)
    assert fast_sent.out == slow_sent.out
    kinds = {body[:4] for body, _ in fast_sent.out}
    assert kinds == {b"\0\0\0\1", b"\0\0\0\3"}  # answers and refusals both exercised
    moments = {"started", "full_logged"}  # clock readings, not counts
    counted = {k: v for k, v in vars(fast.tracker.counters).items() if k not in moments}
    assert counted == {k: v for k, v in vars(slow.tracker.counters).items() if k not in moments}
    fm, sm = fast.tracker.metrics, slow.tracker.metrics
    fm.udp_tally.flush()  # what a scrape does first
    for key, child in fm.announces.items():
        assert child._value.get() == sm.announces[key]._value.get(), key
    assert fm.answer["udp"]._sum.get() > 0
    for histogram in ("answer", "store"):
        f_child = fm.store_seconds if histogram == "store" else fm.answer["udp"]
        s_child = sm.store_seconds if histogram == "store" else sm.answer["udp"]
        counts = [sum(b.get() for b in child._buckets) for child in (f_child, s_child)]
        assert counts[0] == counts[1] > 0, histogram


def test_the_fast_path_is_taken() -> None:
    """A plain announce is answered without building an ``AnnounceRequest``."""
    f, sent = front(TrackerConfig(), fast=True)
    calls = 0
    real = a.udp_parse_request

    def counting(data: bytes) -> a.UdpRequest:
        nonlocal calls
        calls += 1
        return real(data)

    mp = pytest.MonkeyPatch()
    mp.setattr("tracker.udp.udp_parse_request", counting)
    try:
        cid = f.ids.issue(socket.inet_aton("10.0.0.1"), time.time())
        f.datagram_received(
            a.udp_announce_request(cid, 1, HASHES[0], b"p" * 20, 0, 5, 0, "started", 0, 50, 99),
            ("10.0.0.1", 99),
        )
    finally:
        mp.undo()
    assert calls == 0
    assert a.udp_parse_announce(sent.out[0][0], 1).incomplete == 1


def test_fast_path_metrics_add_up_in_the_exposition() -> None:
    """The fast path's answers are tallied and reach ``/metrics``: announces, both
    latency histograms (count and buckets), exactly as many as were answered."""
    from prometheus_client.parser import text_string_to_metric_families

    f, sent = front(TrackerConfig(), fast=True)
    n = 5000  # more than one batch of the tally
    for i in range(n):
        host = f"10.1.{i % 200}.{i // 200 + 1}"
        cid = f.ids.issue(socket.inet_aton(host), time.time())
        pkt = a.udp_announce_request(cid, i, (i // 30).to_bytes(20, "big"), b"-UL-" + i.to_bytes(16, "big"),
                                     0, 9, 0, "started", 0, 50, 4000)  # fmt: skip
        f.datagram_received(pkt, (host, 4000))
    assert len(sent.out) == n and all(body[:4] == b"\0\0\0\1" for body, _ in sent.out)
    text = f.tracker.metrics.exposition(None).decode()
    got = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }
    ok = (("protocol", "udp"), ("result", "ok"))
    assert got[("swarm_tracker_announces_total", ok)] == n
    assert got[("swarm_tracker_answer_seconds_count", (("protocol", "udp"),))] == n
    assert got[("swarm_tracker_answer_seconds_bucket", (("le", "+Inf"), ("protocol", "udp")))] == n
    assert got[("swarm_tracker_answer_seconds_sum", (("protocol", "udp"),))] > 0
    assert got[("swarm_tracker_store_seconds_count", ())] == n
    buckets = sorted(
        (float(dict(k[1])["le"]), v) for k, v in got.items()
        if k[0] == "swarm_tracker_store_seconds_bucket"
    )  # fmt: skip
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
    assert f.tracker.counters.announces == f.tracker.counters.udp_announces == n


async def test_answers_leave_together_after_the_loop_round() -> None:
    """Answers to datagrams read in one loop round are sent together afterwards (one
    wake-up of the client for several), in order, none lost."""
    f, sent = front(TrackerConfig(), fast=True)
    flushed = asyncio.Event()
    real_sendto = sent.sendto

    def sendto(body: bytes, addr: Any) -> None:
        real_sendto(body, addr)
        flushed.set()

    sent.sendto = sendto  # type: ignore[method-assign]
    f.connection_made(sent)  # type: ignore[arg-type]
    cid = f.ids.issue(socket.inet_aton("10.0.0.1"), time.time())
    for tid in range(3):
        pkt = a.udp_announce_request(cid, tid, HASHES[0], bytes([tid]) * 20, 0, 5, 0, "", 0, 9, 99)
        f.datagram_received(pkt, ("10.0.0.1", 99))
    assert sent.out == []  # queued, not sent inside datagram_received
    await asyncio.wait_for(flushed.wait(), 5)
    assert [a.udp_transaction_id(body) for body, _ in sent.out] == [0, 1, 2]


def test_packed_addresses_follow_every_change() -> None:
    """``_Pool.packed`` mirrors ``addrs`` (zeros for IPv6) and ``ipv6`` counts them,
    through adds, moves between families, refreshes and swap-removals."""
    from tracker.store import _Pool

    rng = random.Random(3)
    pool = _Pool()
    pids = [bytes([i]) * 20 for i in range(40)]
    for _ in range(3000):
        pid = rng.choice(pids)
        if rng.random() < 0.3:
            pool.remove(pid)
        else:
            v6 = rng.random() < 0.3
            addr = rng.randbytes(18 if v6 else 6)
            pool.put(pid, addr, 1.0)
        assert pool.packed == b"".join(x if len(x) == 6 else bytes(6) for x in pool.addrs)
        assert pool.ipv6 == sum(len(x) == 18 for x in pool.addrs)


def test_proven_ids_are_remembered_per_address_and_epoch() -> None:
    """An id checked once is not hashed again from the same address in its epoch; it
    is still refused from another address, and checked again (and refused when too
    old) once the epoch moves on; the memory of proven ids stays bounded."""
    f, sent = front(TrackerConfig(), fast=True)
    checks = 0
    real_check = a.UdpConnectionIds.check

    def counting(ids: a.UdpConnectionIds, cid: int, ip: bytes, at: float) -> bool:
        nonlocal checks
        checks += 1
        return real_check(ids, cid, ip, at)

    mp = pytest.MonkeyPatch()
    mp.setattr(a.UdpConnectionIds, "check", counting)
    try:
        _remembered(f, sent, lambda: checks)
    finally:
        mp.undo()


def _remembered(f: UdpFront, sent: Sent, checks: Any) -> None:
    from tracker import udp

    now = 1_000_000.0
    f.clock = lambda: now
    cid = f.ids.issue(socket.inet_aton("10.0.0.1"), now)

    def announce(host: str, tid: int) -> bytes:
        pkt = a.udp_announce_request(cid, tid, HASHES[0], bytes([tid]) * 20, 0, 5, 0, "", 0, 9, 99)
        f.datagram_received(pkt, (host, 99))
        return sent.out[-1][0]

    for tid in range(3):
        assert a.udp_parse_announce(announce("10.0.0.1", tid), tid).interval > 0
    assert checks() == 1
    with pytest.raises(a.TrackerFailure, match="invalid connection id"):
        a.udp_parse_announce(announce("10.0.0.2", 7), 7)  # the same id from elsewhere
    now += a.UDP_ID_EPOCH  # next epoch: still valid, checked again
    a.udp_parse_announce(announce("10.0.0.1", 8), 8)
    assert checks() == 3
    now += a.UDP_ID_EPOCH  # two epochs on: refused although it was remembered
    with pytest.raises(a.TrackerFailure, match="invalid connection id"):
        a.udp_parse_announce(announce("10.0.0.1", 9), 9)
    for i in range(udp.PROVEN_CACHE + 100):
        host = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
        pkt = a.udp_announce_request(
            f.ids.issue(socket.inet_aton(host), now), i, HASHES[1], b"p" * 20, 0, 5, 0, "", 0, 0, 99
        )
        f.datagram_received(pkt, (host, 99))
    assert 0 < len(f.proven) <= udp.PROVEN_CACHE


def test_earliest_expiry_bounds_every_peer() -> None:
    """``_Pool.earliest`` is never later than a peer's expiry (so a pick that trusts it
    never hands out an expired peer), and a sweep makes it exact again."""
    from tracker.store import MemoryStore

    rng = random.Random(4)
    store = MemoryStore(rng=random.Random(4), peer_ttl=10.0)
    pids = [bytes([i]) * 20 for i in range(60)]
    now = 1000.0
    for step in range(3000):
        now += rng.random()
        pid = rng.choice(pids)
        event = "stopped" if rng.random() < 0.1 else ""
        _, addrs, _, _ = store.announce_fields(
            HASHES[0], pid, rng.choice([0, 5]), event, 50, bytes([10, 0, 0, 1]) + pid[:2], now
        )
        swarm = store.swarms.get(HASHES[0])
        assert len(addrs) == len(set(addrs))
        if swarm is None:
            continue
        live = set()
        for pool in (swarm.seeds, swarm.leechers):
            assert pool.earliest <= min(pool.expires, default=float("inf"))
            live |= {ad for ad, e in zip(pool.addrs, pool.expires, strict=True) if e > now}
        assert set(addrs) <= live
        if step % 500 == 499:
            asyncio.run(store.expire(now))
            for pool in (swarm.seeds, swarm.leechers):
                assert pool.earliest == min(pool.expires, default=float("inf"))
