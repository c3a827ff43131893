"""The Store contract, run on both back-ends (memory and a real redis-server), plus
Redis outages and `swarm tracker --workers N` on one port."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import require_tool

from swarm.core.announce import (
    AnnounceRequest,
    build_announce_url,
    encode_announce_response,
    pack_peer,
    parse_announce_response,
)
from swarm.core.bencode import decode
from tracker.server import start_tracker
from tracker.store import MemoryStore, Store, StoreFull

ROOT = Path(__file__).resolve().parents[2]
IH = bytes(range(20))
IH2 = bytes(range(1, 21))


def pid_of(n: int) -> bytes:
    return b"-SW0001-" + n.to_bytes(12, "big")


def req(
    n: int,
    left: int = 10,
    event: str = "",
    ih: bytes = IH,
    numwant: int = 50,
    compact: bool = False,
    no_peer_id: bool = False,
) -> AnnounceRequest:
    """Not compact by default, so that answers carry the peer ids checked below
    (a compact answer's ids may be empty)."""
    return AnnounceRequest(
        ih, pid_of(n), 6000 + n, left=left, event=event, numwant=numwant,
        compact=compact, no_peer_id=no_peer_id,
    )  # fmt: skip


def addr(n: int) -> bytes:
    return pack_peer("10.0.0.1", 6000 + n)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    def __init__(self, tmp: Path) -> None:
        self.exe = require_tool("redis-server")
        self.tmp = tmp
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.tmp)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            assert self.proc.poll() is None, "redis-server exited"
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None


def batch_sizes(store: Any) -> list[int]:
    """Record how many announces each script call of ``store`` (a RedisStore) carries."""
    sizes: list[int] = []
    run_batch = store._run_batch

    async def spy(batch):  # type: ignore[no-untyped-def]
        sizes.append(len(batch))
        return await run_batch(batch)

    store._run_batch = spy
    return sizes


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


def make_store(kind: str, tmp: Path, **kw: float) -> tuple[Store, RedisServer | None]:
    if kind == "memory":
        return MemoryStore(rng=random.Random(0), **kw), None  # type: ignore[arg-type]
    from tracker.redis_store import RedisStore

    server = RedisServer(tmp)
    server.start()
    return RedisStore(server.url, **kw), server  # type: ignore[arg-type]


@pytest.fixture(params=["memory", "redis"])
async def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator:  # type: ignore[type-arg]
    made: list[tuple[Store, RedisServer | None]] = []

    def factory(**kw: float) -> Store:
        made.append(make_store(request.param, tmp_path, **kw))
        return made[-1][0]

    yield factory
    for store, server in made:
        await store.close()
        if server is not None:
            server.stop()


async def test_store_announce_contract(store_factory) -> None:  # type: ignore[no-untyped-def]
    s: Store = store_factory()
    r = await s.announce(req(1, left=0), addr(1), now=100.0)
    assert r.peers == [] and (r.complete, r.incomplete) == (1, 0)
    r = await s.announce(req(2), addr(2), now=100.0)
    assert r.peers == [(pid_of(1), addr(1))] and (r.complete, r.incomplete) == (1, 1)
    r = await s.announce(req(3, left=0), addr(3), now=100.0)
    assert r.peers == [(pid_of(2), addr(2))]  # a seed gets no seeds, never itself
    r = await s.announce(req(2, numwant=0), addr(2), now=100.0)
    assert r.peers == []
    r = await s.announce(req(2, left=0, event="completed"), pack_peer("10.0.0.1", 9), now=101.0)
    assert (r.complete, r.incomplete) == (3, 0) and r.peers == []
    sc = await s.scrape([IH, IH2])
    assert list(sc) == [IH] and (sc[IH].complete, sc[IH].downloaded, sc[IH].incomplete) == (3, 1, 0)
    await s.announce(req(7, ih=IH2), addr(7), now=101.0)
    r = await s.announce(req(8, ih=IH2), addr(8), now=101.0)
    assert r.peers == [(pid_of(7), addr(7))]
    assert set(await s.scrape([])) == {IH, IH2}
    st = await s.stats()
    assert st == {"swarms": 2, "peers": 5, "seeders": 3, "leechers": 2, "completed": 1}
    r = await s.announce(req(8, ih=IH2, event="stopped"), addr(8), now=102.0)
    assert r.peers == [] and (r.complete, r.incomplete) == (0, 1)
    r = await s.announce(req(9, ih=IH2), addr(9), now=102.0)
    assert [p for p, _ in r.peers] == [pid_of(7)]
    # a changed address replaces the old one
    await s.announce(req(7, ih=IH2), addr(70), now=103.0)
    r = await s.announce(req(9, ih=IH2), addr(9), now=103.0)
    assert r.peers == [(pid_of(7), addr(70))]


