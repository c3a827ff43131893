"""Tracker clients: HTTP (aiohttp) and UDP (BEP 15), BEP 12 tiers, the re-announce loop.

Wire formats and policy (tier order, backoff, interval bounds) live in
``swarm.core.announce``; this module only moves bytes and keeps time. An
unreachable or failing tracker is a logged warning and a status entry, never
an exception out of ``run()``: a torrent goes on with its other peer sources.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from swarm.core.announce import (
    UDP_CONNECTION_TTL,
    AnnounceResponse,
    ScrapeStats,
    Tiers,
    TrackerFailure,
    build_announce_url,
    build_scrape_url,
    next_interval,
    parse_announce_response,
    parse_scrape_response,
    retry_delay,
    scrape_url_for,
    udp_announce_request,
    udp_connect_request,
    udp_parse_announce,
    udp_parse_connect,
    udp_parse_scrape,
    udp_scrape_request,
    udp_timeout,
    udp_transaction_id,
)
from swarm.errors import ProtocolError, SwarmError, TrackerError
from swarm.status import TrackerStatus

log = logging.getLogger("swarm.trackers")

#: Largest HTTP tracker answer we read.
MAX_HTTP_RESPONSE = 1 << 20


@dataclass
class _Entry:
    url: str
    state: str = "idle"
    last_announce: float | None = None
    next_announce: float | None = None
    last_error: str | None = None
    peers: int = 0
    seeders: int | None = None
    leechers: int | None = None
    tracker_id: bytes | None = None
    started: bool = False  # a "started" was accepted, so a "stopped" is owed
    logged_error: str | None = None  # warn once per distinct failure, not per retry

    def snapshot(self) -> TrackerStatus:
        return TrackerStatus(
            url=self.url,
            state=self.state,
            last_announce=self.last_announce,
            next_announce=self.next_announce,
            last_error=self.last_error,
            peers=self.peers,
            seeders=self.seeders,
            leechers=self.leechers,
        )


class _Datagrams(asyncio.DatagramProtocol):
    """Queues answers for one exchange with one UDP tracker."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=64)
        self.error: Exception | None = None

    def datagram_received(self, data: bytes, addr: object) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        self.error = exc  # e.g. ICMP port unreachable on a connected socket
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(b"")  # wake the waiter: nobody listens there


class UdpTrackerConnection:
    """One BEP 15 tracker: connection-id reuse (60 s), retransmission, tid checks."""

    def __init__(
        self, host: str, port: int, *, base_timeout: float, attempts: int, rng: random.Random
    ) -> None:
        self.host, self.port = host, port
        self.base_timeout, self.attempts, self.rng = base_timeout, attempts, rng
        self.connection_id: int | None = None
        self.connected_at = 0.0
        self.ipv6 = ":" in host  # refined from the socket's family once one is open

    async def _exchange(
        self, build: Callable[[int], bytes], parse: Callable[[bytes, int], object]
    ) -> object:
        loop = asyncio.get_running_loop()
        transport, proto = await loop.create_datagram_endpoint(
            _Datagrams, remote_addr=(self.host, self.port)
        )
        try:
            self.ipv6 = transport.get_extra_info("socket").family == socket.AF_INET6
            last: Exception = TrackerError(f"udp://{self.host}:{self.port}: no answer")
            for attempt in range(self.attempts):
                tid = self.rng.getrandbits(32)
                transport.sendto(build(tid))
                deadline = loop.time() + udp_timeout(attempt, self.base_timeout)
                while True:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        data = await asyncio.wait_for(proto.queue.get(), remaining)
                    except TimeoutError:
                        break
                    if not data and proto.error is not None:
                        raise TrackerError(
                            f"udp://{self.host}:{self.port}: {_describe(proto.error)}"
                        )
                    if udp_transaction_id(data) != tid:
                        continue  # a late answer to an earlier attempt, or noise
                    return parse(data, tid)
            raise last
        finally:
            transport.close()

    async def _connection_id(self) -> int:
        now = time.monotonic()
        if self.connection_id is None or now - self.connected_at >= UDP_CONNECTION_TTL:
            cid = await self._exchange(udp_connect_request, udp_parse_connect)
            assert isinstance(cid, int)
            self.connection_id, self.connected_at = cid, time.monotonic()
        return self.connection_id

    async def announce(self, **fields: object) -> AnnounceResponse:
        cid = await self._connection_id()
        try:
            resp = await self._exchange(
                lambda tid: udp_announce_request(cid, tid, **fields),  # type: ignore[arg-type]
                lambda data, tid: udp_parse_announce(data, tid, ipv6=self.ipv6),
            )
        except TrackerFailure:
            self.connection_id = None  # the id may have been refused; get a fresh one
            raise
        assert isinstance(resp, AnnounceResponse)
        return resp

    async def scrape(self, info_hash: bytes) -> ScrapeStats:
        cid = await self._connection_id()
        out = await self._exchange(
            lambda tid: udp_scrape_request(cid, tid, [info_hash]),
            lambda data, tid: udp_parse_scrape(data, tid, [info_hash]),
        )
        assert isinstance(out, dict)
        return out[info_hash]  # type: ignore[no-any-return]


