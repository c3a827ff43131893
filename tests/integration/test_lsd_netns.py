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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import require_libtorrent

from tests.helpers.lt import make_lt_torrent
from tests.helpers.netns import NsPair, two_namespaces

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import asyncio, json, os, sys, time
from swarm.lsd import LSDService

async def main():
    me, other = bytes.fromhex(sys.argv[1]), bytes.fromhex(sys.argv[2])
    port, iface, loop, family, my_flag, their_flag = sys.argv[3:9]
    seen = []
    def on_peer(ih, ip, p):
        seen.append([ih.hex(), ip, p])
        if ih == other and not os.path.exists(my_flag):
            open(my_flag, "w").close()  # tell the other side we heard it
    svc = LSDService(int(port), on_peer, iface, ipv6=family == "v6", min_interval=0.1)
    task = asyncio.create_task(svc.run(lambda: [me], period=0.2))
    # Keep announcing until both sides have heard each other (or time runs out).
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (
        os.path.exists(my_flag) and os.path.exists(their_flag)
    ):
        await asyncio.sleep(0.05)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    print(json.dumps({"seen": seen, "received": svc.received}))

if sys.argv[5] == "uvloop":
    import uvloop
    uvloop.run(main())
else:
    asyncio.run(main())
"""

LT_SCRIPT = r"""
import json, os, sys, time
import libtorrent as lt

torrent, save, iface, done = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
ses = lt.session({
    "listen_interfaces": iface + ":6881",
    "enable_dht": False,
    "enable_lsd": True,
    "enable_upnp": False,
    "enable_natpmp": False,
    "allow_multiple_connections_per_ip": True,
    # Plain TCP at once: by default libtorrent tries uTP first (10 s timeout)
    # and MSE encryption, neither of which swarm speaks.
    "enable_outgoing_utp": False,
    "enable_incoming_utp": False,
    "out_enc_policy": 2,
})
ses.add_torrent({"ti": lt.torrent_info(torrent), "save_path": save})
deadline = time.monotonic() + 25
while time.monotonic() < deadline and not os.path.exists(done):
    time.sleep(0.05)
print(json.dumps({"port": ses.listen_port()}))
"""

OUR_SCRIPT = r"""
import asyncio, json, sys, time
from swarm.core import wire
from swarm.errors import ProtocolError
from swarm.lsd import LSDService

async def main():
    ih, port, iface, done = bytes.fromhex(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    heard = []
    bad = []
    handshake = asyncio.get_running_loop().create_future()

    async def on_conn(reader, writer):
        hd = wire.HandshakeDecoder()
        try:
            while not hd.head_done:
                chunk = await reader.read(68)
                if not chunk:
                    break
                hd.feed(chunk)
        except ProtocolError:
            bad.append(1)
        if hd.head_done and not handshake.done():
            handshake.set_result(hd.info_hash.hex())
        writer.close()

    server = await asyncio.start_server(on_conn, iface, port)
    svc = LSDService(port, lambda h, ip, p: heard.append([h.hex(), ip, p]), iface, min_interval=0.5)
    await svc.start()
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline and not (handshake.done() and heard):
        svc.announce([ih])
        try:
            await asyncio.wait_for(asyncio.shield(handshake), 0.25)
        except asyncio.TimeoutError:
            pass
    svc.close()
    server.close()
    open(done, "w").close()
    print(json.dumps({"heard": heard, "handshake": handshake.result() if handshake.done() else None, "bad": len(bad)}))

asyncio.run(main())
"""


@pytest.fixture
def netns_pair() -> Iterator[NsPair]:
    """Two namespaces joined by a veth pair: 10.77.0.1 / fd77::1 and 10.77.0.2 / fd77::2.

    Yields (ns_a, ns_b, dev_a, dev_b).
    """
    with two_namespaces(
        "lsd", "sl", ("10.77.0.1", "10.77.0.2"), multicast_route=True, addrs6=("fd77::1", "fd77::2")
    ) as pair:
        yield pair


def _run_all(cmds: list[tuple[str, str, list[str]]]) -> list[dict[str, Any]]:
    """Run python scripts in namespaces concurrently; their last stdout line as JSON."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs: list[subprocess.Popen[str]] = []
    try:
        for ns, script, args in cmds:
            procs.append(
                subprocess.Popen(
                    ["ip", "netns", "exec", ns, sys.executable, "-c", script, *args],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    cwd=REPO,
                    env=env,
                )
            )
        results = []
        for p in procs:
            out, err = p.communicate(timeout=45)
            assert p.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)