async def test_store_expiry_simulated_clock(store_factory) -> None:  # type: ignore[no-untyped-def]
    s: Store = store_factory(peer_ttl=100.0)
    await s.announce(req(1), addr(1), now=1000.0)
    await s.announce(req(2), addr(2), now=1050.0)
    r = await s.announce(req(3), addr(3), now=1099.0)
    assert {p for p, _ in r.peers} == {pid_of(1), pid_of(2)}
    r = await s.announce(req(3), addr(3), now=1101.0)
    assert [p for p, _ in r.peers] == [pid_of(2)]  # peer 1 expired
    assert await s.expire(1160.0) >= 1  # peer 2 (1150) goes
    st = await s.stats()
    assert st["peers"] <= 1
    r = await s.announce(req(4), addr(4), now=1160.0)
    assert [p for p, _ in r.peers] == [pid_of(3)]


async def test_store_random_selection(store_factory) -> None:  # type: ignore[no-untyped-def]
    s: Store = store_factory()
    for n in range(40):
        await s.announce(req(n, left=0 if n % 2 else 10), addr(n), now=0.0)
    seen: set[bytes] = set()
    for _ in range(30):
        r = await s.announce(req(0, numwant=8), addr(0), now=0.0)
        ids = [p for p, _ in r.peers]
        assert len(ids) == 8 == len(set(ids)) and pid_of(0) not in ids
        seen.update(ids)
    assert len(seen) > 20
    r = await s.announce(req(1, left=0, numwant=25), addr(1), now=0.0)
    ids = [int.from_bytes(p[8:], "big") for p, _ in r.peers]
    assert len(ids) == 20 and all(n % 2 == 0 for n in ids)  # a seed gets the leechers only
    # aria2c announces left=0 while it fetches a magnet's metadata: seeds fill its answer
    aria2 = AnnounceRequest(IH, b"A2-1-37-0-" + bytes(10), 7000, left=0, numwant=25, compact=False)
    r = await s.announce(aria2, addr(99), now=0.0)
    ids = [int.from_bytes(p[8:], "big") for p, _ in r.peers]
    assert len(ids) == 25 == len(set(ids))  # all 20 leechers, then 5 of the 20 seeds
    assert sorted(n % 2 for n in ids) == [0] * 20 + [1] * 5


async def test_store_samples_mid_sized_swarms(store_factory) -> None:  # type: ignore[no-untyped-def]
    """Swarms between 1.5 and 3 times numwant: Redis samples them with repeats and
    keeps the first distinct peers; answers must stay full, distinct and uniform."""
    s: Store = store_factory()
    other = IH2
    for n in range(50):  # IH: 25 seeds, 25 leechers; other: 50 leechers, 10 seeds
        await s.announce(req(n, left=0 if n % 2 else 10), addr(n), now=0.0)
        await s.announce(req(100 + n, ih=other), addr(100 + n), now=0.0)
    for n in range(10):
        await s.announce(req(200 + n, left=0, ih=other), addr(200 + n), now=0.0)
    seen: set[bytes] = set()
    for _ in range(30):
        r = await s.announce(req(0, numwant=20), addr(0), now=0.0)
        ids = [p for p, _ in r.peers]
        assert len(ids) == 20 == len(set(ids)) and pid_of(0) not in ids
        assert all(0 < int.from_bytes(p[8:], "big") < 50 for p in ids)
        seen.update(ids)
    assert len(seen) > 40  # 49 others; a fixed subset would show here
    for _ in range(10):  # a seed: leechers only, 50 of them to pick 20 from
        r = await s.announce(req(200, left=0, ih=other, numwant=20), addr(200), now=0.0)
        ids = [int.from_bytes(p[8:], "big") for p, _ in r.peers]
        assert len(ids) == 20 == len(set(ids)) and all(100 <= n < 150 for n in ids)


