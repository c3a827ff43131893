"""ut_pex (BEP 11) against libtorrent, on 127.0.0.1, in both directions.

A third peer C is a raw listener of the test's that records every handshake
it gets. libtorrent -> swarm: libtorrent seed L is connected to C; swarm is
given only L, hears of C from L's ut_pex and connects to it. swarm ->
libtorrent: swarm seed X has C (which told X its listen port); libtorrent
leech A is given only X, hears of C from X and connects to it.

libtorrent sends its first ut_pex as soon as the torrent has two peers (then
once a minute), so both tests take a few seconds. DHT, LSD, UPnP and NAT-PMP
are off on every side.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import require_libtorrent

from swarm.core import wire
from swarm.core.bencode import encode as bencode
from swarm.create import create_torrent
from swarm.errors import ProtocolError
from swarm.session import Session
from tests.helpers.lt import PLAIN_TCP
from tests.helpers.lt import lt_session as lt_base_session
from tests.helpers.wait import until

pytestmark = pytest.mark.interop

LOCAL = "127.0.0.1"


def lt_session(lt: Any) -> Any:
    return lt_base_session(lt, **PLAIN_TCP)


class ThirdPeer:
    """Listens on 127.0.0.1, answers handshakes, records who connected; can dial out too."""

    def __init__(self) -> None:
        self.handshakes: list[wire.Handshake] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None
        self.port = 0
        self.peer_id = b"-XX0001-" + os.urandom(12)

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._on_conn, LOCAL, 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _on_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        try:
            hs = wire.parse_handshake(await asyncio.wait_for(reader.readexactly(68), 10))
            self.handshakes.append(hs)
            writer.write(wire.Handshake(hs.info_hash, self.peer_id, wire.make_reserved(fast=False)).encode())
            while await reader.read(65536):
                pass
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ProtocolError):
            pass

    async def dial(self, port: int, info_hash: bytes) -> None:
        """Connect to a peer, say we speak ut_pex and listen on ``self.port``, and stay."""
        reader, writer = await asyncio.open_connection(LOCAL, port)
        self.writers.append(writer)
        writer.write(wire.Handshake(info_hash, self.peer_id).encode())
        await asyncio.wait_for(reader.readexactly(68), 5)
        writer.write(wire.encode_extended(0, bencode({b"m": {b"ut_pex": 1}, b"p": self.port})))
        writer.write(wire.encode_have_none())

    async def close(self) -> None:
        for w in self.writers:
            w.close()
        if self.server is not None:
            self.server.close()


def make_torrent(tmp_path: Path, size: int) -> tuple[Path, Path]:
    src = tmp_path / "src"
    src.mkdir()
    (src / "data.bin").write_bytes(os.urandom(size))
    tfile = tmp_path / "data.bin.torrent"
    tfile.write_bytes(create_torrent(src / "data.bin", piece_length=65536))
    return src, tfile


async def test_libtorrent_pex_introduces_a_peer_to_swarm(tmp_path: Path) -> None:
    lt = require_libtorrent()
    src, tfile = make_torrent(tmp_path, 4_000_000)
    c = ThirdPeer()
    await c.start()
    ses = lt_session(lt)
    try:
        atp = lt.add_torrent_params()
        atp.ti = lt.torrent_info(str(tfile))
        atp.save_path = str(src)
        lh = ses.add_torrent(atp)
        # Slow enough that swarm is still downloading (and connected) when the PEX comes.
        lh.set_upload_limit(200_000)
        await until(lambda: lh.status().is_seeding, 15, "libtorrent to check its data")
        lt_port = ses.listen_port()
        info_hash = bytes(atp.ti.info_hashes().v1.to_bytes())
        lh.connect_peer((LOCAL, c.port))
        await until(lambda: c.handshakes, 10, "libtorrent to connect to C")
        out = tmp_path / "out"
        out.mkdir()
        async with Session(LOCAL, 0) as s:
            gh = await s.add_torrent(tfile, out, peers=[(LOCAL, lt_port)])
            await until(
                lambda: any(h.peer_id == s.peer_id and h.info_hash == info_hash for h in c.handshakes),
                20,
                "swarm to connect to C after libtorrent's ut_pex",
            )
            assert gh._t.pex.accepted >= 1
    finally:
        await c.close()
        del ses


async def test_swarm_pex_introduces_a_peer_to_libtorrent(tmp_path: Path) -> None:
    lt = require_libtorrent()
    src, tfile = make_torrent(tmp_path, 2_000_000)
    c = ThirdPeer()
    await c.start()
    ses = lt_session(lt)
    try:
        async with Session(LOCAL, 0) as x:
            xh = await x.add_torrent(tfile, src, seed_only=True)
            await c.dial(x.port or 0, xh.info_hash)
            await until(lambda: xh._t.peers, 5, "C connected to swarm")
            atp = lt.add_torrent_params()
            atp.ti = lt.torrent_info(str(tfile))
            atp.save_path = str(tmp_path / "lt")
            lh = ses.add_torrent(atp)
            lh.set_download_limit(200_000)  # still leeching when swarm's ut_pex arrives
            lh.connect_peer((LOCAL, x.port))
            await until(
                lambda: any(h.info_hash == xh.info_hash and h.peer_id != x.peer_id for h in c.handshakes),
                20,
                "libtorrent to connect to C after swarm's ut_pex",
            )
            got = [h for h in c.handshakes if h.peer_id != x.peer_id]
            assert got[0].peer_id.startswith(b"-LT"), got[0].peer_id  # libtorrent, the only other peer
            sources = {p.ip[1]: p.source for p in lh.get_peer_info()}
            assert c.port not in sources or sources[c.port] & lt.peer_info.pex
    finally:
        await c.close()
        del ses
