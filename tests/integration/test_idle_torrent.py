"""An idle torrent costs no CPU: a seed with no peers does not wake up every second.

Before the fix each torrent ran its tick every second whatever it had to do, so
200 idle seeds in one daemon cost 200 wake-ups a second (1.5 % of a core). Now
a seed with no peers, nothing to dial and nothing to save sleeps until
something wakes it: a peer, an address, a tracker's answer.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

import swarm.torrent as torrent_mod
from swarm import Session
from swarm.core.announce import encode_announce_response
from swarm.core.metainfo import parse_metainfo
from tests.helpers.http_app import serve_local
from tests.helpers.wait import poll, until
from tests.helpers_qa.peers import RawPeer
from tests.helpers_qa.torrents import craft

TICK = 0.02
#: Fifty ticks' time: an idle torrent used to tick fifty times in it.
QUIET = 50 * TICK


async def test_an_idle_seed_does_not_tick_until_a_peer_comes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torrent_mod, "TICK", TICK)
    torrent, payload = craft("idle.bin", length=100_000)
    (tmp_path / "idle.bin").write_bytes(payload)
    meta = parse_metainfo(torrent)
    async with Session("127.0.0.1", 0) as s:
        h = await s.add_torrent(meta, tmp_path)
        t = h._t
        await until(lambda: t.state == "seeding" and not t.peers, 10, "a seed with no peers")
        ticks: list[float] = []
        real_tick = t._tick

        def counting(now: float) -> None:
            ticks.append(now)
            real_tick(now)

        monkeypatch.setattr(t, "_tick", counting)
        await poll(lambda: len(ticks) > 1, QUIET)
        assert len(ticks) <= 1, f"an idle seed ticked {len(ticks)} times in {QUIET:.1f} s"

        assert s.port is not None
        peer = await RawPeer.connect(s.port)
        try:
            await peer.handshake(meta.info_hash)
            await until(lambda: len(ticks) >= 5, 5, "ticks while a peer is connected")
        finally:
            peer.close()
        await until(lambda: not t.peers, 5, "the peer gone")
        after = len(ticks)
        await poll(lambda: len(ticks) > after + 1, QUIET)
        assert len(ticks) <= after + 1, f"{len(ticks) - after} ticks after the peer left"


async def test_an_idle_seed_still_reports_its_tracker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ``tracker`` event of an announce answered while the seed sleeps is not lost:
    the answer wakes it (the tracker here holds its answer until the seed is idle; a
    minute's tick, so only the wake can report it in time)."""
    monkeypatch.setattr(torrent_mod, "TICK", 60.0)
    release = asyncio.Event()
    asked = asyncio.Event()

    async def announce(request: web.Request) -> web.Response:
        asked.set()
        await asyncio.wait_for(release.wait(), 10)
        return web.Response(body=encode_announce_response([], interval=1800, min_interval=900))

    app = web.Application()
    app.router.add_get("/announce", announce)
    runner, port = await serve_local(app)
    try:
        url = f"http://127.0.0.1:{port}/announce"
        torrent, payload = craft("told.bin", length=100_000)
        meta = parse_metainfo(_with_tracker(torrent, url))
        (tmp_path / "told.bin").write_bytes(payload)
        async with Session("127.0.0.1", 0) as s:
            h = await s.add_torrent(meta, tmp_path)
            t = h._t
            events: list[tuple[str, dict[str, Any]]] = []

            async def collect() -> None:
                async for ev in t.events():
                    events.append(ev)

            collector = asyncio.create_task(collect())
            try:
                await asyncio.wait_for(asked.wait(), 10)
                await until(
                    lambda: t.state == "seeding" and not t.peers, 10, "a seed with no peers"
                )
                release.set()
                got = await until(
                    lambda: [f for k, f in events if k == "tracker"], 5, "the tracker event"
                )
                assert got[0]["action"] == "ok" and got[0]["url"] == url
            finally:
                collector.cancel()
    finally:
        await runner.cleanup()


def _count_status(handle: Any) -> list[None]:
    """Wrap ``handle.status``: the list grows by one per call."""
    calls: list[None] = []
    real = handle.status

    def counting() -> Any:
        calls.append(None)
        return real()

    handle.status = counting
    return calls


def _with_tracker(torrent: bytes, url: str) -> bytes:
    from swarm.core.bencode import decode, encode

    top = decode(torrent)
    top[b"announce"] = url.encode()
    return encode(top)


async def test_the_daemon_does_not_look_at_an_idle_torrent_every_second(tmp_path: Path) -> None:
    """The daemon's 1 s snapshot check (for the event stream) skips a torrent that is
    idle and was at rest at its last look: 200 idle seeds cost the daemon nothing."""
    from swarm.daemon.core import Managed
    from swarm.daemon.events import EventHub
    from swarm.daemon.state import Entry

    torrent, payload = craft("watched.bin", length=100_000)
    (tmp_path / "watched.bin").write_bytes(payload)
    meta = parse_metainfo(torrent)
    async with Session("127.0.0.1", 0) as s:
        h = await s.add_torrent(meta, tmp_path)
        await until(lambda: h.status().state == "seeding", 10, "seeding")
        m = Managed(Entry(meta.info_hash.hex(), str(tmp_path)), meta, EventHub())
        m.handle = h
        looks = _count_status(h)
        for _ in range(10):
            m.tick()
        assert len(looks) <= 1, f"an idle torrent's status was computed {len(looks)} times in 10 ticks"
        other_torrent, other_payload = craft("other.bin", length=50_000)
        (tmp_path / "other.bin").write_bytes(other_payload)
        other = await s.add_torrent(parse_metainfo(other_torrent), tmp_path)
        await until(lambda: other.idle(), 10, "the other seed idle")
        other_looks = _count_status(other)
        m.handle = other  # resumed as a new handle: looked at once, although idle
        m.tick()
        m.tick()
        assert len(other_looks) == 1
        m.handle = h
        assert s.port is not None
        peer = await RawPeer.connect(s.port)
        try:
            await peer.handshake(meta.info_hash)
            await until(lambda: h._t.peers, 5, "the peer admitted")
            before = len(looks)
            m.tick()
            assert len(looks) == before + 1  # not idle: looked at
        finally:
            peer.close()
