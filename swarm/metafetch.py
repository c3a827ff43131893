"""Magnet links: fetch the info dictionary from peers (BEP 9 ut_metadata over BEP 10).

Peers come from the magnet's ``x.pe`` (what ``swarm seed`` prints: a LAN
without multicast needs nothing else), ``--peer`` and the magnet's trackers.
Each candidate gets one short connection: handshake, extended handshake,
then every metadata piece is requested; pieces are checked together against
the info-hash (swarm.core.extensions.MetadataAssembler), so a lying peer
costs a retry, never a wrong torrent. A peer without ut_metadata is kept
connected (it may be useful once the download starts) and counted, so the
stall diagnosis can say "none of the connected peers offers metadata".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from swarm.core import extensions as ext
from swarm.core import wire
from swarm.core.magnet import Magnet
from swarm.core.metainfo import Metainfo, parse_info
from swarm.core.stall import DEFAULT_AFTER, StallFacts, TrackerFact, diagnose
from swarm.errors import MetainfoError, ProtocolError, SwarmError

log = logging.getLogger("swarm.metafetch")

CONNECT_TIMEOUT = 10.0
#: Largest message we read before the metadata is known (a bitfield of 1M pieces).
MAX_MESSAGE = (1 << 20) + 1024
#: Time for one peer to deliver every metadata piece once asked.
PEER_TIMEOUT = 30.0
MAX_CONCURRENT = 12
RETRY_EVERY = 10.0
OUR_UT_METADATA = ext.UT_METADATA_ID


class MetadataFetcher:
    """Resolves one magnet to a Metainfo; ``status`` facts feed the stall diagnosis."""

    def __init__(
        self,
        magnet: Magnet,
        peer_id: bytes,
        listen_port: int,
        *,
        peers: Iterable[tuple[str, int]] = (),
        on_stalled: Callable[[str], None] | None = None,
        stall_after: float = DEFAULT_AFTER,
    ) -> None:
        self.magnet = magnet
        self.info_hash = magnet.info_hash
        self.peer_id = peer_id
        self.listen_port = listen_port
        self.on_stalled = on_stalled
        self.stall_after = stall_after
        self._candidates: dict[tuple[str, int], None] = dict.fromkeys([*magnet.peers, *peers])
        self._tried: dict[tuple[str, int], float] = {}
        self._connecting: set[tuple[str, int]] = set()
        self.connected: dict[tuple[str, int], bool] = {}  # address -> offers ut_metadata
        self.connect_errors: deque[str] = deque(maxlen=32)
        self.supplier: str | None = None
        self.stalled_reason: str | None = None
        self._result: asyncio.Future[Metainfo] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._trackers: Any = None
        self._started = time.monotonic()

    # -- public ----------------------------------------------------------------

    async def fetch(self, timeout: float | None = None) -> Metainfo:
        loop = asyncio.get_running_loop()
        self._result = loop.create_future()
        self._started = time.monotonic()
        self._start_trackers()
        ticker = asyncio.ensure_future(self._tick_loop())
        try:
            return await asyncio.wait_for(asyncio.shield(self._result), timeout)
        finally:
            ticker.cancel()
            await self.close()

    def add_peer(self, host: str, port: int) -> None:
        if 0 < port < 65536:
            self._candidates.setdefault((host, port), None)
            self._connect_more()

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):
                await t
        if self._trackers is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._trackers.stop(), 3)

    # -- discovery ---------------------------------------------------------------

    def _start_trackers(self) -> None:
        if not self.magnet.trackers:
            return
        from swarm.trackers import TrackerClient

        self._trackers = TrackerClient(
            [[url] for url in self.magnet.trackers],
            self.info_hash,
            self.peer_id,
            self.listen_port,
            stats=lambda: (0, 0, 1),  # "left" unknown: not a seed
            on_peers=self._on_tracker_peers,
        )
        self._spawn(self._run_trackers())

    def _on_tracker_peers(self, peers: Iterable[Any]) -> None:
        for p in peers:
            host, port = (p[0], p[1]) if isinstance(p, tuple) else (p.host, p.port)
            self.add_peer(str(host), int(port))

    async def _run_trackers(self) -> None:
        try:
            await self._trackers.run()
        except SwarmError as exc:
            log.warning("trackers: %s", exc)

    async def _tick_loop(self) -> None:
        while True:
            self._connect_more()
            self._check_stall(time.monotonic())
            await asyncio.sleep(1.0)

    def _connect_more(self) -> None:
        now = time.monotonic()
        for addr in list(self._candidates):
            if len(self._connecting) >= MAX_CONCURRENT:
                return
            if addr in self._connecting or addr in self.connected:
                continue
            last = self._tried.get(addr)
            if last is not None and now - last < RETRY_EVERY:
                continue
            self._tried[addr] = now
            self._connecting.add(addr)
            self._spawn(self._peer(addr))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- stall -------------------------------------------------------------------

    def facts(self) -> StallFacts:
        trackers: tuple[TrackerFact, ...] = ()
        if self._trackers is not None:
            with contextlib.suppress(Exception):
                trackers = tuple(
                    TrackerFact(t.url, t.state == "error", t.last_error)
                    for t in self._trackers.status()
                )
        return StallFacts(
            state="metadata",
            last_progress=self._started,
            after=self.stall_after,
            trackers=trackers,
            known_peers=len(self._candidates),
            connecting=len(self._connecting),
            connected=len(self.connected),
            connect_errors=tuple(self.connect_errors),
            metadata_peers=sum(1 for offers in self.connected.values() if offers),
        )

    def _check_stall(self, now: float) -> None:
        reason = diagnose(self.facts(), now)
        if reason != self.stalled_reason:
            self.stalled_reason = reason
            if reason is not None and self.on_stalled is not None:
                self.on_stalled(reason)

    # -- one peer ------------------------------------------------------------------

    async def _peer(self, addr: tuple[str, int]) -> None:
        host, port = addr
        writer: asyncio.StreamWriter | None = None
        try:
            try:
                reader, w = await asyncio.wait_for(
                    asyncio.open_connection(host, port), CONNECT_TIMEOUT
                )
            except (TimeoutError, OSError) as exc:
                self.connect_errors.append(
                    "timeout"
                    if isinstance(exc, TimeoutError)
                    else (exc.strerror or str(exc)).lower()
                )
                return
            finally:
                self._connecting.discard(addr)
            writer = w
            await self._talk(addr, reader, w)
        except (ProtocolError, asyncio.IncompleteReadError, ConnectionError, TimeoutError) as exc:
            log.info("metadata from %s:%d: %s", host, port, exc or type(exc).__name__)
        finally:
            self.connected.pop(addr, None)
            if writer is not None:
                writer.close()

    async def _talk(
        self, addr: tuple[str, int], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.write(
            wire.Handshake(self.info_hash, self.peer_id, wire.make_reserved(fast=False)).encode()
        )
        hs = wire.parse_handshake(
            await asyncio.wait_for(reader.readexactly(wire.HANDSHAKE_LEN), CONNECT_TIMEOUT)
        )
        if hs.info_hash != self.info_hash:
            raise ProtocolError("handshake for another torrent")
        if hs.peer_id == self.peer_id:
            raise ProtocolError("connected to ourselves")
        self.connected[addr] = False
        if not hs.extensions:
            await self._idle(reader)  # no BEP 10: it can never send metadata
            return
        writer.write(
            wire.encode_extended(
                0,
                ext.encode_ext_handshake(
                    ext.ExtHandshake(
                        m={"ut_metadata": OUR_UT_METADATA}, v="swarm", p=self.listen_port or None
                    )
                ),
            )
        )
        their_id: int | None = None
        size: int | None = None
        assembler: ext.MetadataAssembler | None = None
        deadline: float | None = None
        while True:
            timeout = None if deadline is None else max(0.1, deadline - time.monotonic())
            msg_id, payload = await asyncio.wait_for(_read_message(reader), timeout)
            if msg_id != wire.EXTENDED or not payload:
                continue
            sub, body = payload[0], payload[1:]
            if sub == 0:
                hs2 = ext.decode_ext_handshake(body)
                their_id = hs2.m.get("ut_metadata")
                size = hs2.metadata_size
                if their_id is None or size is None:
                    self.connected[addr] = False
                    continue  # keep it: it may still serve pieces once we have the metadata
                self.connected[addr] = True
                assembler = ext.MetadataAssembler(self.info_hash, size)
                for piece in assembler.missing():
                    writer.write(wire.encode_extended(their_id, ext.encode_metadata_request(piece)))
                deadline = time.monotonic() + PEER_TIMEOUT
            elif sub == OUR_UT_METADATA and assembler is not None:
                m = ext.decode_metadata_message(body, size)
                if isinstance(m, ext.MetadataReject):
                    raise ProtocolError(f"rejected metadata piece {m.piece}")
                if isinstance(m, ext.MetadataData):
                    info = assembler.add(m.piece, m.data)
                    if info is not None:
                        self._done(info, addr)
                        return
                elif isinstance(m, ext.MetadataRequest) and their_id is not None:
                    writer.write(
                        wire.encode_extended(their_id, ext.encode_metadata_reject(m.piece))
                    )

    async def _idle(self, reader: asyncio.StreamReader) -> None:
        while await reader.read(65536):
            pass

    def _done(self, info: bytes, addr: tuple[str, int]) -> None:
        try:
            meta = parse_info(
                info, trackers=[[t] for t in self.magnet.trackers], expected_hash=self.info_hash
            )
        except MetainfoError as exc:
            raise ProtocolError(f"bad metadata: {exc}") from exc
        self.supplier = f"{addr[0]}:{addr[1]}"
        if self._result is not None and not self._result.done():
            self._result.set_result(meta)


async def _read_message(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One length-prefixed message: (id, payload); keep-alives are skipped."""
    while True:
        (length,) = struct.unpack(">I", await reader.readexactly(4))
        if length == 0:
            continue
        if length > MAX_MESSAGE:
            raise ProtocolError(f"message of {length} bytes before the metadata is known")
        data = await reader.readexactly(length)
        return data[0], data[1:]


async def resolve_magnet(
    magnet: Magnet,
    peer_id: bytes,
    listen_port: int,
    *,
    peers: Iterable[tuple[str, int]] = (),
    on_stalled: Callable[[str], None] | None = None,
    stall_after: float = DEFAULT_AFTER,
    timeout: float | None = None,
) -> tuple[Metainfo, str | None]:
    """The magnet's Metainfo and the peer that supplied it."""
    f = MetadataFetcher(
        magnet, peer_id, listen_port, peers=peers, on_stalled=on_stalled, stall_after=stall_after
    )
    meta = await f.fetch(timeout)
    return meta, f.supplier


__all__ = ["MetadataFetcher", "Metainfo", "resolve_magnet"]
