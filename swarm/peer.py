"""One peer connection: an ``asyncio.BufferedProtocol`` around the pure wire codec.

Why a BufferedProtocol: the kernel copies a block straight into the piece
buffer the decoder hands us (the block sink), so a 16 KiB block is copied once
on its way to disk. Everything that decides (what to request, whom to choke)
lives in the torrent controller and core; this module only moves bytes,
batches small writes and keeps the connection's bookkeeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections import deque
from typing import Any, Protocol, cast

from swarm.core import wire
from swarm.core.admission import TokenBucket
from swarm.core.bitfield import Bitfield
from swarm.core.rate import RateMeter
from swarm.core.seeding import RequestSpread
from swarm.errors import ProtocolError, StorageError, SwarmError

log = logging.getLogger("swarm.peer")

#: BEP 3 suggests a keep-alive every two minutes; peers drop us after ~3-5.
KEEPALIVE_INTERVAL = 110.0
IDLE_TIMEOUT = 240.0
#: A connection that has not completed its handshake by then is closed (libtorrent: 10 s).
HANDSHAKE_TIMEOUT = 10.0
#: Transport write buffer: above HIGH we stop serving uploads until below LOW.
WRITE_HIGH = 2 * 1024 * 1024
WRITE_LOW = 512 * 1024
#: Most requests we queue from one peer (we advertise it as ``reqq``).
MAX_PEER_REQUESTS = 500
#: Upload bytes gathered before a write even within one loop turn.
FLUSH_BYTES = 256 * 1024

OUR_RESERVED = wire.make_reserved(extensions=True, fast=True, dht=False)
OUR_RESERVED_DHT = wire.make_reserved(extensions=True, fast=True, dht=True)


class PeerOwner(Protocol):
    """What a connection needs from the torrent it trades for (``swarm.torrent.Torrent``)."""

    @property
    def info_hash(self) -> bytes: ...

    @property
    def private(self) -> bool:
        """BEP 27: no DHT bit in our handshake."""
        ...

    @property
    def speaks_v2(self) -> bool:
        """BEP 52: the upgrade bit in our handshake."""
        ...

    def admit(self, peer: PeerConnection) -> str | None:
        """Why the torrent refuses this peer after its handshake, or None."""
        ...

    def make_decoder(self, peer: PeerConnection) -> wire.MessageDecoder: ...

    def peer_ready(self, peer: PeerConnection) -> None: ...

    def peer_closed(self, peer: PeerConnection) -> None: ...

    def on_messages(self, peer: PeerConnection, msgs: list[Any]) -> None: ...

    def block_now(self, index: int, begin: int, length: int) -> memoryview | None:
        """The block if it can be had without waiting (cached, no upload limit), else None."""
        ...

    async def read_block(
        self, index: int, begin: int, length: int, spread: RequestSpread | None = None
    ) -> memoryview:
        """The block; ``spread``: how the asking peer's requests spread over pieces (is
        loading a whole piece into the read cache for it worth it)."""
        ...

    def upload_failed(self, peer: PeerConnection, index: int, begin: int, length: int, exc: StorageError) -> bool:
        """Our copy of a piece went bad while serving it: True when the peer stays connected."""
        ...

    def on_uploaded(self, peer: PeerConnection, n: int) -> None: ...

    def serve_metadata(self, peer: PeerConnection, piece: int) -> None:
        """Send a ut_metadata reply held while the peer's transport was paused."""
        ...


class PeerHost(Protocol):
    """What a connection needs from the session that accepted or dialled it (``swarm.session.Session``)."""

    @property
    def peer_id(self) -> bytes: ...

    def dht_port(self) -> int | None: ...

    def route(self, info_hash: bytes) -> PeerOwner | None:
        """The running torrent an incoming handshake names, or None."""
        ...

    def connection_opened(self, conn: PeerConnection) -> None: ...

    def connection_closed(self, conn: PeerConnection) -> None: ...

    def note_self_address(self, conn: PeerConnection) -> None:
        """We dialled ourselves: never dial this address again."""
        ...