async def test_store_entry_changes_only_from_its_own_address(store_factory) -> None:  # type: ignore[no-untyped-def]
    """Non-compact answers publish peer ids: another address that sends one must
    neither move the entry, nor stop it, nor refresh or complete it; it still gets peers."""
    s: Store = store_factory(peer_ttl=100.0)
    await s.announce(req(1), addr(1), now=0.0)
    await s.announce(req(2), addr(2), now=0.0)
    thief = pack_peer("10.6.6.6", 6666)
    r = await s.announce(req(1, event="stopped"), thief, now=1.0)
    assert (r.complete, r.incomplete) == (0, 2)
    r = await s.announce(req(1), thief, now=1.0)
    assert r.peers == [(pid_of(2), addr(2))] and (r.complete, r.incomplete) == (0, 2)
    r = await s.announce(req(1, left=0, event="completed"), thief, now=90.0)
    assert (r.complete, r.incomplete) == (0, 2)
    assert (await s.scrape([IH]))[IH].downloaded == 0
    r = await s.announce(req(2), addr(2), now=90.0)
    assert r.peers == [(pid_of(1), addr(1))]  # still at its own address
    r = await s.announce(req(2), addr(2), now=101.0)
    assert r.peers == []  # the thief's announce at 90 did not keep it alive
    # the owner's address may change its port, and stop it
    await s.announce(req(1), pack_peer("10.0.0.1", 7777), now=102.0)
    r = await s.announce(req(2), addr(2), now=102.0)
    assert r.peers == [(pid_of(1), pack_peer("10.0.0.1", 7777))]
    r = await s.announce(req(1, event="stopped"), addr(1), now=103.0)
    assert (r.complete, r.incomplete) == (0, 1)


async def test_store_one_source_gets_a_share_of_the_peers(store_factory) -> None:  # type: ignore[no-untyped-def]
    s: Store = store_factory(peer_ttl=100.0, max_peers_per_source=2)
    await s.announce(req(1), addr(1), now=0.0)
    await s.announce(req(2, ih=IH2), addr(2), now=0.0)
    await s.announce(req(2, ih=IH2), addr(2), now=1.0)  # its own peers may re-announce
    with pytest.raises(StoreFull, match="too many peers from your address"):
        await s.announce(req(3), addr(3), now=1.0)
    other = pack_peer("10.0.0.2", 7000)
    await s.announce(req(4), other, now=1.0)  # everyone else is still served
    await s.announce(req(1, event="stopped"), addr(1), now=2.0)  # stopped gives it back
    await s.announce(req(3), addr(3), now=2.0)
    with pytest.raises(StoreFull, match="from your address"):
        await s.announce(req(5), addr(5), now=2.0)
    # expiry gives it back (peers 2 and 3 are due at 101 and 102)
    await s.expire(now=150.0)
    await s.announce(req(5), addr(5), now=150.0)
    await s.announce(req(6, ih=IH2), addr(6), now=150.0)


async def test_store_caps(store_factory) -> None:  # type: ignore[no-untyped-def]
    s: Store = store_factory(max_peers_per_swarm=2, max_swarms=1)
    await s.announce(req(1), addr(1), now=0.0)
    await s.announce(req(2), addr(2), now=0.0)
    await s.announce(req(2), addr(2), now=1.0)  # known peers may always re-announce
    with pytest.raises(StoreFull, match="peers"):
        await s.announce(req(3), addr(3), now=1.0)
    with pytest.raises(StoreFull, match="swarms"):
        await s.announce(req(3, ih=IH2), addr(3), now=1.0)


# ------------------------------------------------------------------ Redis-only behaviour


