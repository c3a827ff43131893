"""The public API: a ``Session`` owns the listen socket and its torrents.

Incoming connections are routed to a torrent by the info-hash in their
handshake; outgoing ones are made by each torrent. One thread pool (shared by
every torrent's storage) does hashing and disk I/O off the event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar, cast

from swarm.core import mse
from swarm.core.admission import DEFAULT_PEERS_PER_IP
from swarm.core.metainfo import Metainfo
from swarm.discovery import Discovery
from swarm.encryption import OFF, PLAIN, PREFER, REQUIRE, MseProtocol, Wrapped, check_policy
from swarm.errors import BadInput, MetainfoError, StorageError, SwarmError
from swarm.peer import HANDSHAKE_TIMEOUT, PeerConnection
from swarm.status import TorrentStatus
from swarm.throttle import Throttle
from swarm.torrent import Torrent

log = logging.getLogger("swarm.session")

W = TypeVar("W", bound=Wrapped)
P = TypeVar("P", bound=asyncio.BaseProtocol)
#: Peer addresses whose encryption outcome we remember (``--encryption prefer``).
MAX_REMEMBERED = 4096


def _make_peer_id() -> bytes:
    try:
        from swarm.core.peerid import make_peer_id

        pid = make_peer_id()
        if isinstance(pid, bytes) and len(pid) == 20:
            return pid
    except ImportError:
        pass
    return b"-SW0100-" + os.urandom(12)


class TorrentHandle:
    """What ``Session.add_torrent`` returns: a view of one torrent for callers."""

    def __init__(self, torrent: Torrent) -> None:
        self._t = torrent

    @property
    def info_hash(self) -> bytes:
        return self._t.info_hash

    @property
    def metainfo(self) -> Metainfo:
        return self._t.meta

    @property
    def name(self) -> str:
        return self._t.meta.name

    @property
    def save_path(self) -> Path:
        return self._t.save_path

    def status(self) -> TorrentStatus:
        return self._t.status()

    def idle(self) -> bool:
        """Nothing going on: a seed with no peers, nothing to dial or save. Its figures
        stay as they are until a peer or an address comes."""
        return self._t.idle()

    def is_complete(self) -> bool:
        return self._t.finished()

    async def wait_complete(self, timeout: float | None = None) -> None:
        """Return once every wanted piece is verified on disk (TimeoutError otherwise)."""
        await self._t.wait_complete(timeout)

    @property
    def piece_layers_ready(self) -> asyncio.Event:
        """Set once the torrent has every BEP 52 piece layer (``metainfo`` then carries
        them): from the start unless a v2 torrent is fetching them from peers."""
        return self._t.hashes.layers_ready

    def events(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """(kind, fields) as in swarm.ui.events: "peer", "piece", "done", "error"."""
        return self._t.events()

    def add_peer(self, host: str, port: int) -> None:
        self._t.add_peer(host, port, "manual")

    def have_piece(self, index: int) -> bool:
        return index in self._t.have

    async def read_piece(self, index: int) -> memoryview:
        """A verified piece's bytes (from the upload cache or disk)."""
        return await self._t.read_block(index, 0, self._t.meta.piece_size(index))

    def set_sequential(self, enabled: bool = True, window_bytes: int | None = None) -> None:
        """Fetch new pieces in file order within a read-ahead window (default 4 MiB or 2 pieces,
        growing with the rate: Priorities.set_sequential), rarest first outside it."""
        pl = self._t.meta.piece_length
        self._t.priorities.set_sequential(enabled, window_bytes or max(4 * 1024 * 1024, 2 * pl))

    def prioritize_first_last(self) -> None:
        """First and last piece of every wanted file first (media players read both ends)."""
        self._t.priorities.prioritize_first_last()

    async def stop(self) -> None:
        await self._t.session.remove_torrent(self)

    # -- streaming (issue 11): used by swarm.stream, swarm.httpstream, swarm.hooks --

    @property
    def downloaded(self) -> int:
        """Payload bytes received in this run (0 for a torrent complete at start)."""
        return self._t.downloaded

    def set_piece_priority(self, index: int, prio: int) -> None:
        self._t.priorities.set_piece_priorities((index,), prio)

    def raise_priority(self, indices: Iterable[int], prio: int) -> None:
        """At least ``prio`` for each missing wanted piece of ``indices`` (never lowers)."""
        t = self._t
        picker = t.picker
        if picker is None:
            return
        t.priorities.set_piece_priorities([i for i in indices if not t.have[i] and 0 < picker.priority(i) < prio], prio)

    def wanted_files(self) -> list[int]:
        """Indexes of the files being downloaded (all non-pad files unless --files)."""
        t = self._t
        chosen = t.priorities.wanted_files()
        return [i for i, f in enumerate(t.meta.files) if not f.pad and (chosen is None or i in chosen)]

    @property
    def stall_after(self) -> float:
        """Seconds without progress before a ``stalled`` event names the reason (--stall-after)."""
        return self._t.view.stall_after

    @stall_after.setter
    def stall_after(self, seconds: float) -> None:
        self._t.view.stall_after = seconds

    async def read_block(self, index: int, begin: int, length: int) -> bytes:
        """Bytes of a verified piece, from disk (swarm.stream.read_range)."""
        return bytes(await self._t.storage.read_block(index, begin, length))

    async def wait_pieces(self, indices: Iterable[int], timeout: float | None = None) -> None:
        """Return once every piece of ``indices`` is verified (StorageError if the torrent stops)."""
        from swarm.stream import PieceWaiter

        await PieceWaiter.of(self._t).wait(indices, timeout)

    async def read(self, offset: int, length: int, *, prio: int = 7) -> bytes:
        """``length`` bytes at ``offset`` of the torrent's byte stream, waiting for (and
        raising the priority of) the pieces under them."""
        from swarm.stream import read_range

        return await read_range(self, offset, length, prio=prio)

    async def flush(self) -> None:
        """Data files fsynced and resume data saved (a resume file that cannot be
        written is only a warning, as in Torrent.save_resume)."""
        t = self._t
        if t.storage is not None:
            await t.save_resume()


