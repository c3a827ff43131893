"""Running the tracker: embedded (``swarm seed --with-tracker``) or standalone.

``start_tracker`` is the one entry point both use, so the embedded tracker is
the same code the standalone one runs. ``serve`` adds what only a standalone
process needs: signals, the periodic terminal line and ``--workers``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from swarm.core.announce import UdpConnectionIds
from tracker import fastlane
from tracker.app import COUNTERS_KEY, TRACKER_KEY, Tracker, TrackerConfig, make_app
from tracker.fastlane import ConnectionGate, FastLane
from tracker.store import MemoryStore, Store, StoreUnavailable, open_store
from tracker.udp import UdpFront, start_udp, udp_socket

log = logging.getLogger("swarm.tracker")


def lan_address() -> str:
    """This machine's LAN address, found without sending a packet.

    ``connect()`` on a UDP socket only picks a route and a source address; the
    destination (TEST-NET-1, never routed) is not contacted.
    """
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))
            addr = str(s.getsockname()[0])
            if addr and addr != "0.0.0.0":
                return addr
    except OSError:
        pass
    return "127.0.0.1"


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0", "::"):
        host = lan_address()
    try:
        if isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address):
            return f"[{host}]"
    except ValueError:
        pass
    return host


class LaneSite(web.BaseSite):
    """aiohttp's TCP site with ``FastLane`` in front of its request handler (or, with
    ``fast_lane`` off, aiohttp alone), every connection counted by ``gate``."""

    def __init__(
        self,
        runner: web.AppRunner,
        tracker: Tracker,
        host: str | None = None,
        port: int = 0,
        *,
        sock: socket.socket | None = None,
        reuse_port: bool = False,
        backlog: int = 1024,
        gate: ConnectionGate | None = None,
        fast_lane: bool = True,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self.tracker, self.host, self.port = tracker, host, port
        self.sock, self.reuse_port = sock, reuse_port
        self.gate = gate or ConnectionGate()
        self.fast_lane = fast_lane
        self.tasks: set[asyncio.Task[None]] = set()  # announces waiting on the store

    @property
    def name(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        await super().start()
        handover, tracker, tasks, gate = self._runner.server, self.tracker, self.tasks, self.gate
        assert handover is not None

        def lane() -> asyncio.Protocol:
            return FastLane(tracker, handover, tasks, gate)

        factory = lane if self.fast_lane else gate.gated(handover)
        loop = asyncio.get_running_loop()
        if self.sock is not None:
            self._server = await loop.create_server(factory, sock=self.sock, backlog=self._backlog)
        else:
            self._server = await loop.create_server(
                factory,
                self.host,
                self.port,
                backlog=self._backlog,
                reuse_port=self.reuse_port or None,
            )

    async def stop(self) -> None:
        await super().stop()
        for task in list(self.tasks):
            task.cancel()


class QuietBadRequests(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server log, with a malformed request (an oversized line, odd bytes)
    as one info line instead of an error with a traceback: it is the client's fault
    and any scanner can send them."""

    def __init__(self) -> None:
        super().__init__(logging.getLogger("aiohttp.server"), {})

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kw: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):
            remote = args[0] if args else "?"
            log.info(
                "event=bad_request remote=%s status=%s error=%s",
                remote,
                exc_info.code,
                type(exc_info).__name__,
            )
            return
        super().exception(msg, *args, exc_info=exc_info, **kw)


@dataclass
class RunningTracker:
    runner: web.AppRunner
    app: web.Application
    host: str
    port: int
    url: str  # the announce URL to put in a .torrent
    udp_port: int | None = None  # None: no UDP (``--no-udp``)
    udp_url: str | None = None  # udp://host:port/announce
    udp_transport: asyncio.DatagramTransport | None = field(default=None, repr=False)
    udp_front: UdpFront | None = field(default=None, repr=False)
    _closed: bool = field(default=False, repr=False)

    @property
    def base_url(self) -> str:
        return self.url.rsplit("/", 1)[0]

    @property
    def urls(self) -> list[str]:
        """Every announce URL, HTTP first (see ``swarm.cli.seed`` for the order)."""
        return [self.url] + ([self.udp_url] if self.udp_url else [])

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self.udp_transport is not None:
                self.udp_transport.close()
            await self.runner.cleanup()
            log.info("event=stopped port=%d", self.port)


