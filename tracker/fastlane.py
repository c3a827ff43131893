"""A fast lane in front of aiohttp for the one request a tracker lives on.

Announces are tiny, fixed-shape ``GET`` requests, each on a new connection, and
aiohttp's per-connection machinery (a request handler, a task, a request and a
response object, socket options) costs about three times the announce itself
(see tracker/README.md). This protocol answers the plain case directly: a
request head that arrives whole in the first read, ``GET /announce`` or
``GET /scrape``, HTTP/1.0 or 1.1, no body. Anything else (another path or
method, a split or oversized head, a body, an upgrade, odd bytes, the second
request of a kept-alive connection) is handed, with every byte read so far,
to aiohttp's own handler on the same transport, which then owns the
connection. So the lane never has to be a complete HTTP server: when in doubt
it steps aside, and aiohttp gives the answer or the error it always gave.

The answer itself comes from ``tracker.app.Tracker``, the object behind the
aiohttp handlers, so both paths answer byte for byte the same.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from functools import partial
from typing import Any

from aiohttp.http import SERVER_SOFTWARE
from aiohttp.http_parser import SINGLETON_HEADERS

from tracker.app import BENCODE_TYPE, Tracker

log = logging.getLogger("swarm.tracker")

#: A longer head is not an announce; aiohttp refuses heads over 8190-byte lines.
MAX_HEAD = 4096

#: A connection that sends nothing is closed after this long; aiohttp's handler gets the
#: same as its keepalive_timeout, which it also applies to a head not yet complete (see
#: ``tracker.server``). An announce takes milliseconds: idle sockets are only a cost.
IDLE_TIMEOUT = 30.0

#: Open connections one IP address may hold (``--max-conns-per-ip``): generous, since a
#: NAT'd LAN or a load test (wrk -c50) comes from one address; 0 = no cap.
MAX_CONNS_PER_IP = 256

_PATHS = (b"/announce", b"/scrape")
#: Headers that mean "not the plain case": a body, a protocol switch, a 100-continue.
_STEP_ASIDE = frozenset({b"content-length", b"transfer-encoding", b"upgrade", b"expect"})
#: Bytes allowed in the request target here (visible ASCII but ``#``); aiohttp judges the rest.
_TARGET_OK = bytes(range(0x21, 0x7F)).replace(b"#", b"")
_DELETE_ALL = bytes(range(256))
#: Bytes of a header name (RFC 9110 token), as aiohttp's parser takes them.
_TOKEN = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
#: Bytes allowed anywhere in a head: no control byte but HTAB (CR and LF only as line ends).
_HEAD_OK = b"\t\r\n" + bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100))
#: Headers aiohttp refuses to see twice: taken from its parser, so the lane follows it.
_SINGLETON = frozenset(str(h).lower().encode() for h in SINGLETON_HEADERS)


class _Clock:
    """The ``Date`` header, formatted at most once a second."""

    def __init__(self) -> None:
        self.second = -1
        self.value = b""

    def date(self) -> bytes:
        now = int(time.time())
        if now != self.second:
            self.second = now
            self.value = formatdate(now, usegmt=True).encode()
        return self.value


_clock = _Clock()
_SERVER = SERVER_SOFTWARE.encode()
_CONTENT_TYPE = BENCODE_TYPE.encode()


def parse_head(data: bytes) -> tuple[bytes, bytes, bytes, bool] | None:
    """``(path, raw query, version, keep_alive)`` of a plain ``GET`` head, else ``None``.

    Pure and strict: anything unusual is ``None`` (the caller then hands the bytes
    to aiohttp, which answers or refuses as it always did).
    """
    end = data.find(b"\r\n\r\n")
    if end < 0 or end > MAX_HEAD:
        return None
    head = data[:end]
    lines = head.split(b"\r\n")
    if (
        head.translate(None, _HEAD_OK)
        or head.count(b"\n") >= len(lines)
        or head.count(b"\r") >= len(lines)
    ):
        return None  # a control byte, or a lone CR or LF aiohttp would refuse (or split on)
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[0] != b"GET":
        return None
    target, version = parts[1], parts[2]
    if version == b"HTTP/1.1":
        keep_alive = True
    elif version == b"HTTP/1.0":
        keep_alive = False
    else:
        return None
    if not target or target.translate(_DELETE_ALL, _TARGET_OK):
        return None  # empty, or a byte outside visible ASCII, or a fragment
    path, _, query = target.partition(b"?")
    if path not in _PATHS:
        return None
    seen: set[bytes] = set()
    tokens: set[bytes] = set()
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name.translate(_DELETE_ALL, _TOKEN):
            return None  # folded, malformed or odd header: aiohttp's call
        name = name.lower()
        if name in _STEP_ASIDE:
            return None
        if name in _SINGLETON:
            if name in seen:
                return None  # aiohttp answers 400
            seen.add(name)
        elif name == b"connection":
            tokens.update(t.strip(b" \t").lower() for t in value.split(b","))
    if keep_alive and b"host" not in seen:
        return None  # HTTP/1.1 without Host: aiohttp answers 400
    if b"close" in tokens:
        if b"keep-alive" in tokens:
            return None  # aiohttp's parsers disagree on this one: let it decide
        keep_alive = False
    elif b"keep-alive" in tokens:
        keep_alive = True
    return path, query, version, keep_alive


def render(version: bytes, body: bytes, keep_alive: bool) -> bytes:
    """The response, with the headers aiohttp sends for the same answer."""
    if version == b"HTTP/1.1":
        connection = b"" if keep_alive else b"Connection: close\r\n"
    else:
        connection = b"Connection: keep-alive\r\n" if keep_alive else b""
    return b"".join(
        (
            version,
            b" 200 OK\r\nContent-Type: ",
            _CONTENT_TYPE,
            b"\r\nContent-Length: ",
            str(len(body)).encode(),
            b"\r\nDate: ",
            _clock.date(),
            b"\r\nServer: ",
            _SERVER,
            b"\r\n",
            connection,
            b"\r\n",
            body,
        )
    )


class ConnectionGate:
    """Open connections per client IP, capped, so one host cannot hold every socket."""

    __slots__ = ("per_ip", "open", "refused_logged", "gauge")

    def __init__(self, per_ip: int = MAX_CONNS_PER_IP, gauge: Any = None) -> None:
        self.per_ip = per_ip
        self.open: dict[str, int] = {}
        self.refused_logged = 0.0
        self.gauge = gauge  # a prometheus Gauge of open connections, if any

    def admit(self, transport: asyncio.BaseTransport) -> str | None:
        """The client's IP, now counted; ``None`` (and the connection aborted) over the cap."""
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if peer else ""
        n = self.open.get(ip, 0)
        if self.per_ip and n >= self.per_ip:
            now = time.monotonic()
            if now - self.refused_logged > 60:
                self.refused_logged = now
                log.warning("event=connection_refused ip=%s open=%d (per-IP cap)", ip, n)
            transport.close()  # nothing is written yet: it closes at once
            return None
        self.open[ip] = n + 1
        if self.gauge is not None:
            self.gauge.inc()
        return ip

    def release(self, ip: str) -> None:
        n = self.open.pop(ip, 0) - 1
        if n > 0:
            self.open[ip] = n
        if self.gauge is not None:
            self.gauge.dec()

    def gated(self, factory: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """A protocol factory (aiohttp's) whose connections count against the cap."""

        def make() -> asyncio.Protocol:
            return _Counted(factory(), self, None)

        return make


class _Counted(asyncio.Protocol):
    """Another protocol (aiohttp's handler) that gives its gate slot back when it ends."""

    __slots__ = ("inner", "gate", "ip")

    def __init__(self, inner: asyncio.Protocol, gate: ConnectionGate, ip: str | None) -> None:
        self.inner, self.gate, self.ip = inner, gate, ip

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.ip is None:  # a new connection, not one handed over already counted
            self.ip = self.gate.admit(transport)
            if self.ip is None:
                return
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.ip is None:
            return  # refused: the inner protocol never saw it
        self.gate.release(self.ip)
        self.inner.connection_lost(exc)


class FastLane(asyncio.Protocol):
    """One connection: answer the plain first request, or hand the connection over."""

    __slots__ = (
        "tracker",
        "handover",
        "transport",
        "buffer",
        "pending",
        "tasks",
        "idle",
        "gate",
        "ip",
    )

    def __init__(
        self,
        tracker: Tracker,
        handover: Callable[[], asyncio.Protocol],
        tasks: set[asyncio.Task[None]],
        gate: ConnectionGate,
    ) -> None:
        self.tracker = tracker
        self.handover = handover  # aiohttp's protocol factory (``web.Server``)
        self.tasks = tasks
        self.gate = gate
        self.ip: str | None = None  # counted by the gate until the connection ends
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.pending = False
        self.idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.ip = self.gate.admit(transport)
        if self.ip is None:
            return
        self.transport = transport  # type: ignore[assignment]
        self.idle = asyncio.get_running_loop().call_later(IDLE_TIMEOUT, self._close_idle)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.ip is not None:
            self.gate.release(self.ip)
            self.ip = None
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None

    def _close_idle(self) -> None:
        self.idle = None
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None
        if self.pending:  # more bytes while the store answers: keep them for aiohttp
            self.buffer += data
            if len(self.buffer) > MAX_HEAD and self.transport is not None:
                self.transport.pause_reading()
            return
        head = parse_head(data)
        if head is None:
            self._hand_over(data)
            return
        path, query, version, keep_alive = head
        if keep_alive:  # whatever follows the head (pipelined requests) is aiohttp's
            self.buffer = data[data.index(b"\r\n\r\n") + 4 :]
        tracker = self.tracker
        if path == b"/announce":
            remote = self.ip or None  # the gate read it from the socket already
            body = tracker.announce_nowait(query, remote)
            if body is not None:
                self._answer(version, body, keep_alive)
                return
            answer: Callable[[], Awaitable[bytes]] = partial(tracker.announce, query, remote)
        else:
            answer = partial(tracker.scrape, query)
        self.pending = True
        task = asyncio.get_running_loop().create_task(self._later(answer, version, keep_alive))
        self.tasks.add(task)
        task.add_done_callback(self._done)

    async def _later(
        self, answer: Callable[[], Awaitable[bytes]], version: bytes, keep_alive: bool
    ) -> None:
        try:
            body = await answer()
        finally:
            self.pending = False
        self._answer(version, body, keep_alive)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if task.cancelled() and self.transport is not None:
            # the tracker is closing (LaneSite.stop): the client hears so, not silence
            self.transport.close()

    def _answer(self, version: bytes, body: bytes, keep_alive: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(render(version, body, keep_alive))
        if keep_alive:
            rest, self.buffer = self.buffer, b""
            self._hand_over(rest)
        else:
            transport.close()

    def _hand_over(self, data: bytes) -> None:
        """aiohttp takes the connection, as if it had read ``data`` itself."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        protocol: asyncio.Protocol = _Counted(self.handover(), self.gate, self.ip)
        self.ip = None  # the slot goes with the connection
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        transport.resume_reading()  # paused above, or by nothing: a no-op then
        if data:
            protocol.data_received(data)
        self.transport = None
