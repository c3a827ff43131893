"""The fast lane over real sockets on 127.0.0.1: same answers as aiohttp, hand-overs, hostile clients.

Requests are raw bytes on ``asyncio.open_connection`` so each test controls
exactly what the tracker reads. Every test runs on asyncio's loop and on
uvloop (what ``swarm tracker`` runs on): the hand-over swaps protocols on a
live transport, which each loop implements its own way.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest

import tracker.fastlane as fastlane
from swarm.core.announce import (
    AnnounceRequest,
    ScrapeStats,
    build_announce_url,
    build_scrape_url,
    unpack_peer,
)
from swarm.core.bencode import decode
from tests.helpers.wait import until
from tracker.server import RunningTracker, start_tracker
from tracker.store import AnnounceResult

T = 5.0  # seconds any one read, connect or close may take
IH = bytes(range(20))
IH2 = b"%" * 20

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {"asyncio": asyncio.new_event_loop}
try:
    import uvloop

    LOOPS["uvloop"] = uvloop.new_event_loop
except ImportError:  # pragma: no cover - uvloop is in the test extras
    pass


@dataclass
class Loop:
    """Runs a test body on a fresh loop; collects what reaches the loop's exception handler."""

    factory: Callable[[], asyncio.AbstractEventLoop]
    errors: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, body: Coroutine[Any, Any, None]) -> None:
        with asyncio.Runner(loop_factory=self.factory) as runner:
            runner.get_loop().set_exception_handler(lambda _loop, ctx: self.errors.append(ctx))
            runner.run(asyncio.wait_for(body, 60))
            gc.collect()  # a task dropped with an exception reports it now, to our handler
        assert self.errors == [], [
            f"{e.get('message')}: {e.get('exception')!r}" for e in self.errors
        ]


@pytest.fixture(params=sorted(LOOPS))
def run(request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture) -> Loop:
    caplog.set_level(logging.WARNING)
    return Loop(LOOPS[request.param])


@pytest.fixture(autouse=True)
def no_errors_logged(caplog: pytest.LogCaptureFixture) -> Any:
    yield
    bad = [
        r for r in caplog.records if r.levelno >= logging.ERROR and not r.name.startswith("aiohttp")
    ]
    assert bad == [], [r.getMessage() for r in bad]


