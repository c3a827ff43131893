"""The per-torrent coordinator: builds the parts, routes peer messages to them, runs the tick.

Decisions (which block, whom to unchoke, when a request has timed out, whom
to evict) are made by the pure core (picker, choker, requests, eviction,
stall); the parts in ``swarm.parts`` turn peer messages into calls on them and
their answers into messages, each owning one slice of the state:

* ``ConnectionPool`` (parts/pool.py): dialing, admission, eviction, bans;
* ``Downloader`` (parts/download.py): interest, requests, timeouts, piece buffers;
* ``PieceCompletion`` (parts/completion.py): hash, write, blame;
* ``Uploader`` (parts/upload.py): their requests, rejects, reading blocks;
* ``ChokeControl`` (parts/choking.py): whom we upload to;
* ``MetadataExchange`` (parts/metadata.py): BEP 10 handshakes, ut_metadata;
* ``Priorities`` (parts/priorities.py): --files, first/last, streaming window;
* ``StatusView`` (parts/status.py): status snapshots, stall diagnosis;
* ``TrackerLink`` (parts/announce.py): the tracker client and its events;
* ``HashExchange`` (parts/hashes.py): BEP 52 hash requests, missing piece layers.

What stays here is what they share: the torrent's identity, life cycle
(``state``, ``error``, tasks, ``stop``), the verified pieces (``have``,
``wanted``), the picker, storage and trackers, and the event queues.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from swarm.core import wire
from swarm.core.bitfield import Bitfield
from swarm.core.metainfo import Metainfo
from swarm.core.picker import PiecePicker
from swarm.core.seeding import RequestSpread
from swarm.core.superseed import SuperSeeder
from swarm.discovery import PexManager
from swarm.errors import StorageError, SwarmError
from swarm.parts.announce import TrackerLink
from swarm.parts.choking import ChokeControl
from swarm.parts.completion import PieceCompletion
from swarm.parts.download import Downloader
from swarm.parts.hashes import HashExchange
from swarm.parts.metadata import MetadataExchange
from swarm.parts.pool import ConnectionPool
from swarm.parts.priorities import Priorities
from swarm.parts.status import StatusView, client_name
from swarm.parts.upload import Uploader
from swarm.parts.webseed import WebSeeds
from swarm.peer import PeerConnection
from swarm.status import TorrentStatus

if TYPE_CHECKING:
    from swarm.session import Session

log = logging.getLogger("swarm.torrent")

RESUME_INTERVAL = 30.0
TICK = 1.0
#: A connection we have not heard from for this long is closed; we send a keep-alive after KEEPALIVE.
IDLE_CLOSE = 240.0
KEEPALIVE = 110.0


class Torrent:
    """One torrent in a session (``swarm.peer.PeerOwner`` for its connections)."""

    def __init__(
        self,
        session: Session,
        meta: Metainfo,
        save_path: Path,
        *,
        seed_only: bool = False,
        super_seed: bool = False,
        files: Iterable[str] | None = None,
        storage_factory: Callable[..., Any] | None = None,
        web_seeds: Iterable[str] = (),
    ) -> None:
        self.session = session
        self.meta = meta
        self.info_hash = meta.info_hash
        self.save_path = Path(save_path)
        self.seed_only = seed_only
        # BEP 16 (a seed_only torrent only): reveal one piece at a time per peer
        self.superseed = SuperSeeder(meta.num_pieces) if super_seed and seed_only else None
        self.file_globs = list(files) if files else None
        self.state = "checking"
        self.error: str | None = None
        n = meta.num_pieces
        self.num_pieces = n
        self.have = Bitfield(n)
        self.wanted = Bitfield(n, full=True)
        self.picker: PiecePicker | None = None
        self.storage: Any = None
        self._storage_factory = storage_factory
        self.started_at = time.time()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._complete = asyncio.Event()
        # not running: stopped or failed (no ticks, dialling, admissions or discovery)
        self._stopped = False
        self._stop_called = False
        self._events: list[asyncio.Queue[tuple[str, dict[str, Any]]]] = []
        self._woken = asyncio.Event()  # set by wake(): an idle torrent ticks again
        self.resume_dirty = False
        self._last_resume = time.monotonic()
        self.check_progress = 0.0
        # stream & stall hooks (issue 11)
        self.piece_verified: list[Callable[[int], None]] = []  # called with each verified index
        self.on_stop: list[Callable[[], None]] = []  # called once when the torrent stops
        # the parts (issue 18), each owning its slice of the state
        self.pool = ConnectionPool(self)
        self.peers = self.pool.peers  # the connected peers (read-only view for the other parts)
        self.downloader = Downloader(self)
        self.completion = PieceCompletion(self)
        self.uploader = Uploader(self)
        self.choking = ChokeControl(self)
        self.metadata = MetadataExchange(self)
        self.priorities = Priorities(self)
        self.view = StatusView(self)
        self.trackers = TrackerLink(self)
        self.pex = PexManager(self)  # discovery hook: ut_pex in and out (never for private torrents)
        self.webseeds = WebSeeds(self)  # BEP 19: HTTP servers alongside peers
        self.hashes = HashExchange(self)  # BEP 52: serve hash requests, fetch missing layers
        self._web_seed_urls = list(web_seeds)
        d, u, c, h = self.downloader, self.uploader, self.choking, self.hashes
        self._handlers: dict[type, Callable[[PeerConnection, Any], None]] = {
            wire.Choke: d.on_choke,
            wire.Unchoke: d.on_unchoke,
            wire.Interested: c.on_interested,
            wire.NotInterested: c.on_not_interested,
            wire.Have: d.on_have,
            wire.BitfieldMsg: d.on_bitfield,
            wire.HaveAll: d.on_have_all,
            wire.HaveNone: d.on_have_none,
            wire.Request: u.on_request,
            wire.Cancel: u.on_cancel,
            wire.RejectRequest: d.on_reject,
            wire.AllowedFast: d.on_allowed_fast,
            wire.Extended: self.metadata.on_extended,
            wire.KeepAlive: _ignore,
            wire.Port: self._on_port,
            wire.Suggest: _ignore,
            wire.HashRequest: h.on_hash_request,
            wire.Hashes: h.on_hashes,
            wire.HashReject: h.on_hash_reject,
        }

    # ------------------------------------------------------------ views of the parts

    @property
    def private(self) -> bool:
        return bool(self.meta.private)

    @property
    def speaks_v2(self) -> bool:
        """BEP 52: the upgrade bit goes in our handshakes of a hybrid (as libtorrent:
        a v2-only torrent's truncated v2 hash says it alone)."""
        return self.meta.info_hash_v2 is not None and bool(self.meta.pieces)

    @property
    def stopped(self) -> bool:
        return self._stopped

    @property
    def downloaded(self) -> int:
        return self.downloader.downloaded

    @property
    def uploaded(self) -> int:
        return self.uploader.uploaded

    def is_known(self, addr: tuple[str, int]) -> bool:
        """Heard of this address already (discovery skips it)."""
        return self.pool.is_known(addr)

    # ------------------------------------------------------------ life cycle

    async def start(self, peers: Iterable[tuple[str, int]] = ()) -> None:
        from swarm.storage import Storage

        factory = self._storage_factory or Storage
        wanted_files = self.priorities.wanted_files()
        # A seed_only torrent never downloads, so it never writes to its data:
        # storage is opened read-only (a read-only mount can be seeded) and no
        # resume file goes next to the user's files. Its resume data lives in
        # Session.state_dir when there is one; without, each start rechecks
        # (the safe default for data that may have changed while we were off).
        # A downloading torrent keeps <save_path>/.swarm/, which moves with the data.
        extra: dict[str, Any] = {}
        state_dir = getattr(self.session, "state_dir", None)
        if self.seed_only and state_dir is not None:
            extra["state_dir"] = state_dir
        self.storage = factory(
            self.meta, self.save_path, wanted_files=wanted_files,
            executor=self.session.executor, **extra,
        )
        await self.storage.open(create=not self.seed_only)
        if wanted_files is not None:
            self.wanted = self.storage.wanted_pieces()
        have = None
        try:
            have = await self.storage.load_resume()
        except StorageError as exc:
            log.info("ignoring resume data: %s", exc)
        if have is not None and have.count and self.hashes.waiting:
            have = None  # a v2 torrent without its piece layers: a recheck rebuilds them
        if have is None:
            self.state = "checking"

            def progress(*args: Any) -> None:
                if args and isinstance(args[0], int | float) and len(args) >= 2 and args[1]:
                    self.check_progress = float(args[0]) / float(args[1])
                elif args and isinstance(args[0], float):
                    self.check_progress = args[0]

            have = await self.storage.recheck(progress)
            if self.storage.meta is not self.meta:
                self.hashes.layers_known()
        self.have = have.copy()
        self.picker = PiecePicker(
            self.num_pieces, self.meta.piece_length, self.meta.total_length, have=self.have
        )
        if wanted_files is not None:
            for i in range(self.num_pieces):
                if not self.wanted[i]:
                    self.picker.set_priority(i, 0)
        if self.is_complete():
            self.state = "seeding"
            self._complete.set()
        else:
            self.state = "downloading"
        self.view.progress(time.monotonic())
        self.spawn(self._tick_loop())
        self.trackers.start()
        if not self.seed_only:
            self.webseeds.add(self._web_seed_urls)
        # DHT and LSD: swarm.discovery (Session.add_torrent calls discovery.torrent_added)
        for host, port in peers:
            self.add_peer(host, port, "manual")

    async def stop(self) -> None:
        if self._stop_called:
            return
        self._stop_called = True
        for cb in self.on_stop:
            cb()
        self._halt("torrent stopped")
        if self.trackers.client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.trackers.client.stop(), 5)
        await self.webseeds.close()
        await self.completion.wait_writes()
        if self.storage is not None and self.picker is not None:
            with contextlib.suppress(SwarmError, OSError):
                await self.storage.save_resume(self.have)
        if self.storage is not None:
            with contextlib.suppress(SwarmError, OSError):
                await self.storage.close()
        if self.state != "error":
            self.state = "stopped"

    def _halt(self, reason: str) -> None:
        """Stop running: every task but the piece writes (stop() awaits those) is
        cancelled, every peer closed; ``stopped`` then refuses ticks, new connections,
        admissions and discovered addresses."""
        self._stopped = True
        writes = self.completion.writes
        for task in list(self._tasks):
            if task not in writes:
                task.cancel()
        for peer in list(self.peers):
            peer.close(reason)

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        """Run ``coro`` as one of this torrent's tasks (cancelled by stop; disk errors fail it)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        if isinstance(exc, StorageError | OSError):
            # disk trouble (ENOSPC, a vanished directory): one line, then stop
            if self.error is None:
                log.info("%s: stopping: %s", self.meta.name, exc)  # the caller reports it
                self._fail(str(exc))
        else:
            log.error("%s: task failed: %s", self.meta.name, exc, exc_info=exc)

    def _fail(self, message: str) -> None:
        self.state = "error"
        self.error = message
        self.emit("error", message=message, fatal=True)
        self._halt("torrent stopped after an error")
        self._complete.set()

    # ------------------------------------------------------------ events

    def emit(self, kind: str, **fields: Any) -> None:
        for q in self._events:
            if q.qsize() < 1000:
                q.put_nowait((kind, fields))

    async def events(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        q: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self._events.append(q)
        try:
            while True:
                yield await q.get()
        finally:
            self._events.remove(q)

    # ------------------------------------------------------------ peers (PeerOwner)

    def add_peer(self, host: str, port: int, source: str = "manual") -> None:
        self.pool.add_peer(host, port, source)
        self.wake()  # an address to dial (or drop) at the next tick

    def admit(self, peer: PeerConnection) -> str | None:
        """Why we refuse this peer, or None to accept it."""
        return self.pool.admit(peer)

    def make_decoder(self, peer: PeerConnection) -> wire.MessageDecoder:
        m = self.meta
        d = self.downloader
        # direct=True (kernel -> piece buffer) measured no better: one more recv per block
        return wire.MessageDecoder(
            m.num_pieces, m.piece_length, m.total_length,
            block_sink=d.make_sink(peer), block_landed=d.make_landed(peer),
        )

    def peer_ready(self, peer: PeerConnection) -> None:
        assert self.picker is not None
        self.pool.add(peer)
        self.wake()  # keep-alives, timeouts and choke rounds from now
        if peer.supports_ext:
            self.metadata.send_ext_handshake(peer)
        # discovery hook: BEP 5, tell a DHT-capable peer our DHT port
        dht_port = self.session.dht_port()
        if dht_port and peer.reserved[7] & 0x01 and not self.meta.private:
            peer.send(wire.encode_port(dht_port))
        self.uploader.greet(peer)
        self.hashes.ask(peer)
        self.emit(
            "peer", action="connected", address=peer.name(), client=client_name(peer),
            source=peer.source, encryption=peer.encryption,
        )
        log.info("%s: peer %s connected (%s)", self.meta.name, peer.name(), peer.source)

    def peer_closed(self, peer: PeerConnection) -> None:
        if not self.pool.remove(peer):
            return
        self.pex.peer_closed(peer)
        if self.superseed is not None:
            self.superseed.remove_peer(peer)
        self.uploader.give_back(peer)
        if self.picker is not None:
            self.picker.remove_peer(peer)
        self.downloader.peer_left(peer)
        self.hashes.peer_closed(peer)
        self.emit("peer", action="disconnected", address=peer.name(), reason=peer.close_reason)
        if not self._stopped:
            if not peer.am_choking:
                self.choking.rechoke(time.monotonic())
            for p in list(self.peers):
                self.downloader.fill(p)
            self.pool.connect_more()

    def on_messages(self, peer: PeerConnection, msgs: list[Any]) -> None:
        """A read's worth of decoded messages (and of blocks already booked by the decoder's
        ``block_landed``): blocks to the download side, the rest by type."""
        now = time.monotonic()
        handlers = self._handlers
        on_piece = self.downloader.on_piece
        piece_t = wire.Piece
        refill = False  # a message other than a block may change what to request
        got = peer.landed_bytes  # blocks the decoder reported whole (Downloader.make_landed)
        peer.landed_bytes = 0
        for m in msgs:
            if type(m) is piece_t:
                got += on_piece(peer, m)
            else:
                h = handlers.get(type(m))
                if h is not None:
                    h(peer, m)
                    refill = True
            if peer.closed:
                break
        if got:
            self.downloader.received(peer, got, now)
            self.session.throttle.received(peer, got)  # --max-down: pauses reading while over
        if got and len(peer.requests) <= peer.refill_at:
            refill = True  # else fill would send nothing: not worth its rate and depth sums per read
        if refill and peer.am_interested and not peer.closed:
            self.downloader.fill(peer, now)

    def _on_port(self, peer: PeerConnection, m: wire.Port) -> None:
        # discovery hook: BEP 5, the peer's DHT node joins our table if it answers a ping
        discovery = self.session.discovery
        if discovery is not None and not self.meta.private:
            discovery.on_port_message(peer.address[0], m.port)

    def block_now(self, index: int, begin: int, length: int) -> memoryview | None:
        if not self.session.throttle.up.unlimited:
            return None  # --max-up: read_block waits for the bucket
        return self.uploader.block_now(index, begin, length)

    async def read_block(
        self, index: int, begin: int, length: int, spread: RequestSpread | None = None
    ) -> memoryview:
        await self.session.throttle.upload(length)  # --max-up: the upload queue waits its turn
        return await self.uploader.read_block(index, begin, length, spread)

    def upload_failed(
        self, peer: PeerConnection, index: int, begin: int, length: int, exc: StorageError
    ) -> bool:
        return self.uploader.upload_failed(peer, index, begin, length, exc)

    def on_uploaded(self, peer: PeerConnection, n: int) -> None:
        self.uploader.on_uploaded(peer, n)

    def serve_metadata(self, peer: PeerConnection, piece: int) -> None:
        self.metadata.serve_metadata(peer, piece)

    # ------------------------------------------------------------ timers

    def wake(self) -> None:
        """Something the tick looks after happened (a peer, an address to dial, a
        tracker's answer, resume data to save): an idle torrent ticks again."""
        self._woken.set()

    def idle(self) -> bool:
        """Nothing for the tick to do until ``wake()``: a seed with no peers, none
        dialled or waiting to be, and no resume data to save. A download keeps
        ticking (stall diagnosis and the retry of --peer addresses run on time)."""
        pool = self.pool
        return (
            self.state == "seeding"
            and not self.peers
            and not pool.connecting
            and not pool.candidates
            and not self.resume_dirty
        )

    async def _tick_loop(self) -> None:
        """A tick a second while there is anything to watch; an idle torrent sleeps
        until woken (no timer per idle torrent: 200 idle seeds cost no CPU)."""
        while not self._stopped:
            if self.idle():
                self._woken.clear()
                await self._woken.wait()
            else:
                await asyncio.sleep(TICK)
            now = time.monotonic()
            self._tick(now)
            if self.resume_dirty and now - self._last_resume >= RESUME_INTERVAL:
                await self.save_resume()

    def _tick(self, now: float) -> None:
        self.choking.tick(now)
        self.choking.reclaim_idle_slots(now)
        self.trackers.report()
        self.pex.tick(now)  # discovery hook: ut_pex out, at most once a minute per peer
        keepalive = wire.encode_keepalive()
        for p in list(self.peers):
            if now - p.last_recv > IDLE_CLOSE:
                p.close("idle for 4 minutes")
                continue
            if now - p.last_send > KEEPALIVE:
                p.send(keepalive)
            self.downloader.check_requests(p, now)
        self.hashes.ask_all(now)  # hash requests nobody answered go to another peer
        if self.state == "downloading":
            self.pool.retry_manual(now)
        self.pool.connect_more()
        self.view.check_stall(now)
        self.priorities.adapt_window(now)
        self.webseeds.wake()

    # ------------------------------------------------------------ completion

    async def wait_complete(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._complete.wait(), timeout)
        if self.error:
            raise StorageError(self.error)

    def finished(self) -> bool:
        """Every wanted piece verified, without an error (TorrentHandle.is_complete)."""
        return self._complete.is_set() and self.error is None

    def is_complete(self) -> bool:
        have = self.have
        wanted = self.wanted
        if wanted.all():
            return have.all()
        return all(have[i] for i in wanted)

    def on_complete(self) -> None:
        self.state = "seeding"
        log.info("%s: download complete", self.meta.name)
        self.emit("done", name=self.meta.name, downloaded=self.downloaded, uploaded=self.uploaded,
                  total_size=self.status().total_size, path=str(self.save_path / self.meta.name))
        if self.trackers.client is not None:
            with contextlib.suppress(Exception):
                self.trackers.client.completed()
        self.spawn(self.save_resume())
        for p in list(self.peers):
            self.downloader.drop_interest(p)
            # two seeds have nothing to say to each other
            if p.have is not None and p.have.all() and self.have.all():
                p.close("both seeds")
        # seed rules (rank by what we send, rotate) from now, not at the next 10 s round
        self.choking.rechoke(time.monotonic())
        self._complete.set()

    async def save_resume(self) -> None:
        """Save resume data. A failure (disk full, no room for .swarm) is only a
        warning: the verified data is on disk, the next start rechecks it."""
        self.resume_dirty = False
        self._last_resume = time.monotonic()
        try:
            await self.storage.save_resume(self.have.copy())
        except (SwarmError, OSError) as exc:
            log.warning("%s: cannot save resume data: %s", self.meta.name, exc)

    def left(self) -> int:
        if self.picker is None:
            return self.meta.total_length
        missing = self.num_pieces - self.have.count
        return max(0, min(self.meta.total_length, missing * self.meta.piece_length))

    def status(self) -> TorrentStatus:
        return self.view.status()


def _ignore(peer: PeerConnection, m: Any) -> None:
    return None
