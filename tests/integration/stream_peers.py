"""A scripted seed for the streaming and stall tests, speaking the wire protocol via swarm.core.wire.

Unlike test_engine_fakepeer.FakeSeed it can: hold only some pieces, never
unchoke, advertise a small ``reqq`` (so the engine keeps few requests in
flight and the order it asks in is the order data arrives), throttle its
upload rate, and leave ut_metadata out of its extended handshake. It serves
requests one at a time in the order they came, and records that order.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

from swarm.core import wire
from swarm.core.bencode import encode as bencode
from swarm.core.bitfield import Bitfield
from swarm.core.metainfo import Metainfo, parse_metainfo
from swarm.create import create_torrent
from tests.helpers.peer_server import LocalPeerServer

EXT_RESERVED = bytes([0, 0, 0, 0, 0, 0x10, 0, 0])


class ScriptedSeed(LocalPeerServer):
    def __init__(
        self,
        meta: Metainfo,
        data: bytes,
        *,
        have: Bitfield | None = None,
        unchoke: bool = True,
        reqq: int | None = None,
        rate: float | None = None,
    ) -> None:
        super().__init__()
        self.meta = meta
        self.data = data
        self.have = have if have is not None else Bitfield(meta.num_pieces, full=True)
        self.unchoke = unchoke
        self.reqq = reqq
        self.rate = rate
        self.peer_id = b"-SC0001-" + os.urandom(6).hex().encode()
        self.served: list[int] = []  # piece index of each block sent, in order

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        m = self.meta
        queue: asyncio.Queue[wire.Request] = asyncio.Queue()
        sender = asyncio.ensure_future(self._send_loop(writer, queue))
        try:
            hs = wire.parse_handshake(await reader.readexactly(68))
            if hs.info_hash != m.info_hash:
                return
            ext = self.reqq is not None
            writer.write(
                wire.Handshake(
                    m.info_hash, self.peer_id, EXT_RESERVED if ext else bytes(8)
                ).encode()
            )
            if ext and hs.extensions:
                # no "ut_metadata" in m: a peer that cannot serve metadata
                writer.write(
                    wire.encode_extended(
                        0, bencode({b"m": {}, b"reqq": self.reqq, b"v": b"scripted"})
                    )
                )
            writer.write(wire.encode_bitfield(self.have.to_bytes()))
            if self.unchoke:
                writer.write(wire.encode_unchoke())
            dec = wire.MessageDecoder(m.num_pieces, m.piece_length, m.total_length)
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    return
                for msg in dec.feed(chunk):
                    if isinstance(msg, wire.Request) and self.unchoke and self.have[msg.index]:
                        queue.put_nowait(msg)
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            sender.cancel()
            with contextlib.suppress(BaseException):
                await sender

    async def _send_loop(
        self, writer: asyncio.StreamWriter, queue: asyncio.Queue[wire.Request]
    ) -> None:
        pl = self.meta.piece_length
        start = time.monotonic()
        sent = 0
        while True:
            req = await queue.get()
            off = req.index * pl + req.begin
            writer.write(wire.encode_piece(req.index, req.begin, self.data[off : off + req.length]))
            self.served.append(req.index)
            sent += req.length
            await writer.drain()
            if self.rate:
                # throttle: stay under `rate` bytes/s on average (pacing, not synchronisation)
                ahead = sent / self.rate - (time.monotonic() - start)
                if ahead > 0:
                    await asyncio.sleep(ahead)


def make_torrent(
    root: Path, size: int, piece_length: int, *, name: str = "f.bin", trackers: tuple[str, ...] = ()
) -> tuple[bytes, Path, Metainfo]:
    """Random payload in root/src/name and its .torrent at root/name.torrent."""
    payload = os.urandom(size)
    src = root / "src"
    src.mkdir(exist_ok=True)
    (src / name).write_bytes(payload)
    data = create_torrent(src / name, piece_length=piece_length, trackers=list(trackers))
    tfile = root / f"{name}.torrent"
    tfile.write_bytes(data)
    return payload, tfile, parse_metainfo(data)


async def poll(cond: object, timeout: float, what: str, step: float = 0.02) -> None:
    """Wait until ``cond()`` is true, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(step)