async def test_redis_outage_is_a_fast_failure_reason_and_recovers(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    from tracker.redis_store import RedisStore

    caplog.set_level("WARNING", logger="swarm.tracker")

    store = RedisStore(redis_server.url, cooldown=0.2)
    t = await start_tracker("127.0.0.1", 0, store=store)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:

            async def announce(n: int) -> dict:  # type: ignore[type-arg]
                url = build_announce_url(t.url, IH, pid_of(n), 6000 + n, 0, 0, 5)
                async with http.get(url) as r:
                    assert r.status == 200
                    return decode(await r.read())  # type: ignore[no-any-return]

            assert b"interval" in await announce(1)
            redis_server.stop()
            t0 = time.monotonic()
            d = await announce(2)
            assert d == {b"failure reason": b"tracker storage unavailable"}
            assert time.monotonic() - t0 < 3
            async with http.get(t.base_url + "/stats") as r:
                assert (await r.json())["store"] == "unavailable"
            async with http.get(t.base_url + "/") as r:
                assert r.status == 200
            redis_server.start()  # same port, empty data
            deadline = time.monotonic() + 10
            while b"interval" not in (d := await announce(3)):
                assert d[b"failure reason"] == b"tracker storage unavailable"
                assert time.monotonic() < deadline, "never recovered"
                await asyncio.sleep(0.05)
            assert parse_announce_response(await _raw(http, t.url, 4)).peers == [
                ("127.0.0.1", 6003)
            ]
        events = [r.getMessage().split()[0] for r in caplog.records if r.name == "swarm.tracker"]
        assert events.count("event=store_unavailable") == 1  # once, however many requests
        assert events.count("event=store_recovered") == 1
    finally:
        await t.close()


async def test_a_stalled_redis_is_a_failure_reason_within_the_timeout(
    redis_server: RedisServer,
) -> None:
    """A Redis that accepts but never answers (SIGSTOP): announces fail within the
    client timeout, the ones queued behind it at once, and all is well after SIGCONT."""
    from tracker.redis_store import RedisStore

    assert redis_server.proc is not None
    store = RedisStore(redis_server.url, timeout=0.5, cooldown=0.2)
    t = await start_tracker("127.0.0.1", 0, store=store)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:

            async def announce(n: int) -> dict:  # type: ignore[type-arg]
                return decode(await _raw(http, t.url, n))  # type: ignore[no-any-return]

            assert b"interval" in await announce(1)
            redis_server.proc.send_signal(signal.SIGSTOP)
            try:
                t0 = time.monotonic()
                answers = await asyncio.gather(*(announce(n) for n in range(2, 12)))
                assert time.monotonic() - t0 < 3  # one timeout, not one per request
                assert all(
                    d == {b"failure reason": b"tracker storage unavailable"} for d in answers
                )
            finally:
                redis_server.proc.send_signal(signal.SIGCONT)
            deadline = time.monotonic() + 10
            while b"interval" not in (d := await announce(12)):
                assert d[b"failure reason"] == b"tracker storage unavailable"
                assert time.monotonic() < deadline, "never recovered"
                await asyncio.sleep(0.05)
            assert b"interval" in await announce(13)
    finally:
        await t.close()


async def _raw(http: aiohttp.ClientSession, url: str, n: int) -> bytes:
    async with http.get(build_announce_url(url, IH, pid_of(n), 6000 + n, 0, 0, 5)) as r:
        return await r.read()


def test_workers_share_one_port_and_one_store(redis_server: RedisServer) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "swarm", "tracker", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "3", "--store", redis_server.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert line.startswith(f"tracker listening on 127.0.0.1:{port}"), line
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert len(children) == 2
        import urllib.request

        def get(url: str) -> bytes:
            with urllib.request.urlopen(url, timeout=10) as r:  # a new connection each time
                return r.read()  # type: ignore[no-any-return]

        base = f"http://127.0.0.1:{port}/announce"
        get(build_announce_url(base, IH, pid_of(1), 6001, 0, 0, 0))
        for n in range(2, 30):
            d = parse_announce_response(
                get(build_announce_url(base, IH, pid_of(n), 6000 + n, 0, 0, 9))
            )
            assert ("127.0.0.1", 6001) in d.peers  # whichever worker answered knows the seed
        # the kernel spread the connections: more than one worker counted announces
        pids = {json.loads(get(f"http://127.0.0.1:{port}/stats"))["pid"] for _ in range(40)}
        assert len(pids) > 1 and pids <= {proc.pid, *map(int, children)}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        for c in children:
            assert (
                not Path(f"/proc/{c}").exists() or "zombie" in Path(f"/proc/{c}/status").read_text()
            )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)


