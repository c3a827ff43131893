"""The UDP tracker (BEP 15) over real datagrams on 127.0.0.1 (and ::1): swarm's own
UDP client, connection ids that cannot be forged, replayed or kept, the HTTP
side's checks and wording, counters in /stats and /metrics, hostile datagrams."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from conftest import IN_CI
from prometheus_client.parser import text_string_to_metric_families

from swarm.core import announce as a
from swarm.trackers import TrackerClient, UdpTrackerConnection
from tracker.server import RunningTracker, start_tracker

IH = bytes(range(20))
LOCAL = "127.0.0.1"


class _Inbox(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queue.put_nowait(data)


class Client:
    """A raw UDP socket: send a datagram, read the answer (or see that none comes)."""

    def __init__(self, transport: asyncio.DatagramTransport, inbox: _Inbox) -> None:
        self.transport, self.inbox = transport, inbox

    @classmethod
    async def open(cls, port: int, host: str = LOCAL, source: str | None = None) -> Client:
        loop = asyncio.get_running_loop()
        transport, inbox = await loop.create_datagram_endpoint(
            _Inbox, remote_addr=(host, port), local_addr=(source, 0) if source else None
        )
        return cls(transport, inbox)

    async def ask(self, data: bytes, timeout: float = 5.0) -> bytes:
        self.transport.sendto(data)
        return await asyncio.wait_for(self.inbox.queue.get(), timeout)

    async def silence(self, data: bytes, wait: float = 0.3) -> bool:
        """True when nothing answers ``data`` within ``wait`` seconds."""
        self.transport.sendto(data)
        try:
            await asyncio.wait_for(self.inbox.queue.get(), wait)
        except TimeoutError:
            return True
        return False

    async def connect(self) -> int:
        return a.udp_parse_connect(await self.ask(a.udp_connect_request(7)), 7)

    def close(self) -> None:
        self.transport.close()


def announce_packet(cid: int, peer: bytes, port: int, left: int = 100, ih: bytes = IH) -> bytes:
    return a.udp_announce_request(cid, 9, ih, peer, 0, left, 0, "started", 1, 50, port)


async def stats(tracker: RunningTracker) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://{LOCAL}:{tracker.port}/stats") as resp,
    ):
        return await resp.json()  # type: ignore[no-any-return]


@pytest.fixture
async def tracker() -> AsyncIterator[RunningTracker]:
    t = await start_tracker(LOCAL, 0, interval=60)
    try:
        yield t
    finally:
        await t.close()


async def test_udp_listens_on_the_http_port_number(tracker: RunningTracker) -> None:
    assert tracker.udp_port == tracker.port
    assert tracker.udp_url == f"udp://{LOCAL}:{tracker.port}/announce"
    assert tracker.urls == [tracker.url, tracker.udp_url]


async def test_no_udp_and_another_udp_port() -> None:
    t = await start_tracker(LOCAL, 0, udp=False)
    try:
        assert t.udp_port is None and t.urls == [t.url]
    finally:
        await t.close()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((LOCAL, 0))
        free = probe.getsockname()[1]
    t = await start_tracker(LOCAL, 0, udp_port=free)
    try:
        assert t.udp_port == free != t.port
    finally:
        await t.close()


async def test_a_taken_udp_port_is_one_clear_error() -> None:
    from swarm.errors import SwarmError

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind((LOCAL, 0))
        port = taken.getsockname()[1]
        with pytest.raises(SwarmError, match=f"cannot listen on UDP {LOCAL}:{port}"):
            await start_tracker(LOCAL, 0, udp_port=port)


async def test_any_free_port_is_free_for_udp_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """--port 0: when the UDP twin of the port the kernel picked is taken, another pair
    is tried (with a DHT on the machine this happens; the test makes it certain)."""
    import tracker.server as server

    real, tries = server.udp_socket, []

    def taken_once(host: str, port: int, **kw: Any) -> socket.socket:
        tries.append(port)
        if len(tries) == 1:
            raise OSError(98, "Address already in use")
        return real(host, port, **kw)

    monkeypatch.setattr(server, "udp_socket", taken_once)
    t = await start_tracker(LOCAL, 0)
    try:
        assert len(tries) == 2 and t.udp_port == t.port == tries[1]
    finally:
        await t.close()


async def test_swarms_own_udp_client_gets_peers_and_scrapes(tracker: RunningTracker) -> None:
    rng = random.Random(1)
    conns = [
        UdpTrackerConnection(LOCAL, tracker.port, base_timeout=2.0, attempts=2, rng=rng)
        for _ in range(2)
    ]
    fields = dict(info_hash=IH, downloaded=0, uploaded=0, event="started", key=1, numwant=50)
    first = await conns[0].announce(peer_id=b"A" * 20, left=0, port=7001, **fields)
    assert first.peers == [] and first.complete == 1 and first.interval == 60
    second = await conns[1].announce(peer_id=b"B" * 20, left=5, port=7002, **fields)
    assert second.peers == [(LOCAL, 7001)]
    assert (second.complete, second.incomplete) == (1, 1)
    scraped = await conns[1].scrape(IH)
    assert (scraped.complete, scraped.incomplete) == (1, 1)
    # the HTTP side sees the same store
    st = await stats(tracker)
    assert st["peers"] == 2 and st["udp_announces"] == 2 and st["udp_scrapes"] == 1
    assert st["udp_connects"] == 2 and st["announces"] == 2


async def test_tracker_client_announces_over_udp(tracker: RunningTracker) -> None:
    found: list[list[tuple[str, int]]] = []
    other = await Client.open(tracker.port)
    try:
        await other.ask(announce_packet(await other.connect(), b"C" * 20, 7003))
    finally:
        other.close()
    client = TrackerClient(
        [[tracker.udp_url or ""]], IH, b"D" * 20, 7004, lambda: (0, 0, 10), found.append,
        udp_base_timeout=2.0,
    )  # fmt: skip
    task = asyncio.create_task(client.run())
    try:
        for _ in range(100):
            if found:
                break
            await asyncio.sleep(0.05)
        assert found and found[0] == [(LOCAL, 7003)]
        assert client.status()[0].state == "ok"
    finally:
        await client.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_forged_connection_id_gets_no_peers_and_no_more_bytes(
    tracker: RunningTracker,
) -> None:
    seed = await Client.open(tracker.port)
    await seed.ask(announce_packet(await seed.connect(), b"S" * 20, 7010, left=0))
    spoof = await Client.open(tracker.port)
    try:
        for forged in (0, 1, a.UDP_MAGIC, random.getrandbits(64)):
            pkt = announce_packet(forged, b"X" * 20, 7011)
            answer = await spoof.ask(pkt)
            assert answer[:4] == struct.pack(">I", a.UDP_ERROR) and len(answer) <= len(pkt)
            assert b"invalid connection id" in answer
        scrape = a.udp_scrape_request(5, 3, [IH])
        answer = await spoof.ask(scrape)
        assert answer[:4] == struct.pack(">I", a.UDP_ERROR) and len(answer) <= len(scrape)
        # a 16-byte forged request gets at most 16 bytes back
        short = struct.pack(">QII", 5, a.UDP_ANNOUNCE, 3)
        assert len(await spoof.ask(short)) <= 16
        # the connect answer is no larger than the request
        connect = a.udp_connect_request(1)
        assert len(await spoof.ask(connect)) == len(connect)
        # and a wrong protocol id is refused, no larger than the request
        bad = struct.pack(">QII", 12345, a.UDP_CONNECT, 1)
        answer = await spoof.ask(bad)
        assert answer[:4] == struct.pack(">I", a.UDP_ERROR) and len(answer) <= 16
    finally:
        seed.close()
        spoof.close()
    st = await stats(tracker)
    assert st["udp_bad_connection_ids"] == 6 and st["peers"] == 1


async def test_an_id_replayed_from_another_address_is_refused(tracker: RunningTracker) -> None:
    """127.0.0.2 is another source address on loopback. Another port of the same
    address is accepted: libtorrent shares one id per tracker across its sockets."""
    owner = await Client.open(tracker.port)
    thief = await Client.open(tracker.port, source="127.0.0.2")
    sibling = await Client.open(tracker.port)
    try:
        cid = await owner.connect()
        answer = await thief.ask(announce_packet(cid, b"T" * 20, 7020))
        with pytest.raises(a.TrackerFailure, match="invalid connection id"):
            a.udp_parse_announce(answer, 9)
        ok = a.udp_parse_announce(await owner.ask(announce_packet(cid, b"O" * 20, 7021)), 9)
        assert ok.interval == 60 and ok.peers == []  # the thief was not recorded
        also = a.udp_parse_announce(await sibling.ask(announce_packet(cid, b"U" * 20, 7022)), 9)
        assert also.peers == [(LOCAL, 7021)]
    finally:
        for c in (owner, thief, sibling):
            c.close()


async def test_an_id_expires_after_two_epochs(tracker: RunningTracker) -> None:
    front = tracker.udp_front
    assert front is not None
    now = 1_000_000.0
    front.clock = lambda: now
    client = await Client.open(tracker.port)
    try:
        cid = await client.connect()
        now += a.UDP_ID_EPOCH  # one minute on: still accepted (a client keeps it that long)
        a.udp_parse_announce(await client.ask(announce_packet(cid, b"E" * 20, 7030)), 9)
        now += a.UDP_ID_EPOCH  # two: refused
        with pytest.raises(a.TrackerFailure, match="invalid connection id"):
            a.udp_parse_announce(await client.ask(announce_packet(cid, b"E" * 20, 7030)), 9)
        cid = await client.connect()  # a fresh one works
        a.udp_parse_announce(await client.ask(announce_packet(cid, b"E" * 20, 7030)), 9)
    finally:
        client.close()


async def test_allow_list_caps_and_wording_match_http() -> None:
    allowed = b"\x01" * 20
    t = await start_tracker(LOCAL, 0, allow=frozenset([allowed]), max_peers_per_ip=1)
    client = await Client.open(t.port)
    try:
        cid = await client.connect()
        with pytest.raises(a.TrackerFailure, match="^torrent not registered with this tracker$"):
            a.udp_parse_announce(await client.ask(announce_packet(cid, b"P" * 20, 7040)), 9)
        a.udp_parse_announce(await client.ask(announce_packet(cid, b"P" * 20, 7040, ih=allowed)), 9)
        with pytest.raises(
            a.TrackerFailure, match="^tracker is full: too many peers from your address$"
        ):
            a.udp_parse_announce(
                await client.ask(announce_packet(cid, b"Q" * 20, 7041, ih=allowed)), 9
            )
        # port 0 is refused as over HTTP; a scrape of an unlisted hash reads as zeros
        with pytest.raises(a.TrackerFailure, match="^invalid port: 0$"):
            a.udp_parse_announce(await client.ask(announce_packet(cid, b"R" * 20, 0)), 9)
        scraped = a.udp_parse_scrape(
            await client.ask(a.udp_scrape_request(cid, 4, [IH, allowed])), 4, [IH, allowed]
        )
        assert scraped[IH] == a.ScrapeStats(0, 0, 0) and scraped[allowed].complete == 0
        assert scraped[allowed].incomplete == 1
    finally:
        client.close()
        await t.close()


async def test_scrape_of_seventy_four_hashes(tracker: RunningTracker) -> None:
    hashes = [bytes([i]) * 20 for i in range(a.UDP_MAX_SCRAPE_HASHES)]
    client = await Client.open(tracker.port)
    try:
        cid = await client.connect()
        await client.ask(announce_packet(cid, b"Z" * 20, 7050, left=0, ih=hashes[3]))
        out = a.udp_parse_scrape(await client.ask(a.udp_scrape_request(cid, 4, hashes)), 4, hashes)
        assert len(out) == 74 and out[hashes[3]].complete == 1
        too_many = a.udp_scrape_request(cid, 4, hashes) + b"\x00" * 20
        with pytest.raises(a.TrackerFailure, match="1..74"):
            a.udp_parse_scrape(await client.ask(too_many), 4, hashes)
    finally:
        client.close()


async def test_ipv6_answers_carry_18_byte_peers() -> None:
    try:
        if not socket.has_ipv6:
            raise OSError("Python built without IPv6")
        t = await start_tracker("::1", 0)
    except Exception as exc:  # pragma: no cover - a kernel without ::1
        if IN_CI:
            pytest.fail(f"::1 unavailable in CI: {exc}")
        pytest.skip(f"::1 unavailable: {exc}")
    clients = [await Client.open(t.port, "::1") for _ in range(2)]
    try:
        cid = await clients[0].connect()
        await clients[0].ask(announce_packet(cid, b"6" * 20, 7060, left=0))
        cid = await clients[1].connect()
        resp = a.udp_parse_announce(
            await clients[1].ask(announce_packet(cid, b"7" * 20, 7061)), 9, ipv6=True
        )
        assert resp.peers == [("::1", 7060)]
    finally:
        for c in clients:
            c.close()
        await t.close()


async def test_hostile_datagrams(tracker: RunningTracker, caplog: pytest.LogCaptureFixture) -> None:
    """Random, truncated and mis-sized datagrams, unknown actions, forged ids: no
    traceback, never more bytes back than sent without a valid id, nothing recorded
    from a forged id, no state left behind, and the tracker still answers."""
    rng = random.Random(15)
    client = await Client.open(tracker.port)
    caplog.set_level(logging.INFO)
    forged: dict[int, int] = {}  # transaction id -> size of the forged request
    try:
        cid = await client.connect()
        good = announce_packet(cid, b"H" * 20, 7070)
        shapes: list[bytes] = []
        for n in range(1500):
            kind = rng.randrange(5)
            if kind == 0:
                shapes.append(rng.randbytes(rng.randrange(0, 200)))
            elif kind == 1:
                shapes.append(good[: rng.randrange(0, len(good))])
            elif kind == 2:
                shapes.append(struct.pack(">QII", cid, rng.randrange(4, 2**32), 1))
            elif kind == 3:
                shapes.append(
                    a.udp_scrape_request(cid, 1, [IH]) + rng.randbytes(rng.randrange(1, 19))
                )
            else:  # a forged id, any action, with a transaction id we can recognise
                tid = 10_000_000 + n
                pkt = struct.pack(">QII", rng.getrandbits(64), rng.randrange(1, 5), tid)
                pkt += rng.randbytes(rng.randrange(0, 100))
                forged[tid] = len(pkt)
                shapes.append(pkt)
        for pkt in shapes:
            client.transport.sendto(pkt)
        answered = 0
        while True:
            try:
                answer = await asyncio.wait_for(client.inbox.queue.get(), 0.5)
            except TimeoutError:
                break
            answered += 1
            tid = struct.unpack_from(">I", answer, 4)[0] if len(answer) >= 8 else None
            if tid in forged:
                assert answer[:4] == struct.pack(">I", a.UDP_ERROR)
                assert len(answer) <= forged[tid]
        assert answered, "hostile datagrams got no answer at all"
        assert a.udp_parse_announce(await client.ask(good), 9).interval == 60
    finally:
        client.close()
    assert forged
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    st = await stats(tracker)
    assert st["peers"] == 1  # only the good announce's peer
    front = tracker.udp_front
    assert front is not None and not front.tasks and len(front.ids._keys) <= 3


async def test_metrics_count_both_protocols(tracker: RunningTracker) -> None:
    client = await Client.open(tracker.port)
    try:
        cid = await client.connect()
        await client.ask(announce_packet(cid, b"M" * 20, 7080, left=0))
        await client.ask(announce_packet(cid, b"N" * 20, 0))  # refused
    finally:
        client.close()
    async with aiohttp.ClientSession() as http:
        base = f"http://{LOCAL}:{tracker.port}"
        q = a.build_announce_url(f"{base}/announce", IH, b"W" * 20, 7081, 0, 0, 5)
        async with http.get(q) as resp:
            assert resp.status == 200
        async with http.get(f"{base}/metrics") as resp:
            assert resp.status == 200 and resp.content_type == "text/plain"
            text = await resp.text()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("swarm_tracker_announces_total", protocol="udp", result="ok") == 1
    assert value("swarm_tracker_announces_total", protocol="udp", result="refused") == 1
    assert value("swarm_tracker_announces_total", protocol="http", result="ok") == 1
    assert value("swarm_tracker_udp_connects_total") == 1
    assert value("swarm_tracker_answer_seconds_count", protocol="udp") == 2
    assert value("swarm_tracker_answer_seconds_bucket", protocol="http", le="+Inf") == 1
    assert value("swarm_tracker_store_seconds_count") == 2
    assert value("swarm_tracker_torrents") == 1
    assert (value("swarm_tracker_seeders"), value("swarm_tracker_leechers")) == (1, 1)
    assert value("swarm_tracker_store_up") == 1
    assert value("swarm_tracker_connections") >= 1  # this very request
