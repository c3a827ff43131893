"""swarm.trackers.TrackerClient against our own tracker (HTTP) and a scripted UDP tracker."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from swarm.core import announce as a
from swarm.trackers import TrackerClient
from tests.helpers.http_app import serve_local
from tracker.server import RunningTracker, start_tracker

IH = bytes(range(1, 21))


def pid_of(n: int) -> bytes:
    return b"-SW0001-" + n.to_bytes(12, "big")


async def until(cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Peer:
    """A fake torrent: counters and the peers its tracker client found."""

    def __init__(self, left: int = 100) -> None:
        self.left = left
        self.found: list[tuple[str, int]] = []

    def stats(self) -> tuple[int, int, int]:
        return 0, 0, self.left

    def on_peers(self, peers: list[tuple[str, int]]) -> None:
        self.found.extend(peers)


def client(tiers: list[list[str]], n: int, peer: Peer, **kw: Any) -> TrackerClient:
    kw.setdefault("min_interval", 0.05)
    kw.setdefault("retry_base", 0.05)
    kw.setdefault("http_timeout", 3.0)
    return TrackerClient(tiers, IH, pid_of(n), 7000 + n, peer.stats, peer.on_peers, **kw)


@contextlib.asynccontextmanager
async def running(c: TrackerClient) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(c.run())
    try:
        yield task
    finally:
        await c.stop(timeout=2.0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)


@pytest.fixture
async def tracker() -> AsyncIterator[RunningTracker]:
    t = await start_tracker("127.0.0.1", 0, interval=1)
    yield t
    await t.close()


async def stats_of(t: RunningTracker) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.get(t.base_url + "/stats") as r:
        return await r.json()  # type: ignore[no-any-return]


async def _scrape(t: RunningTracker) -> a.ScrapeStats | None:
    async with (
        aiohttp.ClientSession() as s,
        s.get(a.build_scrape_url(t.base_url + "/scrape", [IH])) as r,
    ):
        return a.parse_scrape_response(await r.read()).get(IH)


async def test_seed_and_leech_find_each_other_over_http(tracker: RunningTracker) -> None:
    seed, leech = Peer(left=0), Peer(left=100)
    cs, cl = client([[tracker.url]], 1, seed), client([[tracker.url]], 2, leech)
    async with running(cs), running(cl):
        await until(lambda: ("127.0.0.1", 7001) in leech.found, what="leech to find the seed")
        # re-announces at the tracker's interval bring the leech to the seed as well
        await until(lambda: ("127.0.0.1", 7002) in seed.found, what="seed to learn the leech")
        st = cs.status()[0]
        assert st.state == "ok" and st.last_error is None and st.last_announce is not None
        assert st.next_announce is not None and st.next_announce > st.last_announce
        assert (st.seeders, st.leechers) == (1, 1)
        leech.left = 0
        cl.completed()
        deadline = time.monotonic() + 10
        while True:
            s = await _scrape(tracker)
            if s is not None and s.downloaded == 1:
                break
            assert time.monotonic() < deadline, "completed never reached the tracker"
            await asyncio.sleep(0.05)
        assert (s.complete, s.incomplete) == (2, 0)
        scraped = await cl.scrape()
        assert scraped[tracker.url].downloaded == 1
    # both stopped: the tracker forgets them at once
    s = await _scrape(tracker)
    assert s is None or (s.complete, s.incomplete) == (0, 0)


async def test_dead_tracker_in_tier_is_skipped_and_live_one_promoted(
    tracker: RunningTracker,
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/announce"
    peer = Peer()
    c = client([[dead, tracker.url]], 1, peer)
    async with running(c):
        await until(lambda: c.entries[tracker.url].state == "ok", what="live tracker ok")
        assert c.tiers.tiers[0][0] == tracker.url
        # after promotion the dead one is not tried again while the live one answers
        n = (await stats_of(tracker))["announces"]
        deadline = time.monotonic() + 10
        while (await stats_of(tracker))["announces"] < n + 2:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    states = {s.url: s for s in c.status()}
    assert states[tracker.url].state in ("ok", "idle")
    if states[dead].state != "idle":  # the shuffle may have put the live one first
        assert states[dead].state == "error" and "connect" in (states[dead].last_error or "")


async def test_all_tiers_announced_and_unreachable_is_not_fatal(tracker: RunningTracker) -> None:
    dead = f"http://127.0.0.1:{free_port()}/announce"
    peer = Peer()
    c = client([[dead], [tracker.url], ["gopher://x/announce"]], 1, peer)
    async with running(c) as task:
        await until(lambda: c.entries[tracker.url].state == "ok", what="second tier ok")
        await until(lambda: c.entries[dead].state == "error", what="dead tier error")
        await until(lambda: c.entries["gopher://x/announce"].state == "error", what="bad scheme")
        assert not task.done()
    assert "unsupported" in (c.entries["gopher://x/announce"].last_error or "")


async def test_failure_reason_is_a_status_entry() -> None:
    t = await start_tracker("127.0.0.1", 0, allow=frozenset({b"\x00" * 20}))
    try:
        c = client([[t.url]], 1, Peer())
        async with running(c):
            await until(lambda: c.entries[t.url].state == "error", what="error state")
        assert "not registered" in (c.status()[0].last_error or "")
    finally:
        await t.close()


@pytest.mark.parametrize(
    "body",
    [b"<html>oops</html>", b"d8:intervali-5ee", b"x" * (a.MAX_QUERY_LENGTH * 400), b"le"],
)
async def test_hostile_http_tracker_answers(body: bytes) -> None:
    app = web.Application()

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, status=200)

    app.router.add_get("/announce", handler)
    runner, port = await serve_local(app)
    try:
        url = f"http://127.0.0.1:{port}/announce"
        c = client([[url]], 1, Peer())
        async with running(c) as task:
            await until(lambda: c.entries[url].state == "error", what="error state")
            assert not task.done()
    finally:
        await runner.cleanup()


async def test_http_error_status_and_redirect() -> None:
    target = await start_tracker("127.0.0.1", 0)
    app = web.Application()

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(target.url + "?" + request.rel_url.raw_query_string)

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=503, text="busy")

    app.router.add_get("/announce", redirect)
    app.router.add_get("/broken/announce", broken)
    runner, port = await serve_local(app)
    try:
        via = f"http://127.0.0.1:{port}/announce"
        bad = f"http://127.0.0.1:{port}/broken/announce"
        c = client([[via], [bad]], 1, Peer())
        async with running(c):
            await until(lambda: c.entries[via].state == "ok", what="redirect followed")
            await until(lambda: c.entries[bad].state == "error", what="503 seen")
            s = await _scrape(target)
            assert s is not None  # the announce landed on the real tracker via the redirect
        assert "503" in (c.entries[bad].last_error or "")
    finally:
        await runner.cleanup()
        await target.close()


# ------------------------------------------------------------------ a scripted UDP tracker


class ScriptedUdp(asyncio.DatagramProtocol):
    """A BEP 15 tracker built from our codecs, which can drop or garble answers."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.drop_next = 0
        self.wrong_tid_first = False
        self.connects = 0
        self.announces: list[a.AnnounceRequest] = []
        self.conn_ids: set[int] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        if self.drop_next:
            self.drop_next -= 1
            return
        req = a.udp_parse_request(data)
        if self.wrong_tid_first:
            self.wrong_tid_first = False
            self.transport.sendto(a.udp_encode_connect(req.tid ^ 1, 1), addr)
        if req.action == a.UDP_CONNECT:
            self.connects += 1
            cid = 0x1234_0000 + self.connects
            self.conn_ids.add(cid)
            self.transport.sendto(a.udp_encode_connect(req.tid, cid), addr)
        elif req.action == a.UDP_ANNOUNCE:
            assert req.announce is not None
            if req.connection_id not in self.conn_ids:
                self.transport.sendto(a.udp_encode_error(req.tid, "bad connection id"), addr)
                return
            self.announces.append(req.announce)
            peers = [a.pack_peer("10.9.8.7", 4321)]
            self.transport.sendto(a.udp_encode_announce(req.tid, 0, 3, 4, peers), addr)
        elif req.action == a.UDP_SCRAPE:
            self.transport.sendto(a.udp_encode_scrape(req.tid, [a.ScrapeStats(4, 9, 3)]), addr)