def test_workers_die_with_a_killed_parent(redis_server: RedisServer) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "swarm", "tracker", "--host", "127.0.0.1", "--port", "0",
         "--workers", "2", "--store", redis_server.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    children: list[str] = []
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(b"tracker listening on")
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert len(children) == 1
        proc.kill()
        proc.wait(timeout=5)

        def alive(pid: str) -> bool:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except FileNotFoundError:
                return False
            return "\nState:\tZ" not in status

        deadline = time.monotonic() + 10
        while any(alive(c) for c in children):
            assert time.monotonic() < deadline, "a worker outlived its parent"
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        for c in children:
            try:
                os.kill(int(c), signal.SIGKILL)
            except ProcessLookupError:
                pass


async def test_redis_batches_concurrent_announces_and_survives_script_flush(
    redis_server: RedisServer,
) -> None:
    from tracker.redis_store import RedisStore

    store = RedisStore(redis_server.url)
    try:
        sizes = batch_sizes(store)
        results = await asyncio.gather(*(store.announce(req(n), addr(n), 0.0) for n in range(100)))
        assert max(sizes) > 1  # one pipeline carried several announces
        assert sorted(r.complete + r.incomplete for r in results)[-1] == 100
        assert (await store.stats())["peers"] == 100
        for flush_then in (1, 20):  # a Redis that lost its scripts (restart, SCRIPT FLUSH)
            await store.redis.script_flush()
            got = await asyncio.gather(
                *(store.announce(req(200 + n), addr(n), 0.0) for n in range(flush_then))
            )
            assert all(len(r.peers) == 50 for r in got)
    finally:
        await store.close()


async def _keys_without_ttl(store) -> list[bytes]:  # type: ignore[no-untyped-def]
    keys = await store.redis.keys(b"swarm:*")
    return [
        k
        for k in keys
        if k not in (b"swarm:completed", b"swarm:index") and await store.redis.ttl(k) < 0
    ]


async def test_redis_one_batch_mixes_swarms_and_kinds(redis_server: RedisServer) -> None:
    from tracker.redis_store import RedisStore

    store = RedisStore(redis_server.url)
    try:
        hashes = [bytes([i]) * 20 for i in range(5)]
        # 5 swarms of 6 peers: 2 seeds, 4 leechers each, all in one batch
        first = await asyncio.gather(
            *(
                store.announce(
                    req(10 * s + n, left=0 if n < 2 else 10, ih=h), addr(10 * s + n), 0.0
                )
                for n in range(6)
                for s, h in enumerate(hashes)
            )
        )
        assert all(r.complete + r.incomplete <= 6 for r in first)
        asks = [
            store.announce(
                req(10 * s + n, left=0 if n < 2 else 10, ih=h, numwant=n), addr(10 * s + n), 1.0
            )
            for n in range(6)
            for s, h in enumerate(hashes)
        ]
        for i, r in enumerate(await asyncio.gather(*asks)):
            n, s = divmod(i, len(hashes))
            mine = {pid_of(10 * s + m) for m in range(6)} - {pid_of(10 * s + n)}
            got = [p for p, _ in r.peers]
            assert (r.complete, r.incomplete) == (2, 4)
            assert len(got) == min(n, 5) == len(set(got)) and set(got) <= mine
            assert all(a == addr(int.from_bytes(p[8:], "big")) for p, a in r.peers)
            if n < 2 and n > 0:  # a seed: leechers first
                assert all(int.from_bytes(p[8:], "big") % 10 >= 2 for p in got)
        assert await _keys_without_ttl(store) == []
    finally:
        await store.close()