@pytest.fixture
def lane_answers(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The answers the lane itself wrote (not aiohttp): proof that a test took the fast path."""
    seen: list[bytes] = []
    real = fastlane.render

    def spy(version: bytes, body: bytes, keep_alive: bool) -> bytes:
        seen.append(body)
        return real(version, body, keep_alive)

    monkeypatch.setattr(fastlane, "render", spy)
    return seen


# -- requests and answers -----------------------------------------------------------------


def pid_of(n: int) -> bytes:
    return b"-SW0001-" + n.to_bytes(12, "big")


def announce_target(n: int, port: int, left: int = 100, event: str = "", **kw: Any) -> bytes:
    url = build_announce_url(
        "http://h/announce", kw.pop("ih", IH), pid_of(n), port, 0, 0, left, event, **kw
    )
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}".encode()


def scrape_target(*hashes: bytes) -> bytes:
    parts = urlsplit(build_scrape_url("http://h/scrape", hashes))
    return f"{parts.path}?{parts.query}".encode() if parts.query else parts.path.encode()


def request(
    target: bytes,
    version: bytes = b"HTTP/1.1",
    headers: tuple[bytes, ...] = (),
    method: bytes = b"GET",
    host: bool = True,
) -> bytes:
    lines = [method + b" " + target + b" " + version]
    if host:
        lines.append(b"Host: 127.0.0.1")
    lines += [b"User-Agent: swarm-test/1", *headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


@dataclass
class Answer:
    status_line: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes

    @property
    def status(self) -> int:
        return int(self.status_line.split(b" ")[1])

    def header(self, name: bytes) -> bytes | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    @property
    def shape(self) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        """Status line and headers, without the one that may differ: Date."""
        return self.status_line, [(k, v) for k, v in self.headers if k.lower() != b"date"]


async def read_answer(reader: asyncio.StreamReader, *, head_only: bool = False) -> Answer:
    raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), T)
    status_line, *lines = raw[:-4].split(b"\r\n")
    headers = [(k, v) for k, _, v in (line.partition(b": ") for line in lines)]
    answer = Answer(status_line, headers, b"")
    if not head_only:
        answer.body = await asyncio.wait_for(
            reader.readexactly(int(answer.header(b"content-length") or 0)), T
        )
    return answer


async def at_eof(reader: asyncio.StreamReader) -> bool:
    """True when the tracker closes the connection with nothing more to say (within T)."""
    try:
        return await asyncio.wait_for(reader.read(), T) == b""
    except ConnectionResetError:
        return True


@asynccontextmanager
async def connection(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), T)
    try:
        yield reader, writer
    finally:
        writer.close()
        with suppress(ConnectionError):
            await asyncio.wait_for(writer.wait_closed(), T)


async def ask(port: int, data: bytes, *, head_only: bool = False) -> Answer:
    """One request on a new connection; the answer."""
    async with connection(port) as (reader, writer):
        writer.write(data)
        await writer.drain()
        return await read_answer(reader, head_only=head_only)


async def ask_until_closed(port: int, data: bytes) -> bytes:
    """Everything the tracker sends before it closes the connection."""
    async with connection(port) as (reader, writer):
        writer.write(data)
        await writer.drain()
        try:
            return await asyncio.wait_for(reader.read(), T)
        except ConnectionResetError:
            return b""


@asynccontextmanager
async def tracker(fast_lane: bool = True, **kw: Any) -> AsyncIterator[RunningTracker]:
    t = await start_tracker("127.0.0.1", 0, interval=60, min_interval=30, fast_lane=fast_lane, **kw)
    try:
        yield t
    finally:
        await asyncio.wait_for(t.close(), T)


# -- the same answers, byte for byte --------------------------------------------------------

SEQUENCE = [
    announce_target(1, 7001, left=0, event="started"),
    announce_target(2, 7002, event="started"),
    announce_target(1, 7001, left=0),
    announce_target(2, 7002, compact=False),
    scrape_target(IH),
    scrape_target(IH, IH2),
    scrape_target(),
    announce_target(3, 7003, ih=IH2, event="started"),
    b"/announce?info_hash=short&port=1",  # a failure reason, still 200
    b"/announce",
    b"/scrape?info_hash=%zz",
    announce_target(2, 7002, event="stopped"),
]

VARIANTS = {
    "1.1": (b"HTTP/1.1", ()),
    "1.1-close": (b"HTTP/1.1", (b"Connection: close",)),
    "1.1-keep-alive": (b"HTTP/1.1", (b"connection: Keep-Alive",)),
    "1.1-list": (b"HTTP/1.1", (b"Connection: TE, CLOSE",)),
    "1.0": (b"HTTP/1.0", ()),
    "1.0-keep-alive": (b"HTTP/1.0", (b"Connection: keep-alive",)),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_same_answers_as_aiohttp(run: Loop, variant: str, lane_answers: list[bytes]) -> None:
    version, extra = VARIANTS[variant]

    async def body() -> None:
        async with tracker(fast_lane=True) as lane, tracker(fast_lane=False) as plain:
            for target in SEQUENCE:
                data = request(target, version, extra)
                got = [await ask(t.port, data) for t in (lane, plain)]
                assert got[0].body == got[1].body, target
                assert got[0].shape == got[1].shape, target
                assert got[0].status == 200 and got[0].header(b"date")
            assert decode(got[0].body) == {
                b"complete": 1,  # the seed stays; the leecher stopped
                b"incomplete": 0,
                b"interval": 60,
                b"min interval": 30,
                b"peers": b"",
            }

    run(body())
    assert len(lane_answers) == len(SEQUENCE)  # every one of them took the fast lane


@pytest.mark.parametrize("variant", ["1.1-close", "1.0", "1.1-list"])
def test_closing_variants_close_after_the_answer(
    run: Loop, variant: str, lane_answers: list[bytes]
) -> None:
    version, extra = VARIANTS[variant]

    async def body() -> None:
        async with tracker() as lane:
            raw = await ask_until_closed(
                lane.port, request(announce_target(1, 7001), version, extra)
            )
            assert raw.startswith(version + b" 200 OK\r\n")
            assert raw.endswith(b"e") and b"5:peers0:" in raw

    run(body())
    assert len(lane_answers) == 1


# -- everything else goes to aiohttp ----------------------------------------------------------


def test_pages_still_work_through_the_hand_over(run: Loop, lane_answers: list[bytes]) -> None:
    async def body() -> None:
        async with tracker() as lane:
            page = await ask(lane.port, request(b"/"))
            assert (
                page.status == 200 and page.header(b"content-type") == b"text/html; charset=utf-8"
            )
            assert b"swarm tracker" in page.body
            stats = await ask(lane.port, request(b"/stats"))
            assert stats.status == 200 and b'"announces": 0' in stats.body
            missing = await ask(lane.port, request(b"/announce/"))
            assert missing.status == 404

    run(body())
    assert lane_answers == []


def test_post_and_head_answered_as_aiohttp_does(run: Loop, lane_answers: list[bytes]) -> None:
    async def body() -> None:
        async with tracker(fast_lane=True) as lane, tracker(fast_lane=False) as plain:
            post = request(
                announce_target(1, 7001), method=b"POST", headers=(b"Content-Length: 0",)
            )
            got = [await ask(t.port, post) for t in (lane, plain)]
            assert (
                got[0].status == 405 and got[0].shape == got[1].shape and got[0].body == got[1].body
            )
            head = request(announce_target(1, 7001), method=b"HEAD")
            got = [await ask(t.port, head, head_only=True) for t in (lane, plain)]
            assert got[0].status == 200 and got[0].shape == got[1].shape

    run(body())
    assert lane_answers == []


def test_a_head_split_across_two_reads_is_answered_by_aiohttp(
    run: Loop, lane_answers: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    handed: list[bytes] = []
    real_hand_over = fastlane.FastLane._hand_over

    def spy(self: fastlane.FastLane, data: bytes) -> None:
        handed.append(data)
        real_hand_over(self, data)

    monkeypatch.setattr(fastlane.FastLane, "_hand_over", spy)

    async def body() -> None:
        async with tracker() as lane:
            data = request(announce_target(1, 7001, left=0), headers=(b"Connection: close",))
            async with connection(lane.port) as (reader, writer):
                writer.write(data[:20])
                await writer.drain()
                # the second half goes only once the lane has read the first alone
                await until(lambda: handed, T, "the lane to hand the half head over")
                assert handed == [data[:20]]
                writer.write(data[20:])
                await writer.drain()
                answer = await read_answer(reader)
                assert answer.status == 200 and answer.header(b"connection") == b"close"
                assert decode(answer.body)[b"complete"] == 1
                assert await at_eof(reader)

    run(body())
    assert lane_answers == []  # the lane saw half a head and stepped aside


def test_an_oversized_head_gets_an_http_error_not_a_hang(run: Loop) -> None:
    async def body() -> None:
        async with tracker() as lane:
            big = request(announce_target(1, 7001), headers=(b"X-Pad: " + b"a" * 20_000,))
            raw = await ask_until_closed(lane.port, big)
            assert raw.startswith(b"HTTP/1.") and int(raw.split(b" ")[1]) in (400, 413, 431)
            many = request(
                announce_target(1, 7001),
                headers=tuple(b"X-%d: %s" % (i, b"v" * 40) for i in range(400)),
            )
            raw = await ask_until_closed(lane.port, many)
            assert raw.startswith(b"HTTP/1.") and int(raw.split(b" ")[1]) >= 400
            assert (await ask(lane.port, request(announce_target(2, 7002)))).status == 200

    run(body())


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\xff\x13\x37" * 64 + b"\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(200),  # a TLS ClientHello
        b"GET /announce?a=\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /announce HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET /announce HTTP/1.1\r\nHost: x\r\nX-A: \x00\r\n\r\n",
    ],
)
def test_garbage_gets_a_400_or_a_close_never_a_hang(run: Loop, garbage: bytes) -> None:
    async def body() -> None:
        async with tracker() as lane:
            raw = await ask_until_closed(lane.port, garbage)
            assert raw == b"" or raw.split(b" ")[1] in (b"400", b"505"), raw[:80]
            assert (await ask(lane.port, request(announce_target(1, 7001)))).status == 200

    run(body())


async def answer_and_fate(port: int, data: bytes) -> tuple[Any, bytes, bytes]:
    """The first answer (shape, body) to ``data``, and what a further request then gets:
    ``b""`` when the connection was closed after the answer, else that answer's status line."""
    async with connection(port) as (reader, writer):
        writer.write(data)
        await writer.drain()
        first = await read_answer(reader)
        with suppress(ConnectionError):
            writer.write(b"GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            await writer.drain()
        try:
            then = (await asyncio.wait_for(reader.read(), T)).split(b"\r\n", 1)[0]
        except ConnectionResetError:
            then = b""
        return first.shape, first.body, then


TRICKY = {
    "no-host-1.1": request(announce_target(1, 7001), host=False),
    "no-host-1.0": request(announce_target(1, 7001), b"HTTP/1.0", host=False),
    "two-hosts": request(announce_target(1, 7001), headers=(b"Host: other",)),
    "two-user-agents": request(announce_target(1, 7001), headers=(b"user-agent: b",)),
    "nul-in-value": request(announce_target(1, 7001), headers=(b"X-A: a\x00b",)),
    "del-in-value": request(announce_target(1, 7001), headers=(b"X-A: a\x7fb",)),
    "lone-lf": request(announce_target(1, 7001), headers=(b"X-A: a\nContent-Length: 3",)) + b"abc",
    "name-not-token": request(announce_target(1, 7001), headers=(b"X(a): 1",)),
    "high-bytes-in-value": request(announce_target(1, 7001), headers=(b"X-A: caf\xc3\xa9",)),
    "tab-in-value": request(announce_target(1, 7001), headers=(b"X-A: a\tb",)),
    "1.1-keep-alive-close": request(
        announce_target(1, 7001), headers=(b"Connection: keep-alive, close",)
    ),
    "1.1-close-then-keep-alive": request(
        announce_target(1, 7001), headers=(b"Connection: close", b"Connection: keep-alive")
    ),
    "1.0-keep-alive-close": request(
        announce_target(1, 7001), b"HTTP/1.0", (b"Connection: keep-alive", b"Connection: close")
    ),
    "1.0-two-connection-headers": request(
        announce_target(1, 7001), b"HTTP/1.0", (b"Connection: TE", b"Connection: Keep-Alive")
    ),
}


@pytest.mark.parametrize("case", sorted(TRICKY))
def test_tricky_heads_get_what_aiohttp_gives(run: Loop, case: str) -> None:
    """Status, headers, body and whether the connection stays open: all as without the lane."""

    async def body() -> None:
        async with tracker(fast_lane=True) as lane, tracker(fast_lane=False) as plain:
            got = [await answer_and_fate(t.port, TRICKY[case]) for t in (lane, plain)]
            assert got[0] == got[1]

    run(body())


# -- keep-alive and pipelining ---------------------------------------------------------------


def test_two_announces_on_one_http11_connection(run: Loop, lane_answers: list[bytes]) -> None:
    async def body() -> None:
        async with tracker() as lane, connection(lane.port) as (reader, writer):
            writer.write(request(announce_target(1, 7001, left=0)))
            await writer.drain()
            first = await read_answer(reader)
            writer.write(request(announce_target(2, 7002)))  # now aiohttp's connection
            await writer.drain()
            second = await read_answer(reader)
            assert first.status == second.status == 200 and first.header(b"connection") is None
            assert decode(second.body)[b"complete"] == 1
            assert unpack_peer(decode(second.body)[b"peers"]) == ("127.0.0.1", 7001)
            writer.write(request(scrape_target(IH), headers=(b"Connection: close",)))
            await writer.drain()
            third = await read_answer(reader)
            assert decode(third.body)[b"files"][IH][b"incomplete"] == 1
            assert await at_eof(reader)

    run(body())
    assert len(lane_answers) == 1


@pytest.mark.parametrize("version", [b"HTTP/1.1", b"HTTP/1.0"])
def test_pipelined_requests_are_all_answered_in_order(
    run: Loop, version: bytes, lane_answers: list[bytes]
) -> None:
    ka = () if version == b"HTTP/1.1" else (b"Connection: keep-alive",)

    async def body() -> None:
        async with tracker() as lane, connection(lane.port) as (reader, writer):
            writer.write(
                request(announce_target(1, 7001, left=0), version, ka)
                + request(announce_target(2, 7002), version, ka)
                + request(scrape_target(IH), version, () if ka else (b"Connection: close",))
            )
            await writer.drain()
            answers = [await read_answer(reader) for _ in range(3)]
            assert [a.status_line for a in answers] == [version + b" 200 OK"] * 3
            assert decode(answers[0].body)[b"peers"] == b""
            assert unpack_peer(decode(answers[1].body)[b"peers"]) == ("127.0.0.1", 7001)
            assert decode(answers[2].body)[b"files"][IH][b"complete"] == 1
            assert await at_eof(reader)

    run(body())
    assert len(lane_answers) == 1  # the first; the rest were aiohttp's


def test_http10_without_keep_alive_closes_after_the_answer(run: Loop) -> None:
    async def body() -> None:
        async with tracker() as lane, connection(lane.port) as (reader, writer):
            writer.write(request(announce_target(1, 7001), b"HTTP/1.0", host=False))
            await writer.drain()
            answer = await read_answer(reader)
            assert answer.status_line == b"HTTP/1.0 200 OK" and answer.header(b"connection") is None
            assert await at_eof(reader)

    run(body())


# -- clients that go away -----------------------------------------------------------------------


def test_clients_that_leave_early_leave_the_tracker_serving(run: Loop) -> None:
    async def body() -> None:
        async with tracker() as lane:
            data = request(announce_target(1, 7001))
            async with connection(lane.port):
                pass  # connect and close at once
            async with connection(lane.port) as (_, writer):
                writer.write(data[: len(data) // 2])
                await writer.drain()
            async with connection(lane.port) as (_, writer):
                writer.write(data)  # a whole announce, gone before the answer is read
                await writer.drain()
            async with connection(lane.port) as (_, writer):
                writer.write(data)
                await writer.drain()
                writer.transport.abort()  # RST
            answer = await ask(lane.port, request(announce_target(2, 7002)))
            assert answer.status == 200 and decode(answer.body)[b"incomplete"] == 2

    run(body())


def test_a_silent_connection_is_closed_after_the_idle_timeout(
    run: Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    # aiohttp's handler closes a connection that never sends a request (keepalive_timeout);
    # a connection the lane holds must not escape that and stay open forever
    monkeypatch.setattr(fastlane, "IDLE_TIMEOUT", 0.2)

    async def body() -> None:
        async with tracker() as lane, connection(lane.port) as (reader, _):
            assert await at_eof(reader)

    run(body())


def test_a_request_in_time_is_not_cut_by_the_idle_timeout(
    run: Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fastlane, "IDLE_TIMEOUT", 0.2)

    async def body() -> None:
        store = GateStore()
        async with tracker(store=store) as lane, connection(lane.port) as (reader, writer):
            writer.write(request(announce_target(1, 7001), headers=(b"Connection: close",)))
            await writer.drain()
            await until(lambda: store.waiting, T, "the announce to reach the store")
            await asyncio.sleep(0.4)  # the duration under test: twice the idle timeout
            store.gate.set()
            assert (await read_answer(reader)).status == 200

    run(body())


# -- a store that must be awaited (Redis) ------------------------------------------------------


class GateStore:
    """A ``Store`` whose announces wait for ``gate``; no ``announce_sync``, so the lane uses a task."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.waiting = 0
        self.addrs: list[tuple[str, int]] = []
        self.closed = False

    async def announce(self, req: AnnounceRequest, addr: bytes, now: float) -> AnnounceResult:
        self.waiting += 1
        try:
            await self.gate.wait()
        finally:
            self.waiting -= 1
        self.addrs.append(unpack_peer(addr))
        return AnnounceResult([], 1, 2)

    async def scrape(self, info_hashes: list[bytes]) -> dict[bytes, ScrapeStats]:
        return {h: ScrapeStats(complete=1, downloaded=3, incomplete=2) for h in info_hashes}

    async def stats(self) -> dict[str, int]:
        return {"swarms": 0, "peers": 0, "seeders": 0, "leechers": 0, "completed": 0}

    async def expire(self, now: float) -> int:
        return 0

    async def close(self) -> None:
        self.closed = True


def test_async_store_answer_arrives_when_the_store_answers(
    run: Loop, lane_answers: list[bytes]
) -> None:
    async def body() -> None:
        store = GateStore()
        assert not hasattr(store, "announce_sync")
        async with tracker(store=store) as lane, connection(lane.port) as (reader, writer):
            writer.write(request(announce_target(1, 7001), headers=(b"Connection: close",)))
            await writer.drain()
            await until(lambda: store.waiting, T, "the announce to reach the store")
            with pytest.raises(TimeoutError):  # nothing yet (a cancelled read loses no byte)
                await asyncio.wait_for(reader.read(1), 0.2)
            store.gate.set()
            answer = await read_answer(reader)
            assert answer.status == 200 and answer.header(b"connection") == b"close"
            assert decode(answer.body) == {
                b"complete": 1,
                b"incomplete": 2,
                b"interval": 60,
                b"min interval": 30,
                b"peers": b"",
            }
            assert await at_eof(reader)

    run(body())
    assert len(lane_answers) == 1


def test_async_store_keep_alive_and_pipelined(run: Loop, lane_answers: list[bytes]) -> None:
    async def body() -> None:
        store = GateStore()
        async with tracker(store=store) as lane, connection(lane.port) as (reader, writer):
            writer.write(request(announce_target(1, 7001)))
            await writer.drain()
            await until(lambda: store.waiting, T, "the announce to reach the store")
            # more requests while the first waits: kept for aiohttp, answered in order
            writer.write(
                request(scrape_target(IH)) + request(b"/stats", headers=(b"Connection: close",))
            )
            await writer.drain()
            store.gate.set()
            first, second, third = [await read_answer(reader) for _ in range(3)]
            assert decode(first.body)[b"incomplete"] == 2
            assert decode(second.body)[b"files"][IH][b"downloaded"] == 3
            assert third.status == 200 and b'"announces": 1' in third.body
            assert await at_eof(reader)

    run(body())
    assert len(lane_answers) == 1


def test_async_store_scrape_takes_the_lane_too(run: Loop, lane_answers: list[bytes]) -> None:
    async def body() -> None:
        async with tracker(store=GateStore()) as lane:
            answer = await ask(lane.port, request(scrape_target(IH2)))
            assert decode(answer.body) == {
                b"files": {IH2: {b"complete": 1, b"downloaded": 3, b"incomplete": 2}}
            }

    run(body())
    assert len(lane_answers) == 1


def test_a_client_gone_while_its_announce_waits_breaks_nothing(run: Loop) -> None:
    async def body() -> None:
        store = GateStore()
        async with tracker(store=store) as lane:
            async with connection(lane.port) as (_, writer):
                writer.write(request(announce_target(1, 7001)))
                await writer.drain()
                await until(lambda: store.waiting, T, "the announce to reach the store")
            store.gate.set()
            await until(lambda: store.addrs, T, "the orphaned announce to finish")
            answer = await ask(lane.port, request(announce_target(2, 7002)))
            assert answer.status == 200 and decode(answer.body)[b"incomplete"] == 2

    run(body())


def test_closing_the_tracker_while_an_announce_waits(run: Loop) -> None:
    async def body() -> None:
        store = GateStore()
        lane = await start_tracker("127.0.0.1", 0, store=store)
        try:
            async with connection(lane.port) as (reader, writer):
                writer.write(request(announce_target(1, 7001)))
                await writer.drain()
                await until(lambda: store.waiting, T, "the announce to reach the store")
                await asyncio.wait_for(lane.close(), T)
                assert store.closed and store.waiting == 0
                assert await at_eof(reader)  # the client is told, not left hanging
        finally:
            await lane.close()

    run(body())


# -- what the tracker counts and sees ------------------------------------------------------------


def test_stats_count_fast_lane_announces(run: Loop, lane_answers: list[bytes]) -> None:
    async def body() -> None:
        async with tracker() as lane:
            for n in range(5):
                await ask(lane.port, request(announce_target(n, 7000 + n)))
            await ask(lane.port, request(scrape_target(IH)))
            await ask(lane.port, request(b"/announce?info_hash=bad"))
            stats = await ask(lane.port, request(b"/stats"))
            assert b'"announces": 6' in stats.body and b'"scrapes": 1' in stats.body
            assert b'"failures": 1' in stats.body and b'"peers": 5' in stats.body

    run(body())
    assert len(lane_answers) == 7


@pytest.mark.parametrize("fast_lane", [True, False])
def test_the_store_sees_the_client_address(run: Loop, fast_lane: bool) -> None:
    async def body() -> None:
        store = GateStore()
        store.gate.set()
        async with tracker(store=store, fast_lane=fast_lane) as t:
            await ask(t.port, request(announce_target(1, 7001)))
            await ask(t.port, request(announce_target(1, 7001), b"HTTP/1.0"))
        assert store.addrs == [("127.0.0.1", 7001)] * 2

    run(body())


# -- connection hygiene: idle timeouts, a per-IP cap, quiet bad requests ----------------------


def test_the_idle_timeout_is_under_a_minute() -> None:
    assert fastlane.IDLE_TIMEOUT <= 60


@pytest.mark.parametrize("fast_lane", [True, False])
def test_idle_connections_held_by_aiohttp_close_too(
    run: Loop, monkeypatch: pytest.MonkeyPatch, fast_lane: bool
) -> None:
    # a half head (handed to aiohttp by the lane) and a kept-alive connection after its
    # answer: neither may stay open for aiohttp's default hour
    monkeypatch.setattr(fastlane, "IDLE_TIMEOUT", 0.3)

    async def body() -> None:
        async with tracker(fast_lane=fast_lane) as lane:
            async with connection(lane.port) as (reader, writer):
                writer.write(request(announce_target(1, 7001))[:30])
                await writer.drain()
                assert await at_eof(reader)
            async with connection(lane.port) as (reader, writer):
                writer.write(request(announce_target(1, 7001)))
                await writer.drain()
                assert (await read_answer(reader)).status == 200
                assert await at_eof(reader)

    run(body())


@pytest.mark.parametrize("fast_lane", [True, False])
def test_connections_per_ip_are_capped(run: Loop, fast_lane: bool) -> None:
    async def body() -> None:
        async with tracker(fast_lane=fast_lane, max_conns_per_ip=3) as lane:
            async with connection(lane.port) as (_, w1), connection(lane.port) as (_, w2):
                w2.write(request(announce_target(1, 7001))[:30])  # handed over to aiohttp
                await w2.drain()
                async with connection(lane.port) as (r3, _):
                    async with connection(lane.port) as (r4, _):
                        assert await at_eof(r4)  # the fourth is refused
                    assert not r3.at_eof()
            # the slots come back, handed-over connections' too
            (site,) = lane.runner.sites
            await until(lambda: not site.gate.open, T, "the cap's slots to come back")
            answers = await asyncio.gather(
                *(ask(lane.port, request(announce_target(n, 7000 + n))) for n in range(3))
            )
            assert [a.status for a in answers] == [200] * 3

    run(body())


def test_the_default_cap_lets_a_load_test_from_one_host_through(run: Loop) -> None:
    # benchmarks/bench_tracker.py runs wrk -c50 from 127.0.0.1
    async def body() -> None:
        async with tracker() as lane:
            opened = [
                await asyncio.wait_for(asyncio.open_connection("127.0.0.1", lane.port), T)
                for _ in range(60)
            ]
            try:
                for n, (_, writer) in enumerate(opened):
                    writer.write(request(announce_target(n, 7000 + n)))
                answers = [await read_answer(reader) for reader, _ in opened]
                assert [a.status for a in answers] == [200] * 60
            finally:
                for _, writer in opened:
                    writer.close()

    run(body())


@pytest.mark.parametrize("fast_lane", [True, False])
def test_an_oversized_request_line_logs_one_quiet_line(
    run: Loop, caplog: pytest.LogCaptureFixture, fast_lane: bool
) -> None:
    caplog.set_level(logging.INFO)

    async def body() -> None:
        async with tracker(fast_lane=fast_lane) as lane:
            caplog.clear()
            raw = await ask_until_closed(lane.port, request(b"/announce?x=" + b"y" * 20_000))
            assert raw.startswith(b"HTTP/1.") and int(raw.split(b" ")[1]) == 400

    run(body())
    about = [
        r
        for r in caplog.records
        if not r.getMessage().startswith(("event=listening", "event=stopped"))
    ]
    assert len(about) == 1 and about[0].exc_info is None, [
        (r.name, r.levelname, r.getMessage()[:200], bool(r.exc_info)) for r in about
    ]
    assert about[0].levelno <= logging.INFO and len(about[0].getMessage()) < 300
