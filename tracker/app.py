"""The aiohttp tracker: ``GET /announce``, ``GET /scrape``, ``/`` (status page), ``/stats``.

Every answer to a tracker client is HTTP 200 with a bencoded body: a bad
request or a full/unavailable store becomes a ``failure reason`` the client
shows its user, never a 500. Query strings are parsed raw (see field notes:
aiohttp's decoded ``request.query`` corrupts binary info-hashes).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import os
import time
from dataclasses import dataclass, field
from time import perf_counter

from aiohttp import web

from swarm.core.announce import (
    AnnounceRequest,
    BadAnnounce,
    ScrapeStats,
    encode_announce_response,
    encode_failure,
    encode_scrape_response,
    pack_peer,
    parse_announce_query,
    parse_scrape_query,
    udp_announce_fields,
    udp_encode_announce,
    udp_encode_error,
    udp_encode_scrape,
    udp_peers_for,
)
from tracker.chart import SAMPLE_EVERY, History, svg
from tracker.metrics import TrackerMetrics
from tracker.store import AnnounceResult, Store, StoreFull, StoreUnavailable

log = logging.getLogger("swarm.tracker")

BENCODE_TYPE = "text/plain"
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # Prometheus text format


@dataclass
class TrackerConfig:
    interval: int = 1800
    min_interval: int | None = None
    allow: frozenset[bytes] | None = None  # info-hash allow list; None = open
    trust_ip: bool = False  # honour the ``ip=`` parameter
    scrape_all: bool = True  # ``/scrape`` without info_hash lists every swarm
    expire_every: float | None = None  # seconds between expiry sweeps (default interval/2)
    chart_every: float = SAMPLE_EVERY  # seconds between samples of the status page's chart


@dataclass
class Counters:
    started: float = field(default_factory=time.time)
    announces: int = 0
    scrapes: int = 0
    failures: int = 0
    udp_announces: int = 0  # of ``announces`` and ``scrapes``, those over UDP
    udp_scrapes: int = 0
    udp_connects: int = 0
    udp_bad_ids: int = 0  # refused: a forged, replayed or expired connection id
    store_ok: bool = True  # log the outage and the recovery once each, not per request
    full_logged: float = 0.0


STORE_KEY: web.AppKey[Store] = web.AppKey("store")
CONFIG_KEY = web.AppKey("config", TrackerConfig)
COUNTERS_KEY = web.AppKey("counters", Counters)
HISTORY_KEY = web.AppKey("history", History)


def _bencoded(body: bytes) -> web.Response:
    return web.Response(body=body, content_type=BENCODE_TYPE)


class _Refused(Exception):
    """An announce or scrape answered with a failure reason; ``result`` labels it."""

    def __init__(self, reason: str, result: str = "refused") -> None:
        self.reason, self.result = reason, result


class Tracker:
    """One process's announce and scrape logic, from request to encoded answer.

    Shared by the aiohttp handlers, the fast lane (``tracker.fastlane``) and the
    UDP front end (``tracker.udp``): the same allow list, caps, store and
    ``failure reason`` wording, whichever protocol asks. HTTP answers are
    bencoded (a failure is a ``failure reason``, HTTP 200, never an exception);
    UDP answers are BEP 15 packets (a failure is an error packet with the same
    text). Every answer is counted here, by protocol and result.
    """

    def __init__(
        self,
        store: Store,
        config: TrackerConfig,
        counters: Counters,
        metrics: TrackerMetrics | None = None,
    ) -> None:
        self.store, self.config, self.counters = store, config, counters
        self.metrics = metrics or TrackerMetrics()
        #: Set for stores that answer without waiting (``MemoryStore``): no task per request.
        self._announce_now = getattr(store, "announce_sync", None)
        #: The same without a request object (``MemoryStore.announce_fields``): UDP's fast path.
        self._announce_fields = getattr(store, "announce_fields", None)
        #: Its IPv4 common case in one step (``MemoryStore.announce_v4``), tried first.
        self._announce_v4 = getattr(store, "announce_v4", None)

    # ------------------------------------------------------------------ shared steps

    def _admit(self, req: AnnounceRequest, remote: str | None) -> bytes:
        """The compact address to record, after the allow list; raises ``_Refused``."""
        cfg = self.config
        if cfg.allow is not None and req.info_hash not in cfg.allow:
            raise _Refused("torrent not registered with this tracker")
        ip = req.ip if (cfg.trust_ip and req.ip) else remote
        if not ip:
            raise _Refused("cannot tell your address")
        try:
            return pack_peer(ip, req.port)
        except ValueError:
            raise _Refused("cannot tell your address") from None

    def _stored_now(self, req: AnnounceRequest, addr: bytes) -> AnnounceResult:
        assert self._announce_now is not None
        started = perf_counter()
        try:
            result: AnnounceResult = self._announce_now(req, addr, time.time())
        except Exception as exc:
            raise self._store_failed(exc) from None
        self._stored(started)
        return result

    async def _stored_later(self, req: AnnounceRequest, addr: bytes) -> AnnounceResult:
        started = perf_counter()
        try:
            result = await self.store.announce(req, addr, time.time())
        except Exception as exc:
            raise self._store_failed(exc) from None
        self._stored(started)
        return result

    def _stored(self, started: float) -> None:
        self.metrics.store_seconds.observe(perf_counter() - started)
        if not self.counters.store_ok:
            self.counters.store_ok = True
            log.warning("event=store_recovered")

    def _store_failed(self, exc: Exception) -> _Refused:
        counters = self.counters
        if isinstance(exc, StoreUnavailable):
            self.metrics.store_failures.labels("unavailable").inc()
            if counters.store_ok:
                counters.store_ok = False
                log.warning("event=store_unavailable detail=%r", exc.detail)
            return _Refused(str(exc), "unavailable")
        if isinstance(exc, StoreFull):
            now = time.monotonic()
            if now - counters.full_logged > 60:
                counters.full_logged = now
                log.warning("event=store_full reason=%r", str(exc))
            return _Refused(str(exc), "full")
        self.metrics.store_failures.labels("error").inc()
        log.error("event=internal_error path=/announce", exc_info=exc)  # never a 500
        return _Refused("internal tracker error", "error")

    def _answered(self, protocol: str, result: str, started: float, body: bytes) -> bytes:
        counters, metrics = self.counters, self.metrics
        counters.announces += 1
        if protocol == "udp":
            counters.udp_announces += 1
        if result != "ok":
            counters.failures += 1
        metrics.announces[protocol, result].inc()
        metrics.answer[protocol].observe(perf_counter() - started)
        return body

    def _http_body(self, req: AnnounceRequest, result: AnnounceResult) -> bytes:
        cfg = self.config
        return encode_announce_response(
            result.peers,
            interval=cfg.interval,
            min_interval=cfg.min_interval,
            complete=result.complete,
            incomplete=result.incomplete,
            compact=req.compact,
            no_peer_id=req.no_peer_id,
        )

    def _udp_body(self, tid: int, ipv6: bool, result: AnnounceResult) -> bytes:
        addrs = [c for _, c in result.peers]
        peers = b"".join(addrs)
        if len(peers) != (18 if ipv6 else 6) * len(addrs):  # some of the other family
            peers = b"".join(udp_peers_for(addrs, ipv6))
        return udp_encode_announce(
            tid, self.config.interval, result.incomplete, result.complete, [peers]
        )

    @staticmethod
    def _parse_http(raw_query: str | bytes) -> AnnounceRequest:
        try:
            return parse_announce_query(raw_query)
        except BadAnnounce as exc:
            raise _Refused(str(exc)) from None

    # ------------------------------------------------------------------ HTTP

    def announce_nowait(self, raw_query: str | bytes, remote: str | None) -> bytes | None:
        """The answer, computed now; ``None`` when the store must be awaited
        (then call ``announce``, which counts the request itself)."""
        if self._announce_now is None:
            return None
        started = perf_counter()
        try:
            req = self._parse_http(raw_query)
            result = self._stored_now(req, self._admit(req, remote))
        except _Refused as no:
            return self._answered("http", no.result, started, encode_failure(no.reason))
        return self._answered("http", "ok", started, self._http_body(req, result))

    async def announce(self, raw_query: str | bytes, remote: str | None) -> bytes:
        started = perf_counter()
        try:
            req = self._parse_http(raw_query)
            result = await self._stored_later(req, self._admit(req, remote))
        except _Refused as no:
            return self._answered("http", no.result, started, encode_failure(no.reason))
        return self._answered("http", "ok", started, self._http_body(req, result))

    async def scrape(self, raw_query: str | bytes) -> bytes:
        started = perf_counter()
        try:
            try:
                hashes = parse_scrape_query(raw_query)
            except BadAnnounce as exc:
                raise _Refused(str(exc)) from None
            if not hashes and not self.config.scrape_all:
                raise _Refused("full scrape is disabled: give info_hash")
            body = encode_scrape_response(await self._scraped(hashes))
        except _Refused as no:
            return self._scrape_counted("http", no.result, started, encode_failure(no.reason))
        return self._scrape_counted("http", "ok", started, body)

    # ------------------------------------------------------------------ UDP (BEP 15)

    def udp_announce_nowait(
        self, req: AnnounceRequest, remote: str, tid: int, ipv6: bool
    ) -> bytes | None:
        """The BEP 15 answer now, or ``None`` when the store must be awaited."""
        if self._announce_now is None:
            return None
        started = perf_counter()
        try:
            result = self._stored_now(req, self._admit(req, remote))
        except _Refused as no:
            return self._answered("udp", no.result, started, udp_encode_error(tid, no.reason))
        return self._answered("udp", "ok", started, self._udp_body(tid, ipv6, result))

    def udp_announce_datagram(self, data: bytes, ip: bytes, tid: int) -> bytes | None:
        """The answer to a plain announce from the proven packed address ``ip``, read
        straight from the datagram into a store that answers at once: no request
        object, no peer ids, one clock reading per step. ``None`` for anything else (a
        store to await, a field to refuse, an ``ip`` to trust, a hash not allowed, a
        store failure): the general path then answers with its wording and counts."""
        announce_fields = self._announce_fields
        if announce_fields is None:
            return None
        fields = udp_announce_fields(data)
        if fields is None:
            return None
        info_hash, pid, left, event, numwant, port, declared_ip = fields
        cfg = self.config
        if (cfg.allow is not None and info_hash not in cfg.allow) or (
            cfg.trust_ip and declared_ip
        ):
            return None
        started = perf_counter()
        addr = ip + port.to_bytes(2, "big")
        if len(ip) == 4 and self._announce_v4 is not None:
            try:
                done = self._announce_v4(info_hash, pid, left, event, numwant, addr, time.time())
            except Exception:  # a bug: refused (and logged) by the general path
                return None
            if done is not None:
                stored = perf_counter()
                return self._udp_counted(tid, done[0], done[1], done[2], started, stored)
        packed = bytearray()
        try:
            _, addrs, seeders, leechers = announce_fields(
                info_hash, pid, left, event, numwant, addr, time.time(), False, packed
            )
        except Exception:  # full, or a bug: refused (and logged) by the general path
            return None
        stored = perf_counter()
        if packed:  # an IPv4 swarm: the addresses came packed
            peers = bytes(packed)
        else:
            peers = b"".join(addrs)
            size = 18 if len(ip) == 16 else 6
            if len(peers) != size * len(addrs):  # some of the other family
                peers = b"".join(udp_peers_for(addrs, size == 18))
        return self._udp_counted(tid, peers, seeders, leechers, started, stored)

    def _udp_counted(
        self, tid: int, peers: bytes | bytearray, seeders: int, leechers: int,
        started: float, stored: float,
    ) -> bytes:  # fmt: skip
        """The fast path's answer, counted as ``_answered`` does, with the metrics
        tallied in bulk."""
        body = udp_encode_announce(tid, self.config.interval, leechers, seeders, (peers,))
        counters = self.counters
        counters.announces += 1
        counters.udp_announces += 1
        self.metrics.udp_tally.add(perf_counter() - started, stored - started)
        return body

    async def udp_announce(self, req: AnnounceRequest, remote: str, tid: int, ipv6: bool) -> bytes:
        started = perf_counter()
        try:
            result = await self._stored_later(req, self._admit(req, remote))
        except _Refused as no:
            return self._answered("udp", no.result, started, udp_encode_error(tid, no.reason))
        return self._answered("udp", "ok", started, self._udp_body(tid, ipv6, result))

    async def udp_scrape(self, hashes: tuple[bytes, ...], tid: int) -> bytes:
        """One entry per asked hash, in order; zeros for an unknown (or not allowed) one."""
        started = perf_counter()
        try:
            files = await self._scraped(list(dict.fromkeys(hashes)))
        except _Refused as no:
            return self._scrape_counted("udp", no.result, started, udp_encode_error(tid, no.reason))
        none = ScrapeStats(0, 0, 0)
        body = udp_encode_scrape(tid, [files.get(h, none) for h in hashes])
        return self._scrape_counted("udp", "ok", started, body)

    def udp_refused(self, reason: str, tid: int) -> bytes:
        """A request refused before the store (a bad event, a zero port...), counted."""
        return self._answered("udp", "refused", perf_counter(), udp_encode_error(tid, reason))

    # ------------------------------------------------------------------ scrapes

    async def _scraped(self, hashes: list[bytes]) -> dict[bytes, ScrapeStats]:
        try:
            files = await self.store.scrape(hashes)
        except StoreUnavailable as exc:
            self.metrics.store_failures.labels("unavailable").inc()
            raise _Refused(str(exc), "unavailable") from None
        except Exception:
            self.metrics.store_failures.labels("error").inc()
            log.exception("event=internal_error path=/scrape")
            raise _Refused("internal tracker error", "error") from None
        if self.config.allow is not None:
            files = {h: s for h, s in files.items() if h in self.config.allow}
        return files

    def _scrape_counted(self, protocol: str, result: str, started: float, body: bytes) -> bytes:
        counters, metrics = self.counters, self.metrics
        counters.scrapes += 1
        if protocol == "udp":
            counters.udp_scrapes += 1
        if result != "ok":
            counters.failures += 1
        metrics.scrapes[protocol, result].inc()
        metrics.answer[protocol].observe(perf_counter() - started)
        return body


TRACKER_KEY = web.AppKey("tracker", Tracker)


async def announce(request: web.Request) -> web.Response:
    tracker = request.app[TRACKER_KEY]
    raw, remote = request.rel_url.raw_query_string, request.remote
    body = tracker.announce_nowait(raw, remote)
    if body is None:
        body = await tracker.announce(raw, remote)
    return _bencoded(body)


async def scrape(request: web.Request) -> web.Response:
    return _bencoded(await request.app[TRACKER_KEY].scrape(request.rel_url.raw_query_string))


async def _totals(app: web.Application) -> dict[str, object]:
    counters = app[COUNTERS_KEY]
    try:
        totals: dict[str, object] = dict(await app[STORE_KEY].stats())
    except StoreUnavailable:
        totals = {"store": "unavailable"}
    totals.update(
        pid=os.getpid(),  # tells --workers processes apart
        uptime=round(time.time() - counters.started, 1),
        announces=counters.announces,
        scrapes=counters.scrapes,
        failures=counters.failures,
        udp_announces=counters.udp_announces,
        udp_scrapes=counters.udp_scrapes,
        udp_connects=counters.udp_connects,
        udp_bad_connection_ids=counters.udp_bad_ids,
    )
    return totals


async def stats_json(request: web.Request) -> web.Response:
    return web.json_response(await _totals(request.app))


def _fmt_uptime(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 86400}d {s % 86400 // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


#: Counted by each process; every other figure comes from the (shared) store.
_PER_PROCESS = (
    "pid", "uptime", "announces", "scrapes", "failures",
    "udp_announces", "udp_scrapes", "udp_connects", "udp_bad_connection_ids",
)  # fmt: skip


async def status_page(request: web.Request) -> web.Response:
    totals = await _totals(request.app)
    try:
        files = await request.app[STORE_KEY].scrape([])
    except StoreUnavailable:
        files = {}
    rows = sorted(files.items(), key=lambda kv: -(kv[1].complete + kv[1].incomplete))[:200]
    refresh = max(5, round(request.app[CONFIG_KEY].chart_every))  # the chart's next point
    body = [
        "<!doctype html><html><head><meta charset='utf-8'><title>swarm tracker</title>",
        f"<meta http-equiv='refresh' content='{refresh}'>",
        "<style>body{font-family:sans-serif}td,th{padding:2px 10px;text-align:right}"
        "td:first-child{font-family:monospace;text-align:left}</style></head><body>",
        "<h1>swarm tracker</h1>",
        svg(list(request.app[HISTORY_KEY].samples)),
        "<p>whole tracker: "
        + " &middot; ".join(
            f"{html.escape(str(k))}: {html.escape(str(v))}"
            for k, v in totals.items()
            if k not in _PER_PROCESS
        ),
        f"</p><p>this process (pid {totals['pid']}): uptime "
        + _fmt_uptime(float(str(totals["uptime"])))
        + "".join(
            f" &middot; {k}: {totals[k]}" for k in _PER_PROCESS if k not in ("uptime", "pid")
        ),
        "</p><table><tr><th>info-hash</th><th>seeders</th><th>leechers</th><th>completed</th></tr>",
    ]
    for h, s in rows:
        body.append(
            f"<tr><td>{h.hex()}</td><td>{s.complete}</td><td>{s.incomplete}</td>"
            f"<td>{s.downloaded}</td></tr>"
        )
    body.append(f"</table><p>{len(files)} swarms</p></body></html>")
    return web.Response(text="".join(body), content_type="text/html")


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format: request counters (every worker's), the store's figures."""
    totals: dict[str, int] | None
    try:
        totals = await request.app[STORE_KEY].stats()
    except StoreUnavailable:
        totals = None
    body = request.app[TRACKER_KEY].metrics.exposition(totals)
    return web.Response(body=body, headers={"Content-Type": METRICS_TYPE})


