"""Hostile peers against admission limits (issue 16 #2, #3, #6), over real loopback sockets.

Several source addresses (127.0.0.x) stand in for distinct hosts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers_qa.peers import RawPeer

from swarm import Session
from swarm.core import admission, wire
from swarm.core import extensions as ext
from swarm.core.bencode import encode as bencode
from swarm.core.metainfo import Metainfo, parse_metainfo
from swarm.create import create_torrent
from tests.helpers.wait import poll

PIECE = 32768


@dataclass
class Swarm:
    meta: Metainfo
    data: bytes
    payload: bytes
    src: Path


@asynccontextmanager
async def made(tmp_path: Path, size: int = 8 * PIECE + 100) -> AsyncIterator[Swarm]:
    payload = os.urandom(size)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.bin").write_bytes(payload)
    data = create_torrent(src / "f.bin", piece_length=PIECE)
    yield Swarm(parse_metainfo(data), data, payload, src)


async def raw_from(src_ip: str, port: int) -> RawPeer:
    return await RawPeer.connect(port, source=src_ip)


def ext_handshake(**m: int) -> bytes:
    return wire.encode_extended(0, bencode({b"m": {k.encode(): v for k, v in m.items()}}))


# ------------------------------------------------------------------ #6 ut_pex


async def test_pex_from_many_short_connections_cannot_grow_the_dial_list(tmp_path: Path) -> None:
    """Reconnecting resets no budget: each source IP may add a bounded number of
    addresses, and the known/candidate sets never pass their bound."""
    async with made(tmp_path) as s, Session("127.0.0.1", 0) as leecher:
        (tmp_path / "out").mkdir()
        handle = await leecher.add_torrent(s.meta, tmp_path / "out")
        torrent: Any = handle._t
        torrent.pool.max_known = 150  # a small bound, reachable with a few sources
        assert leecher.port is not None
        sent = 0
        for source in ("127.0.0.1", "127.0.0.2", "127.0.0.3"):
            for _ in range(20):
                p = await raw_from(source, leecher.port)
                assert await p.handshake(s.meta.info_hash) is not None
                base = sent
                added = [
                    ext.PexPeer(f"127.{1 + (base + k) // 60000}.{(base + k) // 250 % 240}.{1 + (base + k) % 250}", 7000)
                    for k in range(50)
                ]
                sent += 50
                p.send(ext_handshake(ut_pex=1))
                p.send(wire.encode_extended(ext.UT_PEX_ID, ext.encode_pex(ext.PexMessage(added=added))))
                await p.drain()
                p.writer.close()
                n = sent // 50
                assert await poll(lambda n=n: torrent.pex.received >= n, timeout=5)  # type: ignore[misc]
        per_source = admission.MAX_ADDRESSES_PER_SOURCE
        assert torrent.pex.accepted <= 3 * per_source, torrent.pex.accepted
        assert len(torrent.pool.known) <= 150, len(torrent.pool.known)
        assert len(torrent.pool.candidates) <= 150, len(torrent.pool.candidates)


# ------------------------------------------------------------------ #2 ut_metadata


async def test_metadata_flood_from_a_peer_that_never_reads_is_bounded_and_dropped(tmp_path: Path) -> None:
    """Tiny ut_metadata requests, never a byte read: the seed's write buffer stays
    bounded (no reply queued per request) and the peer is dropped (before: one
    reply queued per request, 3 MB of requests grew the buffer to 1.6 GB)."""
    async with made(tmp_path) as s, Session("127.0.0.1", 0) as seed:
        await seed.add_torrent(s.data, s.src, seed_only=True)
        assert seed.port is not None
        p = await raw_from("127.0.0.1", seed.port)
        assert await p.handshake(s.meta.info_hash) is not None
        our_port = p.writer.get_extra_info("sockname")[1]
        conn = next(c for c in seed.connections if c.address[1] == our_port)
        p.send(ext_handshake(ut_metadata=7))
        request = wire.encode_extended(3, bencode({b"msg_type": 0, b"piece": 0}))
        peak = 0

        async def watch() -> None:
            nonlocal peak
            while not conn.closed:
                assert conn.transport is not None
                peak = max(peak, conn.transport.get_write_buffer_size())
                await asyncio.sleep(0.005)

        watcher = asyncio.create_task(watch())
        for _ in range(30):  # 3 MB in 100 KB writes; stops mattering once we are dropped
            p.send(request * (100_000 // len(request)))
            if not await p.drain(timeout=5):
                break
        assert await poll(lambda: conn.closed, timeout=10), "the flooding peer was not dropped"
        await asyncio.wait_for(watcher, 5)
        assert "metadata" in conn.close_reason, conn.close_reason
        assert peak <= 64 * 1024, peak
        p.writer.close()


# ------------------------------------------------------------------ #3 slot squatting


async def test_squatters_cannot_lock_an_honest_leecher_out_of_a_seed(tmp_path: Path) -> None:
    """Connections that say ``interested`` and never request, from eight addresses,
    fill the seed's connection cap and unchoke slots; a per-IP cap holds each address
    to 8, idle unchoked squatters lose their slots and then their connections, and
    an honest leecher completes (before: refused, 0 bytes)."""
    async with made(tmp_path) as s, Session("127.0.0.1", 0) as seed:
        await seed.add_torrent(s.data, s.src, seed_only=True)
        torrent: Any = seed.torrents[s.meta.info_hash]
        torrent.choking.idle_unchoke_after = 1.0  # seconds instead of the default 30/60
        torrent.pool.idle_connection_after = 1.0
        assert seed.port is not None
        squatters: list[RawPeer] = []
        for host in range(2, 10):
            for _ in range(9):  # one more than the per-IP cap
                p = await raw_from(f"127.0.0.{host}", seed.port)
                assert await p.handshake(s.meta.info_hash) is not None
                p.send(wire.encode_interested())
                await p.drain()
                squatters.append(p)
        try:
            assert await poll(lambda: len(torrent.peers) >= 60, timeout=10), len(torrent.peers)
            per_ip: dict[str, int] = {}
            for peer in torrent.peers:
                per_ip[peer.address[0]] = per_ip.get(peer.address[0], 0) + 1
            assert max(per_ip.values()) <= 8, per_ip
            # some squatters were unchoked, left their slots unused, and were caught
            assert await poll(
                lambda: sum(1 for peer in torrent.peers if peer.idle_until > 0) >= 2, timeout=15
            )
            out = tmp_path / "honest"
            out.mkdir()
            async with Session("127.0.0.1", 0) as leecher:
                h = await leecher.add_torrent(s.meta, out, peers=[("127.0.0.1", seed.port)])
                await h.wait_complete(30)
            assert (out / "f.bin").read_bytes() == s.payload
        finally:
            for p in squatters:
                p.writer.close()


async def test_metadata_requests_while_paused_leave_one_reply_for_the_resume(tmp_path: Path) -> None:
    """While the peer's transport is paused (it does not read), requests queue no
    reply; one reply (the latest asked for) goes out when writing resumes."""
    async with made(tmp_path) as s, Session("127.0.0.1", 0) as seed:
        await seed.add_torrent(s.data, s.src, seed_only=True)
        assert seed.port is not None
        p = await raw_from("127.0.0.1", seed.port)
        assert await p.handshake(s.meta.info_hash) is not None
        our_port = p.writer.get_extra_info("sockname")[1]
        conn = next(c for c in seed.connections if c.address[1] == our_port)
        p.send(ext_handshake(ut_metadata=7))
        await p.drain()
        assert await poll(lambda: conn.ext_ids.get("ut_metadata") == 7, timeout=5)
        conn.pause_writing()  # as the transport does above its high-water mark
        for _ in range(5):
            p.send(wire.encode_extended(3, bencode({b"msg_type": 0, b"piece": 0})))
        await p.drain()
        assert await poll(lambda: conn.metadata_waiting == 0, timeout=5)
        assert not any(isinstance(m, bytes) and b"msg_type" in m for m in conn._out)
        conn.resume_writing()
        assert conn.metadata_waiting is None

        def replies(ms: list[Any]) -> list[Any]:
            return [m for m in ms if isinstance(m, wire.Extended) and m.ext_id == 7]

        msgs = await p.messages(s.meta, lambda ms: len(replies(ms)) >= 1, timeout=5)
        assert len(replies(msgs)) == 1
        assert not conn.closed
        p.writer.close()


async def test_a_full_dial_list_forgets_peers_that_left(tmp_path: Path) -> None:
    """The bound must not freeze the list: addresses of peers long gone make room."""
    async with made(tmp_path) as s, Session("127.0.0.1", 0) as leecher:
        (tmp_path / "out").mkdir()
        handle = await leecher.add_torrent(s.meta, tmp_path / "out")
        torrent: Any = handle._t
        torrent.pool.max_known = 5
        torrent.pool.known = {(f"127.9.9.{i}", 6881) for i in range(5)}  # peers that have left
        torrent.add_peer("127.0.0.5", 7000, "tracker")
        assert ("127.0.0.5", 7000) in torrent.pool.known
        assert len(torrent.pool.known) <= 5


async def take_forever(p: RawPeer, meta: Metainfo) -> None:
    """A client that never finishes: requests random blocks whenever unchoked (and
    one at once, so the choker knows it asks), reads them, announces nothing."""
    rng = random.Random(7)
    p.send(wire.encode_request(0, 0, wire.BLOCK_SIZE))
    in_flight = 1
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while True:
            (length,) = struct.unpack(">I", await p.reader.readexactly(4))
            body = await p.reader.readexactly(length) if length else b""
            if body[:1] == b"\x01":  # unchoke
                in_flight = 0
            elif body[:1] == b"\x07":  # piece
                in_flight -= 1
            if body[:1] in (b"\x01", b"\x07"):
                while in_flight < 4:
                    p.send(wire.encode_request(rng.randrange(meta.num_pieces - 1), 0, wire.BLOCK_SIZE))
                    in_flight += 1


async def test_an_honest_leecher_gets_in_and_is_served_at_once_while_squatters_fill_the_pool(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """The flood of benchmarks/many_connections.py, small: 30 connections without the
    fast extension (reserved bytes of zero) say ``interested``; most never request,
    every fifth requests random blocks whenever unchoked and announces nothing (a
    client that never finishes). They fill a pool of 20 and every unchoke slot, with
    the default idle timings. An honest leecher arriving after them must take the
    place of the worst squatter and an unchoke slot at once, and complete within
    seconds (before: refused until a squatter had left an unchoke unused for 15 s
    and 30 s had passed since it connected, i.e. 30 s or more)."""
    from swarm.parts import pool

    monkeypatch.setattr(pool, "MAX_PEERS", 20)
    async with made(tmp_path, size=96 * PIECE) as s, Session("127.0.0.1", 0) as seed:
        await seed.add_torrent(s.data, s.src, seed_only=True)
        torrent: Any = seed.torrents[s.meta.info_hash]
        torrent.choking.waste_slack = 8 * PIECE  # a small file: "far more" is scaled down with it
        assert seed.port is not None
        squatters: list[RawPeer] = []
        takers: list[asyncio.Task[None]] = []
        try:
            for i in range(30):
                p = await raw_from(f"127.0.0.{2 + i % 5}", seed.port)
                if await p.handshake(s.meta.info_hash, reserved=bytes(8)) is not None:
                    p.send(wire.encode_interested())
                    await p.drain()
                    if i % 5 == 0:
                        takers.append(asyncio.create_task(take_forever(p, s.meta)))
                squatters.append(p)
            assert await poll(lambda: len(torrent.peers) == 20, timeout=10), len(torrent.peers)
            assert await poll(
                lambda: all(peer.peer_interested for peer in torrent.peers), timeout=10
            )
            # the clients that never finish have been served far more than the pieces
            # they announced (none): without that rule they would keep every slot
            assert await poll(
                lambda: sum(torrent.choking.wasteful(peer) for peer in torrent.peers) >= 4, timeout=15
            )
            # as if they had all been there for a minute (past any newcomer's grace)
            for peer in torrent.peers:
                peer.connected_at -= 60.0
            squatting = set(torrent.peers)
            out = tmp_path / "honest"
            out.mkdir()
            async with Session("127.0.0.1", 0) as leecher:
                h = await leecher.add_torrent(s.meta, out, peers=[("127.0.0.1", seed.port)])
                await h.wait_complete(8)
            assert (out / "f.bin").read_bytes() == s.payload
            assert len(squatting - set(torrent.peers)) >= 1  # one made room
        finally:
            for task in takers:
                task.cancel()
            for p in squatters:
                p.writer.close()


async def test_a_full_pool_replaces_squatters_but_keeps_a_peer_busy_elsewhere(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """A client whose pipeline is full with other peers says interested, asks us
    nothing, but announces the pieces it gets (HAVE): newcomers from other addresses
    replace the silent squatters, oldest first, never it (before: every newcomer
    was refused at the cap)."""
    from swarm.parts import pool

    monkeypatch.setattr(pool, "MAX_PEERS", 4)
    async with made(tmp_path) as s, Session("127.0.0.1", 0) as seed:
        await seed.add_torrent(s.data, s.src, seed_only=True)
        torrent: Any = seed.torrents[s.meta.info_hash]
        assert seed.port is not None
        conns: list[RawPeer] = []
        try:
            for host in range(2, 6):  # .2 is busy elsewhere, .3-.5 squat
                p = await raw_from(f"127.0.0.{host}", seed.port)
                assert await p.handshake(s.meta.info_hash, reserved=bytes(8)) is not None
                p.send(wire.encode_interested())
                if host == 2:
                    p.send(wire.encode_have(3))
                await p.drain()
                conns.append(p)
            assert await poll(lambda: len(torrent.peers) == 4, timeout=10)
            busy = next(peer for peer in torrent.peers if peer.address[0] == "127.0.0.2")
            assert await poll(lambda: busy.have is not None and busy.have.count == 1, timeout=5)
            for age, peer in enumerate(sorted(torrent.peers, key=lambda peer: peer.address[0])):
                peer.connected_at -= 60.0 + 10 * (5 - age)  # all past their grace, .2 the oldest
            for host in range(6, 9):
                p = await raw_from(f"127.0.0.{host}", seed.port)
                conns.append(p)
                assert await p.handshake(s.meta.info_hash, reserved=bytes(8)) is not None
                p.send(wire.encode_interested())
                await p.drain()
                ip = f"127.0.0.{host}"
                assert await poll(lambda ip=ip: any(peer.address[0] == ip for peer in torrent.peers), timeout=5)  # type: ignore[misc]
            addresses = sorted(peer.address[0] for peer in torrent.peers)
            assert addresses == ["127.0.0.2", "127.0.0.6", "127.0.0.7", "127.0.0.8"], addresses
        finally:
            for p in conns:
                p.writer.close()


async def test_clients_that_never_finish_lose_their_slots_within_seconds_while_a_peer_that_progresses_wants_data(
    tmp_path: Path,
) -> None:
    """Three connections get free slots on ``interested``, then show themselves clients
    that never finish; an honest peer is unchoked and interested. They must be choked
    at the request that shows it, not at the next rechoke round (10 s; made 120 s here
    so the test cannot pass by a round's timing) nor at the next tick (a second: 20-30
    MiB on loopback, where the seed is CPU-bound and every block they get is one the
    honest peer waits for)."""
    async with made(tmp_path, size=96 * PIECE) as s, Session("127.0.0.1", 0) as seed:
        await seed.add_torrent(s.data, s.src, seed_only=True)
        torrent: Any = seed.torrents[s.meta.info_hash]
        torrent.choking.waste_slack = 8 * PIECE  # a small file: "far more" is scaled down with it
        torrent.choking.choker.rechoke_interval = 120.0
        assert seed.port is not None
        conns: list[RawPeer] = []
        takers: list[asyncio.Task[None]] = []
        try:
            honest = await raw_from("127.0.0.2", seed.port)
            conns.append(honest)
            assert await honest.handshake(s.meta.info_hash) is not None
            honest.send(wire.encode_interested())
            await honest.drain()
            for host in range(3, 6):
                p = await raw_from(f"127.0.0.{host}", seed.port)
                conns.append(p)
                assert await p.handshake(s.meta.info_hash, reserved=bytes(8)) is not None
                p.send(wire.encode_interested())
                await p.drain()
                takers.append(asyncio.create_task(take_forever(p, s.meta)))
            assert await poll(lambda: len(torrent.peers) == 4, timeout=10)

            def taking() -> list[Any]:
                return [peer for peer in torrent.peers if peer.address[0] != "127.0.0.2"]

            assert await poll(lambda: all(torrent.choking.wasteful(peer) for peer in taking()), timeout=10)
            assert await poll(lambda: all(peer.am_choking for peer in taking()), timeout=3)
            # what a request queue holds when the last request shows it: 500 blocks at most
            most = torrent.choking.waste_slack + 500 * wire.BLOCK_SIZE
            assert all(peer.uploaded <= most for peer in taking()), [peer.uploaded for peer in taking()]
            (good,) = (peer for peer in torrent.peers if peer.address[0] == "127.0.0.2")
            assert not good.am_choking
            # saying interested again does not win it a free slot between rounds either
            choked = next(peer for peer in taking() if peer.am_choking)
            again = conns[int(choked.address[0].rsplit(".", 1)[1]) - 2]
            again.send(wire.encode_not_interested())
            assert await poll(lambda: not choked.peer_interested, timeout=5)
            again.send(wire.encode_interested())
            assert await poll(lambda: choked.peer_interested, timeout=5)
            assert choked.am_choking and torrent.choking.unchoked_count() < 4
        finally:
            for task in takers:
                task.cancel()
            for p in conns:
                p.writer.close()


async def test_an_honest_leecher_of_large_pieces_is_not_taken_for_a_client_that_never_finishes(
    tmp_path: Path,
) -> None:
    """1 MiB pieces (64 blocks): a leecher's first 8 requests, all of one piece, use an
    eighth of it. Taken for a flood's scattered requester (no piece announced yet), it
    was choked at them while silent connections were interested and never got a byte
    (the 1 GiB run of benchmarks/many_connections.py stalled so). A first download
    before it has sent every piece once, so its allowed-fast requests are refused and
    only an unchoke serves it, as in the benchmark."""
    payload = os.urandom(32 << 20)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.bin").write_bytes(payload)
    data = create_torrent(src / "f.bin", piece_length=1 << 20)
    meta = parse_metainfo(data)
    async with Session("127.0.0.1", 0) as seed:
        await seed.add_torrent(data, src, seed_only=True)
        torrent: Any = seed.torrents[meta.info_hash]
        assert seed.port is not None
        for name in ("first", "honest"):
            (tmp_path / name).mkdir()
        async with Session("127.0.0.1", 0) as first:
            h = await first.add_torrent(meta, tmp_path / "first", peers=[("127.0.0.1", seed.port)])
            await h.wait_complete(30)
        squatters: list[RawPeer] = []
        try:
            for host in range(2, 8):
                p = await raw_from(f"127.0.0.{host}", seed.port)
                squatters.append(p)
                assert await p.handshake(meta.info_hash, reserved=bytes(8)) is not None
                p.send(wire.encode_interested())
                await p.drain()
            assert await poll(lambda: sum(peer.peer_interested for peer in torrent.peers) == 6, timeout=10)
            async with Session("127.0.0.1", 0) as leecher:
                h = await leecher.add_torrent(meta, tmp_path / "honest", peers=[("127.0.0.1", seed.port)])
                await h.wait_complete(10)
            assert (tmp_path / "honest" / "f.bin").read_bytes() == payload
        finally:
            for p in squatters:
                p.writer.close()