class TrackerClient:
    """Announces one torrent to its trackers until stopped.

    With ``all_tiers`` (the default, as libtorrent's ``announce_to_all_tiers``)
    each tier is announced to independently; within a tier trackers are tried
    in BEP 12 order and the one that answers moves to the front.
    ``also_hashes``: more info-hashes of the same torrent (a hybrid's
    truncated v2 hash, BEP 52), announced alongside ``info_hash`` to each
    tracker with the same event; their peers are added, their failures only logged.
    """

    def __init__(
        self,
        tiers: list[list[str]],
        info_hash: bytes,
        peer_id: bytes,
        port: int,
        stats: Callable[[], tuple[int, int, int]],
        on_peers: Callable[[list[tuple[str, int]]], None],
        *,
        on_announced: Callable[[], None] | None = None,
        numwant: int = 50,
        key: int | None = None,
        session: aiohttp.ClientSession | None = None,
        all_tiers: bool = True,
        min_interval: float = 60.0,
        retry_base: float = 15.0,
        http_timeout: float = 15.0,
        udp_base_timeout: float = 15.0,
        udp_attempts: int = 3,
        rng: random.Random | None = None,
        also_hashes: Sequence[bytes] = (),
    ) -> None:
        self.rng = rng or random.Random()
        self.tiers = Tiers(tiers, self.rng)
        self.info_hash, self.peer_id, self.port = info_hash, peer_id, port
        self.also_hashes = list(also_hashes)
        self.stats, self.on_peers = stats, on_peers
        self.on_announced = on_announced  # after each announce, answered or failed
        self.numwant = numwant
        self.key = self.rng.getrandbits(32) if key is None else key & 0xFFFFFFFF
        self._session = session
        self._own_session = session is None
        self.all_tiers = all_tiers
        self.min_interval, self.retry_base = min_interval, retry_base
        self.http_timeout = http_timeout
        self.udp_base_timeout, self.udp_attempts = udp_base_timeout, max(1, udp_attempts)
        self.entries = {url: _Entry(url) for url in self.tiers.urls()}
        self._udp: dict[tuple[str, int], UdpTrackerConnection] = {}
        self._wake: list[asyncio.Event] = []
        self._completed = False
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------ public

    async def run(self) -> None:
        """Announce until ``stop()``; returns at once when there are no usable trackers."""
        groups = list(range(len(self.tiers.tiers))) if self.all_tiers else [-1]
        if not self.entries:
            return
        self._wake = [asyncio.Event() for _ in groups]
        self._tasks = [asyncio.create_task(self._group_loop(g, i)) for i, g in enumerate(groups)]
        try:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            for t in self._tasks:
                t.cancel()

    def completed(self) -> None:
        """The download finished: tell the trackers now rather than at the next interval."""
        self._completed = True
        for ev in self._wake:
            ev.set()

    async def stop(self, timeout: float = 2.0) -> None:
        """Send ``stopped`` to every tracker that knows us, waiting at most ``timeout``."""
        self._stopping = True
        for t in self._tasks:
            t.cancel()
        owed = [e.url for e in self.entries.values() if e.started]
        if owed:
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(
                        *(self._announce_once(u, "stopped", quick=True) for u in owed),
                        return_exceptions=True,
                    ),
                    timeout,
                )
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def status(self) -> list[TrackerStatus]:
        return [e.snapshot() for e in self.entries.values()]

    async def scrape(self) -> dict[str, ScrapeStats]:
        """Scrape each tier's preferred tracker; failures are left out (and logged)."""
        out: dict[str, ScrapeStats] = {}
        for tier in self.tiers.tiers:
            for url in tier:
                try:
                    stats = await self._scrape_one(url)
                except (SwarmError, OSError, aiohttp.ClientError, TimeoutError) as exc:
                    log.info("scrape %s failed: %s", url, exc)
                    continue
                if stats is None:
                    continue
                out[url] = stats
                entry = self.entries[url]
                entry.seeders, entry.leechers = stats.complete, stats.incomplete
                break
        return out

    # ------------------------------------------------------------------ loop

    def _candidates(self, group: int) -> list[tuple[int, str]]:
        if group < 0:
            return self.tiers.order()
        return [(group, url) for url in self.tiers.tiers[group]]

    async def _group_loop(self, group: int, slot: int) -> None:
        wake = self._wake[slot]
        failures = 0
        sent_completed = False
        while not self._stopping:
            resp: AnnounceResponse | None = None
            event = ""
            for tier, url in self._candidates(group):
                # each tracker hears "started" first, even one that takes over in a tier
                if not self.entries[url].started:
                    event = "started"
                elif self._completed and not sent_completed:
                    event = "completed"
                else:
                    event = ""
                resp = await self._announce_once(url, event)
                if resp is not None:
                    self.tiers.promote(tier, url)
                    break
            if resp is not None:
                failures = 0
                if event == "completed" or (event == "started" and self._completed):
                    sent_completed = True
                delay = next_interval(resp, self.min_interval)
            else:
                failures += 1
                delay = retry_delay(failures, self.retry_base)
            for _, url in self._candidates(group):
                self.entries[url].next_announce = time.time() + delay
            wake.clear()
            if self._completed and not sent_completed and resp is not None:
                continue  # completed() arrived during the announce
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await asyncio.wait_for(wake.wait(), delay)

    async def _announce_once(
        self, url: str, event: str, *, quick: bool = False
    ) -> AnnounceResponse | None:
        try:
            return await self._announce_entry(url, event, quick)
        finally:
            if self.on_announced is not None:
                self.on_announced()

    async def _announce_entry(self, url: str, event: str, quick: bool) -> AnnounceResponse | None:
        entry = self.entries[url]
        entry.state = "announcing"
        try:
            resp = await self._announce(url, event, quick)
        except asyncio.CancelledError:
            entry.state = "idle"
            raise
        except Exception as exc:  # every failure of one tracker is a status entry
            message = _describe(exc)
            if entry.logged_error != message:
                log.warning("tracker %s: %s", url, message)
            entry.state, entry.last_error, entry.logged_error = "error", message, message
            if event == "stopped":
                entry.started = False
            return None
        entry.state, entry.logged_error = "ok", None
        entry.last_announce = time.time()
        entry.last_error = f"warning: {resp.warning}" if resp.warning else None
        entry.peers = len(resp.peers)
        entry.seeders, entry.leechers = resp.complete, resp.incomplete
        if resp.tracker_id is not None:
            entry.tracker_id = resp.tracker_id
        entry.started = event != "stopped"
        if resp.peers and event != "stopped":
            try:
                self.on_peers(resp.peers)
            except Exception:
                log.exception("on_peers callback failed")
        return resp

    # ------------------------------------------------------------------ transports

    async def _announce(self, url: str, event: str, quick: bool) -> AnnounceResponse:
        resp = await self._announce_hash(url, self.info_hash, event, quick)
        for other in self.also_hashes:
            try:
                more = await self._announce_hash(url, other, event, quick)
            except (SwarmError, OSError, aiohttp.ClientError, TimeoutError) as exc:
                log.info("tracker %s: announce of %s: %s", url, other.hex(), _describe(exc))
                continue
            resp = replace(resp, peers=resp.peers + [p for p in more.peers if p not in resp.peers])
        return resp

    async def _announce_hash(self, url: str, info_hash: bytes, event: str, quick: bool) -> AnnounceResponse:
        uploaded, downloaded, left = self.stats()
        numwant = 0 if event == "stopped" else self.numwant
        scheme = url.split(":", 1)[0].lower()
        if scheme in ("http", "https"):
            full = build_announce_url(
                url, info_hash, self.peer_id, self.port, uploaded, downloaded, left, event,
                numwant=numwant, key=f"{self.key:08x}", tracker_id=self.entries[url].tracker_id,
            )  # fmt: skip
            return parse_announce_response(await self._http_get(full, quick))
        if scheme == "udp":
            conn = self._udp_conn(url, quick)
            return await conn.announce(
                info_hash=info_hash, peer_id=self.peer_id, downloaded=downloaded,
                left=left, uploaded=uploaded, event=event, key=self.key,
                numwant=numwant, port=self.port,
            )  # fmt: skip
        raise TrackerError(f"unsupported tracker scheme {scheme!r}")

    async def _scrape_one(self, url: str) -> ScrapeStats | None:
        scheme = url.split(":", 1)[0].lower()
        if scheme in ("http", "https"):
            base = scrape_url_for(url)
            if base is None:
                return None
            files = parse_scrape_response(
                await self._http_get(build_scrape_url(base, [self.info_hash]), False)
            )
            return files.get(self.info_hash)
        if scheme == "udp":
            return await self._udp_conn(url, False).scrape(self.info_hash)
        return None

    def _udp_conn(self, url: str, quick: bool) -> UdpTrackerConnection:
        parts = urlsplit(url)
        if not parts.hostname or not parts.port:
            raise TrackerError(f"{url}: a UDP tracker URL needs a host and a port")
        key = (parts.hostname, parts.port)
        conn = self._udp.get(key)
        if conn is None:
            conn = self._udp[key] = UdpTrackerConnection(
                parts.hostname, parts.port,
                base_timeout=self.udp_base_timeout, attempts=self.udp_attempts, rng=self.rng,
            )  # fmt: skip
        if quick:  # a "stopped" on the way out: one short try is enough
            quick_conn = UdpTrackerConnection(
                conn.host, conn.port, base_timeout=min(self.udp_base_timeout, 1.0), attempts=1,
                rng=self.rng,
            )  # fmt: skip
            quick_conn.connection_id, quick_conn.connected_at = (
                conn.connection_id,
                conn.connected_at,
            )
            return quick_conn
        return conn

    async def _http_get(self, url: str, quick: bool) -> bytes:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(
            total=min(self.http_timeout, 2.0) if quick else self.http_timeout
        )
        async with self._session.get(
            URL(url, encoded=True), timeout=timeout, allow_redirects=True, max_redirects=5
        ) as resp:
            body = bytearray()
            while len(body) <= MAX_HTTP_RESPONSE:
                chunk = await resp.content.read(65536)
                if not chunk:
                    break
                body += chunk
            if len(body) > MAX_HTTP_RESPONSE:
                raise ProtocolError(f"tracker answer larger than {MAX_HTTP_RESPONSE} bytes")
            if resp.status != 200:
                try:  # some trackers send their failure reason with a 4xx
                    parse_announce_response(bytes(body))
                except TrackerFailure:
                    raise
                except SwarmError:
                    pass
                raise TrackerError(f"HTTP {resp.status} {resp.reason or ''}".strip())
            return bytes(body)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TrackerFailure):
        return f"tracker says: {exc.reason}"
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect: {exc.os_error.strerror or exc.os_error}"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    text = str(exc) or type(exc).__name__
    return text[:300]
