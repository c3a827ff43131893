"""``swarm get --http PORT``: the torrent's files over HTTP while they download.

``GET /`` lists the files (HTML with links); ``GET /<path>`` and ``HEAD``
serve one file with single-range support (206 + Content-Range,
Accept-Ranges, 416 for an unsatisfiable range). A read waits until the
pieces under it are verified and raises their priority first, so a video
player can seek anywhere before the download is done. Only the files being
downloaded are served, looked up by name in the torrent (never a filesystem
path built from the URL). Bound to 127.0.0.1 unless told otherwise; a request whose
``Host`` is not that address or ``localhost`` is refused (421), against DNS rebinding.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import ipaddress
import logging
import mimetypes
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

from aiohttp import web
from aiohttp.typedefs import Handler

from swarm.errors import StorageError, SwarmError
from swarm.stream import SOON, URGENT, pieces_of

if TYPE_CHECKING:
    from swarm.core.metainfo import FileEntry
    from swarm.session import TorrentHandle

log = logging.getLogger("swarm.httpstream")

#: Bytes per read while streaming a response (cut at piece boundaries too).
CHUNK = 256 * 1024
#: Bytes past the current read whose pieces get ``SOON`` priority.
READ_AHEAD = 4 * 1024 * 1024

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$", re.ASCII)  # ASCII digits only (RFC 9110)


class BadRange(Exception):
    """The Range header cannot be satisfied (416)."""


@dataclass(frozen=True, slots=True)
class Served:
    url_path: str  # without the leading "/"
    entry: FileEntry


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end inclusive) for one ``bytes=`` range; None: serve the whole file.

    Syntax we do not understand (and multiple ranges) is ignored, as RFC 9110
    allows; a well-formed range that misses the file raises BadRange.
    """
    if not header:
        return None
    m = _RANGE.match(header.strip().replace(" ", ""))
    if m is None:
        return None
    a, b = m.group(1), m.group(2)
    if not a and not b:
        return None
    if not a:  # suffix: the last N bytes
        n = _position(b)
        if n == 0 or size == 0:
            raise BadRange(header)
        return max(0, size - n), size - 1
    start = _position(a)
    end = _position(b) if b else size - 1
    if b and end < start:
        return None  # invalid: ignore
    if start >= size:
        raise BadRange(header)
    return start, min(end, size - 1)


#: Digits past this are a position beyond any file (a torrent holds under 2**62 bytes).
_MAX_DIGITS = 19


def _position(digits: str) -> int:
    """A byte position; thousands of digits (int() refuses them) mean "past any end"."""
    digits = digits.lstrip("0") or "0"  # int() counts leading zeros against its digit limit too
    return int(digits) if len(digits) <= _MAX_DIGITS else 10**_MAX_DIGITS


def host_allowed(host_header: str | None, bound: str, port: int) -> bool:
    """DNS rebinding guard: the ``Host`` a browser sends is the name in the page's URL, so
    only our bound address or ``localhost`` (with no port or our port) may read the files.
    Bound to every interface, any IP address literal is accepted (a rebinding attack needs
    a DNS name). No Host at all (HTTP/1.0 tools) is allowed: browsers always send one."""
    if host_header is None:
        return True
    name, sep, port_text = host_header.strip().lower().rpartition(":")
    if not sep or name.endswith(":") or (not name.startswith("[") and ":" in name):
        name, port_text = host_header.strip().lower(), ""  # no port (or a bare IPv6 literal)
    if port_text and port_text != str(port):
        return False
    name = name.removeprefix("[").removesuffix("]").removesuffix(".")
    if name == "localhost":
        return True
    try:
        addr = ipaddress.ip_address(name)
        mine = ipaddress.ip_address(bound)
    except ValueError:
        return False
    return addr == mine or mine.is_unspecified