async def start_tracker(
    host: str = "0.0.0.0",
    port: int = 6969,
    *,
    store: Store | str | None = None,
    interval: int = 1800,
    min_interval: int | None = None,
    allow: frozenset[bytes] | None = None,
    trust_ip: bool = False,
    scrape_all: bool = True,
    announce_host: str | None = None,
    sock: socket.socket | None = None,
    reuse_port: bool = False,
    expire_every: float | None = None,
    fast_lane: bool = True,
    max_conns_per_ip: int = fastlane.MAX_CONNS_PER_IP,
    max_swarms_per_ip: int | None = None,
    max_peers_per_ip: int | None = None,
    udp: bool = True,
    udp_port: int | None = None,
    udp_sock: socket.socket | None = None,
    udp_secret: bytes | None = None,
) -> RunningTracker:
    """Start the HTTP tracker on ``host:port`` (0 = a free port) in the running loop.

    ``store`` defaults to a ``MemoryStore``; peers expire after two intervals.
    ``announce_host`` names the host in ``.url`` (default: the LAN address when
    bound to all interfaces). ``fast_lane`` answers plain announces and scrapes
    without aiohttp's per-request machinery (``tracker.fastlane``); off, every
    request goes through aiohttp. ``max_conns_per_ip`` caps one address's open
    connections (0 = no cap); ``max_swarms_per_ip`` / ``max_peers_per_ip`` the
    swarms and peer entries one address may add to a memory store (its defaults
    when ``None``). Idle connections close after ``fastlane.IDLE_TIMEOUT``.

    ``udp`` also answers BEP 15 on ``udp_port`` (default: the HTTP port's number),
    or on ``udp_sock`` (``--workers``); ``udp_secret`` keys its connection ids
    (random when ``None``; workers share one so each accepts the others' ids).
    """
    peer_ttl = 2.0 * interval
    if store is None or isinstance(store, str):
        store = open_store(
            store or "memory:",
            peer_ttl=peer_ttl,
            max_swarms_per_source=max_swarms_per_ip,
            max_peers_per_source=max_peers_per_ip,
        )
    config = TrackerConfig(
        interval=interval,
        min_interval=min_interval,
        allow=allow,
        trust_ip=trust_ip,
        scrape_all=scrape_all,
        expire_every=expire_every,
    )
    if udp and port == 0 and sock is None and udp_sock is None and udp_port is None:
        try:  # "any free port": one whose number is free for UDP too
            sock, udp_sock = _port_pair(host)
        except OSError as exc:
            from swarm.errors import SwarmError

            raise SwarmError(f"tracker cannot listen on {host}: {exc.strerror or exc}") from None
    app = make_app(store, config)
    runner = web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        # idle, and a head not complete in time (aiohttp applies it from the connection's start)
        keepalive_timeout=fastlane.IDLE_TIMEOUT,
        logger=QuietBadRequests(),
    )
    await runner.setup()
    try:
        site = LaneSite(
            runner,
            app[TRACKER_KEY],
            host,
            port,
            sock=sock,
            reuse_port=reuse_port,
            gate=fastlane.ConnectionGate(max_conns_per_ip, app[TRACKER_KEY].metrics.connections),
            fast_lane=fast_lane,
        )
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        from swarm.errors import SwarmError

        raise SwarmError(f"tracker cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    addresses = runner.addresses
    bound = int(addresses[0][1]) if addresses else port
    bound_host = host if sock is None else str(sock.getsockname()[0])
    url_host = _url_host(announce_host or bound_host)
    url = f"http://{url_host}:{bound}/announce"
    log.info("event=listening host=%s port=%d url=%s", bound_host, bound, url)
    running = RunningTracker(runner, app, bound_host, bound, url)
    if udp:
        try:
            if udp_sock is None:
                udp_sock = udp_socket(host, bound if udp_port is None else udp_port)
            ids = UdpConnectionIds(udp_secret or os.urandom(32))
            running.udp_transport, running.udp_front = await start_udp(
                app[TRACKER_KEY], ids, udp_sock
            )
        except OSError as exc:
            await runner.cleanup()
            from swarm.errors import SwarmError

            where = f"{host}:{bound if udp_port is None else udp_port}"
            raise SwarmError(
                f"tracker cannot listen on UDP {where}: {exc.strerror or exc}"
            ) from None
        running.udp_port = int(udp_sock.getsockname()[1])
        running.udp_url = f"udp://{url_host}:{running.udp_port}/announce"
        log.info("event=listening_udp port=%d url=%s", running.udp_port, running.udp_url)
    return running


def reuse_port_socket(host: str, port: int, *, reuse_port: bool = True) -> socket.socket:
    """A listening TCP socket with SO_REUSEPORT, for several workers on one port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind((host or "0.0.0.0", port))
        s.listen(1024)
        s.setblocking(False)
    except OSError:
        s.close()
        raise
    return s


def _port_pair(host: str, attempts: int = 50) -> tuple[socket.socket, socket.socket]:
    """A listening TCP socket on a free port and a UDP socket on the same number: the
    kernel picks the TCP port, whose UDP twin may be taken (by a DHT, say), so retry."""
    last = OSError(f"no port free for both TCP and UDP in {attempts} tries")
    for _ in range(attempts):
        tcp = reuse_port_socket(host, 0, reuse_port=False)
        try:
            return tcp, udp_socket(host, tcp.getsockname()[1])
        except OSError as exc:
            tcp.close()
            last = exc
    raise last


async def _ticker(tracker: RunningTracker, store: Store, every: float = 5.0) -> None:
    """A compact status line on a terminal: announces/s, swarms, peers."""
    counters = tracker.app[COUNTERS_KEY]
    last_n, last_t = counters.announces, time.monotonic()
    while True:
        await asyncio.sleep(every)
        now = time.monotonic()
        rate = (counters.announces - last_n) / max(now - last_t, 1e-6)
        last_n, last_t = counters.announces, now
        try:
            st = await store.stats()
            tail = f"swarms {st['swarms']}  peers {st['peers']} ({st['seeders']} seeding)"
        except StoreUnavailable:
            tail = "store unavailable"
        sys.stderr.write(f"\r\x1b[Ktracker: {rate:7.1f} announces/s  {tail}")
        sys.stderr.flush()


async def serve(
    host: str,
    port: int,
    *,
    quiet: bool = False,
    sock: socket.socket | None = None,
    worker: int = 0,
    **options: Any,
) -> int:
    """Run until SIGINT/SIGTERM; print the bound URL; return the exit code."""
    store_opt = options.pop("store", None)
    interval = int(options.get("interval", 1800))
    store: Store = (
        open_store(
            store_opt,
            peer_ttl=2.0 * interval,
            max_swarms_per_source=options.pop("max_swarms_per_ip", None),
            max_peers_per_source=options.pop("max_peers_per_ip", None),
        )
        if isinstance(store_opt, str)
        else store_opt or MemoryStore(peer_ttl=2.0 * interval)
    )
    ping = getattr(store, "ping", None)
    if ping is not None and worker == 0:
        try:
            await ping()
        except StoreUnavailable as exc:
            log.warning(
                "event=store_unavailable store=%s detail=%r: answering 'tracker storage "
                "unavailable' until it is back",
                store_opt,
                exc.detail,
            )
    tracker = await start_tracker(host, port, store=store, sock=sock, **options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before printing: a reader may signal at once
        loop.add_signal_handler(sig, stop.set)
    if not quiet and worker == 0:
        print(f"tracker listening on {tracker.host}:{tracker.port}", flush=True)
        print(f"announce URL: {tracker.url}", flush=True)
        if tracker.udp_url:
            print(f"UDP announce URL: {tracker.udp_url}", flush=True)
    ticker = None
    if not quiet and worker == 0 and sys.stderr.isatty():
        ticker = asyncio.create_task(_ticker(tracker, store))
    try:
        await stop.wait()
    finally:
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            sys.stderr.write("\n")
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await tracker.close()
    log.info("event=shutdown pid=%d", os.getpid())
    return 0
