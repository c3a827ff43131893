"""Web seeds (BEP 19): HTTP servers that hold the torrent's files, used alongside peers.

Owns: the ``WebSeed``s of a torrent (one task each, fetching runs of blocks
with HTTP Range requests over one keep-alive aiohttp session) and their
health. A web seed is a picker peer like any other (``picker.pick`` with a
scope from ``core.webseed.web_seed_scope``): its blocks land in the
Downloader's piece buffers and complete pieces go through the same
``PieceCompletion`` path, hash check included. Which URL and Range hold a
run of blocks, and when a failing web seed is retried or dropped, are
``swarm.core.webseed``'s decisions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, cast

from swarm.core.bitfield import Bitfield
from swarm.core.layout import Layout
from swarm.core.picker import Block
from swarm.core.rate import RateMeter
from swarm.core.webseed import (
    Backoff,
    Fetch,
    check_url,
    plan_fetch,
    run_bytes,
    runs,
    web_seed_scope,
)
from swarm.errors import BadInput, ProtocolError
from swarm.status import WebSeedStatus

if TYPE_CHECKING:
    import aiohttp

    from swarm.peer import PeerConnection
    from swarm.torrent import Torrent

log = logging.getLogger("swarm.torrent")

#: Seconds without a byte from the server before the request counts as stalled.
STALL_TIMEOUT = 20.0
#: Connections per web seed host (keep-alive).
CONNECTIONS = 2
#: Bytes read from a web seed's answer at a time (the --max-down bucket is asked per chunk).
CHUNK = 64 * 1024


class WebSeedError(ProtocolError):
    """A web seed answered something other than the bytes asked for."""


class WebSeed:
    """One web seed: a URL, its health and rate, and the blocks asked of it.

    Looks enough like a peer for the code that handles any block sender:
    ``requests`` (what is outstanding), ``send`` (endgame cancels: nothing to
    send, a block no longer needed is simply not used) and ``name``.
    """

    def __init__(self, url: str, backoff: Backoff) -> None:
        self.url = url
        self.backoff = backoff
        self.requests: dict[tuple[int, int], tuple[int, float]] = {}
        self.down = RateMeter()
        self.downloaded = 0
        self.state = "idle"  # idle | fetching | backoff | dropped
        self.last_error: str | None = None

    def name(self) -> str:
        return self.url

    def send(self, data: bytes) -> None:
        return None


class WebSeeds:
    """The torrent's web seeds and the tasks that fetch from them."""

    def __init__(self, torrent: Torrent) -> None:
        self.torrent = torrent
        self.seeds: list[WebSeed] = []
        self._http: aiohttp.ClientSession | None = None
        self._layout: Layout | None = None
        self.started = time.monotonic()
        self._wake = asyncio.Event()
        #: tests shorten these
        self.stall_timeout = STALL_TIMEOUT  # read when the first request is made
        self.backoff_base = 1.0
        self.max_failures = 3

    # ------------------------------------------------------------ life cycle

    def add(self, urls: list[str]) -> None:
        """Start fetching from these URLs (duplicates and bad URLs are skipped, logged)."""
        t = self.torrent
        self.started = time.monotonic()
        known = {ws.url for ws in self.seeds}
        for url in urls:
            if url in known:
                continue
            try:
                check_url(url)
            except BadInput as exc:
                log.warning("%s: %s", t.meta.name, exc)
                continue
            known.add(url)
            ws = WebSeed(url, Backoff(max_failures=self.max_failures, base=self.backoff_base))
            self.seeds.append(ws)
            t.emit("web_seed", action="added", url=url)
            log.info("%s: web seed %s", t.meta.name, url)
            t.spawn(self._run(ws))

    def wake(self) -> None:
        """Something changed (a tick, a piece failed): idle web seeds look for work."""
        self._wake.set()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    def owns(self, sender: object) -> bool:
        return isinstance(sender, WebSeed)

    def hash_failed(self, sender: object) -> None:
        """A piece this web seed served failed the hash check: backed off or dropped."""
        ws = cast(WebSeed, sender)
        if ws.state != "dropped":
            self._failed(ws, "served data that failed the hash check", bad_data=True)

    # ------------------------------------------------------------ fetching

    async def _run(self, ws: WebSeed) -> None:
        # aiohttp only once a web seed runs: its import is ~0.15 s of every start-up
        import aiohttp

        t = self.torrent
        while not t.stopped and not ws.backoff.dropped:
            now = time.monotonic()
            if not ws.backoff.ready(now):
                ws.state = "backoff"
                await asyncio.sleep(ws.backoff.retry_at - now)
                continue
            blocks = self._pick(ws, now)
            if not blocks:
                ws.state = "idle"
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), 1.0)
                except TimeoutError:
                    pass
                continue
            ws.state = "fetching"
            try:
                await self._fetch(ws, blocks)
            except (WebSeedError, aiohttp.ClientError, OSError, TimeoutError) as exc:
                self._give_back(ws)
                self._failed(ws, str(exc) or type(exc).__name__)
            except BaseException:
                self._give_back(ws)
                raise
            else:
                ws.backoff.succeeded()

    def _pick(self, ws: WebSeed, now: float) -> list[Block]:
        """Blocks for this web seed: pieces peers cannot give us, or any while no peer serves us."""
        t = self.torrent
        picker = t.picker
        if picker is None or t.seed_only or t.is_complete() or not t.downloader.under_budget():
            return []
        if t.hashes.waiting:  # piece layers first (BEP 52): nothing could be verified
            return []
        serving = sum(1 for p in t.peers if not p.peer_choking and p.have is not None)
        pending = len(t.peers) - serving + len(t.pool.connecting)
        mask = web_seed_scope(t.num_pieces, picker.availability, serving, pending, now - self.started)
        has: Bitfield | None = None
        if mask is not None:
            has = Bitfield(t.num_pieces)
            for i, ok in enumerate(mask):
                if ok:
                    has.set(i)
            if not has.count:
                return []
        bs = picker.block_size
        count = -(-run_bytes(ws.down.rate(now), t.meta.piece_length) // bs)
        blocks = picker.pick(ws, has, count)
        for blk in blocks:
            t.downloader.buffer_for(blk.index)
            ws.requests[(blk.index, blk.begin)] = (blk.length, now)
        return blocks

    async def _fetch(self, ws: WebSeed, blocks: list[Block]) -> None:
        """Fetch the blocks run by run, each run per file segment; deliver each run as it arrives."""
        t = self.torrent
        meta = t.meta
        layout = self._layout
        if layout is None:
            layout = self._layout = Layout.from_meta(meta)
        for offset, length in runs(blocks, meta.piece_length):
            data = bytearray(length)
            for f in plan_fetch(layout, ws.url, meta.multi_file, offset, length):
                if f.url is not None:
                    got = await self._get(f)
                    data[f.offset - offset : f.offset - offset + f.length] = got
            if t.stopped:
                return
            self._deliver(ws, offset, data)

    async def _get(self, f: Fetch) -> bytes:
        import aiohttp

        if self._http is None:
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit_per_host=CONNECTIONS),
                timeout=aiohttp.ClientTimeout(sock_connect=self.stall_timeout, sock_read=self.stall_timeout),
                auto_decompress=False,
            )
        assert f.url is not None
        headers = {
            "Range": f"bytes={f.file_offset}-{f.file_offset + f.length - 1}",
            "Accept-Encoding": "identity",
        }
        async with self._http.get(f.url, headers=headers, allow_redirects=True) as resp:
            if resp.status == 200 and f.file_offset == 0:
                pass  # no Range support: the whole file from its start, we read what we need
            elif resp.status != 206:
                raise WebSeedError(f"HTTP {resp.status} {resp.reason or ''} from {f.url}".strip())
            elif not resp.headers.get("Content-Range", "").startswith(f"bytes {f.file_offset}-"):
                raise WebSeedError(f"wrong Content-Range {resp.headers.get('Content-Range')!r}")
            throttle = self.torrent.session.throttle
            out = bytearray()
            while len(out) < f.length:
                # in chunks, so --max-down holds within a run too (aiohttp stops reading meanwhile)
                chunk = await resp.content.read(min(CHUNK, f.length - len(out)))
                if not chunk:
                    raise WebSeedError(f"short answer: {len(out)} of {f.length} bytes")
                out += chunk
                await throttle.download(len(chunk))
            return bytes(out)

    def _deliver(self, ws: WebSeed, offset: int, data: bytearray) -> None:
        """A run's bytes into the piece buffers, block by block, as a peer's would go."""
        t = self.torrent
        picker = t.picker
        if picker is None:
            return
        d = t.downloader
        completion = t.completion
        plen = t.meta.piece_length
        now = time.monotonic()
        view = memoryview(data)
        pos = 0
        got = 0
        while pos < len(data):
            index, begin = divmod(offset + pos, plen)
            req = ws.requests.pop((index, begin), None)
            if req is None:
                pos += min(picker.block_size, picker.piece_size(index) - begin)
                continue  # cancelled: the piece passed meanwhile
            n = req[0]
            buf = d.buffers.get(index)
            if buf is None or (index, begin) in d.landing or not picker.is_needed(index, begin):
                picker.cancel_requests(ws, (Block(index, begin, n),))
            else:
                buf[begin : begin + n] = view[pos : pos + n]
                complete, cancels = picker.on_block(ws, index, begin)
                completion.note_sender(index, begin, cast("PeerConnection", ws))
                d.send_cancels(cancels)
                got += n
                if complete:
                    completion.piece_complete(index)
            pos += n
        if got:
            ws.downloaded += got
            ws.down.add(got, now)
            d.downloaded += got
            d.down.add(got, now)

    # ------------------------------------------------------------ failures

    def _give_back(self, ws: WebSeed) -> None:
        """Its outstanding blocks go back to the picker, and peers may take them."""
        t = self.torrent
        if ws.requests and t.picker is not None:
            t.picker.cancel_requests(ws)
        ws.requests.clear()
        if not t.stopped:
            t.downloader.fill_others()

    def _failed(self, ws: WebSeed, reason: str, *, bad_data: bool = False) -> None:
        t = self.torrent
        ws.last_error = reason
        delay = ws.backoff.failed(time.monotonic(), bad_data=bad_data)
        if delay is None:
            ws.state = "dropped"
            self._give_back(ws)
            if t.picker is not None:
                t.picker.remove_peer(ws)  # its bookkeeping in the picker goes too
            log.warning("%s: web seed %s dropped after %d failures: %s",
                        t.meta.name, ws.url, max(ws.backoff.failures, ws.backoff.bad_pieces), reason)
            t.emit("web_seed", action="dropped", url=ws.url, reason=reason)
        else:
            ws.state = "backoff"
            log.info("%s: web seed %s failed (%s), retry in %.0f s", t.meta.name, ws.url, reason, delay)
            t.emit("web_seed", action="failed", url=ws.url, reason=reason, retry_in=delay)

    def status(self, now: float) -> tuple[WebSeedStatus, ...]:
        return tuple(
            WebSeedStatus(ws.url, ws.state, ws.down.rate(now), ws.downloaded, ws.last_error) for ws in self.seeds
        )
