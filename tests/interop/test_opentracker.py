"""Our tracker client (HTTP and UDP, BEP 15) against Debian's opentracker."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from conftest import require_tool

from swarm.trackers import TrackerClient

pytestmark = pytest.mark.interop

IH = bytes.fromhex("5a" * 20)


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 (opentracker takes both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = int(t.getsockname()[1])
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                    u.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


@contextlib.contextmanager
def opentracker(tmp: Path, hashes: list[bytes]) -> Iterator[int]:
    """Run opentracker whitelisting ``hashes``; yield its port (HTTP and UDP)."""
    exe = require_tool("opentracker")
    port = free_port()
    tmp.chmod(0o755)  # it drops root after chroot; pytest's 0700 dirs would hide the list
    (tmp / "access.whitelist").write_text("".join(h.hex() + "\n" for h in hashes))
    (tmp / "opentracker.conf").write_text(
        "tracker.rootdir .\n"
        "access.whitelist access.whitelist\n"
        f"listen.tcp 127.0.0.1:{port}\n"
        f"listen.udp 127.0.0.1:{port}\n"
    )
    proc = subprocess.Popen(
        [exe, "-f", "opentracker.conf"],
        cwd=tmp,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            assert proc.poll() is None, f"opentracker exited: {proc.stderr.read()!r}"  # type: ignore[union-attr]
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, "opentracker did not start"
            time.sleep(0.02)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


async def until(cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class Peer:
    def __init__(self, left: int) -> None:
        self.left = left
        self.found: set[tuple[str, int]] = set()

    def stats(self) -> tuple[int, int, int]:
        return 0, 0, self.left

    def on_peers(self, peers: list[tuple[str, int]]) -> None:
        self.found.update(peers)


@contextlib.asynccontextmanager
async def running(c: TrackerClient) -> AsyncIterator[None]:
    task = asyncio.create_task(c.run())
    try:
        yield
    finally:
        await c.stop(timeout=2.0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)


def make(url: str, n: int, peer: Peer, **kw: object) -> TrackerClient:
    return TrackerClient(
        [[url]],
        IH,
        b"-SW0001-" + n.to_bytes(12, "big"),
        7000 + n,
        peer.stats,
        peer.on_peers,
        min_interval=0.1,
        retry_base=0.1,
        http_timeout=5.0,
        udp_base_timeout=0.5,
        udp_attempts=3,
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("scheme", ["http", "udp"])
async def test_two_clients_meet_through_opentracker(tmp_path: Path, scheme: str) -> None:
    with opentracker(tmp_path, [IH]) as port:
        url = f"{scheme}://127.0.0.1:{port}/announce"
        seed, leech = Peer(0), Peer(1000)
        cs, cl = make(url, 1, seed), make(url, 2, leech)
        async with running(cs):
            await until(lambda: cs.entries[url].state == "ok", what="seed announced")
            async with running(cl):
                await until(lambda: ("127.0.0.1", 7001) in leech.found, what="leech finds seed")
                st = cl.status()[0]
                assert st.state == "ok" and st.last_error is None
                assert st.seeders == 1 and st.leechers == 1
                scraped = await cl.scrape()
                assert scraped[url].complete == 1 and scraped[url].incomplete == 1
                leech.left = 0
                cl.completed()

                async def downloaded() -> int:
                    return (await cl.scrape())[url].downloaded

                deadline = time.monotonic() + 10
                while await downloaded() < 1:
                    assert time.monotonic() < deadline, "completed never counted"
                    await asyncio.sleep(0.1)
            # the leech sent "stopped": opentracker forgets it
            deadline = time.monotonic() + 10
            while True:
                s = (await cs.scrape())[url]
                if s.complete == 1 and s.incomplete == 0:
                    break
                assert time.monotonic() < deadline, f"stopped not seen: {s}"
                await asyncio.sleep(0.1)


@pytest.mark.parametrize("scheme", ["http", "udp"])
async def test_unlisted_hash_is_a_failure_status(tmp_path: Path, scheme: str) -> None:
    with opentracker(tmp_path, [b"\x01" * 20]) as port:
        url = f"{scheme}://127.0.0.1:{port}/announce"
        c = make(url, 1, Peer(10))
        async with running(c):
            await until(lambda: c.entries[url].state == "error", what="refusal")
        expected = "tracker says" if scheme == "http" else "empty answer"
        assert expected in (c.status()[0].last_error or "")