class PeerConnection(asyncio.BufferedProtocol):
    """A connection before and after the handshake.

    Outgoing connections know their torrent; incoming ones learn it from the
    info-hash in the peer's handshake (routed by the session). It knows its
    torrent and session only as ``PeerOwner`` and ``PeerHost``: the few calls
    a connection makes, nothing else.
    """

    def __init__(
        self,
        session: PeerHost,
        *,
        torrent: PeerOwner | None = None,
        source: str = "incoming",
        address: tuple[str, int] | None = None,
    ) -> None:
        self.session = session
        self.torrent: PeerOwner | None = torrent
        self.outgoing = torrent is not None
        self.source = source
        self.transport: asyncio.Transport | None = None
        self.address: tuple[str, int] = address or ("?", 0)
        self.listen_port: int | None = address[1] if address else None
        self.peer_id = b""
        self.reserved = b"\x00" * 8
        self.closed = False
        self.ready = False  # handshake done and attached to a torrent
        # "plain", or set by swarm.encryption: "encrypted" (RC4) or "obfuscated" (MSE handshake only)
        self.encryption = "plain"
        self._hs: wire.HandshakeDecoder | None = wire.HandshakeDecoder()
        self._answered = False
        self.decoder: wire.MessageDecoder | None = None
        now = time.monotonic()
        self.connected_at = now
        self.last_recv = now
        self.last_send = now
        # Outgoing small messages are gathered and written once per loop turn.
        self._out: list[bytes | memoryview] = []
        self._out_bytes = 0
        self._flush_pending = False
        self._write_paused = False
        self._drained = asyncio.Event()
        # Protocol state (names follow BEP 3).
        self.am_choking = True
        self.am_interested = False
        self.peer_choking = True
        self.peer_interested = False
        self.have: Bitfield | None = None
        # How each side first told the other what it has (BEP 3/6), for tests
        # and diagnostics: "have_all", "have_none", "bitfield" or "" (nothing).
        self.have_sent = ""
        self.have_received = ""
        self.interesting = 0  # pieces they have that we want and lack
        self.supports_fast = False
        self.supports_ext = False
        self.ext_ids: dict[str, int] = {}  # their extended message ids
        self.ext_client = ""
        self.reqq = 250  # their request queue limit, from the extended handshake
        # Our outstanding requests to them: (index, begin) -> (length, sent time).
        self.requests: dict[tuple[int, int], tuple[int, float]] = {}
        self.allowed_fast: set[int] = set()  # pieces they let us request while choked
        self.our_allowed_fast: frozenset[int] = frozenset()  # what we let them
        self.snubbed = False
        # Downloader.fill sends requests only once at most this many are outstanding
        # (its last pipeline depth less an eighth): a read of blocks above it skips fill.
        self.refill_at = sys.maxsize
        # Payload of the blocks booked during this read (Downloader.make_landed), for on_messages
        self.landed_bytes = 0
        self.unchoked_at = now
        self.last_block = now
        # Requests they made of us, served in order by one task. One deque for the
        # connection's life (read-only property): the serving task holds it.
        self._upload_queue: deque[tuple[int, int, int]] = deque()
        self.read_spread = RequestSpread()  # load whole pieces for its requests, or blocks
        self._upload_wakeup = asyncio.Event()
        self._upload_task: asyncio.Task[None] | None = None
        self.down = RateMeter()
        self.up = RateMeter()
        self.downloaded = 0
        self.uploaded = 0
        self.close_reason = ""
        # ut_metadata serving (BEP 9): a rate budget, and the one reply held while paused
        self.metadata_budget: TokenBucket | None = None
        self.metadata_waiting: int | None = None
        # slot use, for reclaiming idle slots (ChokeControl.upload_uses)
        self.we_unchoked_at: float | None = None
        self.last_used = now
        self.used_mark = 0  # self.uploaded when last looked at
        self.idle_until = 0.0  # passed over by the choker until then
        self.asked = False  # it has sent us a request: the choker serves such peers first
        self.new_haves = 0  # HAVEs for pieces it lacked: it is downloading (from someone)
        self.seen_wasteful = False  # ChokeControl.on_request: when it turns wasteful

    # -- naming -----------------------------------------------------------

    def name(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"

    def __repr__(self) -> str:
        return f"<peer {self.name()}>"

    # -- asyncio protocol -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; same interface.
        t = self.transport = cast(asyncio.Transport, transport)
        peername = t.get_extra_info("peername")
        if peername:
            self.address = (str(peername[0]), int(peername[1]))
        t.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_LOW)
        self.session.connection_opened(self)
        if self.torrent is not None:
            self._send_handshake(self.torrent.info_hash)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._upload_task is not None:
            self._upload_task.cancel()
        self._drained.set()
        if self.ready and self.torrent is not None:
            self.torrent.peer_closed(self)
        self.session.connection_closed(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._drained.set()
        piece, self.metadata_waiting = self.metadata_waiting, None
        if piece is not None and self.torrent is not None:
            self.torrent.serve_metadata(self, piece)

    @property
    def write_paused(self) -> bool:
        """The transport's buffer is above its high-water mark (the peer does not read)."""
        return self._write_paused

    def eof_received(self) -> bool | None:
        return False  # close the transport

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.decoder is not None:
            return self.decoder.get_buffer(sizehint)
        assert self._hs is not None
        # Only what is left of the handshake: no message bytes land here.
        return self._hs.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        if self.closed:
            return
        try:
            decoder = self.decoder
            if decoder is not None:
                msgs = decoder.buffer_updated(nbytes)
                if msgs or self.landed_bytes:
                    self.last_recv = time.monotonic()
                    assert self.torrent is not None
                    self.torrent.on_messages(self, msgs)
                return
            self.last_recv = time.monotonic()
            hs = self._hs
            assert hs is not None
            hs.buffer_updated(nbytes)
            if hs.head_done and not self._answered:
                self._on_handshake_head(hs.info_hash)
            if not self.closed and hs.done:
                self._on_handshake(hs.handshake)
        except ProtocolError as exc:
            # Before the handshake this is mostly an encrypted (MSE) or non-BitTorrent
            # connection attempt: not worth a warning.
            self.close(f"protocol error: {exc}", warn=self.decoder is not None)
        except SwarmError as exc:
            self.close(f"error: {exc}", warn=True)

    # -- handshake --------------------------------------------------------

    def _send_handshake(self, info_hash: bytes, *, answer: bool = False) -> None:
        """``answer``: to the peer's handshake, sent with our greeting (``_on_handshake``)."""
        self._answered = True
        reserved = OUR_RESERVED
        # discovery hook: the BEP 5 DHT bit when our DHT is on (never for private torrents)
        if self.session.dht_port() and not (self.torrent is not None and self.torrent.private):
            reserved = OUR_RESERVED_DHT
        if self.torrent is not None and self.torrent.speaks_v2:
            reserved = wire.with_v2(reserved)
        data = wire.Handshake(info_hash, self.session.peer_id, reserved).encode()
        if answer:
            self.send(data)
        else:
            self._write_now(data)

    def _on_handshake_head(self, info_hash: bytes) -> None:
        if self.torrent is None:
            torrent = self.session.route(info_hash)
            if torrent is None:
                raise ProtocolError(f"unknown info-hash {info_hash.hex()}")
            self.torrent = torrent
            self._send_handshake(info_hash, answer=True)
        elif info_hash != self.torrent.info_hash:
            raise ProtocolError("handshake for another torrent")
        self._answered = True

    def _on_handshake(self, hs: wire.Handshake) -> None:
        self._hs = None
        torrent = self.torrent
        assert torrent is not None
        if hs.peer_id == self.session.peer_id:
            self.session.note_self_address(self)
            self.close("connected to ourselves")
            return
        self.peer_id = hs.peer_id
        self.reserved = hs.reserved
        self.supports_fast = hs.fast
        self.supports_ext = hs.extensions
        refusal = torrent.admit(self)
        if refusal:
            self.close(refusal)
            return
        self.decoder = torrent.make_decoder(self)
        self.ready = True
        self._upload_task = asyncio.get_running_loop().create_task(self._serve_uploads())
        torrent.peer_ready(self)
        # our handshake if we answered, extension handshake, bitfield, allowed-fast: one
        # write now, before the tasks peer_ready started (the seed's reads of the
        # allowed-fast pieces) can hold the loop; the peer needs all of it to ask
        self.flush()

    # -- sending ----------------------------------------------------------

    def _write_now(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)
            self.last_send = time.monotonic()

    def send(self, data: bytes | memoryview) -> None:
        """Queue a message; all queued messages go out in one write this loop turn."""
        if self.closed:
            return
        self._out.append(data)
        if not self._flush_pending:
            self._flush_pending = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._flush_pending = False
        out = self._out
        if not out:
            return
        self._out = []
        self._out_bytes = 0
        if self.closed or self.transport is None:
            return
        # One write of one joined buffer: uvloop's writelines costs ~25 us per item
        # (measured: 1.6 s per GiB of requests); a 16 KiB memcpy costs ~1 us.
        self.transport.write(out[0] if len(out) == 1 else b"".join(out))
        self.last_send = time.monotonic()

    def close(self, reason: str, *, warn: bool = False) -> None:
        if self.closed:
            return
        self.close_reason = reason
        if warn:
            log.warning("dropping peer %s: %s", self.name(), reason)
        else:
            log.info("closing peer %s: %s", self.name(), reason)
        if self.transport is not None:
            self.flush()
            self.transport.close()
        self.closed = True
        if self._upload_task is not None:
            self._upload_task.cancel()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    # -- uploads ----------------------------------------------------------

    @property
    def upload_queue(self) -> deque[tuple[int, int, int]]:
        return self._upload_queue

    def drop_uploads(self, keep: frozenset[int] = frozenset()) -> list[tuple[int, int, int]]:
        """Forget queued requests except those for pieces in ``keep``; return the
        dropped ones. In place: ``_serve_uploads`` keeps serving this same deque."""
        queue = self._upload_queue
        dropped = [r for r in queue if r[0] not in keep]
        if dropped:
            kept = [r for r in queue if r[0] in keep]
            queue.clear()
            queue.extend(kept)
        return dropped

    def queue_upload(self, index: int, begin: int, length: int) -> bool:
        if len(self.upload_queue) >= MAX_PEER_REQUESTS:
            return False
        self.upload_queue.append((index, begin, length))
        self.read_spread.note(index)
        self._upload_wakeup.set()
        return True

    def cancel_upload(self, index: int, begin: int, length: int) -> bool:
        try:
            self.upload_queue.remove((index, begin, length))
        except ValueError:
            return False
        return True

    async def _serve_uploads(self) -> None:
        """Serve their requests in order; wait while the socket buffer is full."""
        torrent = self.torrent
        assert torrent is not None
        wake = self._upload_wakeup
        queue = self.upload_queue
        try:
            while not self.closed:
                if not queue:
                    wake.clear()
                    await wake.wait()
                    continue
                if self._write_paused:
                    self._drained.clear()
                    await self._drained.wait()
                    continue
                index, begin, length = queue.popleft()
                # Most blocks come from a cached piece: no coroutine chain to await for them.
                block = torrent.block_now(index, begin, length)
                try:
                    if block is None:
                        block = await torrent.read_block(index, begin, length, self.read_spread)
                except StorageError as exc:
                    # our copy of the piece went bad (file changed under us): the
                    # torrent stops advertising it; a BEP 6 peer gets a reject
                    if torrent.upload_failed(self, index, begin, length, exc):
                        continue
                    return
                except SwarmError as exc:
                    self.close(f"cannot serve block {index}:{begin}: {exc}", warn=True)
                    return
                if self.closed:
                    return
                if self.am_choking and index not in self.our_allowed_fast:
                    # choked while we read it: a BEP 6 peer is owed a reject
                    if self.supports_fast:
                        self.send(wire.encode_reject(index, begin, length))
                    continue
                self.send(wire.piece_header(index, begin, length))
                self.send(block)
                self._out_bytes += length
                if self._out_bytes >= FLUSH_BYTES:
                    # keep the socket busy, and let other peers in, while serving from the cache
                    self.flush()
                    await asyncio.sleep(0)
                torrent.on_uploaded(self, length)
        except asyncio.CancelledError:
            pass


class MetadataConnection(asyncio.Protocol):
    """A short-lived connection that only fetches the info dictionary (BEP 9).

    Used for magnet links before the torrent exists; messages are queued for
    the fetching coroutine, which is not a hot path.
    """

    def __init__(self, info_hash: bytes, peer_id: bytes) -> None:
        self.info_hash = info_hash
        self.peer_id = peer_id
        self.transport: asyncio.Transport | None = None
        self.handshake: wire.HandshakeDecoder | None = wire.HandshakeDecoder()
        self.decoder = wire.MessageDecoder(max_extended=wire.MAX_EXTENDED)
        self.queue: asyncio.Queue[object] = asyncio.Queue(maxsize=256)
        self.closed = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(wire.Handshake(self.info_hash, self.peer_id, OUR_RESERVED).encode())

    def data_received(self, data: bytes) -> None:
        try:
            if self.handshake is not None:
                rest = self.handshake.feed(data)
                if not self.handshake.done:
                    return
                hs = self.handshake.handshake
                self.handshake = None
                self._put(hs)
                data = rest
            for msg in self.decoder.feed(data):
                if isinstance(msg, wire.Extended):
                    self._put(msg)
        except ProtocolError as exc:
            self._put(exc)
            self.close()

    def _put(self, item: object) -> None:
        if self.queue.full():
            self.close()  # a peer flooding us while we only want metadata
            return
        self.queue.put_nowait(item)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(ConnectionError("connection closed"))

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
