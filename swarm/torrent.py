"""The per-torrent controller: peers, picker, choker, storage and trackers.

Decisions (which block, whom to unchoke, when a peer is snubbed) are made by
the pure core (picker, choker, rate); this module turns peer messages into
calls on them and their answers into messages. The block path is the hot
one: a block lands in its piece buffer through the decoder's block sink, and
this module only does dictionary bookkeeping per block; hashing and disk
writes run in threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import ipaddress
import logging
import os
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from swarm.core import admission, wire
from swarm.core import extensions as ext
from swarm.core.bitfield import Bitfield
from swarm.core.choker import Choker, PeerInfo
from swarm.core.metainfo import Metainfo
from swarm.core.picker import Block, PiecePicker
from swarm.core.rate import RateMeter, queue_depth
from swarm.core.stall import DEFAULT_AFTER, StallFacts, TrackerFact, diagnose
from swarm.discovery import PexManager
from swarm.errors import ProtocolError, StorageError, SwarmError
from swarm.peer import PeerConnection
from swarm.status import PeerStatus, TorrentStatus

if TYPE_CHECKING:
    from swarm.session import Session

log = logging.getLogger("swarm.torrent")

CLIENT_VERSION = "swarm 0.1.0"
MAX_PEERS = 60
#: Peers named by the user (--peer) may exceed the cap by this many.
MANUAL_EXTRA = 10
#: A peer that gave and wanted nothing for this long may be replaced at the cap.
USELESS_AFTER = 10.0
MAX_CONNECTING = 12
#: In-progress piece buffers (bytes) before we stop starting new pieces.
MAX_BUFFER_BYTES = 96 * 1024 * 1024
REQUEST_TIMEOUT = 30.0
SNUB_TIMEOUT = 45.0
#: Seconds of data kept requested at a peer's rate (swarm.core.rate's default queue time).
REQUEST_QUEUE_TIME = 3.0
RECHOKE_INTERVAL = 10.0
UPLOAD_SLOTS = 4
RESUME_INTERVAL = 30.0
TICK = 1.0
MANUAL_RETRY = 10.0
#: Hash-failure strikes: a sole contributor earns 2, a shared one 1; ban at 3.
BAN_STRIKES = 3
#: Failed pieces kept for block-by-block blame (memory: this many pieces).
MAX_SUSPECTS = 16
OUR_REQQ = 500
#: Requests in flight to a new peer before its rate is known.
SLOW_START = 16
#: Piece-map resolution: one cell per piece up to this many (the display rescales
#: and shades mixed cells; coarse cells would show any partly-missing range as missing).
STATUS_CELLS = 1000


def _is_local(ip: str) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return addr.is_loopback


class Torrent:
    """One torrent in a session."""

    def __init__(
        self,
        session: Session,
        meta: Metainfo,
        save_path: Path,
        *,
        seed_only: bool = False,
        files: Iterable[str] | None = None,
        storage_factory: Callable[..., Any] | None = None,
    ) -> None:
        self.session = session
        self.meta = meta
        self.info_hash = meta.info_hash
        self.save_path = Path(save_path)
        self.seed_only = seed_only
        self.file_globs = list(files) if files else None
        self.state = "checking"
        self.error: str | None = None
        self.peers: dict[PeerConnection, None] = {}
        self.peer_ids: set[bytes] = set()
        self._connecting: set[tuple[str, int]] = set()
        self._candidates: deque[tuple[str, int, str]] = deque()
        self._known: set[tuple[str, int]] = set()
        #: bound of _known and _candidates: what peers tell us must not grow without end
        self.max_known = admission.MAX_KNOWN_ADDRESSES
        # slot squatting (issue 16 #3): connections per IP, and how long an unchoked or
        # connected interested peer may use nothing before its slot goes to another
        self.max_peers_per_ip: int = session.max_peers_per_ip
        self.idle_unchoke_after = admission.IDLE_UNCHOKE_AFTER
        self.idle_connection_after = admission.IDLE_CONNECTION_AFTER
        self._manual: set[tuple[str, int]] = set()  # --peer addresses: retried while absent
        self._last_retry = time.monotonic()
        self._last_forget = 0.0  # see _forget_stale
        self.banned: set[Any] = set()
        self._strikes: dict[Any, int] = {}
        n = meta.num_pieces
        self.num_pieces = n
        self.have = Bitfield(n)
        self.wanted = Bitfield(n, full=True)
        self.picker: PiecePicker | None = None
        self.storage: Any = None
        self._storage_factory = storage_factory
        # piece assembly
        self._buffers: dict[int, memoryview] = {}
        self._buffer_bytes = 0
        self._buffered = Bitfield(n)
        # blocks being copied into their piece buffer by a peer's decoder (the block
        # sink's slots): the only writers of piece buffers besides _on_piece
        self._landing: dict[tuple[int, int], PeerConnection] = {}
        # hash+write tasks: stop() awaits them instead of cancelling (the thread would go on)
        self._writes: set[asyncio.Task[Any]] = set()
        self._pool: list[memoryview] = []  # finished piece buffers for reuse
        # who sent each block of a piece in progress (for blame on a hash failure)
        self._senders: dict[int, dict[int, PeerConnection]] = {}
        # failed pieces with several senders: (bad copy, senders), compared with the good one later
        self._suspects: OrderedDict[int, tuple[bytes, dict[int, PeerConnection]]] = OrderedDict()
        self.down = RateMeter()
        self.up = RateMeter()
        self.downloaded = 0
        self.uploaded = 0
        self.wasted = 0
        self.hash_failures = 0
        self.started_at = time.time()
        self._mono_start = time.monotonic()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._complete = asyncio.Event()
        # not running: stopped or failed (no ticks, dialling, admissions or discovery)
        self._stopped = False
        self._stop_called = False
        self._events: list[asyncio.Queue[tuple[str, dict[str, Any]]]] = []
        self._last_rechoke = 0.0
        self.choker = Choker(slots=UPLOAD_SLOTS)
        self._resume_dirty = False
        self._last_resume = time.monotonic()
        self.trackers: Any = None
        self.check_progress = 0.0
        self._metadata_size = len(meta.info_bytes)
        self._tracker_marks: dict[str, tuple[Any, ...]] = {}
        self.pex = PexManager(self)  # discovery hook: ut_pex in and out (never for private torrents)
        # stream & stall hooks (issue 11): see the section at the end of the class
        self.piece_verified: list[Callable[[int], None]] = []  # called with each verified index
        self.on_stop: list[Callable[[], None]] = []  # called once when the torrent stops
        self.stall_after = DEFAULT_AFTER
        self.stalled_reason: str | None = None
        self._last_progress = time.monotonic()
        self._connect_errors: deque[str] = deque(maxlen=32)
        self._stall_bytes = 0  # self.downloaded when last sampled
        self._seq_base = 0  # sequential read-ahead: the asked-for window (0: fixed or off)
        self._seq_window = 0
        # pieces whose data changed on disk under us (see upload_failed)
        self.lost_pieces = 0
        self._changed_files: set[int] = set()

    # ------------------------------------------------------------ life cycle

    async def start(self, peers: Iterable[tuple[str, int]] = ()) -> None:
        from swarm.storage import Storage

        factory = self._storage_factory or Storage
        wanted_files = self._wanted_files()
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
        if have is None:
            self.state = "checking"

            def progress(*args: Any) -> None:
                if args and isinstance(args[0], int | float) and len(args) >= 2 and args[1]:
                    self.check_progress = float(args[0]) / float(args[1])
                elif args and isinstance(args[0], float):
                    self.check_progress = args[0]

            have = await self.storage.recheck(progress)
        self.have = have.copy()
        self.picker = PiecePicker(
            self.num_pieces, self.meta.piece_length, self.meta.total_length, have=self.have
        )
        if wanted_files is not None:
            for i in range(self.num_pieces):
                if not self.wanted[i]:
                    self.picker.set_priority(i, 0)
        if self._is_complete():
            self.state = "seeding"
            self._complete.set()
        else:
            self.state = "downloading"
        self._last_progress = time.monotonic()
        self._spawn(self._tick_loop())
        self._start_trackers()
        # DHT and LSD: swarm.discovery (Session.add_torrent calls discovery.torrent_added)
        for host, port in peers:
            self.add_peer(host, port, "manual")

    def _wanted_files(self) -> set[int] | None:
        if not self.file_globs:
            return None
        out: set[int] = set()
        for i, f in enumerate(self.meta.files):
            if f.pad:
                continue
            rel = "/".join(f.path)
            inner = "/".join(f.path[1:]) if self.meta.multi_file else rel
            for g in self.file_globs:
                if fnmatch.fnmatch(rel, g) or fnmatch.fnmatch(inner, g) or fnmatch.fnmatch(f.path[-1], g):
                    out.add(i)
                    break
        if not out:
            raise StorageError(f"--files {' '.join(self.file_globs)} matches no file of {self.meta.name}")
        return out

    def _start_trackers(self) -> None:
        tiers = [list(t) for t in self.meta.trackers if t]
        if not tiers or self.session.port is None:
            return
        try:
            from swarm.trackers import TrackerClient
        except ImportError:
            log.warning("tracker client not available; use --peer")
            return
        self.trackers = TrackerClient(
            tiers,
            self.info_hash,
            self.session.peer_id,
            self.session.port,
            stats=self._tracker_stats,
            on_peers=self._on_tracker_peers,
        )
        self._spawn(self._run_trackers())

    async def _run_trackers(self) -> None:
        try:
            await self.trackers.run()
        except SwarmError as exc:
            log.warning("trackers: %s", exc)

    def prioritize_first_last(self) -> None:
        picker = self.picker
        if picker is None:
            return
        pl = self.meta.piece_length
        for f in self.meta.files:
            if f.pad or f.length == 0:
                continue
            for i in {f.offset // pl, (f.end - 1) // pl}:
                if picker.priority(i) > 0:
                    picker.set_priority(i, 7)

    def _tracker_stats(self) -> tuple[int, int, int]:
        return self.uploaded, self.downloaded, self.left()

    def _on_tracker_peers(self, peers: Iterable[Any]) -> None:
        for p in peers:
            host, port = (p[0], p[1]) if isinstance(p, tuple) else (p.host, p.port)
            self.add_peer(str(host), int(port), "tracker")

    async def stop(self) -> None:
        if self._stop_called:
            return
        self._stop_called = True
        for cb in self.on_stop:
            cb()
        self._halt("torrent stopped")
        if self.trackers is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.trackers.stop(), 5)
        # in-flight hash+writes finish (shielded: a cancelled stop() does not cancel
        # them) and are counted in the resume file
        if self._writes:
            await asyncio.shield(asyncio.wait(list(self._writes)))
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
        cancelled, every peer closed; _stopped then refuses ticks, new connections,
        admissions and discovered addresses."""
        self._stopped = True
        for task in list(self._tasks):
            if task not in self._writes:
                task.cancel()
        for peer in list(self.peers):
            peer.close(reason)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
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
        self._emit("error", message=message, fatal=True)
        self._halt("torrent stopped after an error")
        self._complete.set()

    # ------------------------------------------------------------ events

    def _emit(self, kind: str, **fields: Any) -> None:
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

    # ------------------------------------------------------------ peers in

    def add_peer(self, host: str, port: int, source: str = "manual") -> None:
        if self._stopped or not 0 < port < 65536:
            return
        addr = (host, port)
        if addr in self._known and source != "manual":
            return
        if source != "manual" and len(self._known) >= self.max_known and not self._forget_stale():
            return  # full: addresses are forgotten when a dial fails (see _connect)
        self._known.add(addr)
        if source == "manual":
            self._manual.add(addr)
        if addr in self.banned or addr in self.session.self_addresses:
            return
        self._candidates.append((host, port, source))
        self._connect_more()

    def _forget_stale(self) -> bool:
        """The dial list is full: forget addresses of peers that have left (neither
        connected, being dialled, queued nor named by the user), at most once a
        minute so that a full list costs nothing per address offered. True if
        room was made."""
        now = time.monotonic()
        if now - self._last_forget < 60.0:
            return False
        self._last_forget = now
        live = {p.address for p in self.peers} | self._connecting | self._manual
        live.update((h, p) for h, p, _ in self._candidates)
        self._known &= live
        return len(self._known) < self.max_known

    def _connect_more(self) -> None:
        if self.picker is None or self._stopped:
            return
        while (
            self._candidates
            and len(self._connecting) < MAX_CONNECTING
            and len(self.peers) + len(self._connecting) < MAX_PEERS + MANUAL_EXTRA
        ):
            host, port, source = self._candidates[0]
            if source != "manual" and len(self.peers) + len(self._connecting) >= MAX_PEERS:
                break
            self._candidates.popleft()
            addr = (host, port)
            if addr in self._connecting or any(p.address == addr for p in self.peers):
                continue
            # discovery hook: a seed still dials LSD peers (a LAN peer announcing the torrent
            # wants it now; otherwise it waits for our next announce, minutes away)
            if self.seed_only and self.state == "seeding" and source not in ("manual", "lsd"):
                continue
            self._connecting.add(addr)
            self._spawn(self._connect(host, port, source))

    async def _connect(self, host: str, port: int, source: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(
                loop.create_connection(
                    lambda: PeerConnection(self.session, torrent=self, source=source, address=(host, port)),
                    host,
                    port,
                ),
                10,
            )
        except (TimeoutError, OSError) as exc:
            log.info("cannot connect to %s:%d: %s", host, port, exc or "timeout")
            self._connect_errors.append(_connect_error(exc))
            if source != "manual" and len(self._known) >= self.max_known:
                self._known.discard((host, port))  # full: room for an address that may work
        finally:
            self._connecting.discard((host, port))

    def _ban_key(self, peer: PeerConnection) -> Any:
        ip = peer.address[0]
        # Several clients share an IP on loopback (tests, demos): ban the client, not the IP.
        return (ip, peer.peer_id) if _is_local(ip) else ip

    def admit(self, peer: PeerConnection) -> str | None:
        """Why we refuse this peer, or None to accept it."""
        if self._stopped or self.picker is None:
            return "torrent not running"
        if self._ban_key(peer) in self.banned or peer.address in self.banned:
            return "banned"
        if peer.peer_id in self.peer_ids and not self._replace_duplicate(peer):
            return "duplicate peer id"
        if not peer.outgoing and admission.ip_at_cap(
            (p.address[0] for p in self.peers), peer.address[0], self.max_peers_per_ip
        ):
            return "too many connections from this address"
        if len(self.peers) >= MAX_PEERS and not self._make_room(peer):
            return "too many peers"
        return None

    def _replace_duplicate(self, new: PeerConnection) -> bool:
        """Two connections to one peer (both dialled at once, e.g. after PEX): both ends
        must keep the same one, or each closes the other's and none survives. Keep
        the one dialled by the smaller peer id."""
        old = next((p for p in self.peers if p.peer_id == new.peer_id), None)
        if old is None:
            return True
        ours, theirs = self.session.peer_id, new.peer_id
        keep = min(ours, theirs)

        def dialler(p: PeerConnection) -> bytes:
            return ours if p.outgoing else theirs

        if dialler(new) != keep or dialler(old) == keep:
            return False
        old.close("duplicate connection")
        self.peer_closed(old)
        return True

    def _make_room(self, newcomer: PeerConnection) -> bool:
        """At the cap: drop one peer that has been useless for a while (idle peers
        must not lock out a peer the user named, nor the rest of the swarm)."""
        now = time.monotonic()
        manual = newcomer.outgoing and newcomer.source == "manual"
        if manual and len(self.peers) < MAX_PEERS + MANUAL_EXTRA:
            return True
        worst: PeerConnection | None = None
        for p in self.peers:
            useless = (
                not p.peer_interested
                and not p.downloaded
                and (p.have is None or (self.picker is not None and not self.picker.is_interesting(p)))
                and now - p.connected_at > USELESS_AFTER
            )
            if useless and (worst is None or p.last_recv < worst.last_recv):
                worst = p
        if worst is None:
            # a peer that says interested and never asks holds a slot for nothing
            worst = cast(
                "PeerConnection | None",
                admission.idle_to_evict(self._upload_uses(now), now, self.idle_connection_after),
            )
        if worst is None:
            return False
        worst.close("making room for a new peer")
        self.peer_closed(worst)
        return True

    def make_decoder(self, peer: PeerConnection) -> wire.MessageDecoder:
        m = self.meta
        sink = self._make_sink(peer)
        # direct=True (kernel -> piece buffer) measured no better: one more recv per block
        return wire.MessageDecoder(m.num_pieces, m.piece_length, m.total_length, block_sink=sink)

    def _make_sink(self, peer: PeerConnection) -> Callable[[int, int, int], memoryview | None]:
        requests = peer.requests
        landing = self._landing
        buffers = self._buffers

        def sink(index: int, begin: int, length: int) -> memoryview | None:
            key = (index, begin)
            req = requests.get(key)
            if req is None or req[0] != length or key in landing:
                return None
            view = buffers.get(index)
            if view is None:
                return None
            landing[key] = peer
            return view[begin : begin + length]

        return sink

    def peer_ready(self, peer: PeerConnection) -> None:
        assert self.picker is not None
        self.peers[peer] = None
        self.peer_ids.add(peer.peer_id)
        if not peer.outgoing and peer.listen_port is None:
            peer.listen_port = None
        if peer.outgoing:  # an incoming peer's source port is not where it listens
            self._known.add(peer.address)
        if peer.supports_ext:
            self._send_ext_handshake(peer)
        # discovery hook: BEP 5, tell a DHT-capable peer our DHT port
        dht_port = self.session.dht_port()
        if dht_port and peer.reserved[7] & 0x01 and not self.meta.private:
            peer.send(wire.encode_port(dht_port))
        if peer.supports_fast and self.have.count == 0:
            peer.send(wire.encode_have_none())
            peer.have_sent = "have_none"
        elif peer.supports_fast and self.have.all():
            peer.send(wire.encode_have_all())
            peer.have_sent = "have_all"
        elif self.have.count:
            peer.send(wire.encode_bitfield(self.have.to_bytes()))
            peer.have_sent = "bitfield"
        if peer.supports_fast and self.have.count:
            with contextlib.suppress(ProtocolError):
                allowed = wire.allowed_fast_set(peer.address[0], self.info_hash, self.num_pieces)
                peer.our_allowed_fast = frozenset(i for i in allowed if self.have[i])
                for i in peer.our_allowed_fast:
                    peer.send(wire.encode_allowed_fast(i))
        self._emit(
            "peer", action="connected", address=peer.name(), client=self._client_name(peer),
            source=peer.source,
        )
        log.info("%s: peer %s connected (%s)", self.meta.name, peer.name(), peer.source)
        # A seed never needs the peer bitfield for interest; start serving fast.
        if self._unchoked_count() < UPLOAD_SLOTS and not peer.outgoing:
            pass

    def peer_closed(self, peer: PeerConnection) -> None:
        if peer not in self.peers:
            return
        del self.peers[peer]
        self.peer_ids.discard(peer.peer_id)
        self.pex.peer_closed(peer)
        if self.picker is not None:
            self.picker.remove_peer(peer)
        for key in list(peer.requests):
            self._abandon_landing(peer, key)
        peer.requests.clear()
        self._emit("peer", action="disconnected", address=peer.name(), reason=peer.close_reason)
        if not self._stopped:
            if not peer.am_choking:
                self._rechoke(time.monotonic())
            for p in list(self.peers):
                self._fill(p)
            self._connect_more()

    # ------------------------------------------------------------ messages

    def on_messages(self, peer: PeerConnection, msgs: list[Any]) -> None:
        now = time.monotonic()
        handlers = self._handlers
        piece_t = wire.Piece
        refill = False
        got = 0
        for m in msgs:
            if type(m) is piece_t:
                n = self._on_piece(peer, m)
                if n:
                    got += n
                    refill = True
            else:
                h = handlers.get(type(m))
                if h is not None:
                    h(self, peer, m)
                    refill = True
            if peer.closed:
                break
        if got:
            # counted once per read (~16 blocks), not per block
            peer.downloaded += got
            peer.down.add(got, now)
            peer.last_block = now
            peer.snubbed = False
            self.downloaded += got
            self.down.add(got, now)
        if refill and peer.am_interested and not peer.closed:
            self._fill(peer, now)

    def _on_piece(self, peer: PeerConnection, m: wire.Piece) -> int:
        """Bytes of a requested block received (0 for an unrequested one)."""
        index = m.index
        begin = m.begin
        key = (index, begin)
        if m.data is None:
            # landed through the sink: only the peer that owns the landing mark
            # may complete it (a late block was diverted, see _abandon_landing)
            if self._landing.get(key) is not peer:
                return 0
            del self._landing[key]
        req = peer.requests.pop(key, None)
        if req is None:
            self.wasted += len(m.data) if m.data is not None else 0
            return 0
        n = req[0]
        if m.data is not None and len(m.data) != n:
            raise ProtocolError(f"block {index}:{begin} of {len(m.data)} bytes, we asked for {n}")
        picker = self.picker
        assert picker is not None
        if m.data is not None:
            # Declined by the sink (duplicate in flight elsewhere): only use it if still needed.
            view = self._buffers.get(index)
            if view is None or not picker.is_needed(index, begin) or (key in self._landing):
                self.wasted += n
                picker.cancel_requests(peer, (Block(index, begin, n),))
                return n
            view[begin : begin + n] = m.data
        complete, cancels = picker.on_block(peer, index, begin)
        senders = self._senders.get(index)
        if senders is None:
            senders = self._senders[index] = {}
        senders[begin] = peer
        for o, blk in cancels:
            other = cast(PeerConnection, o)
            if other.requests.pop((blk.index, blk.begin), None) is not None:
                other.send(wire.encode_cancel(blk.index, blk.begin, blk.length))
        if complete:
            self._piece_complete(index)
        return n

    def _on_choke(self, peer: PeerConnection, m: Any) -> None:
        peer.peer_choking = True
        if not peer.supports_fast:
            # BEP 3: a choke drops every outstanding request.
            self._drop_requests(peer)

    def _on_unchoke(self, peer: PeerConnection, m: Any) -> None:
        peer.peer_choking = False
        peer.unchoked_at = time.monotonic()
        peer.last_block = peer.unchoked_at

    def _on_interested(self, peer: PeerConnection, m: Any) -> None:
        peer.peer_interested = True
        idle = time.monotonic() < peer.idle_until  # caught squatting: no slot for a while
        if peer.am_choking and not idle and self._unchoked_count() < UPLOAD_SLOTS:
            self._unchoke(peer)

    def _on_not_interested(self, peer: PeerConnection, m: Any) -> None:
        peer.peer_interested = False

    def _on_have(self, peer: PeerConnection, m: wire.Have) -> None:
        assert self.picker is not None
        if peer.have is None:
            peer.have = Bitfield(self.num_pieces)
            self.picker.add_peer(peer, peer.have)
        if peer.have.set(m.index):
            self.picker.peer_have(peer, m.index)
        self._update_interest(peer)

    def _on_bitfield(self, peer: PeerConnection, m: wire.BitfieldMsg) -> None:
        assert self.picker is not None
        bf = Bitfield.from_bytes(m.data, self.num_pieces)
        peer.have = bf
        peer.have_received = "bitfield"
        if bf.all():
            self.picker.add_peer_have_all(peer)
        else:
            self.picker.add_peer(peer, bf)
        self._update_interest(peer)

    def _on_have_all(self, peer: PeerConnection, m: Any) -> None:
        if not peer.supports_fast:
            raise ProtocolError("have-all without the fast extension")
        assert self.picker is not None
        peer.have = Bitfield(self.num_pieces, full=True)
        peer.have_received = "have_all"
        self.picker.add_peer_have_all(peer)
        self._update_interest(peer)

    def _on_have_none(self, peer: PeerConnection, m: Any) -> None:
        if not peer.supports_fast:
            raise ProtocolError("have-none without the fast extension")
        assert self.picker is not None
        peer.have = Bitfield(self.num_pieces)
        peer.have_received = "have_none"
        self.picker.add_peer(peer, peer.have)
        self._update_interest(peer)

    def _on_request(self, peer: PeerConnection, m: wire.Request) -> None:
        index = m.index
        if not self.have[index] or m.length > wire.BLOCK_SIZE * 8:
            self._reject(peer, m.index, m.begin, m.length)
            return
        if peer.am_choking and index not in peer.our_allowed_fast:
            self._reject(peer, m.index, m.begin, m.length)
            return
        if not peer.queue_upload(index, m.begin, m.length):
            self._reject(peer, m.index, m.begin, m.length)

    def _reject(self, peer: PeerConnection, index: int, begin: int, length: int) -> None:
        if peer.supports_fast:
            peer.send(wire.encode_reject(index, begin, length))

    def _on_cancel(self, peer: PeerConnection, m: wire.Cancel) -> None:
        if peer.cancel_upload(m.index, m.begin, m.length) and peer.supports_fast:
            # BEP 6: a cancelled request is answered with a reject.
            peer.send(wire.encode_reject(m.index, m.begin, m.length))

    def _on_reject(self, peer: PeerConnection, m: wire.RejectRequest) -> None:
        if not peer.supports_fast:
            raise ProtocolError("reject-request without the fast extension")
        req = peer.requests.pop((m.index, m.begin), None)
        if req is not None and self.picker is not None:
            self._abandon_landing(peer, (m.index, m.begin))
            self.picker.cancel_requests(peer, (Block(m.index, m.begin, req[0]),))
            # re-issue at once to whoever can take it
            for p in list(self.peers):
                if p is not peer:
                    self._fill(p)

    def _on_allowed_fast(self, peer: PeerConnection, m: wire.AllowedFast) -> None:
        if not self.have[m.index]:
            peer.allowed_fast.add(m.index)

    def _on_extended(self, peer: PeerConnection, m: wire.Extended) -> None:
        if m.ext_id == ext.EXT_HANDSHAKE_ID:
            hs = ext.decode_ext_handshake(m.payload)
            peer.ext_ids = dict(hs.m)
            if hs.v:
                peer.ext_client = hs.v
            if hs.reqq:
                peer.reqq = min(hs.reqq, 100000)
            if hs.p:
                peer.listen_port = hs.p
                if not peer.outgoing and len(self._known) < self.max_known:
                    self._known.add((peer.address[0], hs.p))
            self.pex.greet(peer)  # discovery hook: a new ut_pex peer hears of the others at once
            return
        if m.ext_id == ext.UT_METADATA_ID:
            self._on_ut_metadata(peer, m.payload)
        elif m.ext_id == ext.UT_PEX_ID:  # discovery hook: peers from ut_pex, capped and filtered
            self.pex.on_message(peer, m.payload)

    def _on_ut_metadata(self, peer: PeerConnection, payload: bytes) -> None:
        """Serve our info dictionary to magnet downloaders (BEP 9), bounded: a rate
        cap (a peer over it is dropped) and at most one reply waiting while the
        peer does not read (transport paused)."""
        info = self.meta.info_bytes
        msg = ext.decode_metadata_message(payload, len(info))
        their = peer.ext_ids.get("ut_metadata")
        if their is None or not isinstance(msg, ext.MetadataRequest):
            return
        now = time.monotonic()
        if peer.metadata_budget is None:
            peer.metadata_budget = admission.TokenBucket(
                admission.METADATA_BURST, admission.METADATA_RATE, now
            )
        if not peer.metadata_budget.take(now):
            peer.close("ut_metadata requests over the rate cap", warn=True)
            return
        if peer.write_paused:
            peer.metadata_waiting = msg.piece  # one reply at most, sent on resume
            return
        self.serve_metadata(peer, msg.piece)

    def serve_metadata(self, peer: PeerConnection, piece: int) -> None:
        """Send one ut_metadata reply (data, or a reject for a private torrent)."""
        info = self.meta.info_bytes
        their = peer.ext_ids.get("ut_metadata")
        if their is None or peer.closed:
            return
        if self.meta.private:
            peer.send(wire.encode_extended(their, ext.encode_metadata_reject(piece)))
            return
        start = piece * ext.METADATA_PIECE_SIZE
        chunk = info[start : start + ext.METADATA_PIECE_SIZE]
        peer.send(wire.encode_extended(their, ext.encode_metadata_data(piece, len(info), chunk)))

    def _on_ignore(self, peer: PeerConnection, m: Any) -> None:
        return None

    def _on_port(self, peer: PeerConnection, m: wire.Port) -> None:
        # discovery hook: BEP 5, the peer's DHT node joins our table if it answers a ping
        discovery = self.session.discovery
        if discovery is not None and not self.meta.private:
            discovery.on_port_message(peer.address[0], m.port)

    _handlers: dict[type, Callable[[Torrent, PeerConnection, Any], None]] = {
        wire.Choke: _on_choke,
        wire.Unchoke: _on_unchoke,
        wire.Interested: _on_interested,
        wire.NotInterested: _on_not_interested,
        wire.Have: _on_have,
        wire.BitfieldMsg: _on_bitfield,
        wire.HaveAll: _on_have_all,
        wire.HaveNone: _on_have_none,
        wire.Request: _on_request,
        wire.Cancel: _on_cancel,
        wire.RejectRequest: _on_reject,
        wire.AllowedFast: _on_allowed_fast,
        wire.Extended: _on_extended,
        wire.KeepAlive: _on_ignore,
        wire.Port: _on_port,
        wire.Suggest: _on_ignore,
    }

    def _send_ext_handshake(self, peer: PeerConnection) -> None:
        m = {"ut_metadata": ext.UT_METADATA_ID}
        if not self.meta.private:
            m["ut_pex"] = ext.UT_PEX_ID
        hs = ext.ExtHandshake(
            m=m, v=CLIENT_VERSION, p=self.session.port or None, reqq=OUR_REQQ,
            metadata_size=self._metadata_size,
        )
        peer.send(wire.encode_extended(ext.EXT_HANDSHAKE_ID, ext.encode_ext_handshake(hs)))

    # ------------------------------------------------------------ requesting

    def _update_interest(self, peer: PeerConnection) -> None:
        assert self.picker is not None
        want = self.picker.is_interesting(peer) and not self.seed_only
        if want != peer.am_interested:
            peer.am_interested = want
            peer.send(wire.encode_interested() if want else wire.encode_not_interested())
            if want:
                peer.last_block = time.monotonic()
        if want:
            self._fill(peer)

    def _drop_requests(self, peer: PeerConnection) -> None:
        if not peer.requests:
            return
        for key in list(peer.requests):
            self._abandon_landing(peer, key)
        peer.requests.clear()
        if self.picker is not None:
            self.picker.cancel_requests(peer)

    def _abandon_landing(self, peer: PeerConnection, key: tuple[int, int]) -> None:
        """We gave up ``peer``'s block ``key``: if it is landing, the rest of it goes
        to a throw-away buffer (the block may be fetched again from someone else)."""
        if self._landing.get(key) is peer:
            del self._landing[key]
            if peer.decoder is not None:
                peer.decoder.abandon_block(*key)

    def _fill(self, peer: PeerConnection, now: float | None = None) -> None:
        """Top up this peer's request pipeline."""
        picker = self.picker
        if picker is None or peer.closed or not peer.am_interested or peer.have is None:
            return
        choked = peer.peer_choking
        if choked and not peer.allowed_fast:
            return
        if now is None:
            now = time.monotonic()
        if peer.snubbed:
            depth = 1
        else:
            reqq = min(peer.reqq, 500)
            depth = queue_depth(peer.down.rate(now), reqq=reqq)
            # slow start: the rate meter needs a second to see the rate; meanwhile grow
            # the pipeline by one request per block received (doubling per round trip)
            depth = max(depth, min(reqq, SLOW_START + peer.downloaded // wire.BLOCK_SIZE))
        outstanding = len(peer.requests)
        count = depth - outstanding
        # refill in batches: fewer picker calls and fuller writes
        if count <= 0 or (outstanding and count < depth // 8):
            return
        has: Bitfield | None = None if peer.have.all() else peer.have
        if choked:
            has = Bitfield(self.num_pieces)
            for i in peer.allowed_fast:
                if peer.have[i] and not self.have[i]:
                    has.set(i)
        over = self._buffer_bytes >= MAX_BUFFER_BYTES
        if over:
            # no new pieces: only blocks of pieces that already have a buffer
            has = self._buffered
        blocks = picker.pick(peer, has, count)
        if not blocks:
            return
        requests = peer.requests
        buffers = self._buffers
        give_back: list[Block] = []
        send = peer.send
        enc = wire.encode_request
        for blk in blocks:
            index = blk.index
            if index not in buffers:
                if over or (peer.have is not None and not peer.have[index]):
                    give_back.append(blk)
                    continue
                self._alloc(index)
            elif over and not peer.have[index]:
                give_back.append(blk)
                continue
            requests[(index, blk.begin)] = (blk.length, now)
            send(enc(index, blk.begin, blk.length))
        if give_back:
            picker.cancel_requests(peer, give_back)

    def _alloc(self, index: int) -> None:
        size = self.meta.piece_size(index)
        # Reuse a finished piece's buffer: a fresh 1 MiB bytearray costs a page fault
        # per 4 KiB (zero-filling was ~8 % of the leecher's time).
        pool = self._pool
        self._buffers[index] = pool.pop() if pool and size == self.meta.piece_length else memoryview(bytearray(size))
        self._buffer_bytes += size
        self._buffered.set(index)

    def _release(self, index: int) -> memoryview | None:
        view = self._buffers.pop(index, None)
        if view is not None:
            self._buffer_bytes -= len(view)
            self._buffered.clear(index)
        return view

    def _piece_complete(self, index: int) -> None:
        """Hand the piece buffer to hashing and writing. From here nothing writes
        into it: the sink and _on_piece find no buffer for the index, and any block
        still landing in it (none, if the bookkeeping is right) is diverted."""
        view = self._buffers.pop(index, None)
        if view is None:
            return
        for key, peer in [(k, p) for k, p in self._landing.items() if k[0] == index]:
            self._abandon_landing(peer, key)
        self._buffered.clear(index)
        write = self._spawn(self._write_piece(index, view))
        self._writes.add(write)
        write.add_done_callback(self._writes.discard)

    async def _write_piece(self, index: int, view: memoryview) -> None:
        try:
            ok = await self.storage.write_piece(index, view)
        finally:
            self._buffer_bytes -= len(view)
        if self._stopped or self.picker is None:
            if ok:
                self.have.set(index)  # on disk: counted in the resume data stop() saves
            return
        senders = self._senders.pop(index, {})
        if ok:
            suspect = self._suspects.pop(index, None)
            if suspect is not None:
                self._blame(index, suspect[0], suspect[1], view)
            self._piece_passed(index)
        else:
            self._piece_failed(index, view, senders)
        self._recycle(index, view)

    def _recycle(self, index: int, view: memoryview) -> None:
        # safe to reuse: no decoder writes into it any more (see _piece_complete)
        # spare + in-use buffers stay within MAX_BUFFER_BYTES
        spare = len(self._pool) * self.meta.piece_length
        if len(view) == self.meta.piece_length and spare + self._buffer_bytes + len(view) <= MAX_BUFFER_BYTES:
            self._pool.append(view)

    def _piece_passed(self, index: int) -> None:
        assert self.picker is not None
        cancels = self.picker.piece_passed(index)
        for o, blk in cancels:
            other = cast(PeerConnection, o)
            if other.requests.pop((blk.index, blk.begin), None) is not None:
                other.send(wire.encode_cancel(blk.index, blk.begin, blk.length))
        self.have.set(index)
        self._resume_dirty = True
        have_msg = wire.encode_have(index)
        for p in self.peers:
            if p.have is None or not p.have[index]:
                p.send(have_msg)
            if p.am_interested and not self.picker.is_interesting(p):
                p.am_interested = False
                p.send(wire.encode_not_interested())
        self._emit("piece", action="verified", index=index)
        self._last_progress = time.monotonic()
        self.stalled_reason = None
        for cb in self.piece_verified:
            cb(index)
        if self._is_complete():
            self._on_complete()
        elif self._buffer_bytes < MAX_BUFFER_BYTES:
            for p in self.peers:
                if p.am_interested and len(p.requests) < 4:
                    self._fill(p)

    def _blame(
        self, index: int, bad: bytes, senders: dict[int, PeerConnection], good: memoryview
    ) -> None:
        """The piece passed at last: whoever sent a block that differs from it lied."""
        liars: set[PeerConnection] = set()
        for begin, p in senders.items():
            end = min(begin + wire.BLOCK_SIZE, len(good))
            if bad[begin:end] != good[begin:end]:
                liars.add(p)
        for p in liars:
            self._strike(p, BAN_STRIKES)

    def _strike(self, p: PeerConnection, weight: int) -> None:
        key = self._ban_key(p)
        strikes = self._strikes.get(key, 0) + weight
        self._strikes[key] = strikes
        if strikes >= BAN_STRIKES and key not in self.banned:
            self.banned.add(key)
            self.banned.add(p.address)
            self._emit("peer", action="banned", address=p.name(), reason="sent data that failed the hash check")
            p.close(f"banned after {strikes} hash-failure strikes", warn=True)

    def _piece_failed(
        self, index: int, view: memoryview | None = None, senders: dict[int, PeerConnection] | None = None
    ) -> None:
        assert self.picker is not None
        self.hash_failures += 1
        contributors = cast(set[PeerConnection], self.picker.piece_failed(index))
        log.warning(
            "%s: piece %d failed the hash check (from %s)",
            self.meta.name, index, ", ".join(p.name() for p in contributors) or "?",
        )
        self._emit("piece", action="failed", index=index,
                   peer=", ".join(sorted(p.name() for p in contributors)))
        if len(contributors) == 1:
            # alone to blame: two such failures and it is out
            self._strike(next(iter(contributors)), 2)
        elif view is not None and senders:
            # shared: keep the bad copy; when the piece passes, the blocks that differ name the liar
            self._suspects[index] = (bytes(view), dict(senders))
            while len(self._suspects) > MAX_SUSPECTS:
                self._suspects.popitem(last=False)
        else:
            for p in contributors:
                self._strike(p, 1)
        for p in list(self.peers):
            self._fill(p)

    def _is_complete(self) -> bool:
        have = self.have
        wanted = self.wanted
        if wanted.all():
            return have.all()
        return all(have[i] for i in wanted)

    def _on_complete(self) -> None:
        self.state = "seeding"
        log.info("%s: download complete", self.meta.name)
        self._emit("done", name=self.meta.name, downloaded=self.downloaded, uploaded=self.uploaded,
                   total_size=self.status().total_size, path=str(self.save_path / self.meta.name))
        if self.trackers is not None:
            with contextlib.suppress(Exception):
                self.trackers.completed()
        self._spawn(self._save_resume())
        for p in list(self.peers):
            if p.am_interested:
                p.am_interested = False
                p.send(wire.encode_not_interested())
            # two seeds have nothing to say to each other
            if p.have is not None and p.have.all() and self.have.all():
                p.close("both seeds")
        self._complete.set()

    async def _save_resume(self) -> None:
        """Save resume data. A failure (disk full, no room for .swarm) is only a
        warning: the verified data is on disk, the next start rechecks it."""
        self._resume_dirty = False
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

    # ------------------------------------------------------------ uploads

    def allowed_fast_for(self, peer: PeerConnection) -> frozenset[int]:
        return peer.our_allowed_fast

    async def read_block(self, index: int, begin: int, length: int) -> memoryview:
        """A block for an upload. The piece cache is Storage's (one disk read
        for every block and peer, SHA-1 checked on load); when it holds whole
        pieces we ask for the piece and slice it here, without a copy."""
        if not 0 <= index < self.num_pieces:
            raise ProtocolError(f"request for piece {index} of {self.num_pieces}")
        size = self.meta.piece_size(index)
        if begin < 0 or length <= 0 or begin + length > size:
            raise ProtocolError(f"request {begin}+{length} outside piece {index} of {size} bytes")
        storage = self.storage
        if not getattr(storage, "caches_pieces", False):
            return memoryview(await storage.read_block(index, begin, length))
        piece = await storage.read_block(index, 0, size)
        return memoryview(piece)[begin : begin + length]

    def upload_failed(
        self, peer: PeerConnection, index: int, begin: int, length: int, exc: StorageError
    ) -> bool:
        """A piece we advertised could not be read back intact (a file changed,
        shrank or vanished under us; Storage has already dropped it).

        We stop advertising and serving it, and fetch it again unless we only
        seed. Returns True when the peer was answered with a BEP 6 reject and
        stays connected; a peer without the fast extension is disconnected (it
        would wait for the block forever and keeps our old bitfield otherwise).
        """
        self._piece_lost(index, exc)
        if peer.supports_fast and not peer.closed:
            peer.send(wire.encode_reject(index, begin, length))
            return True
        peer.close(f"cannot serve piece {index}: {exc}")
        return False

    def _piece_lost(self, index: int, exc: StorageError) -> None:
        if not self.have.clear(index):
            return  # already known (another request of the same piece)
        self.lost_pieces += 1
        if self.picker is not None:
            self.picker.piece_lost(index)
        layout = getattr(self.storage, "layout", None)
        files = set(layout.files_for_piece(index)) if layout is not None else set()
        new = files - self._changed_files
        if new or not files:
            self._changed_files |= files
            names = ", ".join(
                os.path.join(str(self.save_path), *self.meta.files[i].path) for i in sorted(new)
            )
            message = (
                f"{names or self.meta.name} changed on disk: piece {index} no longer matches "
                f"its hash; not serving it any more ({exc})"
            )
            log.warning("%s: %s", self.meta.name, message)
            self._emit("error", message=message, fatal=False)
        else:
            log.info("%s: piece %d lost too: %s", self.meta.name, index, exc)
        if not self.seed_only and self.state == "seeding":
            self.state = "downloading"  # fetch it again from whoever has it
        if not self.seed_only:
            for p in list(self.peers):
                if p.have is not None:
                    self._update_interest(p)

    def on_uploaded(self, peer: PeerConnection, n: int) -> None:
        now = time.monotonic()
        peer.uploaded += n
        peer.up.add(n, now)
        self.uploaded += n
        self.up.add(n, now)

    # ------------------------------------------------------------ choking

    def _unchoked_count(self) -> int:
        return sum(1 for p in self.peers if not p.am_choking)

    def _unchoke(self, peer: PeerConnection) -> None:
        if peer.am_choking:
            peer.am_choking = False
            peer.send(wire.encode_unchoke())

    def _choke(self, peer: PeerConnection) -> None:
        if not peer.am_choking:
            peer.am_choking = True
            peer.send(wire.encode_choke())
            if peer.supports_fast:
                # BEP 6: allowed-fast requests stay queued, the others are rejected
                for index, begin, length in peer.drop_uploads(keep=peer.our_allowed_fast):
                    peer.send(wire.encode_reject(index, begin, length))
            else:
                peer.drop_uploads()

    def _upload_uses(self, now: float) -> list[admission.UploadUse]:
        """How each peer uses its slots, for the pure idle checks: a peer "uses" an
        unchoke while it has requests queued or we sent it data since the last look."""
        uses = []
        for p in self.peers:
            if p.upload_queue or p.uploaded != p.used_mark:
                p.used_mark = p.uploaded
                p.last_used = now
            if p.am_choking:
                p.we_unchoked_at = None
            elif p.we_unchoked_at is None:
                p.we_unchoked_at = now
            uses.append(
                admission.UploadUse(
                    p, p.peer_interested, p.we_unchoked_at, p.last_used, p.downloaded,
                    caught_idle=p.idle_until > 0,
                )
            )
        return uses

    def _reclaim_idle_slots(self, now: float) -> None:
        """Unchoked peers that request nothing give their slot back (to a peer that is
        choked and interested) and are passed over for ``idle_unchoke_after``."""
        idle = admission.idle_unchoked(self._upload_uses(now), now, self.idle_unchoke_after)
        caught = [p for p in cast("set[PeerConnection]", idle) if now >= p.idle_until]
        if not caught:
            return  # nobody new: no extra rechoke (a peer kept unchoked anyway stays so)
        for p in caught:
            p.idle_until = now + self.idle_unchoke_after
        if any(p.am_choking and p.peer_interested and now >= p.idle_until for p in self.peers):
            self._rechoke(now)

    def _rechoke(self, now: float) -> None:
        """Ask the pure choker whom to unchoke; send only the changes."""
        self._last_rechoke = now
        seeding = self.state == "seeding"
        infos = [
            PeerInfo(
                key=p,
                interested=p.peer_interested and now >= p.idle_until,
                down_rate=p.down.rate(now),
                up_rate=p.up.rate(now),
                snubbed=p.snubbed,
                connected_at=p.connected_at,
                is_seed=p.have is not None and p.have.all(),
            )
            for p in self.peers
            if not p.closed
        ]
        keep = self.choker.rechoke(infos, now, seeding)
        for p in list(self.peers):
            if p in keep:
                self._unchoke(p)
            else:
                self._choke(p)

    # ------------------------------------------------------------ timers

    def _report_trackers(self) -> None:
        """A ``tracker`` event per finished announce, so logs and --json show tracker trouble."""
        if self.trackers is None:
            return
        try:
            statuses = self.trackers.status()
        except Exception:  # a viewer hook must never break the tick
            return
        for st in statuses:
            mark = (st.last_announce, st.last_error, st.state)
            if self._tracker_marks.get(st.url) == mark or st.state not in ("ok", "error"):
                continue
            self._tracker_marks[st.url] = mark
            if st.state == "ok":
                self._emit(
                    "tracker", action="ok", url=st.url, peers=st.peers,
                    seeders=st.seeders, leechers=st.leechers,
                )
            else:
                self._emit("tracker", action="error", url=st.url, error=st.last_error or "failed")

    async def _tick_loop(self) -> None:
        while not self._stopped:
            await asyncio.sleep(TICK)
            now = time.monotonic()
            self._tick(now)
            if self._resume_dirty and now - self._last_resume >= RESUME_INTERVAL:
                await self._save_resume()

    def _tick(self, now: float) -> None:
        if self.choker.due(now):
            self._rechoke(now)
        self._reclaim_idle_slots(now)
        self._report_trackers()
        self.pex.tick(now)  # discovery hook: ut_pex out, at most once a minute per peer
        keepalive = wire.encode_keepalive()
        for p in list(self.peers):
            if now - p.last_recv > 240:
                p.close("idle for 4 minutes")
                continue
            if now - p.last_send > 110:
                p.send(keepalive)
            if p.requests:
                oldest = min(t for _, t in p.requests.values())
                if now - oldest > REQUEST_TIMEOUT and now - p.last_block > REQUEST_TIMEOUT:
                    log.info("%s: requests to %s timed out", self.meta.name, p.name())
                    p.snubbed = True
                    self._drop_requests(p)
                    for other in list(self.peers):
                        if other is not p:
                            self._fill(other, now)
            elif p.am_interested and not p.peer_choking and now - p.last_block > SNUB_TIMEOUT:
                p.snubbed = True
            if p.am_interested:
                self._fill(p, now)
        if now - self._last_retry >= MANUAL_RETRY and self.state == "downloading":
            self._last_retry = now
            connected = {p.address for p in self.peers}
            queued = {(h, p) for h, p, _ in self._candidates}
            for addr in self._manual - connected - queued - self._connecting:
                if addr not in self.banned:
                    self._candidates.append((addr[0], addr[1], "manual"))
        self._connect_more()
        self._check_stall(now)
        self._adapt_window(now)

    # ------------------------------------------------------------ status

    async def wait_complete(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._complete.wait(), timeout)
        if self.error:
            raise StorageError(self.error)

    def _client_name(self, peer: PeerConnection) -> str:
        if peer.ext_client:
            return peer.ext_client
        try:
            from swarm.core.peerid import client_name

            return str(client_name(peer.peer_id))
        except Exception:  # noqa: BLE001 - a name is cosmetic
            return peer.peer_id[:8].decode("latin-1")

    def status(self) -> TorrentStatus:
        now = time.monotonic()
        m = self.meta
        pl = m.piece_length
        wanted_all = self.wanted.all()
        if wanted_all:
            total = m.total_length
            verified = self.have.count * pl
            if self.num_pieces and self.have[self.num_pieces - 1]:
                verified -= pl - m.piece_size(self.num_pieces - 1)
        else:
            total = sum(m.piece_size(i) for i in self.wanted)
            verified = sum(m.piece_size(i) for i in self.wanted if self.have[i])
        verified = max(0, min(verified, total))
        down_rate = self.down.rate(now)
        up_rate = self.up.rate(now)
        peers = []
        seeds = 0
        for p in self.peers:
            have_n = p.have.count if p.have is not None else 0
            if p.have is not None and p.have.all():
                seeds += 1
            flags = ("d" if p.am_interested else "") + ("I" if p.peer_interested else "")
            flags += (" u" if not p.am_choking else "") + ("C" if p.peer_choking else "")
            peers.append(
                PeerStatus(
                    address=p.name(),
                    client=self._client_name(p),
                    am_choking=p.am_choking,
                    am_interested=p.am_interested,
                    peer_choking=p.peer_choking,
                    peer_interested=p.peer_interested,
                    snubbed=p.snubbed,
                    down_rate=p.down.rate(now),
                    up_rate=p.up.rate(now),
                    downloaded=p.downloaded,
                    uploaded=p.uploaded,
                    progress=have_n / self.num_pieces if self.num_pieces else 1.0,
                    source=p.source,
                    outgoing=p.outgoing,
                    flags=flags.strip(),
                )
            )
        trackers: tuple[Any, ...] = ()
        if self.trackers is not None:
            with contextlib.suppress(Exception):
                trackers = tuple(self.trackers.status())
        eta = None
        if down_rate > 0 and total > verified:
            eta = (total - verified) / down_rate
        picker = self.picker
        cells = max(1, min(self.num_pieces, STATUS_CELLS))
        stalled = self.stalled_reason if self.state in ("downloading", "metadata") else None
        if stalled is None and self.state == "downloading" and not self.peers:
            stalled = "no peers" if not self._connecting else "connecting"
        return TorrentStatus(
            info_hash=m.info_hash_hex,
            name=m.name,
            state=self.state,
            total_size=total,
            verified=verified,
            num_pieces=self.num_pieces,
            piece_length=pl,
            down_rate=down_rate,
            up_rate=up_rate,
            downloaded=self.downloaded,
            uploaded=self.uploaded,
            peers=tuple(peers),
            trackers=trackers,
            piece_map=picker.piece_map(cells) if picker is not None else "",
            availability=picker.availability_map(cells) if picker is not None else (),
            seeds=seeds,
            dht_nodes=self.session.dht.node_count() if self.session.dht is not None else None,
            error=self.error,
            stalled_reason=stalled,
            eta=eta,
            started_at=self.started_at,
            extra={
                "wasted": self.wasted,
                "hash_failures": self.hash_failures,
                "lost_pieces": self.lost_pieces,
                "banned": len(self.banned),
                "check_progress": self.check_progress,
            },
        )

    # ------------------------------------------------------------ stream & stall hooks (issue 11)

    def set_sequential(self, enabled: bool, window_bytes: int, *, adaptive: bool = True) -> None:
        """Fetch in file order within ``window_bytes`` of the first missing byte.

        ``adaptive``: the window grows to cover what the download rate keeps in
        flight (REQUEST_QUEUE_TIME s of data), or fast links would fill the
        pipeline with rarest-first pieces past a small window and the in-order
        prefix would lag (bench_sequential: 15 % vs 50 % of the file in order at
        half-time, same rate).
        """
        self._seq_base = window_bytes if enabled and adaptive else 0
        self._seq_window = window_bytes
        if self.picker is not None:
            self.picker.set_sequential(enabled, window_bytes)

    def _adapt_window(self, now: float) -> None:
        if not self._seq_base or self.picker is None:
            return
        want = max(self._seq_base, int(self.down.rate(now) * REQUEST_QUEUE_TIME))
        if abs(want - self._seq_window) * 4 > self._seq_window:  # 25 % change: re-set
            self._seq_window = want
            self.picker.set_sequential(True, want)

    def set_piece_priority(self, index: int, prio: int) -> None:
        """Raise or lower one piece; interest and requests follow at once."""
        self.set_piece_priorities((index,), prio)

    def set_piece_priorities(self, indices: Iterable[int], prio: int) -> None:
        """``prio`` for each missing piece of ``indices``; then one interest/refill pass over peers."""
        picker = self.picker
        if picker is None:
            return
        changed = False
        for i in indices:
            if not self.have[i] and picker.priority(i) != prio:
                picker.set_priority(i, prio)
                changed = True
        if changed and not self._stopped:
            for p in list(self.peers):
                if p.have is not None:
                    self._update_interest(p)

    def _check_stall(self, now: float) -> None:
        """Name why nothing verifies (swarm.core.stall); emit ``stalled`` when the reason changes.

        Payload arriving counts as progress too (a huge piece from a slow peer is
        not a stall); it is sampled here, once a tick, not on the block path.
        """
        if self.downloaded != self._stall_bytes:
            self._stall_bytes = self.downloaded
            self._last_progress = now
        if self.state not in ("downloading", "metadata") or now - self._last_progress < self.stall_after:
            if self.stalled_reason is not None and self.state != "downloading":
                self.stalled_reason = None
            return
        reason = diagnose(self._stall_facts(), now)
        if reason != self.stalled_reason:
            self.stalled_reason = reason
            if reason is not None:
                log.info("%s: stalled: %s", self.meta.name, reason)
                self._emit("stalled", reason=reason)

    def _stall_facts(self) -> StallFacts:
        trackers: tuple[TrackerFact, ...] = ()
        if self.trackers is not None:
            with contextlib.suppress(Exception):
                trackers = tuple(
                    TrackerFact(t.url, t.state == "error", t.last_error) for t in self.trackers.status()
                )
        dht = getattr(self.session, "dht", None)
        dht_nodes: int | None = None
        if dht is not None:
            with contextlib.suppress(Exception):
                dht_nodes = int(dht.node_count())
        picker = self.picker
        useful = choking = 0
        for p in self.peers:
            if picker is not None and p.have is not None and picker.is_interesting(p):
                useful += 1
                if p.peer_choking and not p.allowed_fast:
                    choking += 1
        missing = unavailable = 0
        files: list[str] = []
        if picker is not None:
            have = self.have
            hole = bytearray(self.num_pieces)
            for i in self.wanted:
                if not have[i]:
                    missing += 1
                    if picker.availability(i) == 0:
                        unavailable += 1
                        hole[i] = 1
            if unavailable:
                pl = self.meta.piece_length
                for f in self.meta.files:
                    if f.pad or f.length == 0:
                        continue
                    first, last = f.offset // pl, (f.offset + f.length - 1) // pl
                    if any(hole[first : last + 1]):
                        files.append("/".join(f.path))
        return StallFacts(
            state=self.state,
            last_progress=self._last_progress,
            after=self.stall_after,
            trackers=trackers,
            dht_enabled=dht is not None,
            dht_nodes=dht_nodes,
            known_peers=len(self._known),
            connecting=len(self._connecting),
            connected=len(self.peers),
            connect_errors=tuple(self._connect_errors),
            choking_us=choking,
            useful_peers=useful,
            missing_pieces=missing,
            unavailable_pieces=unavailable,
            unavailable_files=tuple(files),
        )


def _connect_error(exc: BaseException) -> str:
    """A short, countable description: "connection refused", "timeout"."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__
