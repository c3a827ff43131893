"""The aiohttp tracker over real sockets on 127.0.0.1: announce, scrape, pages, failures."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from swarm.core.announce import (
    AnnounceRequest,
    build_announce_url,
    build_scrape_url,
    pack_peer,
    unpack_peer,
)
from swarm.core.bencode import decode
from tracker.server import RunningTracker, lan_address, start_tracker
from tracker.store import MemoryStore, StoreFull

ROOT = Path(__file__).resolve().parents[2]
IH = bytes(range(20))
IH2 = b"%" * 20


def pid_of(n: int) -> bytes:
    return b"-SW0001-" + n.to_bytes(12, "big")


@pytest.fixture
async def tracker() -> AsyncIterator[RunningTracker]:
    t = await start_tracker("127.0.0.1", 0, interval=60, min_interval=30)
    yield t
    await t.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        yield s


async def get(http: aiohttp.ClientSession, url: str) -> dict:  # type: ignore[type-arg]
    async with http.get(url) as r:
        assert r.status == 200
        return decode(await r.read())  # type: ignore[no-any-return]


async def ann(
    http: aiohttp.ClientSession,
    t: RunningTracker,
    pid: bytes,
    port: int,
    left: int = 100,
    event: str = "",
    ih: bytes = IH,
    **kw: object,
) -> dict:  # type: ignore[type-arg]
    url = build_announce_url(t.url, ih, pid, port, 0, 0, left, event, **kw)  # type: ignore[arg-type]
    return await get(http, url)


async def test_two_peers_find_each_other(tracker: RunningTracker, http) -> None:  # type: ignore[no-untyped-def]
    first = await ann(http, tracker, pid_of(1), 7001, left=0, event="started")
    assert first[b"peers"] == b"" and first[b"interval"] == 60 and first[b"min interval"] == 30
    assert (first[b"complete"], first[b"incomplete"]) == (1, 0)
    second = await ann(http, tracker, pid_of(2), 7002, event="started")
    assert second[b"peers"] == pack_peer("127.0.0.1", 7001)
    assert (second[b"complete"], second[b"incomplete"]) == (1, 1)
    # the seed gets the leecher, never itself
    again = await ann(http, tracker, pid_of(1), 7001, left=0)
    assert again[b"peers"] == pack_peer("127.0.0.1", 7002)


async def test_dict_model_and_no_peer_id(tracker: RunningTracker, http) -> None:  # type: ignore[no-untyped-def]
    await ann(http, tracker, pid_of(1), 7001)
    url = build_announce_url(tracker.url, IH, pid_of(2), 7002, 0, 0, 5, compact=False)
    d = await get(http, url)
    assert d[b"peers"] == [{b"ip": b"127.0.0.1", b"port": 7001, b"peer id": pid_of(1)}]
    d2 = await get(http, url + "&no_peer_id=1")
    assert d2[b"peers"] == [{b"ip": b"127.0.0.1", b"port": 7001}]


async def test_binary_escapes_including_percent(tracker: RunningTracker, http) -> None:  # type: ignore[no-untyped-def]
    pid = b"%25%" + bytes(range(0x80, 0x90))
    pid = pid[:20].ljust(20, b"\x00")
    await ann(http, tracker, pid, 7001, ih=IH2)
    url = tracker.base_url + "/scrape?info_hash=" + "%25" * 20
    d = await get(http, url)
    assert d[b"files"][IH2][b"incomplete"] == 1
    d2 = await ann(http, tracker, pid_of(9), 7009, ih=IH2, compact=False)
    assert d2[b"peers"][0][b"peer id"] == pid


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("", b"missing info_hash"),
        ("info_hash=abc&peer_id=" + "x" * 20 + "&port=1", b"info_hash"),
        ("info_hash=" + "a" * 20 + "&peer_id=short&port=1", b"peer_id"),
        ("info_hash=" + "a" * 20 + "&peer_id=" + "x" * 20, b"missing port"),
        ("info_hash=" + "a" * 20 + "&peer_id=" + "x" * 20 + "&port=0", b"port"),
        ("info_hash=" + "a" * 20 + "&peer_id=" + "x" * 20 + "&port=70000", b"port"),
        ("info_hash=" + "a" * 20 + "&peer_id=" + "x" * 20 + "&port=1&left=ten", b"left"),
        ("info_hash=" + "a" * 20 + "&peer_id=" + "x" * 20 + "&port=1&uploaded=-1", b"uploaded"),
        ("info_hash=" + "a" * 20 + "&peer_id=" + "x" * 20 + "&port=1&event=boom", b"event"),
        ("info_hash=" + "a" * 20 + "&peer_id=" + "x" * 20 + "&port=1&numwant=x", b"numwant"),
        ("x=" + "y" * 5000, b"longer"),
        ("info_hash=%zz", b"info_hash"),
    ],
)
async def test_bad_announces_are_200_with_failure_reason(  # type: ignore[no-untyped-def]
    tracker: RunningTracker, http, query: str, reason: bytes
) -> None:
    d = await get(http, tracker.url + "?" + query)
    assert set(d) == {b"failure reason"} and reason in d[b"failure reason"]


async def test_huge_request_line_is_not_a_500(tracker: RunningTracker, http) -> None:  # type: ignore[no-untyped-def]
    async with http.get(tracker.url + "?x=" + "y" * 20000) as r:
        assert r.status != 500


async def test_stopped_and_completed(tracker: RunningTracker, http) -> None:  # type: ignore[no-untyped-def]
    await ann(http, tracker, pid_of(1), 7001)
    await ann(http, tracker, pid_of(2), 7002)
    await ann(http, tracker, pid_of(2), 7002, left=0, event="completed")
    sc = await get(http, build_scrape_url(tracker.base_url + "/scrape", [IH]))
    assert sc[b"files"][IH] == {b"complete": 1, b"downloaded": 1, b"incomplete": 1}
    gone = await ann(http, tracker, pid_of(2), 7002, left=0, event="stopped")
    assert gone[b"peers"] == b""
    d = await ann(http, tracker, pid_of(1), 7001)
    assert d[b"peers"] == b"" and d[b"complete"] == 0


async def test_numwant_and_random_selection(tracker: RunningTracker, http) -> None:  # type: ignore[no-untyped-def]
    for n in range(30):
        await ann(http, tracker, pid_of(n), 8000 + n, left=0)
    d = await ann(http, tracker, pid_of(99), 9000, numwant=5)
    assert len(d[b"peers"]) == 30
    seen = set()
    for _ in range(5):
        d = await ann(http, tracker, pid_of(99), 9000, numwant=5)
        chunk = d[b"peers"]
        assert len(chunk) == 30
        seen.update(chunk[i : i + 6] for i in range(0, 30, 6))
    assert len(seen) > 5  # not always the same five
    d = await ann(http, tracker, pid_of(99), 9000, numwant=0)
    assert d[b"peers"] == b""


async def test_trust_ip_and_ipv6(http) -> None:  # type: ignore[no-untyped-def]
    t = await start_tracker("127.0.0.1", 0, trust_ip=True)
    try:
        await get(http, build_announce_url(t.url, IH, pid_of(1), 7001, 0, 0, 1) + "&ip=10.1.2.3")
        await get(http, build_announce_url(t.url, IH, pid_of(2), 7002, 0, 0, 1) + "&ip=fe80::1")
        d = await ann(http, t, pid_of(3), 7003)
        assert unpack_peer(d[b"peers"]) == ("10.1.2.3", 7001)
        assert unpack_peer(d[b"peers6"]) == ("fe80::1", 7002)
    finally:
        await t.close()


async def test_ip_ignored_when_not_trusted(tracker: RunningTracker, http) -> None:  # type: ignore[no-untyped-def]
    await get(http, build_announce_url(tracker.url, IH, pid_of(1), 7001, 0, 0, 1) + "&ip=10.1.2.3")
    d = await ann(http, tracker, pid_of(3), 7003)
    assert unpack_peer(d[b"peers"]) == ("127.0.0.1", 7001)


async def test_allow_list(http, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tracker.app import load_allow_list

    f = tmp_path / "allow.txt"
    f.write_text(f"# ours\n{IH.hex()}\n\n")
    t = await start_tracker("127.0.0.1", 0, allow=load_allow_list(str(f)))
    try:
        ok = await ann(http, t, pid_of(1), 7001)
        assert b"failure reason" not in ok
        bad = await ann(http, t, pid_of(1), 7001, ih=IH2)
        assert b"not registered" in bad[b"failure reason"]
    finally:
        await t.close()


async def test_scrape_all_several_and_disabled(tracker: RunningTracker, http) -> None:  # type: ignore[no-untyped-def]
    await ann(http, tracker, pid_of(1), 7001)
    await ann(http, tracker, pid_of(1), 7001, ih=IH2, left=0)
    d = await get(http, tracker.base_url + "/scrape")
    assert set(d[b"files"]) == {IH, IH2}
    d = await get(http, build_scrape_url(tracker.base_url + "/scrape", [IH2, b"\x07" * 20]))
    assert d[b"files"] == {IH2: {b"complete": 1, b"downloaded": 0, b"incomplete": 0}}
    t = await start_tracker("127.0.0.1", 0, scrape_all=False)
    try:
        d = await get(http, t.base_url + "/scrape")
        assert b"failure reason" in d
    finally:
        await t.close()


async def test_status_page_and_stats(tracker: RunningTracker, http) -> None:  # type: ignore[no-untyped-def]
    await ann(http, tracker, pid_of(1), 7001, left=0)
    await ann(http, tracker, pid_of(2), 7002)
    await get(http, tracker.url + "?bad")
    async with http.get(tracker.base_url + "/stats") as r:
        st = await r.json()
    assert st["swarms"] == 1 and st["seeders"] == 1 and st["leechers"] == 1
    assert st["announces"] == 3 and st["failures"] == 1 and st["uptime"] >= 0
    async with http.get(tracker.base_url + "/") as r:
        assert r.status == 200 and r.content_type == "text/html"
        page = await r.text()
    assert IH.hex() in page and "uptime" in page and "<td>1</td><td>1</td>" in page


async def test_store_failure_is_a_failure_reason(http) -> None:  # type: ignore[no-untyped-def]
    t = await start_tracker("127.0.0.1", 0, store=MemoryStore(max_swarms=1))
    try:
        await ann(http, t, pid_of(1), 7001)
        d = await ann(http, t, pid_of(1), 7001, ih=IH2)
        assert b"too many swarms" in d[b"failure reason"]
    finally:
        await t.close()


# ------------------------------------------------------------------ MemoryStore with a simulated clock


def req(
    pid: int, left: int = 10, event: str = "", ih: bytes = IH, numwant: int = 50
) -> AnnounceRequest:
    return AnnounceRequest(ih, pid_of(pid), 6000 + pid, left=left, event=event, numwant=numwant)


async def test_expiry_with_simulated_clock() -> None:
    s = MemoryStore(peer_ttl=120.0, rng=random.Random(0))
    a1 = pack_peer("10.0.0.1", 1)
    await s.announce(req(1), a1, now=1000.0)
    await s.announce(req(2), pack_peer("10.0.0.2", 2), now=1100.0)
    assert await s.expire(1119.0) == 0
    r = await s.announce(req(3), pack_peer("10.0.0.3", 3), now=1119.0)
    assert len(r.peers) == 2
    # peer 1 is past its ttl: not handed out even before the sweep
    r = await s.announce(req(3), pack_peer("10.0.0.3", 3), now=1121.0)
    assert [p for p, _ in r.peers] == [pid_of(2)]
    assert await s.expire(1121.0) == 1
    assert (await s.stats())["peers"] == 2
    # re-announcing refreshes
    await s.announce(req(2), pack_peer("10.0.0.2", 2), now=1200.0)
    assert await s.expire(1300.0) == 1  # peer 3 (last seen 1121) goes, peer 2 stays
    assert await s.expire(1400.0) == 1
    assert (await s.stats())["swarms"] == 0


async def test_store_caps_and_seed_logic() -> None:
    s = MemoryStore(max_peers_per_swarm=3, rng=random.Random(0))
    for n in range(3):
        await s.announce(req(n, left=0), pack_peer("10.0.0.1", 100 + n), now=0)
    with pytest.raises(StoreFull, match="too many peers"):
        await s.announce(req(9), pack_peer("10.0.0.9", 9), now=0)
    r = await s.announce(req(0, left=0), pack_peer("10.0.0.1", 100), now=0)
    assert r.peers == [] and (r.complete, r.incomplete) == (3, 0)  # seeds get no seeds
    await s.announce(req(1, left=5), pack_peer("10.0.0.1", 101), now=0)  # seed -> leecher
    r = await s.announce(req(0, left=0), pack_peer("10.0.0.1", 100), now=0)
    assert [p for p, _ in r.peers] == [pid_of(1)] and (r.complete, r.incomplete) == (2, 1)
    # but aria2c, which says left=0 while it fetches a magnet's metadata, gets
    # the leechers first and then seeds: otherwise it would get no peers at all
    await s.announce(req(2, event="stopped"), pack_peer("10.0.0.1", 102), now=0)
    aria2 = AnnounceRequest(IH, b"A2-1-37-0-" + bytes(10), 7000, left=0)
    for _ in range(10):
        r = await s.announce(replace(aria2, numwant=1), pack_peer("10.0.0.7", 7000), now=0)
        assert [p for p, _ in r.peers] == [pid_of(1)]  # the leecher first, always
    r = await s.announce(aria2, pack_peer("10.0.0.7", 7000), now=0)
    assert [p for p, _ in r.peers] == [pid_of(1), pid_of(0)]  # then the seeds
    sc = await s.scrape([IH, IH2])
    assert list(sc) == [IH] and sc[IH].complete == 2


async def test_store_total_peer_cap() -> None:
    s = MemoryStore(max_peers=2)
    await s.announce(req(1), pack_peer("10.0.0.1", 1), now=0)
    await s.announce(req(2, ih=IH2), pack_peer("10.0.0.1", 2), now=0)
    with pytest.raises(StoreFull, match="too many peers"):
        await s.announce(req(3, ih=b"\x03" * 20), pack_peer("10.0.0.1", 3), now=0)
    with pytest.raises(StoreFull, match="too many peers"):
        await s.announce(req(3), pack_peer("10.0.0.1", 3), now=0)
    await s.announce(req(2, ih=IH2, event="stopped"), pack_peer("10.0.0.1", 2), now=0)
    await s.announce(req(3), pack_peer("10.0.0.1", 3), now=0)  # room again
    assert s.peer_count == 2 and list(s.swarms) == [IH]  # the emptied swarm went at once


async def test_one_source_cannot_fill_the_global_caps() -> None:
    """The swarm and peer caps are global: one address gets a share of each, so
    it cannot lock everyone else out for the peers' lifetime."""
    s = MemoryStore(max_swarms=10, max_peers=10, max_swarms_per_source=2, max_peers_per_source=3)
    flood = "10.9.9.9"
    await s.announce(req(1), pack_peer(flood, 1), now=0)
    await s.announce(req(2, ih=IH2), pack_peer(flood, 2), now=0)
    with pytest.raises(StoreFull, match="too many swarms from your address"):
        await s.announce(req(3, ih=b"\x03" * 20), pack_peer(flood, 3), now=0)
    await s.announce(req(3), pack_peer(flood, 3), now=0)
    with pytest.raises(StoreFull, match="too many peers from your address"):
        await s.announce(req(4), pack_peer(flood, 4), now=0)
    await s.announce(req(3), pack_peer(flood, 3), now=1)  # its own peers may re-announce
    # everyone else is still served, IPv6 hosts counted per /64
    await s.announce(req(5, ih=b"\x05" * 20), pack_peer("10.0.0.5", 5), now=0)
    await s.announce(req(6), pack_peer("2001:db8::1", 6), now=0)
    await s.announce(req(7), pack_peer("2001:db8::2", 7), now=0)
    await s.announce(req(8), pack_peer("2001:db8::3", 8), now=0)
    with pytest.raises(StoreFull, match="too many peers from your address"):
        await s.announce(req(9), pack_peer("2001:db8::ffff", 9), now=0)
    # leaving gives the share back: a stopped, and expiry
    await s.announce(req(3, event="stopped"), pack_peer(flood, 3), now=2)
    await s.announce(req(4), pack_peer(flood, 4), now=2)
    await s.expire(now=10_000)
    assert s.peers_by_source == {} and s.swarms_by_source == {} and s.swarms == {}
    await s.announce(req(9), pack_peer("2001:db8::ffff", 9), now=10_000)


