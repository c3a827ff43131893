"""LSD discovery between two network namespaces joined by a veth pair.

Multicast never leaves the two namespaces this test creates (they have no
other interface). Needs root and ``ip netns``: skipped outside CI without
them, failing in CI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import IN_CI, require_tool

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import asyncio, json, sys, time
from swarm.lsd import LSDService

async def main():
    me, other = bytes.fromhex(sys.argv[1]), bytes.fromhex(sys.argv[2])
    port, iface = int(sys.argv[3]), sys.argv[4]
    seen = []
    found = asyncio.Event()
    def on_peer(ih, ip, p):
        seen.append([ih.hex(), ip, p])
        if ih == other:
            found.set()
    svc = LSDService(port, on_peer, iface, min_interval=0.2)
    await svc.start()
    deadline = time.monotonic() + 20
    found_at = None
    # Keep announcing a while after finding the other side, so it hears us too.
    while time.monotonic() < deadline and (found_at is None or time.monotonic() < found_at + 1.5):
        svc.announce([me])
        try:
            await asyncio.wait_for(found.wait(), 0.25)
        except asyncio.TimeoutError:
            pass
        if found.is_set() and found_at is None:
            found_at = time.monotonic()
        if found.is_set():
            await asyncio.sleep(0.2)
    svc.close()
    print(json.dumps({"seen": seen, "received": svc.received}))

if sys.argv[5] == "uvloop":
    import uvloop
    uvloop.run(main())
else:
    asyncio.run(main())
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def test_lsd_discovery_between_namespaces() -> None:
    require_tool("ip")
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("netns test needs root in CI")
        pytest.skip("needs root for ip netns")
    tag = f"{os.getpid() % 100000}"
    ns_a, ns_b = f"swarm-lsd-{tag}-a", f"swarm-lsd-{tag}-b"
    dev_a, dev_b = f"sl{tag}a", f"sl{tag}b"
    try:
        _ip("netns", "add", ns_a)
    except subprocess.CalledProcessError as exc:
        if IN_CI:
            pytest.fail(f"ip netns add failed: {exc.stderr!r}")
        pytest.skip(f"ip netns not permitted here: {exc.stderr!r}")
    procs: list[subprocess.Popen[str]] = []
    try:
        _ip("netns", "add", ns_b)
        _ip("link", "add", dev_a, "type", "veth", "peer", "name", dev_b)
        _ip("link", "set", dev_a, "netns", ns_a)
        _ip("link", "set", dev_b, "netns", ns_b)
        for ns, dev, addr in ((ns_a, dev_a, "10.77.0.1"), (ns_b, dev_b, "10.77.0.2")):
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", dev)

        ih_a, ih_b = "aa" * 20, "bb" * 20
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        for ns, me, other, port, addr, loop in (
            (ns_a, ih_a, ih_b, "6881", "10.77.0.1", "asyncio"),
            (ns_b, ih_b, ih_a, "51413", "10.77.0.2", "uvloop"),
        ):
            procs.append(
                subprocess.Popen(
                    [
                        "ip",
                        "netns",
                        "exec",
                        ns,
                        sys.executable,
                        "-c",
                        SCRIPT,
                        me,
                        other,
                        port,
                        addr,
                        loop,
                    ],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    cwd=REPO,
                    env=env,
                )
            )
        results = []
        for p in procs:
            out, err = p.communicate(timeout=40)
            assert p.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
        seen_a = {tuple(x) for x in results[0]["seen"]}
        seen_b = {tuple(x) for x in results[1]["seen"]}
        assert (ih_b, "10.77.0.2", 51413) in seen_a
        assert (ih_a, "10.77.0.1", 6881) in seen_b
        # Our own announces come back (multicast loop) but are filtered by cookie.
        assert all(x[0] == ih_b for x in seen_a)
        assert all(x[0] == ih_a for x in seen_b)
        # Repeats within RECEIVE_INTERVAL are reported once.
        assert len(seen_a) == len(results[0]["seen"]) == 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        for ns in (ns_a, ns_b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