async def test_redis_batch_bigger_than_the_cap_is_split(redis_server: RedisServer) -> None:
    from tracker.redis_store import RedisStore

    store = RedisStore(redis_server.url)
    store.batch_size = 8
    try:
        sizes = batch_sizes(store)
        results = await asyncio.gather(*(store.announce(req(n), addr(n), 0.0) for n in range(50)))
        assert max(sizes) == 8 and sum(sizes) == 50
        assert [r.complete + r.incomplete for r in results] == list(range(1, 51))
        r = await store.announce(req(0, numwant=100), addr(0), 0.0)
        assert sorted(p for p, _ in r.peers) == [pid_of(n) for n in range(1, 50)]
    finally:
        await store.close()


async def test_redis_caps_hold_inside_one_batch(redis_server: RedisServer) -> None:
    from tracker.redis_store import RedisStore

    store = RedisStore(redis_server.url, max_peers_per_swarm=5, max_swarms=1)
    try:
        got = await asyncio.gather(
            *(store.announce(req(n), addr(n), 0.0) for n in range(10)),
            store.announce(req(20, ih=IH2), addr(20), 0.0),
            return_exceptions=True,
        )
        full = [g for g in got[:10] if isinstance(g, StoreFull)]
        assert len(full) == 5 and all("peers" in str(e) for e in full)
        assert isinstance(got[10], StoreFull) and "swarms" in str(got[10])
        assert (await store.stats())["peers"] == 5
        # a known peer may re-announce, a stopped one makes room at once
        await store.announce(req(0), addr(0), 1.0)
        await store.announce(req(0, event="stopped"), addr(0), 1.0)
        r = await store.announce(req(30), addr(30), 1.0)
        assert r.complete + r.incomplete == 5 and pid_of(0) not in [p for p, _ in r.peers]
    finally:
        await store.close()


async def test_redis_stopped_and_expiry_with_lazy_ttl_refresh(redis_server: RedisServer) -> None:
    from tracker.redis_store import RedisStore

    store = RedisStore(redis_server.url, peer_ttl=100.0)  # key TTLs refreshed every 10 s
    try:
        await store.announce(req(1), addr(1), 1000.0)
        await store.announce(req(2), addr(2), 1005.0)  # no refresh: the last was 5 s ago
        # the last peer of a kind stops, another comes back: new keys get a TTL at once
        await store.announce(req(1, event="stopped"), addr(1), 1006.0)
        await store.announce(req(2, event="stopped"), addr(2), 1006.0)
        assert (await store.stats())["peers"] == 0
        await store.announce(req(3, left=0), addr(3), 1007.0)
        r = await store.announce(req(4, event="completed"), addr(4), 1008.0)
        assert r.peers == [(pid_of(3), addr(3))]
        assert await _keys_without_ttl(store) == []
        ttls = [await store.redis.ttl(k) for k in await store.redis.keys(b"swarm:[slac]:*")]
        assert ttls and all(100 < t <= 200 for t in ttls)
        # peer 4 is due at 1108: the swarm stays listed (and counted) until then
        assert await store.expire(1100.0) == 0
        assert (await store.stats())["peers"] == 2
        assert await store.expire(1107.5) == 1  # peer 3 (1107) goes
        r = await store.announce(req(5), addr(5), 1107.5)
        assert r.peers == [(pid_of(4), addr(4))] and (r.complete, r.incomplete) == (0, 2)
        assert await store.expire(1210.0) == 2  # peer 5 was due at 1207.5
        assert await store.stats() == {
            "swarms": 0, "peers": 0, "seeders": 0, "leechers": 0, "completed": 1
        }  # fmt: skip
    finally:
        await store.close()


# ------------------------------------------------------------------ compact answers (no ids)


def _n_of(a: bytes) -> int:
    return int.from_bytes(a[4:6], "big") - 6000  # addr(n) has port 6000 + n