@contextlib.asynccontextmanager
async def udp_tracker() -> AsyncIterator[tuple[ScriptedUdp, str]]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(ScriptedUdp, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    try:
        yield proto, f"udp://127.0.0.1:{port}/announce"
    finally:
        transport.close()


async def test_udp_announce_retransmits_and_reuses_connection_id() -> None:
    async with udp_tracker() as (srv, url):
        srv.drop_next = 1  # the first connect is lost
        srv.wrong_tid_first = True
        peer = Peer()
        c = client([[url]], 1, peer, udp_base_timeout=0.1, udp_attempts=3)
        async with running(c):
            await until(lambda: len(srv.announces) >= 3, what="three UDP announces")
            assert peer.found[0] == ("10.9.8.7", 4321)
            st = c.status()[0]
            assert st.state == "ok" and (st.seeders, st.leechers) == (4, 3)
            assert srv.connects == 1  # one connection id served every announce
            assert srv.announces[0].event == "started" and srv.announces[1].event == ""
            assert srv.announces[0].port == 7001 and srv.announces[0].info_hash == IH
            scraped = await c.scrape()
            assert scraped[url] == a.ScrapeStats(4, 9, 3)
        assert srv.announces[-1].event == "stopped"


async def test_udp_unreachable_gives_up_after_bounded_tries() -> None:
    port = free_port(socket.SOCK_DGRAM)
    url = f"udp://127.0.0.1:{port}/announce"
    # the spec's 15 s timeout: only the ICMP "port unreachable" can make this quick
    c = client([[url]], 1, Peer(), udp_base_timeout=15.0, udp_attempts=3, retry_base=5.0)
    t0 = time.monotonic()
    async with running(c):
        await until(lambda: c.entries[url].state == "error", what="error state")
    assert time.monotonic() - t0 < 5
    assert "refused" in (c.entries[url].last_error or "").lower()


async def test_udp_silent_tracker_times_out_after_bounded_tries() -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )  # bound, never answers
    port = transport.get_extra_info("sockname")[1]
    url = f"udp://127.0.0.1:{port}/announce"
    try:
        c = client([[url]], 1, Peer(), udp_base_timeout=0.05, udp_attempts=3, retry_base=5.0)
        t0 = time.monotonic()
        async with running(c):
            await until(lambda: c.entries[url].state == "error", what="error state")
        elapsed = time.monotonic() - t0
        assert 0.3 <= elapsed < 5  # 0.05 + 0.1 + 0.2 s of waiting, then give up
        assert "no answer" in (c.entries[url].last_error or "")
    finally:
        transport.close()


