"""Protocol encryption (MSE/PE, issue 21) swarm <-> swarm on 127.0.0.1: every
policy pair, the prefer -> plain fallback and its memory, magnet metadata, PEX
and the fast extension over encrypted links, and a relay that reads the bytes
between two `require` peers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from swarm import Session
from swarm.core.metainfo import Metainfo, parse_metainfo
from swarm.create import create_torrent
from swarm.session import TorrentHandle
from tests.helpers.wait import until

PIECE = 16384
TIMEOUT = 30.0


def _torrent(tmp_path: Path, size: int = 300_000, name: str = "f.bin") -> tuple[bytes, bytes, Metainfo, Path]:
    payload = os.urandom(size)
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / name).write_bytes(payload)
    data = create_torrent(src / name, piece_length=PIECE)
    return payload, data, parse_metainfo(data), src


@contextlib.asynccontextmanager
async def _sessions(*policies: str) -> AsyncIterator[list[Session]]:
    sessions = [Session("127.0.0.1", 0, encryption=p) for p in policies]
    try:
        for s in sessions:
            await s.start()
        yield sessions
    finally:
        for s in sessions:
            await s.close()


def _connected_encryption(handle: TorrentHandle) -> asyncio.Future[str]:
    """The ``encryption`` field of the handle's first ``peer connected`` event. Call it
    before the connection is made: the subscription runs first (the loop is FIFO)."""

    async def first() -> str:
        async for kind, fields in handle.events():
            if kind == "peer" and fields.get("action") == "connected":
                return str(fields["encryption"])
        raise AssertionError("events ended")

    return asyncio.ensure_future(first())


@pytest.mark.parametrize(
    ("seed_policy", "get_policy", "expected"),
    [
        ("require", "require", "encrypted"),
        ("require", "prefer", "encrypted"),  # we offer both; the seed insists on RC4
        ("prefer", "require", "encrypted"),  # we offer RC4 only; the seed accepts it
        ("prefer", "prefer", "obfuscated"),  # libtorrent's default: plaintext after MSE
        ("off", "off", "plain"),
        ("prefer", "off", "plain"),
        ("off", "prefer", "plain"),  # the seed drops MSE; we fall back (see below)
    ],
)
async def test_policy_pairs_that_connect(tmp_path: Path, seed_policy: str, get_policy: str, expected: str) -> None:
    payload, data, meta, src = _torrent(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    async with _sessions(seed_policy, get_policy) as (seed_s, get_s):
        seed = await seed_s.add_torrent(data, src, seed_only=True)
        leech = await get_s.add_torrent(meta, out)
        theirs, ours = _connected_encryption(seed), _connected_encryption(leech)
        leech.add_peer("127.0.0.1", seed_s.port or 0)
        await leech.wait_complete(timeout=TIMEOUT)
        assert await asyncio.wait_for(ours, TIMEOUT) == expected
        assert await asyncio.wait_for(theirs, TIMEOUT) == expected
    assert (out / "f.bin").read_bytes() == payload


async def _refused(caplog: pytest.LogCaptureFixture, text: str) -> None:
    await until(lambda: any(text in r.getMessage() for r in caplog.records), TIMEOUT, repr(text))


@pytest.mark.parametrize(
    ("seed_policy", "get_policy", "logged"),
    [
        # the seed closes a plain connection before sending a byte
        ("require", "off", "plain connection refused: encryption required"),
        # our encrypted attempt is dropped and require never retries in plain
        ("off", "require", "encrypted handshake failed (encryption required)"),
    ],
)
async def test_require_and_off_do_not_connect(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, seed_policy: str, get_policy: str, logged: str
) -> None:
    caplog.set_level(logging.INFO)
    _, data, meta, src = _torrent(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    async with _sessions(seed_policy, get_policy) as (seed_s, get_s):
        await seed_s.add_torrent(data, src, seed_only=True)
        leech = await get_s.add_torrent(meta, out, peers=[("127.0.0.1", seed_s.port or 0)])
        await _refused(caplog, logged)
        status = leech.status()
        assert status.peers == () and status.downloaded == 0
        assert not seed_s.torrents[meta.info_hash].peers


async def test_prefer_falls_back_to_plain_and_remembers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """prefer -> off: the first dial's MSE is dropped, the redial in plain works; the
    address is remembered, so a second torrent from that seed is dialled plain at once."""
    caplog.set_level(logging.INFO)
    dropped = "not a BitTorrent handshake"  # what the `off` seed says of our MSE bytes
    async with _sessions("off", "prefer") as (seed_s, get_s):
        seed_addr = ("127.0.0.1", seed_s.port or 0)
        for i in (1, 2):
            (tmp_path / f"t{i}").mkdir()
            payload, data, meta, src = _torrent(tmp_path / f"t{i}", name=f"f{i}.bin")
            out = tmp_path / f"out{i}"
            out.mkdir()
            await seed_s.add_torrent(data, src, seed_only=True)
            leech = await get_s.add_torrent(meta, out)
            label = _connected_encryption(leech)
            leech.add_peer(*seed_addr)
            await leech.wait_complete(timeout=TIMEOUT)
            assert (out / f"f{i}.bin").read_bytes() == payload
            assert await asyncio.wait_for(label, TIMEOUT) == "plain"
            assert get_s.mse_works[seed_addr] is False
        drops = [r for r in caplog.records if dropped in r.getMessage()]
        assert len(drops) == 1, [r.getMessage() for r in drops]


async def test_magnet_metadata_over_require(tmp_path: Path) -> None:
    """A magnet's info dictionary (BEP 9) is fetched over MSE when both require it."""
    payload, data, meta, src = _torrent(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    async with _sessions("require", "require") as (seed_s, get_s):
        await seed_s.add_torrent(data, src, seed_only=True)
        magnet = meta.magnet_uri() + f"&x.pe=127.0.0.1:{seed_s.port}"
        leech = await get_s.add_torrent(magnet, out)
        await leech.wait_complete(timeout=TIMEOUT)
        assert get_s.mse_works[("127.0.0.1", seed_s.port or 0)] is True
    assert (out / "f.bin").read_bytes() == payload


async def test_pex_over_require(tmp_path: Path) -> None:
    """A and B know only the seed; its ut_pex (inside RC4) introduces them, and they
    connect to each other encrypted."""
    _, data, meta, src = _torrent(tmp_path)
    async with _sessions("require", "require", "require") as sessions:
        await sessions[0].add_torrent(data, src, seed_only=True)
        seed_addr = ("127.0.0.1", sessions[0].port or 0)
        handles = []
        for i in (1, 2):
            out = tmp_path / f"out{i}"
            out.mkdir()
            # seed_only: they stay incomplete and connected
            handles.append(await sessions[i].add_torrent(data, out, seed_only=True, peers=[seed_addr]))
        await until(lambda: all(len(h.status().peers) == 2 for h in handles), TIMEOUT, "PEX introductions")
        for h in handles:
            assert [p.encryption for p in h.status().peers] == ["encrypted"] * 2
        # the fast extension (BEP 6) through RC4: the seed said have_all
        conns = sessions[1].torrents[meta.info_hash].peers
        from_seed = [c for c in conns if c.address == seed_addr]
        assert from_seed and from_seed[0].supports_fast and from_seed[0].have_received == "have_all"


class Relay:
    """A TCP relay that keeps every byte it forwards, per direction."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.upstream = bytearray()  # leech -> seed
        self.downstream = bytearray()  # seed -> leech
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection(*self.target)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, log: bytearray) -> None:
            with contextlib.suppress(ConnectionError):
                while chunk := await src.read(65536):
                    log += chunk
                    dst.write(chunk)
                    await dst.drain()
            dst.close()

        for coro in (pump(reader, up_w, self.upstream), pump(up_r, writer, self.downstream)):
            task = asyncio.get_running_loop().create_task(coro)
            self._tasks.add(task)

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        if self._server is not None:
            self._server.close()


@pytest.mark.parametrize(("policy", "visible"), [("require", False), ("off", True)])
async def test_relay_sees_no_protocol_string_nor_file_data(tmp_path: Path, policy: str, visible: bool) -> None:
    """Between two `require` peers neither the BitTorrent header nor any piece of the
    file crosses the wire in the clear; `off` is the control that the check would see them."""
    payload, data, meta, src = _torrent(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    async with _sessions(policy, policy) as (seed_s, get_s):
        await seed_s.add_torrent(data, src, seed_only=True)
        relay = Relay(("127.0.0.1", seed_s.port or 0))
        await relay.start()
        try:
            leech = await get_s.add_torrent(meta, out, peers=[("127.0.0.1", relay.port)])
            await leech.wait_complete(timeout=TIMEOUT)
        finally:
            await relay.close()
    assert (out / "f.bin").read_bytes() == payload
    wire = bytes(relay.upstream), bytes(relay.downstream)
    assert len(wire[1]) > len(payload)  # the whole file went through the relay
    assert any(b"BitTorrent protocol" in w for w in wire) is visible
    # 32 bytes from inside each block: any of them in the clear is a leak
    samples = [payload[off + 100 : off + 132] for off in range(0, len(payload) - 200, PIECE)]
    leaked = [i for i, s in enumerate(samples) if s in wire[1]]
    assert bool(leaked) is visible
    if visible:
        assert len(leaked) == len(samples)


@pytest.mark.parametrize(("seed_policy", "get_policy", "expected"), [
    ("prefer", "off", "plain"),
    ("prefer", "prefer", "obfuscated"),
    ("require", "require", "encrypted"),
])  # fmt: skip
async def test_layer_steps_aside_unless_rc4(
    tmp_path: Path, seed_policy: str, get_policy: str, expected: str
) -> None:
    """A plain connection, and an MSE one that selected plaintext, end up talking to
    PeerConnection directly (set_protocol): no layer left in their receive path.
    Only an RC4 connection keeps it."""
    _, data, meta, src = _torrent(tmp_path)
    async with _sessions(seed_policy, get_policy) as (seed_s, get_s):
        await seed_s.add_torrent(data, src, seed_only=True)
        await get_s.add_torrent(meta, tmp_path, seed_only=True, peers=[("127.0.0.1", seed_s.port or 0)])
        for session in (seed_s, get_s):
            peers = await until(lambda s=session: list(s.torrents[meta.info_hash].peers), TIMEOUT, "the peer")
            conn = peers[0]
            assert conn.encryption == expected
            assert conn.transport is not None
            direct = conn.transport.get_protocol() is conn
            assert direct is (expected != "encrypted")


async def _raw_exchange(port: int, first: bytes, read: int = 0) -> bytes:
    """Send ``first``, read until the peer closes; return what it sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(first)
        await writer.drain()
        return await asyncio.wait_for(reader.read(-1), TIMEOUT)
    finally:
        writer.close()


@pytest.mark.parametrize("policy", ["prefer", "require"])
async def test_hostile_mse_is_closed(tmp_path: Path, policy: str) -> None:
    """An MSE handshake for a torrent we do not have, a bad VC, an HTTP probe and a
    broken plain handshake: each closed promptly, nothing plain sent."""
    from swarm.core import mse

    _, data, meta, src = _torrent(tmp_path)
    async with _sessions(policy) as (seed_s,):
        await seed_s.add_torrent(data, src, seed_only=True)
        port = seed_s.port or 0
        for info_hash in (os.urandom(20), meta.info_hash):
            a = mse.Initiator(info_hash, 0x1234567, provide=mse.CRYPTO_RC4)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(a.start())
                yb = await asyncio.wait_for(reader.readexactly(mse.KEY_LEN), TIMEOUT)
                step3 = a.feed(yb).send
                if info_hash == meta.info_hash:  # the right torrent but a corrupted VC
                    step3 = step3[:40] + bytes([step3[40] ^ 1]) + step3[41:]
                writer.write(step3)
                rest = await asyncio.wait_for(reader.read(-1), TIMEOUT)  # EOF: closed by the seed
                assert b"BitTorrent protocol" not in rest
            finally:
                writer.close()
        for probe in (b"GET /announce HTTP/1.1\r\nHost: x\r\n\r\n", b"\x13BitTorrent protocoX" + bytes(48)):
            assert await _raw_exchange(port, probe) == b""


async def test_remembered_plain_is_forgotten_when_plain_is_dropped_too() -> None:
    """prefer: an address remembered as plain-only whose plain dial is dropped before
    the BitTorrent handshake (it may require encryption now) is tried with MSE again."""
    from dataclasses import dataclass

    @dataclass(eq=False)
    class Closed:  # what connection_closed reads of a PeerConnection
        peer_id: bytes
        address: tuple[str, int]
        outgoing: bool = True
        encryption: str = "plain"

        @property
        def listen_port(self) -> int:
            return self.address[1]

    async with _sessions("prefer") as (session,):
        addr = ("127.0.0.1", 6999)
        session.mse_works[addr] = False
        session.connection_closed(Closed(b"", addr))  # type: ignore[arg-type]
        assert addr not in session.mse_works
        session.mse_works[addr] = False
        session.connection_closed(Closed(b"x" * 20, addr))  # type: ignore[arg-type]
        assert session.mse_works[addr] is False


def test_unknown_policy_is_bad_input() -> None:
    from swarm.errors import BadInput

    with pytest.raises(BadInput, match="prefer, require, off"):
        Session("127.0.0.1", 0, encryption="sometimes")
