"""Acceptance: hostile peers against a swarm seed and a swarm leecher.

Each case opens a raw connection (asyncio streams + swarm.core.wire encoders)
to a seed or to a leecher that is still downloading, misbehaves, and checks
that the connection is closed (or the message ignored, where the protocol
allows it), that nothing escaped as a traceback (asyncio exception handler,
log records with exc_info), and that the attacked session still completes a
real download from an honest swarm seed with the right bytes.

The last tests run `swarm seed` / `swarm get` as processes (uvloop, the real
CLI) under the same attacks and look for "Traceback" on their stderr.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers_qa.peers import RawPeer, ScriptedSeed, data_server, new_peer_id

from swarm import Session
from swarm.core import wire
from swarm.core.bencode import encode as bencode
from swarm.core.bitfield import Bitfield
from swarm.core.metainfo import Metainfo, parse_metainfo
from swarm.create import create_torrent
from tests.helpers.procs import assert_no_tracebacks, events_until, kill_all, spawn_swarm
from tests.helpers.wait import poll

PIECE = 32768
#: 33 pieces: the last one is short and the bitfield has 7 spare bits.
SIZE = 32 * PIECE + 12345
NET = ["--host", "127.0.0.1", "--port", "0", "--no-dht", "--no-lsd"]
UT_METADATA = 3  # the id swarm advertises for ut_metadata in its extended handshake


@dataclass
class Arena:
    meta: Metainfo
    payload: bytes
    torrent: bytes
    seed: Session
    victim: Session  # the leecher under attack (no peers until the end)
    victim_out: Path
    victim_handle: Any
    loop_errors: list[dict[str, Any]]

    def port(self, role: str) -> int:
        s = self.seed if role == "seed" else self.victim
        assert s.port is not None
        return s.port


@asynccontextmanager
async def arena(tmp_path: Path) -> AsyncIterator[Arena]:
    payload = os.urandom(SIZE)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.bin").write_bytes(payload)
    data = create_torrent(src / "f.bin", piece_length=PIECE)
    meta = parse_metainfo(data)
    out = tmp_path / "victim"
    out.mkdir()
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    old = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    try:
        async with Session("127.0.0.1", 0) as seed, Session("127.0.0.1", 0) as victim:
            await seed.add_torrent(data, src, seed_only=True)
            handle = await victim.add_torrent(meta, out)
            yield Arena(meta, payload, data, seed, victim, out, handle, errors)
    finally:
        loop.set_exception_handler(old)


async def assert_healthy(a: Arena, caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    """The attacked sessions still work: victim <- seed, and a fresh leecher <- seed."""
    out2 = tmp_path / "fresh"
    out2.mkdir(exist_ok=True)
    async with Session("127.0.0.1", 0) as fresh:
        h2 = await fresh.add_torrent(a.meta, out2, peers=[("127.0.0.1", a.port("seed"))])
        a.victim_handle.add_peer("127.0.0.1", a.port("seed"))
        await asyncio.wait_for(
            asyncio.gather(a.victim_handle.wait_complete(20), h2.wait_complete(20)), 25
        )
    assert (a.victim_out / "f.bin").read_bytes() == a.payload
    assert (out2 / "f.bin").read_bytes() == a.payload
    assert a.loop_errors == [], [
        str(e.get("message")) + str(e.get("exception")) for e in a.loop_errors
    ]
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert bad == [], [r.getMessage() for r in bad]


# --------------------------------------------------------------------------- cases
# Each case gets a fresh connection and the arena; returns nothing, asserts itself.


@dataclass
class Target:
    """What a case needs: the torrent, and the attacked session when in-process."""

    meta: Metainfo
    session: Session | None = None


Case = Callable[[RawPeer, Target], Awaitable[None]]


async def _hs(p: RawPeer, a: Target | Arena, *, reserved: bytes | None = None) -> None:
    kw = {} if reserved is None else {"reserved": reserved}
    hs = await p.handshake(a.meta.info_hash, **kw)
    assert hs is not None and hs.info_hash == a.meta.info_hash, "no handshake answer"


async def _closed(p: RawPeer) -> None:
    assert await p.closed_within(5), "the connection was not closed"


async def wrong_protocol(p: RawPeer, a: Target) -> None:
    p.send(b"\x13BitTorrent protocoX" + bytes(8) + a.meta.info_hash + new_peer_id())
    await _closed(p)
    assert not p.received.startswith(wire.PROTOCOL), "answered a bad handshake"


async def http_probe(p: RawPeer, a: Target) -> None:
    p.send(b"GET /announce HTTP/1.1\r\nHost: x\r\n\r\n")
    await _closed(p)


async def unknown_info_hash(p: RawPeer, a: Target) -> None:
    p.send(wire.Handshake(os.urandom(20), new_peer_id()).encode())
    await _closed(p)
    assert not p.received.startswith(wire.PROTOCOL), "answered for a torrent it does not have"


async def length_2_31(p: RawPeer, a: Target) -> None:
    await _hs(p, a)
    p.send(struct.pack(">IB", 2**31, wire.PIECE) + bytes(64))
    await _closed(p)


async def length_max_u32(p: RawPeer, a: Target) -> None:
    await _hs(p, a)
    p.send(b"\xff\xff\xff\xff" + bytes(16))
    await _closed(p)


async def bitfield_too_long(p: RawPeer, a: Target) -> None:
    await _hs(p, a)
    n = (a.meta.num_pieces + 7) // 8
    p.send(wire.encode_bitfield(b"\xff" * (n + 1)))
    await _closed(p)


async def bitfield_too_short(p: RawPeer, a: Target) -> None:
    await _hs(p, a)
    n = (a.meta.num_pieces + 7) // 8
    p.send(wire.encode_bitfield(b"\xff" * (n - 1)))
    await _closed(p)


async def bitfield_spare_bits(p: RawPeer, a: Target) -> None:
    await _hs(p, a)
    n = (a.meta.num_pieces + 7) // 8
    assert a.meta.num_pieces % 8, "the torrent must leave spare bits"
    p.send(wire.encode_bitfield(b"\xff" * n))
    await _closed(p)


async def have_out_of_range(p: RawPeer, a: Target) -> None:
    await _hs(p, a)
    p.send(wire.encode_have(a.meta.num_pieces))
    await _closed(p)


async def have_u32_max(p: RawPeer, a: Target) -> None:
    await _hs(p, a)
    p.send(wire.encode_have(2**32 - 1))
    await _closed(p)


async def request_index_out_of_range(p: RawPeer, a: Target) -> None:
    await _hs(p, a)
    p.send(wire.encode_interested() + wire.encode_request(a.meta.num_pieces, 0, 16384))
    await _closed(p)


async def request_past_piece_end(p: RawPeer, a: Target) -> None:
    await _hs(p, a)
    last = a.meta.num_pieces - 1
    p.send(
        wire.encode_interested() + wire.encode_request(last, a.meta.piece_size(last) - 100, 16384)
    )
    await _closed(p)


async def request_begin_huge(p: RawPeer, a: Target) -> None:
    await _hs(p, a)
    p.send(wire.encode_interested() + wire.encode_request(0, 2**32 - 16384, 16384))
    await _closed(p)


async def request_length_zero(p: RawPeer, a: Target) -> None:
    await _hs(p, a)
    p.send(wire.encode_interested() + wire.encode_request(0, 0, 0))
    await _closed(p)


async def request_one_mib(p: RawPeer, a: Target) -> None:
    await _hs(p, a)
    p.send(wire.encode_interested() + wire.encode_request(0, 0, 1 << 20))
    await _closed(p)


async def cancel_and_reject_out_of_range(p: RawPeer, a: Target) -> None:
    await _hs(p, a)
    p.send(wire.encode_reject(a.meta.num_pieces + 5, 0, 16384))
    await _closed(p)


async def allowed_fast_out_of_range(p: RawPeer, a: Target) -> None:
    await _hs(p, a)
    p.send(wire.encode_allowed_fast(a.meta.num_pieces))
    await _closed(p)


async def unsolicited_piece(p: RawPeer, a: Target) -> None:
    """A block nobody asked for (garbage): ignored or closed, never written."""
    await _hs(p, a)
    p.send(wire.encode_bitfield(Bitfield(a.meta.num_pieces, full=True).to_bytes()))
    p.send(wire.encode_unchoke())
    for index in range(4):
        p.send(wire.encode_piece(index, 0, b"\xee" * 16384))
    p.send(wire.encode_piece(a.meta.num_pieces - 1, 0, b"\xee" * 100))
    await p.drain()
    await p.closed_within(0.5)  # either is allowed; the data check comes at the end


async def piece_out_of_range(p: RawPeer, a: Target) -> None:
    await _hs(p, a)
    p.send(wire.encode_piece(a.meta.num_pieces, 0, b"\xee" * 16384))
    await _closed(p)


async def request_flood_while_choked(p: RawPeer, a: Target) -> None:
    """10,000 requests without interest: never served (bar allowed-fast), stays bounded."""
    await _hs(p, a)
    n = a.meta.num_pieces
    reqs = b"".join(wire.encode_request(i % n, (i // n % 2) * 16384, 16384) for i in range(10_000))
    p.send(reqs)
    await p.drain(10)
    msgs = await p.messages(a.meta, lambda ms: False, timeout=1.5)
    hs = p.remote_handshake
    assert hs is not None
    allowed = set(wire.allowed_fast_set("127.0.0.1", a.meta.info_hash, n)) if hs.fast else set()
    served = [m for m in msgs if isinstance(m, wire.Piece)]
    assert all(m.index in allowed for m in served), "served blocks to a choked peer"
    # BEP 6 allows at most the allowed-fast pieces' blocks to be served while choked
    assert len(served) <= 2 * len(allowed)
    if a.session is not None:
        for c in a.session.connections:
            assert len(c.upload_queue) <= 500


async def garbage_after_handshake(p: RawPeer, a: Target) -> None:
    await _hs(p, a)
    p.send(b"\xff" + os.urandom(8191))
    await _closed(p)


async def unknown_message_ids(p: RawPeer, a: Target) -> None:
    """Unknown small messages may be ignored (or the peer dropped): no crash either way."""
    await _hs(p, a)
    p.send(
        struct.pack(">IB", 6, 0x42)
        + b"hello"
        + struct.pack(">IB", 1, 0x99)
        + wire.encode_keepalive()
    )
    await p.drain()
    await p.closed_within(0.3)


async def fast_messages_without_fast_bit(p: RawPeer, a: Target) -> None:
    await _hs(p, a, reserved=wire.make_reserved(extensions=True, fast=False))
    p.send(wire.encode_have_all())
    await _closed(p)


async def ext_handshake_bad_bencode(p: RawPeer, a: Target) -> None:
    await _hs(p, a)
    p.send(wire.encode_extended(0, b"d1:md11:ut_metadatai3e"))
    await _closed(p)


async def ext_handshake_not_a_dict(p: RawPeer, a: Target) -> None:
    await _hs(p, a)
    p.send(wire.encode_extended(0, b"li1ei2ee"))
    await _closed(p)


async def ext_handshake_hostile_values(p: RawPeer, a: Target) -> None:
    """Legal bencode, absurd values: ignored (the connection may stay)."""
    await _hs(p, a)
    d = {
        b"m": {b"ut_metadata": -5, b"ut_pex": 2**70, b"x" * 5000: 7},
        b"v": b"\xff" * 10_000,
        b"reqq": 2**64,
        b"p": -1,
        b"metadata_size": -1,
        b"yourip": b"\x00",
    }
    p.send(wire.encode_extended(0, bencode(d)))
    p.send(wire.encode_extended(0, bencode({b"m": b"not a dict", b"reqq": b"many"})))
    await p.drain()
    await p.closed_within(0.3)


async def metadata_bad_bencode(p: RawPeer, a: Target) -> None:
    await _hs(p, a)
    p.send(wire.encode_extended(0, bencode({b"m": {b"ut_metadata": 7}})))
    p.send(wire.encode_extended(UT_METADATA, b"d8:msg_typei0e5:piecei"))
    await _closed(p)


async def metadata_piece_out_of_range(p: RawPeer, a: Target) -> None:
    """A metadata request past the end: a reject (msg_type 2) or a close, not data."""
    await _hs(p, a)
    p.send(wire.encode_extended(0, bencode({b"m": {b"ut_metadata": 7}})))
    for piece in (9999, -1, 2**40):
        p.send(wire.encode_extended(UT_METADATA, bencode({b"msg_type": 0, b"piece": piece})))
    await p.drain()

    def replies(ms: list[Any]) -> list[Any]:
        return [m for m in ms if isinstance(m, wire.Extended) and m.ext_id == 7]

    msgs = await p.messages(a.meta, lambda ms: len(replies(ms)) >= 3, timeout=3)
    for m in replies(msgs):
        from swarm.core.bencode import decode_prefix

        d, end = decode_prefix(m.payload)
        assert d.get(b"msg_type") == 2, d  # reject
        assert end == len(m.payload), "metadata bytes sent for an out-of-range piece"


async def metadata_valid_request(p: RawPeer, a: Target) -> None:
    """Control: a correct metadata request gets the info dictionary (BEP 9)."""
    await _hs(p, a)
    p.send(wire.encode_extended(0, bencode({b"m": {b"ut_metadata": 7}})))
    p.send(wire.encode_extended(UT_METADATA, bencode({b"msg_type": 0, b"piece": 0})))
    await p.drain()
    msgs = await p.messages(
        a.meta,
        lambda ms: any(isinstance(m, wire.Extended) and m.ext_id == 7 for m in ms),
        timeout=3,
    )
    got = [m for m in msgs if isinstance(m, wire.Extended) and m.ext_id == 7]
    assert got, "no ut_metadata answer"
    from swarm.core.bencode import decode_prefix

    d, end = decode_prefix(got[0].payload)
    assert d[b"msg_type"] == 1 and got[0].payload[end:] == a.meta.info_bytes[:16384]


async def self_connection_peer_id(p: RawPeer, a: Target) -> None:
    """A peer that claims the session's own peer id is dropped (or harmless)."""
    if a.session is None:
        return
    hs = await p.handshake(a.meta.info_hash, peer_id=a.session.peer_id)
    if hs is not None:
        await p.closed_within(2)