async def test_store_sample_is_uniform_enough() -> None:
    s = MemoryStore(rng=random.Random(1))
    for n in range(20):
        await s.announce(req(n), pack_peer("10.0.0.1", 100 + n), now=0)
    counts = dict.fromkeys(range(20), 0)
    for _ in range(400):
        r = await s.announce(req(0, numwant=5), pack_peer("10.0.0.1", 100), now=0)
        assert len(r.peers) == 5 and pid_of(0) not in [p for p, _ in r.peers]
        for p, _ in r.peers:
            counts[int.from_bytes(p[8:], "big")] += 1
    assert counts[0] == 0 and min(counts[n] for n in range(1, 20)) > 50


# ------------------------------------------------------------------ process-level behaviour


def test_lan_address_is_an_address() -> None:
    import ipaddress

    ipaddress.ip_address(lan_address())


def test_cli_prints_port_and_stops_cleanly_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "swarm", "tracker", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert line.startswith("tracker listening on 127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])
        assert port > 0
        assert (
            proc.stdout.readline().decode().strip()
            == f"announce URL: http://127.0.0.1:{port}/announce"
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)


def test_redis_store_without_the_extra_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from swarm.cli import main

    monkeypatch.setitem(sys.modules, "tracker.redis_store", None)  # import fails: no redis-py
    assert main(["tracker", "--port", "0", "--store", "redis://127.0.0.1:1/0"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'swarm[redis]'" in err and "Traceback" not in err, err


def test_cli_bad_options_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from swarm.cli import main

    bad = tmp_path / "allow"
    bad.write_text("nothex\n")
    for extra in (
        ["--allow", str(bad)],
        ["--allow", str(tmp_path / "missing")],
        ["--store", "ftp://x"],
        ["--workers", "2"],
        ["--port", "70000"],
        ["--interval", "0"],
        ["--interval", "60", "--min-interval", "61"],
        ["--max-conns-per-ip", "-1"],
        ["--max-peers-per-ip", "0"],
    ):
        assert main(["tracker", "--port", "0", *extra]) == 2, extra
        err = capsys.readouterr().err
        assert "Traceback" not in err and err.startswith("swarm: error:"), err
    # and once through a real process, as a user would see it
    r = subprocess.run(
        [sys.executable, "-m", "swarm", "tracker", "--port", "0", "--store", "ftp://x"],
        capture_output=True,
        cwd=ROOT,
        timeout=30,
    )
    assert r.returncode == 2 and r.stderr.startswith(b"swarm: error: --store ftp://x")


async def test_concurrent_announces(tracker: RunningTracker, http) -> None:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    results = await asyncio.gather(*(ann(http, tracker, pid_of(n), 7000 + n) for n in range(200)))
    assert all(b"interval" in r for r in results)
    assert results[-1][b"complete"] + results[-1][b"incomplete"] >= 1
    assert time.monotonic() - t0 < 20


async def test_garbage_on_the_socket_does_not_hurt(tracker: RunningTracker, http) -> None:  # type: ignore[no-untyped-def]
    for junk in (
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"GET /announce?\xff\xfe HTTP/1.1\r\n\r\n",
        b"x" * 70000,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", tracker.port)
        writer.write(junk)
        await writer.drain()
        try:
            answer = await asyncio.wait_for(reader.read(65536), 10)
        except ConnectionResetError:
            answer = b""
        writer.close()
        assert b" 500 " not in answer[:20]
    d = await ann(http, tracker, pid_of(1), 7001)
    assert b"interval" in d


async def test_terminal_ticker_line(tracker: RunningTracker, http, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import io

    from tracker.app import STORE_KEY
    from tracker.server import _ticker

    out = io.StringIO()
    monkeypatch.setattr(sys, "stderr", out)
    await ann(http, tracker, pid_of(1), 7001, left=0)
    task = asyncio.create_task(_ticker(tracker, tracker.app[STORE_KEY], every=0.05))
    try:
        deadline = time.monotonic() + 10
        while "announces/s" not in out.getvalue():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
    assert "swarms 1  peers 1 (1 seeding)" in out.getvalue()