class StreamServer:
    """The aiohttp app and its runner for one torrent."""

    def __init__(self, handle: TorrentHandle, host: str = "127.0.0.1", port: int = 0) -> None:
        self.handle = handle
        self.host = host
        self.port = port
        meta = handle.metainfo
        self.files: dict[str, Served] = {}
        for i in handle.wanted_files():
            f = meta.files[i]
            full = "/".join(f.path)
            self.files[full] = Served(full, f)
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._check_host])
        app.router.add_get("/", self.index)
        app.router.add_get("/{path:.+}", self.serve)
        return app

    async def start(self) -> int:
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise SwarmError(
                f"--http: cannot listen on {self.host}:{self.port}: {exc.strerror or exc}"
            ) from exc
        addresses = self._runner.addresses  # (host, port, ...) of each bound socket
        if addresses:
            self.port = int(addresses[0][1])
        log.info("HTTP stream on http://%s:%d/", self.host, self.port)
        return self.port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    async def close(self) -> None:
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._runner.cleanup(), 5)
            self._runner = None

    # -- handlers ------------------------------------------------------------

    @web.middleware
    async def _check_host(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not host_allowed(request.headers.get("Host"), self.host, self.port):
            return web.Response(status=421, text="this server answers only to its own address or localhost\n")
        return await handler(request)

    def _file_progress(self, f: FileEntry) -> float:
        pl = self.handle.metainfo.piece_length
        idx = pieces_of(f.offset, f.length, pl)
        if not idx:
            return 1.0
        return sum(1 for i in idx if self.handle.have_piece(i)) / len(idx)

    async def index(self, request: web.Request) -> web.Response:
        rows = []
        for s in self.files.values():
            href = "/" + quote(s.url_path)
            rows.append(
                f'<li><a href="{html.escape(href)}">{html.escape(s.url_path)}</a> '
                f"{s.entry.length} bytes, {self._file_progress(s.entry) * 100:.0f}% verified</li>"
            )
        name = html.escape(self.handle.name)
        body = (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{name}</title></head>"
            f"<body><h1>{name}</h1><ul>{''.join(rows)}</ul></body></html>"
        )
        return web.Response(text=body, content_type="text/html")

    def _lookup(self, path: str) -> Served | None:
        s = self.files.get(path)
        if s is None and self.handle.metainfo.multi_file:
            s = self.files.get(f"{self.handle.name}/{path}")  # the path inside the torrent
        return s

    async def serve(self, request: web.Request) -> web.StreamResponse:
        served = self._lookup(request.match_info["path"])
        if served is None:
            raise web.HTTPNotFound(text="no such file in this torrent\n")
        f = served.entry
        size = f.length
        ctype = mimetypes.guess_type(served.url_path)[0] or "application/octet-stream"
        try:
            rng = parse_range(request.headers.get("Range"), size)
        except BadRange:
            return web.Response(
                status=416, headers={"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes"}
            )
        if rng is None:
            start, end, status = 0, size - 1, 200
        else:
            (start, end), status = rng, 206
        length = end - start + 1 if size else 0
        resp = web.StreamResponse(status=status)
        resp.content_type = ctype
        resp.content_length = length
        resp.headers["Accept-Ranges"] = "bytes"
        if status == 206:
            resp.headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        if request.method == "HEAD":
            await resp.prepare(request)
            return resp
        # Fetch the first bytes urgently before answering, so a stalled torrent
        # is visible as a slow response and errors can still become a 503.
        try:
            first = await self._read(
                f.offset + start, min(length, self._chunk_len(f.offset + start, length))
            )
        except (StorageError, OSError) as exc:
            raise web.HTTPServiceUnavailable(text=f"{exc}\n") from exc
        await resp.prepare(request)
        pos = f.offset + start
        stop = pos + length
        data = first
        try:
            while True:
                await resp.write(data)
                pos += len(data)
                if pos >= stop:
                    break
                data = await self._read(pos, self._chunk_len(pos, stop - pos))
            await resp.write_eof()
        except (ConnectionResetError, StorageError, OSError) as exc:
            log.info("HTTP %s: stream ended early: %s", served.url_path, exc)
        return resp

    def _chunk_len(self, pos: int, left: int) -> int:
        if left <= 0:
            return 0
        pl = self.handle.metainfo.piece_length
        n = min(left, CHUNK)
        boundary = ((pos + n) // pl) * pl
        if n < left and boundary > pos:
            n = boundary - pos
        return n

    async def _read(self, pos: int, n: int) -> bytes:
        if n <= 0:
            return b""
        pl = self.handle.metainfo.piece_length
        total = self.handle.metainfo.total_length
        ahead_end = min(total, pos + n + READ_AHEAD)
        self.handle.raise_priority(pieces_of(pos + n, ahead_end - pos - n, pl), SOON)
        return await self.handle.read(pos, n, prio=URGENT)