async def _expiry_loop(app: web.Application) -> None:
    cfg = app[CONFIG_KEY]
    every = cfg.expire_every or max(1.0, min(300.0, cfg.interval / 2))
    while True:
        await asyncio.sleep(every)
        try:
            gone = await app[STORE_KEY].expire(time.time())
            if gone:
                log.info("event=expired peers=%d", gone)
        except StoreUnavailable:
            pass
        except Exception:
            log.exception("event=internal_error task=expiry")


async def sample_chart(app: web.Application) -> None:
    """One point of the status page's chart: announces/s since the last one, peers."""
    try:
        peers = (await app[STORE_KEY].stats())["peers"]
    except StoreUnavailable:
        peers = 0
    app[HISTORY_KEY].sample(time.time(), app[COUNTERS_KEY].announces, peers)


async def _chart_loop(app: web.Application) -> None:
    while True:
        await asyncio.sleep(app[CONFIG_KEY].chart_every)
        try:
            await sample_chart(app)
        except Exception:
            log.exception("event=internal_error task=chart")


async def _background(app: web.Application) -> object:
    tasks = [asyncio.create_task(_expiry_loop(app)), asyncio.create_task(_chart_loop(app))]
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await app[STORE_KEY].close()


def make_app(store: Store, config: TrackerConfig | None = None) -> web.Application:
    app = web.Application()
    app[STORE_KEY] = store
    app[CONFIG_KEY] = config or TrackerConfig()
    app[COUNTERS_KEY] = Counters()
    app[HISTORY_KEY] = History(time.time())
    app[TRACKER_KEY] = Tracker(store, app[CONFIG_KEY], app[COUNTERS_KEY])
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/announce", announce)
    app.router.add_get("/scrape", scrape)
    app.router.add_get("/stats", stats_json)
    app.router.add_get("/", status_page)
    app.cleanup_ctx.append(_background)  # type: ignore[arg-type]
    return app


def load_allow_list(path: str) -> frozenset[bytes]:
    """40-hex info-hashes, one a line; blank lines and ``#`` comments ignored."""
    from swarm.errors import BadInput

    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read(16 * 1024 * 1024).splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: cannot read the allow list: {exc}") from None
    out = set()
    for n, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if len(line) != 40:
            raise BadInput(f"{path}:{n}: not a 40-hex info-hash")
        try:
            out.add(bytes.fromhex(line))
        except ValueError:
            raise BadInput(f"{path}:{n}: not a 40-hex info-hash") from None
    return frozenset(out)