def test_lsd_discovery_between_namespaces(
    netns_pair: tuple[str, str, str, str], tmp_path: Path
) -> None:
    ns_a, ns_b, _, _ = netns_pair
    ih_a, ih_b = "aa" * 20, "bb" * 20
    fa, fb = str(tmp_path / "a"), str(tmp_path / "b")
    res_a, res_b = _run_all(
        [
            (ns_a, SCRIPT, [ih_a, ih_b, "6881", "10.77.0.1", "asyncio", "v4", fa, fb]),
            (ns_b, SCRIPT, [ih_b, ih_a, "51413", "10.77.0.2", "uvloop", "v4", fb, fa]),
        ]
    )
    seen_a = {tuple(x) for x in res_a["seen"]}
    seen_b = {tuple(x) for x in res_b["seen"]}
    assert (ih_b, "10.77.0.2", 51413) in seen_a
    assert (ih_a, "10.77.0.1", 6881) in seen_b
    # Our own announces come back (multicast loop) but are filtered by cookie.
    assert all(x[0] == ih_b for x in seen_a)
    assert all(x[0] == ih_a for x in seen_b)
    # Repeats within RECEIVE_INTERVAL are reported once.
    assert len(res_a["seen"]) == 1


def test_lsd_ipv6_discovery_between_namespaces(
    netns_pair: tuple[str, str, str, str], tmp_path: Path
) -> None:
    ns_a, ns_b, dev_a, dev_b = netns_pair
    ih_a, ih_b = "aa" * 20, "bb" * 20
    fa, fb = str(tmp_path / "a"), str(tmp_path / "b")
    res_a, res_b = _run_all(
        [
            (ns_a, SCRIPT, [ih_a, ih_b, "6881", dev_a, "asyncio", "v6", fa, fb]),
            (ns_b, SCRIPT, [ih_b, ih_a, "51413", dev_b, "uvloop", "v6", fb, fa]),
        ]
    )
    # Sources are whatever address the kernel picked on the link (ULA or link-local).
    from_b = [x for x in res_a["seen"] if x[0] == ih_b and x[2] == 51413]
    from_a = [x for x in res_b["seen"] if x[0] == ih_a and x[2] == 6881]
    assert from_b and from_a, (res_a, res_b)
    assert ":" in from_b[0][1] and ":" in from_a[0][1]
    assert all(x[0] == ih_b for x in res_a["seen"])


def test_lsd_interop_with_libtorrent(netns_pair: tuple[str, str, str, str], tmp_path: Path) -> None:
    """libtorrent (LSD on) in one namespace, LSDService in the other: each finds the other.

    libtorrent hearing us is proven by its connecting to our port with the
    torrent's info-hash in the handshake.
    """
    lt = require_libtorrent()
    ns_a, ns_b, _, _ = netns_pair
    (tmp_path / "data.bin").write_bytes(os.urandom(100_000))
    torrent = tmp_path / "t.torrent"
    torrent.write_bytes(make_lt_torrent(lt, tmp_path / "data.bin", 16384))
    ih = lt.torrent_info(str(torrent)).info_hashes().v1.to_bytes().hex()
    empty = tmp_path / "leech"
    empty.mkdir()
    done = tmp_path / "done"
    res_lt, res_us = _run_all(
        [
            (ns_a, LT_SCRIPT, [str(torrent), str(empty), "10.77.0.1", str(done)]),
            (ns_b, OUR_SCRIPT, [ih, "51413", "10.77.0.2", str(done)]),
        ]
    )
    assert [ih, "10.77.0.1", res_lt["port"]] in res_us["heard"]
    assert res_us["handshake"] == ih
    assert res_us["bad"] == 0


def test_lsd_service_refuses_loopback_and_unstarted_use() -> None:
    from swarm.lsd import LSDService

    with pytest.raises(ValueError):
        LSDService(6881, lambda *a: None, "127.0.0.1")
    with pytest.raises(ValueError):
        LSDService(6881, lambda *a: None, "lo", ipv6=True)
    with pytest.raises(RuntimeError):
        LSDService(6881, lambda *a: None, "10.1.2.3").announce([b"\0" * 20])