class Session:
    """Listen socket, peer id, thread pool and the torrents of one process."""

    def __init__(
        self,
        host: str = "0.0.0.0",
        port: int = 6881,
        *,
        peer_id: bytes | None = None,
        state_dir: str | Path | None = None,
        enable_dht: bool = False,
        enable_lsd: bool = False,
        dht_bootstrap: Iterable[tuple[str, int]] | None = None,
        max_peers_per_ip: int = DEFAULT_PEERS_PER_IP,
        fallback_ports: Iterable[int] = (),
        encryption: str = PREFER,
        max_up: int = 0,
        max_down: int = 0,
    ) -> None:
        self.host = host
        #: tried in order when ``port`` is taken (the CLI's 6882-6889, then 0 = any free)
        self.fallback_ports = list(fallback_ports)
        #: protocol encryption (MSE/PE): "prefer", "require" or "off" (swarm.encryption)
        try:
            self.encryption = check_policy(encryption)
        except ValueError as exc:
            raise BadInput(str(exc)) from None
        #: prefer: per dialled address, whether MSE worked (False: it was dropped, use plain)
        self.mse_works: dict[tuple[str, int], bool] = {}
        self._req2: dict[bytes, bytes] = {}
        #: a hybrid's truncated v2 info-hash -> its v1 one (the key of ``torrents``):
        #: BEP 52 peers of a hybrid may handshake with either
        self._v2_aliases: dict[bytes, bytes] = {}
        #: incoming connections per remote IP and torrent (<= 0: no cap); several
        #: clients on one machine or behind one NAT fit under the default
        self.max_peers_per_ip = max_peers_per_ip
        self.requested_port = port
        self.port: int | None = None
        self.peer_id = peer_id if peer_id is not None else _make_peer_id()
        if len(self.peer_id) != 20:
            raise BadInput("peer id must be 20 bytes")
        self.state_dir = Path(state_dir) if state_dir else None
        # Discovery (swarm.discovery): off unless asked, so embedded use and tests stay quiet.
        # dht_bootstrap None: the public routers (none when bound to loopback).
        self.enable_dht = enable_dht
        self.enable_lsd = enable_lsd
        self.dht_bootstrap = None if dht_bootstrap is None else list(dht_bootstrap)
        self.discovery: Discovery | None = None
        self.torrents: dict[bytes, Torrent] = {}
        self.connections: set[PeerConnection] = set()
        self.self_addresses: set[tuple[str, int]] = set()
        self._server: asyncio.AbstractServer | None = None
        self.dht: Any = None  # swarm.dht.DHTNode when enabled
        self.lsd: Any = None  # swarm.lsd.LSDService when enabled
        self._janitor: asyncio.Task[None] | None = None
        # peers tried while fetching a magnet's metadata: the torrent starts with them
        self._metadata_peers: dict[bytes, list[tuple[str, int]]] = {}
        self.executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._closed = False
        #: --max-up / --max-down, bytes/s of payload (0: unlimited), for every torrent's peers and web seeds
        self.throttle = Throttle(max_up, max_down)

    async def __aenter__(self) -> Session:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.executor = _make_executor()
        candidates = [self.requested_port, *self.fallback_ports]
        server: asyncio.Server | None = None
        for n, port in enumerate(candidates):
            try:
                server = await loop.create_server(
                    self._accept, self.host, port, reuse_address=True, backlog=128
                )
                break
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or n == len(candidates) - 1:
                    raise SwarmError(f"cannot listen on {self.host}:{port}: {exc.strerror or exc}") from exc
                log.info("port %d is taken; trying the next", port)
        assert server is not None
        self._server = server
        sock = server.sockets[0]
        self.port = int(sock.getsockname()[1])
        log.info("listening on %s:%d", self.host, self.port)
        self._janitor = asyncio.get_running_loop().create_task(self._close_stale_handshakes())
        await self._start_discovery()

    def _accept(self) -> asyncio.BaseProtocol:
        """The protocol of an incoming connection: plain only, or plain/MSE by its first bytes."""
        if self.encryption == OFF:
            return PeerConnection(self)
        return MseProtocol(PeerConnection(self), self.encryption, lookup=self._req2_lookup)

    def _req2_lookup(self, req2: bytes) -> bytes | None:
        """HASH('req2', info_hash) -> the info-hash of one of our torrents (an MSE receiver's lookup)."""
        info_hash = self._req2.get(req2)
        if info_hash is None:  # a torrent added since: index them again (a few SHA-1s)
            self._req2 = {mse.req2_hash(ih): ih for ih in (*self.torrents, *self._v2_aliases)}
            info_hash = self._req2.get(req2)
        return info_hash if self._torrent_for(info_hash) is not None else None

    def _torrent_for(self, info_hash: bytes | None) -> Torrent | None:
        """Our torrent of ``info_hash``: its key, or a hybrid's truncated v2 hash."""
        if info_hash is None:
            return None
        t = self.torrents.get(info_hash)
        if t is None:
            t = self.torrents.get(self._v2_aliases.get(info_hash, b""))
        return t

    async def open_connection(self, host: str, port: int, info_hash: bytes, make: Callable[[], W]) -> W:
        """Dial a peer under the encryption policy; return the connection ``make`` built.

        ``prefer``: MSE first unless this address dropped it before; if the peer
        drops the attempt, remember that and dial again in plain (libtorrent's
        pe_enabled). ``require``: MSE (RC4) or ``ConnectionError``. ``off``: plain.
        """
        addr = (host, port)
        policy = self.encryption
        if policy == OFF or (policy == PREFER and self.mse_works.get(addr) is False):
            return await self._dial_plain(host, port, make)
        layer: MseProtocol | None = None

        def wrapped() -> MseProtocol:
            nonlocal layer
            layer = MseProtocol(make(), policy, info_hash=info_hash)
            return layer

        await self._dial(host, port, wrapped)
        assert layer is not None
        try:
            ok = await asyncio.wait_for(asyncio.shield(layer.outcome), HANDSHAKE_TIMEOUT)
        except TimeoutError:
            ok = False
            if layer.inner.transport is not None:
                layer.inner.transport.abort()
        if ok:
            self._remember(addr, True)
            return cast(W, layer.inner)
        if policy == REQUIRE or self._closed:
            raise ConnectionError("encrypted handshake failed (encryption required)")
        log.info("%s:%d dropped the encrypted handshake: trying plain", host, port)
        self._remember(addr, False)
        return await self._dial_plain(host, port, make)

    async def _dial_plain(self, host: str, port: int, make: Callable[[], W]) -> W:
        return cast(W, await self._dial(host, port, lambda: cast(asyncio.BaseProtocol, make())))

    async def _dial(self, host: str, port: int, make: Callable[[], P]) -> P:
        loop = asyncio.get_running_loop()
        _, protocol = await asyncio.wait_for(loop.create_connection(make, host, port), 10)
        return protocol

    def _remember(self, addr: tuple[str, int], works: bool) -> None:
        memory = self.mse_works
        memory.pop(addr, None)
        if len(memory) >= MAX_REMEMBERED:
            del memory[next(iter(memory))]  # the oldest
        memory[addr] = works

    async def _close_stale_handshakes(self) -> None:
        """Connections that never finish their handshake would hold a socket forever;
        and once a minute the heap's free pages go back to the OS (swarm.memory)."""
        from swarm.memory import TRIM_INTERVAL, release_free_memory

        next_trim = time.monotonic() + TRIM_INTERVAL
        while not self._closed:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            if now >= next_trim and self.executor is not None:
                next_trim = now + TRIM_INTERVAL
                asyncio.get_running_loop().run_in_executor(self.executor, release_free_memory)
            for c in list(self.connections):
                if not c.ready and not c.closed and now - c.connected_at > HANDSHAKE_TIMEOUT:
                    c.close(f"no handshake within {HANDSHAKE_TIMEOUT:.0f} s")

    async def _start_discovery(self) -> None:
        """DHT and LAN discovery (swarm.discovery); a failure only disables them.

        ``self.dht``/``self.lsd`` stay as aliases of the discovery's node and service.
        """
        assert self.port is not None
        if not (self.enable_dht or self.enable_lsd):
            return
        self.discovery = Discovery(
            self,
            enable_dht=self.enable_dht,
            enable_lsd=self.enable_lsd,
            dht_bootstrap=self.dht_bootstrap,
            state_dir=self.state_dir,
        )
        await self.discovery.start()
        self.dht = self.discovery.dht
        self.lsd = self.discovery.lsd

    def dht_port(self) -> int | None:
        """Our DHT node's UDP port (BEP 5 port message), None when the DHT is off."""
        return self.discovery.dht_port if self.discovery is not None else None

    def dht_node_count(self) -> int | None:
        return self.discovery.node_count() if self.discovery is not None else None

    def reachable_host(self) -> str:
        """The address to give others (x.pe, demos): the bound one, or a LAN guess."""
        if self.host not in ("0.0.0.0", "::", ""):
            return self.host
        try:
            from tracker.server import lan_address

            return str(lan_address())
        except Exception:  # noqa: BLE001 - only a hint
            pass
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.connect(("192.0.2.1", 9))  # no packet is sent for a UDP connect
                return str(s.getsockname()[0])
        except OSError:
            return "127.0.0.1"

    async def add_torrent(
        self,
        source: str | Path | bytes | Metainfo | Any,
        save_path: str | Path = ".",
        *,
        seed_only: bool = False,
        super_seed: bool = False,
        files: Iterable[str] | None = None,
        peers: Iterable[tuple[str, int]] = (),
        web_seeds: Iterable[str] = (),
        torrent_web_seeds: bool = True,
    ) -> TorrentHandle:
        """Add a torrent from a .torrent path, its bytes, a Metainfo (or a magnet: not yet).

        ``seed_only``: serve what is on disk, never download; nothing is written
        under ``save_path`` (it may be read-only) and resume data goes to
        ``state_dir`` if the session has one (else the data is rechecked at start).
        ``super_seed`` (with ``seed_only``): BEP 16, each peer is shown one piece at a time.
        BEP 19 web seeds: the torrent's ``url-list`` (a magnet's ``ws=``) unless
        ``torrent_web_seeds`` is False, plus ``web_seeds``.
        """
        if self.port is None:
            raise SwarmError("session not started")
        from swarm.core.magnet import Magnet, parse_magnet

        peers = list(peers)
        if isinstance(source, str) and source.startswith("magnet:"):
            source = parse_magnet(source)
        meta = await self._resolve(source, peers)
        if isinstance(source, Magnet):
            extra = list(source.peers) + self.take_metadata_peers(meta.info_hash)
            peers += [p for p in extra if p not in peers]
        if meta.info_hash in self.torrents:
            raise BadInput(f"{meta.name}: torrent already added")
        save = Path(save_path)
        if not save.is_dir():
            raise StorageError(f"{save}: output directory does not exist")
        if not seed_only and not os.access(save, os.W_OK | os.X_OK):
            raise StorageError(f"{save}: output directory is not writable")
        urls = (list(meta.url_list) if torrent_web_seeds else []) + list(web_seeds)
        torrent = Torrent(
            self, meta, save, seed_only=seed_only, super_seed=super_seed, files=files, web_seeds=urls
        )
        self.torrents[meta.info_hash] = torrent
        for alias in meta.swarm_hashes[1:]:  # a hybrid's truncated v2 hash
            self._v2_aliases[alias] = meta.info_hash
        try:
            await torrent.start(peers)
        except BaseException:
            self._forget(meta)
            await torrent.stop()
            raise
        if self.discovery is not None:  # discovery hook
            self.discovery.torrent_added(torrent)
        return TorrentHandle(torrent)

    async def _resolve(self, source: Any, peers: Iterable[tuple[str, int]] = ()) -> Metainfo:
        from swarm.core.magnet import Magnet, parse_magnet
        from swarm.core.metainfo import parse_metainfo

        if isinstance(source, Metainfo):
            return source
        if isinstance(source, bytes):
            return parse_metainfo(source)
        if isinstance(source, str) and source.startswith("magnet:"):
            source = parse_magnet(source)
        if isinstance(source, Magnet):
            return await self.fetch_metadata(source, peers)
        if isinstance(source, str | Path):
            path = Path(source)
            try:
                data = await asyncio.get_running_loop().run_in_executor(self.executor, path.read_bytes)
            except OSError as exc:
                raise BadInput(f"{path}: {exc.strerror or exc}") from exc
            try:
                return parse_metainfo(data)
            except BadInput as exc:
                raise type(exc)(f"{path}: {exc}") from exc
        raise BadInput(f"cannot add a torrent from {type(source).__name__}")

    async def fetch_metadata(
        self, magnet: Any, peers: Iterable[tuple[str, int]] = (), *, timeout: float = 60.0
    ) -> Metainfo:
        """The info dictionary of a magnet link, from its x.pe peers, ``peers`` or its trackers (BEP 9)."""
        from swarm.core.metainfo import parse_info

        if self.port is None:
            raise SwarmError("session not started")
        info_hash: bytes = magnet.info_hash
        v2_hash: bytes | None = magnet.info_hash_v2 if magnet.v2_only else None
        tiers = [[t] for t in magnet.trackers]
        if info_hash in self.torrents:
            return self.torrents[info_hash].meta
        found: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        seen: set[tuple[str, int]] = set()
        why_not: dict[tuple[str, int], str] = {}  # per peer: why it gave us no metadata
        attempts: set[asyncio.Task[None]] = set()
        limit = asyncio.Semaphore(8)

        async def attempt(host: str, port: int) -> None:
            async with limit:
                if found.done():
                    return
                try:
                    info = await asyncio.wait_for(self._metadata_from(host, port, info_hash, v2_hash), 20)
                except (OSError, TimeoutError, SwarmError, ConnectionError) as exc:
                    reason = str(exc) or ("timed out" if isinstance(exc, TimeoutError) else type(exc).__name__)
                    why_not[(host, port)] = reason
                    log.info("no metadata from %s:%d: %s", host, port, reason)
                    return
                if info is not None and not found.done():
                    found.set_result(info)

        def add(addrs: Iterable[tuple[str, int]]) -> None:
            for host, port in addrs:
                if (host, port) not in seen and (host, port) not in self.self_addresses and not found.done():
                    seen.add((host, port))
                    task = asyncio.get_running_loop().create_task(attempt(str(host), int(port)))
                    attempts.add(task)
                    task.add_done_callback(attempts.discard)

        add(list(magnet.peers) + list(peers))
        dht_task: asyncio.Task[None] | None = None
        if self.dht is not None:

            async def from_dht() -> None:
                with contextlib.suppress(Exception):
                    async for peer in self.dht.iter_peers(info_hash, timeout=min(timeout, 30)):
                        add([peer])

            dht_task = asyncio.get_running_loop().create_task(from_dht())
        trackers = None
        if tiers:
            from swarm.trackers import TrackerClient

            trackers = TrackerClient(
                tiers, info_hash, self.peer_id, self.port, stats=lambda: (0, 0, 1), on_peers=add
            )
            tracker_task = asyncio.get_running_loop().create_task(trackers.run())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while not found.done():
                left = deadline - loop.time()
                # without trackers, once every known peer has failed there is nothing to wait for
                if left <= 0 or (trackers is None and not attempts and (dht_task is None or dht_task.done())):
                    why = f"within {timeout:.0f} s" if left <= 0 else "from any known peer"
                    reasons = "; ".join(
                        f"{h}:{p} {r}" for (h, p), r in sorted(why_not.items())[:5]
                    )
                    raise SwarmError(
                        f"could not fetch the metadata of {info_hash.hex()} {why} "
                        f"({len(seen)} peer(s) tried{': ' + reasons if reasons else ''}); "
                        "give --peer HOST:PORT or use the .torrent"
                    )
                await asyncio.wait({found}, timeout=min(left, 0.2))
            info_bytes = found.result()
            self._metadata_peers[info_hash] = sorted(seen)
        finally:
            for t in list(attempts):
                t.cancel()
            if dht_task is not None:
                dht_task.cancel()
            if trackers is not None:
                tracker_task.cancel()
                with contextlib.suppress(Exception):
                    await trackers.stop(timeout=1)
        meta = parse_info(info_bytes, trackers=tiers, url_list=list(magnet.web_seeds), expected_hash=info_hash)
        if magnet.info_hash_v2 is not None and meta.info_hash_v2 != magnet.info_hash_v2:
            # the handshake and the check above saw 20 bytes; a btmh names all 32
            raise MetainfoError("the metadata does not match the magnet's v2 (btmh) info-hash")
        return meta

    async def _metadata_from(
        self, host: str, port: int, info_hash: bytes, full_hash: bytes | None = None
    ) -> bytes | None:
        """The info dict from one peer, checked against ``full_hash`` (a v2
        magnet's SHA-256) or else ``info_hash`` (the SHA-1 the handshake uses)."""
        from swarm.core import extensions as ext
        from swarm.core import wire
        from swarm.peer import MetadataConnection

        conn = await self.open_connection(host, port, info_hash, lambda: MetadataConnection(info_hash, self.peer_id))
        try:
            assembler: ext.MetadataAssembler | None = None
            while True:
                item = await conn.queue.get()
                if isinstance(item, Exception):
                    raise item
                if isinstance(item, wire.Handshake):
                    if item.info_hash != info_hash:
                        raise SwarmError("answered for another torrent")
                    if item.peer_id == self.peer_id:
                        raise SwarmError("is ourselves")
                    if not item.extensions:
                        raise SwarmError("does not speak the extension protocol (BEP 10), so it cannot send metadata")
                    hs = ext.ExtHandshake(m={"ut_metadata": ext.UT_METADATA_ID}, v="swarm 0.1.0", reqq=250)
                    conn.send(wire.encode_extended(ext.EXT_HANDSHAKE_ID, ext.encode_ext_handshake(hs)))
                    continue
                assert isinstance(item, wire.Extended)
                if item.ext_id == ext.EXT_HANDSHAKE_ID:
                    theirs = ext.decode_ext_handshake(item.payload)
                    their_id = theirs.m.get("ut_metadata")
                    if their_id is None:
                        raise SwarmError("offers no metadata (no ut_metadata extension, BEP 9)")
                    if theirs.metadata_size is None:
                        raise SwarmError("offers ut_metadata but no metadata_size (has no metadata yet)")
                    assembler = ext.MetadataAssembler(full_hash or info_hash, theirs.metadata_size)
                    for piece in assembler.missing():
                        conn.send(wire.encode_extended(their_id, ext.encode_metadata_request(piece)))
                elif item.ext_id == ext.UT_METADATA_ID and assembler is not None:
                    msg = ext.decode_metadata_message(item.payload, assembler.size)
                    if isinstance(msg, ext.MetadataReject):
                        raise SwarmError("rejected our metadata request")
                    if isinstance(msg, ext.MetadataData):
                        info = assembler.add(msg.piece, msg.data)
                        if info is not None:
                            return info
        finally:
            conn.close()

    def take_metadata_peers(self, info_hash: bytes) -> list[tuple[str, int]]:
        """The peers tried while fetching a magnet's metadata (once: they are handed over)."""
        return self._metadata_peers.pop(info_hash, [])

    def _forget(self, meta: Metainfo) -> Torrent | None:
        for alias in meta.swarm_hashes[1:]:
            self._v2_aliases.pop(alias, None)
        return self.torrents.pop(meta.info_hash, None)

    async def remove_torrent(self, handle: TorrentHandle) -> None:
        t = self._forget(handle.metainfo)
        if t is not None:
            if self.discovery is not None:  # discovery hook
                self.discovery.torrent_removed(t)
            await t.stop()

    # -- called by PeerConnection (swarm.peer.PeerHost) ---------------------------

    def route(self, info_hash: bytes) -> Torrent | None:
        t = self._torrent_for(info_hash)
        if t is None or t.picker is None or self._closed:
            return None
        return t

    def connection_opened(self, conn: PeerConnection) -> None:
        self.connections.add(conn)

    def connection_closed(self, conn: PeerConnection) -> None:
        self.connections.discard(conn)
        if conn.outgoing and conn.encryption == PLAIN and not conn.peer_id:
            # plain was remembered for this address but the peer dropped it before its
            # handshake (it may require encryption now): try MSE again next time
            dialled = (conn.address[0], conn.listen_port or 0)
            if self.mse_works.get(dialled) is False:
                del self.mse_works[dialled]

    def note_self_address(self, conn: PeerConnection) -> None:
        if conn.outgoing:
            self.self_addresses.add(conn.address)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._janitor is not None:
            self._janitor.cancel()
        if self._server is not None:
            self._server.close()
        if self.discovery is not None:  # discovery hook: saves the DHT table
            await self.discovery.close()
        await asyncio.gather(*(t.stop() for t in self.torrents.values()), return_exceptions=True)
        for c in list(self.connections):
            c.close("session closed")
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 2)
            except Exception:  # noqa: BLE001
                pass
        self.throttle.close()
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)


def _make_executor() -> concurrent.futures.ThreadPoolExecutor:
    try:
        from swarm.storage import make_executor

        ex = make_executor()
        if isinstance(ex, concurrent.futures.ThreadPoolExecutor):
            return ex
    except ImportError:
        pass
    return concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="swarm-io")