async def test_redis_compact_answers_carry_addresses_only(redis_server: RedisServer) -> None:
    from tracker.redis_store import RedisStore

    store = RedisStore(redis_server.url)
    try:
        for n in range(12):
            await store.announce(req(n, left=0 if n < 4 else 10), addr(n), 0.0)
        await store.announce(req(12), pack_peer("::1", 6012), 0.0)  # an IPv6 leecher
        every = {addr(n) for n in range(12)} | {pack_peer("::1", 6012)}
        for kw in ({"compact": True}, {"compact": False, "no_peer_id": True}):
            for n, want in ((5, 50), (5, 4), (1, 50), (1, 6)):  # a leecher, a seed
                r = await store.announce(
                    req(n, left=0 if n < 4 else 10, numwant=want, **kw), addr(n), 1.0
                )  # type: ignore[arg-type]
                got = [a for _, a in r.peers]
                assert all(p == b"" for p, _ in r.peers)
                assert len(got) == min(want, 12 if n >= 4 else 9) == len(set(got))
                assert set(got) <= every - {addr(n)}
                assert (r.complete, r.incomplete) == (4, 9)
                if n == 1:  # a seed: leechers only
                    assert all(a not in {addr(m) for m in range(4)} for a in got)
        # the compact HTTP answer is built from those addresses alone
        r = await store.announce(req(0, numwant=50, compact=True), addr(0), 1.0)
        body = encode_announce_response(r.peers, interval=60, compact=True)
        v4 = decode(body)[b"peers"]
        assert {v4[i : i + 6] for i in range(0, len(v4), 6)} == {addr(n) for n in range(1, 12)}
        assert decode(body)[b"peers6"] == pack_peer("::1", 6012)
    finally:
        await store.close()


async def test_redis_non_compact_answers_carry_ids_matching_addresses(
    redis_server: RedisServer,
) -> None:
    from tracker.redis_store import RedisStore

    store = RedisStore(redis_server.url)
    try:
        for n in range(12):
            await store.announce(req(n, left=0 if n < 4 else 10, compact=True), addr(n), 0.0)
        for n, want in ((5, 50), (5, 4), (1, 50), (1, 6)):
            r = await store.announce(req(n, left=0 if n < 4 else 10, numwant=want), addr(n), 1.0)
            if n == 1:  # a seed: leechers only
                assert all(int.from_bytes(p[8:], "big") >= 4 for p, _ in r.peers)
            ids = [p for p, _ in r.peers]
            assert len(ids) == min(want, 11 if n >= 4 else 8) == len(set(ids))
            assert pid_of(n) not in ids
            assert all(a == addr(int.from_bytes(p[8:], "big")) for p, a in r.peers)
    finally:
        await store.close()


async def test_redis_one_batch_mixes_compact_and_not(redis_server: RedisServer) -> None:
    from tracker.redis_store import RedisStore

    store = RedisStore(redis_server.url)
    try:
        hashes = [IH, IH2]
        for h in hashes:
            for n in range(10):
                await store.announce(req(n, left=0 if n < 3 else 10, ih=h), addr(n), 0.0)
        sizes = batch_sizes(store)
        shapes = [  # (n, seed, compact, no_peer_id, numwant, event)
            (n, n < 3, n % 3 == 0, n % 3 == 1, 1 + n % 5, "stopped" if n == 9 else "")
            for n in range(10)
        ]
        asks = [
            store.announce(
                req(
                    n,
                    left=0 if seed else 10,
                    ih=h,
                    numwant=want,
                    compact=c,
                    no_peer_id=np,
                    event=ev,
                ),
                addr(n),
                1.0,
            )
            for h in hashes
            for n, seed, c, np, want, ev in shapes
        ]
        got = await asyncio.gather(*asks)
        assert sizes == [len(asks)]  # all in one script call
        for i, r in enumerate(got):
            n, seed, c, np, want, ev = shapes[i % len(shapes)]
            if ev == "stopped":
                assert r.peers == [] and (r.complete, r.incomplete) == (3, 6)
                continue
            addrs = [a for _, a in r.peers]
            assert len(addrs) == want == len(set(addrs)) and addr(n) not in addrs
            assert set(addrs) <= {addr(m) for m in range(10)}
            if c or np:  # no ids wanted: none fetched
                assert all(p == b"" for p, _ in r.peers)
            else:
                assert all(p == pid_of(_n_of(a)) for p, a in r.peers)
            if seed:
                assert all(_n_of(a) >= 3 for a in addrs)  # a seed: leechers first
    finally:
        await store.close()