async def duplicate_handshake(p: RawPeer, a: Target) -> None:
    """A second handshake on the same connection is garbage: closed."""
    await _hs(p, a)
    p.send(wire.Handshake(a.meta.info_hash, new_peer_id()).encode())
    await _closed(p)


CASES: dict[str, Case] = {
    f.__name__: f
    for f in (
        wrong_protocol,
        http_probe,
        unknown_info_hash,
        length_2_31,
        length_max_u32,
        bitfield_too_long,
        bitfield_too_short,
        bitfield_spare_bits,
        have_out_of_range,
        have_u32_max,
        request_index_out_of_range,
        request_past_piece_end,
        request_begin_huge,
        request_length_zero,
        request_one_mib,
        cancel_and_reject_out_of_range,
        allowed_fast_out_of_range,
        unsolicited_piece,
        piece_out_of_range,
        request_flood_while_choked,
        garbage_after_handshake,
        unknown_message_ids,
        fast_messages_without_fast_bit,
        ext_handshake_bad_bencode,
        ext_handshake_not_a_dict,
        ext_handshake_hostile_values,
        metadata_bad_bencode,
        metadata_piece_out_of_range,
        metadata_valid_request,
        self_connection_peer_id,
        duplicate_handshake,
    )
}


@pytest.mark.parametrize("role", ["seed", "leecher"])
@pytest.mark.parametrize("case", list(CASES))
async def test_hostile_peer(
    case: str, role: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with arena(tmp_path) as a:
        p = await RawPeer.connect(a.port(role))
        try:
            session = a.seed if role == "seed" else a.victim
            await asyncio.wait_for(CASES[case](p, Target(a.meta, session)), 20)
        finally:
            p.close()
        await assert_healthy(a, caplog, tmp_path)


# --------------------------------------------------------------------------- lying seeds


def _wrong_length_blocks(
    meta: Metainfo, payload: bytes, delta: int
) -> Callable[[int, int, int], bytes]:
    """Blocks ``delta`` bytes longer (or shorter) than requested, for begin 0 only.

    begin 0 of a full-size piece keeps a longer block inside it, so the decoder's range
    check passes and the engine sees a block that does not match its request.
    """
    serve = data_server(meta, payload)

    def lie(index: int, begin: int, length: int) -> bytes:
        block = serve(index, begin, length)
        if begin != 0 or index == meta.num_pieces - 1:  # the short last piece: a clean drop
            return block
        return block[:delta] if delta < 0 else block + b"\0" * delta

    return lie


@pytest.mark.parametrize("delta", [-100, 100], ids=["shorter", "longer"])
async def test_piece_of_the_wrong_length_for_a_request(
    delta: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A seed answers our 16 KiB requests with blocks of another length.

    Expected: the peer is dropped (a protocol violation) without a traceback,
    and the download completes from an honest seed.
    """
    caplog.set_level(logging.WARNING)
    async with (
        arena(tmp_path) as a,
        ScriptedSeed(a.meta, _wrong_length_blocks(a.meta, a.payload, delta)) as liar,
    ):
        a.victim_handle.add_peer("127.0.0.1", liar.port)
        assert await poll(lambda: liar.blocks_sent >= 1, 10), "the victim never asked the liar"
        assert await poll(lambda: liar.dropped >= 1, 5), "the liar was not disconnected"
        await assert_healthy(a, caplog, tmp_path)


async def test_corrupt_seed_is_banned_while_an_honest_seed_serves(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A seed that flips bytes in every other piece it serves is banned; data stays right."""
    caplog.set_level(logging.WARNING)
    async with arena(tmp_path) as a:
        honest = data_server(a.meta, a.payload)

        def lie(index: int, begin: int, length: int) -> bytes:
            block = honest(index, begin, length)
            return block if index % 2 else bytes(b ^ 0x5A for b in block)

        async with ScriptedSeed(a.meta, lie) as liar:
            a.victim_handle.add_peer("127.0.0.1", liar.port)
            assert await poll(lambda: a.victim_handle.status().extra["banned"] >= 1, 15), (
                a.victim_handle.status().extra
            )
            banned_at = liar.connections
            await assert_healthy(a, caplog, tmp_path)
            st = a.victim_handle.status()
            assert st.extra["hash_failures"] >= 1
            assert all(p.address != f"127.0.0.1:{liar.port}" for p in st.peers)
            # the engine's counters (--metrics): the ban, the failures, the liar's bytes
            # still counted after it left, and every verified piece's write timed
            assert st.hash_fail_bans == 1 and st.hash_failures == st.extra["hash_failures"]
            assert sum(down for _, _, down, _ in st.bytes_by_source) == st.downloaded
            assert sum(p.downloaded for p in st.peers) < st.downloaded
            assert st.disk_writes >= 1 and st.disk_write_seconds > 0
            # a banned peer is not reconnected to (manual peers are retried every 10 s)
            assert liar.connections == banned_at


# --------------------------------------------------------------------------- idle peers


async def test_idle_before_handshake_is_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A TCP connection that never sends a handshake must not be kept forever.

    swarm.peer defines HANDSHAKE_TIMEOUT; the connection should be closed
    within it (plus slack). Meanwhile the swarm keeps working.
    """
    from swarm import peer as peer_mod

    limit = float(getattr(peer_mod, "HANDSHAKE_TIMEOUT", 20.0))
    caplog.set_level(logging.WARNING)
    async with arena(tmp_path) as a:
        idle = [
            await RawPeer.connect(a.port(role)) for role in ("seed", "leecher") for _ in range(3)
        ]
        try:
            await assert_healthy(a, caplog, tmp_path)  # works meanwhile
            t0 = time.monotonic()
            results = await asyncio.gather(*(p.closed_within(limit + 5) for p in idle))
            assert all(results), (
                f"idle pre-handshake connections still open after {time.monotonic() - t0:.0f}s"
            )
        finally:
            for p in idle:
                p.close()


async def test_idle_handshaken_peers_do_not_stop_the_download(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Peers that handshake and then say nothing (the idle timeout is minutes).

    A swarm of them at the leecher and at the seed must not keep the leecher
    from fetching everything from the honest seed.
    """
    caplog.set_level(logging.WARNING)
    async with arena(tmp_path) as a:
        idle: list[RawPeer] = []
        try:
            for role in ("seed", "leecher"):
                for _ in range(5):
                    p = await RawPeer.connect(a.port(role))
                    await _hs(p, a)
                    idle.append(p)
            await assert_healthy(a, caplog, tmp_path)
            # they were not dropped for being idle a few seconds (that would be wrong too)
            assert len(a.victim.connections) >= 5
        finally:
            for p in idle:
                p.close()


async def test_many_idle_handshaken_peers_do_not_lock_out_an_honest_seed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """70 idle peers fill the leecher's peer slots; the --peer seed must still get in."""
    caplog.set_level(logging.WARNING)
    async with arena(tmp_path) as a:
        idle: list[RawPeer] = []
        try:
            for _ in range(70):
                p = await RawPeer.connect(a.port("leecher"))
                if await p.handshake(a.meta.info_hash) is None:
                    p.close()
                    continue
                idle.append(p)
            a.victim_handle.add_peer("127.0.0.1", a.port("seed"))
            await a.victim_handle.wait_complete(10)  # alone it takes well under 1 s
            assert (a.victim_out / "f.bin").read_bytes() == a.payload
        finally:
            for p in idle:
                p.close()


# --------------------------------------------------------------------------- the real CLI


ATTACKS_FOR_PROCESSES = [
    "wrong_protocol",
    "unknown_info_hash",
    "length_2_31",
    "bitfield_spare_bits",
    "have_out_of_range",
    "request_past_piece_end",
    "request_one_mib",
    "request_length_zero",
    "request_flood_while_choked",
    "garbage_after_handshake",
    "ext_handshake_bad_bencode",
    "metadata_bad_bencode",
    "metadata_piece_out_of_range",
    "unsolicited_piece",
]


async def test_cli_seed_and_get_survive_hostile_peers(tmp_path: Path) -> None:
    """`swarm seed` and a `swarm get` that is still downloading are attacked.

    The get's only peer is a fake seed that holds its answers until the
    attacks are over; then it completes. A second get then downloads from
    the attacked `swarm seed`. No process prints a traceback.
    """
    payload = os.urandom(SIZE)
    (tmp_path / "f.bin").write_bytes(payload)
    seed = await spawn_swarm("seed", "f.bin", "--piece-length", str(PIECE), "--json", *NET, cwd=tmp_path)
    procs = [seed]
    try:
        ev = await events_until(seed, "listening", 20)
        seed_port = int(ev[-1]["port"])
        meta = parse_metainfo((tmp_path / "f.bin.torrent").read_bytes())
        gate = asyncio.Event()
        async with ScriptedSeed(meta, data_server(meta, payload), gate=gate) as gated:
            (tmp_path / "out").mkdir()
            get = await spawn_swarm(
                "get",
                "f.bin.torrent",
                "-o",
                "out",
                "--peer",
                f"127.0.0.1:{gated.port}",
                "--json",
                *NET,
                cwd=tmp_path,
            )
            procs.append(get)
            gev = await events_until(get, "listening", 20)
            get_port = int(gev[-1]["port"])
            assert await poll(lambda: gated.requests > 0, 10), "get never asked the gated seed"
            for name in ATTACKS_FOR_PROCESSES:
                for port in (seed_port, get_port):
                    p = await RawPeer.connect(port)
                    try:
                        await asyncio.wait_for(CASES[name](p, Target(meta)), 20)
                    except AssertionError as exc:
                        raise AssertionError(f"{name} against port {port}: {exc}") from exc
                    finally:
                        p.close()
            gate.set()
            await events_until(get, "summary", 30)
            assert await asyncio.wait_for(get.wait(), 10) == 0
        assert (tmp_path / "out" / "f.bin").read_bytes() == payload
        (tmp_path / "out2").mkdir()
        get2 = await spawn_swarm(
            "get",
            "f.bin.torrent",
            "-o",
            "out2",
            "--peer",
            f"127.0.0.1:{seed_port}",
            "--json",
            *NET,
            cwd=tmp_path,
        )
        procs.append(get2)
        await events_until(get2, "summary", 30)
        assert await asyncio.wait_for(get2.wait(), 10) == 0
        assert (tmp_path / "out2" / "f.bin").read_bytes() == payload
        seed.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(seed.wait(), 10) == 0
    finally:
        await kill_all(procs)
    await assert_no_tracebacks(procs)


async def test_many_idle_peers_at_the_seed_do_not_lock_out_leechers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """70 handshaken, silent connections to a seed; a real leecher must still be served.
    They come from ten other addresses (the per-IP cap would refuse most from one)."""
    caplog.set_level(logging.WARNING)
    async with arena(tmp_path) as a:
        idle: list[RawPeer] = []
        try:
            for i in range(70):
                p = await RawPeer.connect(a.port("seed"), source=f"127.0.0.{2 + i % 10}")
                if await p.handshake(a.meta.info_hash) is None:
                    p.close()
                    continue
                idle.append(p)
            out = tmp_path / "late"
            out.mkdir()
            async with Session("127.0.0.1", 0) as late:
                h = await late.add_torrent(a.meta, out, peers=[("127.0.0.1", a.port("seed"))])
                await h.wait_complete(15)
            assert (out / "f.bin").read_bytes() == a.payload
        finally:
            for p in idle:
                p.close()


async def test_cli_get_among_lying_peers(tmp_path: Path) -> None:
    """`swarm get` with a corrupt-data peer, a wrong-length peer and an honest swarm seed."""
    payload = os.urandom(SIZE)
    (tmp_path / "f.bin").write_bytes(payload)
    seed = await spawn_swarm("seed", "f.bin", "--piece-length", str(PIECE), "--json", *NET, cwd=tmp_path)
    procs = [seed]
    try:
        ev = await events_until(seed, "listening", 20)
        seed_port = int(ev[-1]["port"])
        meta = parse_metainfo((tmp_path / "f.bin.torrent").read_bytes())
        honest = data_server(meta, payload)

        def corrupt(index: int, begin: int, length: int) -> bytes:
            return bytes(b ^ 0xA5 for b in honest(index, begin, length))

        async with (
            ScriptedSeed(meta, corrupt) as liar1,
            ScriptedSeed(meta, _wrong_length_blocks(meta, payload, -7)) as liar2,
        ):
            (tmp_path / "out").mkdir()
            peers = [f"127.0.0.1:{p}" for p in (liar1.port, liar2.port, seed_port)]
            get = await spawn_swarm(
                "get",
                "f.bin.torrent",
                "-o",
                "out",
                *(x for p in peers for x in ("--peer", p)),
                "--json",
                *NET,
                cwd=tmp_path,
            )
            procs.append(get)
            await events_until(get, "summary", 30)
            assert await asyncio.wait_for(get.wait(), 10) == 0
        assert (tmp_path / "out" / "f.bin").read_bytes() == payload
        seed.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(seed.wait(), 10) == 0
    finally:
        await kill_all(procs)
    await assert_no_tracebacks(procs)
