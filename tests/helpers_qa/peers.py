"""Raw peers built on asyncio streams and swarm.core.wire encoders.

``RawPeer`` is a scriptable client connection (it can lie, flood or stall);
``ScriptedSeed`` is a listening fake seed whose answers a test controls
(serve real data, garbage, wrong lengths, or nothing until a gate opens).
Every wait here has a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from typing import Any

from swarm.core import wire
from swarm.core.bitfield import Bitfield
from swarm.core.metainfo import Metainfo
from swarm.errors import ProtocolError
from tests.helpers.peer_server import LocalPeerServer

RESERVED = wire.make_reserved(extensions=True, fast=True, dht=False)


def new_peer_id(tag: bytes = b"QA") -> bytes:
    return b"-" + tag[:2].ljust(2, b"X") + b"0001-" + os.urandom(6).hex().encode()


class RawPeer:
    """One TCP connection to a swarm session, driven byte by byte by a test."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.received = bytearray()
        self.remote_handshake: wire.Handshake | None = None
        self._decoder: wire.MessageDecoder | None = None  # expect()'s, kept across calls
        self._pending: list[Any] = []

    @classmethod
    async def connect(
        cls, port: int, host: str = "127.0.0.1", timeout: float = 5, *, source: str | None = None
    ) -> RawPeer:
        """``source``: the local address to connect from (e.g. 127.0.0.7: another "host")."""
        local = (source, 0) if source is not None else None
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, local_addr=local), timeout
        )
        return cls(reader, writer)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def drain(self, timeout: float = 5) -> bool:
        """Flush what we wrote; False if the other side already closed."""
        try:
            await asyncio.wait_for(self.writer.drain(), timeout)
        except (ConnectionError, TimeoutError):
            return False
        return True

    async def handshake(
        self,
        info_hash: bytes,
        *,
        peer_id: bytes | None = None,
        reserved: bytes = RESERVED,
        timeout: float = 5,
    ) -> wire.Handshake | None:
        """Send our handshake, read theirs (None if they closed instead)."""
        self.send(wire.Handshake(info_hash, peer_id or new_peer_id(), reserved).encode())
        await self.drain(timeout)
        try:
            data = await asyncio.wait_for(self.reader.readexactly(wire.HANDSHAKE_LEN), timeout)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        self.remote_handshake = wire.parse_handshake(data)
        return self.remote_handshake

    async def closed_within(self, timeout: float) -> bool:
        """Read (and keep) everything until EOF/reset; True if that came before ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                chunk = await asyncio.wait_for(self.reader.read(65536), left)
            except TimeoutError:
                return False
            except ConnectionError:
                return True
            if not chunk:
                return True
            self.received += chunk

    async def messages(
        self, meta: Metainfo, until: Callable[[list[Any]], bool], timeout: float
    ) -> list[Any]:
        """Decode their messages (after the handshake) until ``until(msgs)`` or EOF/timeout."""
        dec = wire.MessageDecoder(meta.num_pieces, meta.piece_length, meta.total_length)
        msgs: list[Any] = list(dec.feed(bytes(self.received)))
        self.received.clear()
        deadline = time.monotonic() + timeout
        while not until(msgs):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                chunk = await asyncio.wait_for(self.reader.read(65536), left)
            except (TimeoutError, ConnectionError):
                break
            if not chunk:
                break
            msgs.extend(dec.feed(chunk))
        return msgs

    async def expect(self, meta: Metainfo, match: Callable[[Any], bool], timeout: float) -> Any:
        """The next of their messages for which ``match`` is true (earlier ones are
        skipped); unlike ``messages`` no partial message is lost between calls.
        Fails the test on EOF or after ``timeout`` seconds."""
        if self._decoder is None:
            self._decoder = wire.MessageDecoder(meta.num_pieces, meta.piece_length, meta.total_length)
            self._pending = list(self._decoder.feed(bytes(self.received)))
            self.received.clear()
        deadline = time.monotonic() + timeout
        while True:
            while self._pending:
                msg = self._pending.pop(0)
                if match(msg):
                    return msg
            left = deadline - time.monotonic()
            assert left > 0, f"no matching message within {timeout}s"
            try:
                chunk = await asyncio.wait_for(self.reader.read(65536), left)
            except TimeoutError:
                chunk = None
            assert chunk, f"connection closed or silent for {timeout}s before a matching message"
            self._pending = list(self._decoder.feed(chunk))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


Serve = Callable[[int, int, int], "bytes | None"]


def data_server(meta: Metainfo, data: bytes) -> Serve:
    def serve(index: int, begin: int, length: int) -> bytes:
        off = index * meta.piece_length + begin
        return data[off : off + length]

    return serve


class ScriptedSeed(LocalPeerServer):
    """A fake seed on 127.0.0.1 claiming every piece and answering with ``serve``.

    ``serve`` returns the block to send (any length: tests use that to lie) or
    None to stay silent. ``gate`` (if set) holds all answers until it is set.
    """

    close_wait = 5.0

    def __init__(self, meta: Metainfo, serve: Serve, *, gate: asyncio.Event | None = None) -> None:
        super().__init__()
        self.meta = meta
        self.serve = serve
        self.gate = gate
        self.peer_id = new_peer_id(b"SS")
        self.requests = 0
        self.blocks_sent = 0
        self.dropped = 0  # connections the remote side closed

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        m = self.meta
        try:
            hs = wire.parse_handshake(await asyncio.wait_for(reader.readexactly(68), 10))
            if hs.info_hash != m.info_hash:
                return
            writer.write(wire.Handshake(m.info_hash, self.peer_id, bytes(8)).encode())
            writer.write(wire.encode_bitfield(Bitfield(m.num_pieces, full=True).to_bytes()))
            writer.write(wire.encode_unchoke())
            dec = wire.MessageDecoder(m.num_pieces, m.piece_length, m.total_length)
            while True:
                data = await reader.read(65536)
                if not data:
                    self.dropped += 1
                    return
                for msg in dec.feed(data):
                    if isinstance(msg, wire.Request):
                        self.requests += 1
                        if self.gate is not None:
                            await asyncio.wait_for(self.gate.wait(), 60)
                        block = self.serve(msg.index, msg.begin, msg.length)
                        if block is not None:
                            writer.write(
                                wire.piece_header(msg.index, msg.begin, len(block)) + block
                            )
                            self.blocks_sent += 1
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ProtocolError):
            self.dropped += 1
        except TimeoutError:
            pass


class MetadataSeed(ScriptedSeed):
    """A ScriptedSeed that also speaks BEP 10 + ut_metadata (BEP 9), possibly lying.

    ``mode``: "honest" (the real info bytes), "wrong_hash" (same size, one byte
    flipped), "huge_size"/"zero_size"/"negative_size" (absurd metadata_size in
    the extended handshake), "short_piece" (each piece 1 byte short),
    "bad_bencode", "out_of_range" (data for piece 999), "reject", "silent".
    ``info_bytes`` is what an honest seed would send.
    """

    OUR_UT_METADATA = 2

    def __init__(
        self, meta: Metainfo, serve: Serve, info_bytes: bytes, mode: str = "honest"
    ) -> None:
        super().__init__(meta, serve)
        self.info_bytes = info_bytes
        self.mode = mode
        self.metadata_requests = 0

    def _metadata_size(self) -> int:
        return {"huge_size": 2**40, "zero_size": 0, "negative_size": -1}.get(
            self.mode, len(self.info_bytes)
        )

    def _metadata_reply(self, piece: int) -> bytes:
        from swarm.core.bencode import encode

        info = self.info_bytes
        if self.mode == "wrong_hash":
            info = info[:-2] + bytes([info[-2] ^ 0x01]) + info[-1:]
        chunk = info[piece * 16384 : (piece + 1) * 16384]
        size = len(info)
        if self.mode == "short_piece":
            chunk = chunk[:-1]
        if self.mode == "bad_bencode":
            return b"d8:msg_typei1e5:piecei" + chunk
        if self.mode == "out_of_range":
            piece = 999
        if self.mode == "reject":
            return encode({b"msg_type": 2, b"piece": piece})
        return encode({b"msg_type": 1, b"piece": piece, b"total_size": size}) + chunk

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        from swarm.core.bencode import decode_prefix, encode

        m = self.meta
        try:
            hs = wire.parse_handshake(await asyncio.wait_for(reader.readexactly(68), 10))
            if hs.info_hash != m.info_hash:
                return
            writer.write(wire.Handshake(m.info_hash, self.peer_id, RESERVED).encode())
            ext_hs = {
                b"m": {b"ut_metadata": self.OUR_UT_METADATA},
                b"metadata_size": self._metadata_size(),
                b"v": b"qa-metadata-seed",
            }
            writer.write(wire.encode_extended(0, encode(ext_hs)))
            writer.write(wire.encode_bitfield(Bitfield(m.num_pieces, full=True).to_bytes()))
            writer.write(wire.encode_unchoke())
            their_ut = None
            dec = wire.MessageDecoder(m.num_pieces, m.piece_length, m.total_length)
            while True:
                data = await reader.read(65536)
                if not data:
                    self.dropped += 1
                    return
                for msg in dec.feed(data):
                    if isinstance(msg, wire.Extended) and msg.ext_id == 0:
                        d, _ = decode_prefix(msg.payload)
                        their_ut = d.get(b"m", {}).get(b"ut_metadata")
                    elif isinstance(msg, wire.Extended) and msg.ext_id == self.OUR_UT_METADATA:
                        d, _ = decode_prefix(msg.payload)
                        self.metadata_requests += 1
                        if d.get(b"msg_type") == 0 and their_ut and self.mode != "silent":
                            writer.write(
                                wire.encode_extended(their_ut, self._metadata_reply(d[b"piece"]))
                            )
                    elif isinstance(msg, wire.Request):
                        self.requests += 1
                        block = self.serve(msg.index, msg.begin, msg.length)
                        if block is not None:
                            writer.write(
                                wire.piece_header(msg.index, msg.begin, len(block)) + block
                            )
                            self.blocks_sent += 1
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ProtocolError):
            self.dropped += 1
        except TimeoutError:
            pass