async def test_no_trackers_returns_at_once() -> None:
    c = client([], 1, Peer())
    await asyncio.wait_for(c.run(), 2)
    await c.stop()
    assert c.status() == []


async def test_ipv6_tracker_returns_peers6() -> None:
    t = await start_tracker("::1", 0, interval=1)
    assert t.url.startswith("http://[::1]:")
    try:
        seed, leech = Peer(left=0), Peer()
        cs, cl = client([[t.url]], 1, seed), client([[t.url]], 2, leech)
        async with running(cs):
            await until(lambda: cs.entries[t.url].state == "ok", what="seed announced")
            async with running(cl):
                await until(lambda: ("::1", 7001) in leech.found, what="IPv6 peer via peers6")
    finally:
        await t.close()


async def test_strict_bep12_stops_at_the_first_tier_that_answers(tracker: RunningTracker) -> None:
    other = await start_tracker("127.0.0.1", 0, interval=1)
    try:
        dead = f"http://127.0.0.1:{free_port()}/announce"
        c = client([[dead], [tracker.url], [other.url]], 1, Peer(), all_tiers=False)
        async with running(c):
            await until(lambda: c.entries[tracker.url].state == "ok", what="second tier ok")
            await until(
                lambda: (
                    (c.entries[tracker.url].last_announce or 0) > 0
                    and c.entries[dead].state == "error"
                ),
                what="first tier tried",
            )
        assert c.entries[other.url].last_announce is None  # never needed
        assert c.entries[other.url].state == "idle"
    finally:
        await other.close()


async def test_a_hybrid_announces_both_info_hashes(tracker: RunningTracker) -> None:
    """BEP 52: a hybrid torrent is announced under its v1 hash and its
    truncated v2 hash, so v1-only and v2 peers both find it."""
    v2_short = bytes(range(101, 121))
    seed, v1_leech, v2_leech = Peer(left=0), Peer(), Peer()
    hybrid = client([[tracker.url]], 1, seed, also_hashes=[v2_short])
    by_v1 = client([[tracker.url]], 2, v1_leech)
    by_v2 = TrackerClient(
        [[tracker.url]], v2_short, pid_of(3), 7003, v2_leech.stats, v2_leech.on_peers,
        min_interval=0.05, retry_base=0.05,
    )  # fmt: skip
    async with running(hybrid):
        await until(lambda: hybrid.status()[0].state == "ok", what="the hybrid's first announce")
        async with running(by_v1), running(by_v2):
            await until(lambda: ("127.0.0.1", 7001) in v1_leech.found, what="a v1 peer to find it")
            await until(lambda: ("127.0.0.1", 7001) in v2_leech.found, what="a v2 peer to find it")
            # and the hybrid learns the peers of both swarms
            await until(lambda: {("127.0.0.1", 7002), ("127.0.0.1", 7003)} <= set(seed.found),
                        what="the hybrid to learn both leeches")  # fmt: skip
