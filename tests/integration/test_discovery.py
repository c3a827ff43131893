"""Peer discovery wired into the engine: DHT, PEX, the BEP 5 port message, defaults.

Everything here runs on 127.0.0.1: every DHT node binds loopback and
bootstraps only from a node the test made (a loopback node has no public
routers and drops every address outside loopback), and LSD is never started
for a loopback session. ``test_cli_on_loopback_sends_nothing_off_machine``
checks that promise on the real command line.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from swarm import discovery as discovery_mod
from swarm.core import wire
from swarm.core.bencode import decode as bdecode
from swarm.core.extensions import PexMessage, PexPeer, encode_pex
from swarm.core.metainfo import parse_metainfo
from swarm.create import create_torrent
from swarm.dht import DHTNode
from swarm.discovery import PEX_MAX_PER_MESSAGE, PEX_MAX_PER_MINUTE, PexManager, peer_address_ok
from swarm.errors import ProtocolError
from swarm.session import Session
from tests.helpers.procs import SWARM, read_events

LOCAL = "127.0.0.1"


def env_for(tmp_path: Path) -> dict[str, str]:
    # Any state a subprocess keeps goes to the test's directory, never $HOME.
    return {**os.environ, "PYTHONUNBUFFERED": "1", "SWARM_STATE_DIR": str(tmp_path / "state")}


async def wait_until(cond: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


def make_torrent(tmp_path: Path, size: int = 600_000, *, private: bool = False) -> tuple[Path, Path, bytes]:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    payload = os.urandom(size)
    (src / "data.bin").write_bytes(payload)
    tfile = tmp_path / "data.bin.torrent"
    tfile.write_bytes(create_torrent(src / "data.bin", piece_length=32768, private=private))
    return src, tfile, payload


@pytest.fixture
async def boot() -> Any:
    node = DHTNode(LOCAL, bootstrap=())
    await node.start(wait=False)
    try:
        yield node
    finally:
        await node.close()


async def stop_proc(proc: asyncio.subprocess.Process) -> int:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(proc.wait(), 10)
    except TimeoutError:
        proc.kill()
        return await proc.wait()


# ---------------------------------------------------------------- DHT, end to end


async def test_cli_seed_announces_and_get_finds_it_by_dht(tmp_path: Path, boot: DHTNode) -> None:
    """`swarm seed` announces to our bootstrap node; `swarm get` (no tracker, no --peer) finds it."""
    src, tfile, payload = make_torrent(tmp_path)
    meta = parse_metainfo(tfile.read_bytes())
    bootstrap = f"{LOCAL}:{boot.port}"
    env = env_for(tmp_path)
    seed = await asyncio.create_subprocess_exec(
        *SWARM, "seed", str(src / "data.bin"), "--torrent", str(tfile), "--host", LOCAL, "--port", "0",
        "--dht-bootstrap", bootstrap, "--json",
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )
    get = None
    try:
        events = await read_events(seed, "listening", 20)
        port = next(e for e in events if e["event"] == "listening")["port"]
        # The seed's announce reached the bootstrap node (its only DHT contact).
        await wait_until(lambda: (LOCAL, port) in boot.store.get(meta.info_hash, 0.0), 15, "announce")
        out = tmp_path / "out"
        out.mkdir()
        get = await asyncio.create_subprocess_exec(
            *SWARM, "get", str(tfile), "-o", str(out), "--host", LOCAL, "--port", "0",
            "--dht-bootstrap", bootstrap, "--json",
            cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )
        gevents = await read_events(get, "summary", 30)
        assert await asyncio.wait_for(get.wait(), 10) == 0
        peers = [e for e in gevents if e["event"] == "peer" and e.get("action") == "connected"]
        assert any(e.get("source") == "dht" and e["address"] == f"{LOCAL}:{port}" for e in peers), peers
        assert (out / "data.bin").read_bytes() == payload
        # A bare magnet (no tracker, no x.pe): the metadata, then the data, via the DHT.
        out2 = tmp_path / "out2"
        out2.mkdir()
        magnet = f"magnet:?xt=urn:btih:{meta.info_hash.hex()}"
        get = await asyncio.create_subprocess_exec(
            *SWARM, "get", magnet, "-o", str(out2), "--host", LOCAL, "--port", "0",
            "--dht-bootstrap", bootstrap, "--json",
            cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )
        await read_events(get, "summary", 40)
        assert await asyncio.wait_for(get.wait(), 10) == 0
        assert (out2 / "data.bin").read_bytes() == payload
        # A loopback session keeps no DHT table on disk.
        assert not list((tmp_path / "state").glob("dht*.state"))
    finally:
        if get is not None and get.returncode is None:
            get.kill()
            await get.wait()
        assert await stop_proc(seed) == 0


async def test_sessions_find_each_other_by_dht(tmp_path: Path, boot: DHTNode) -> None:
    src, tfile, payload = make_torrent(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    kw: dict[str, Any] = {"enable_dht": True, "dht_bootstrap": [(LOCAL, boot.port)], "state_dir": tmp_path}
    async with Session(LOCAL, 0, **kw) as seed_s, Session(LOCAL, 0, **kw) as get_s:
        assert seed_s.discovery is not None and seed_s.discovery.dht is not None
        assert seed_s.discovery.lsd is None  # loopback: no LSD even if asked
        port_msgs: list[tuple[str, int]] = []
        orig = seed_s.discovery.on_port_message

        def on_port(ip: str, port: int) -> None:
            port_msgs.append((ip, port))
            orig(ip, port)

        seed_s.discovery.on_port_message = on_port  # type: ignore[method-assign]
        sh = await seed_s.add_torrent(tfile, src, seed_only=True)
        await wait_until(lambda: boot.store.get(sh.info_hash, 0.0), 15, "seed announce")
        gh = await get_s.add_torrent(tfile, out)
        await asyncio.wait_for(gh.wait_complete(), 30)
        assert (out / "data.bin").read_bytes() == payload
        st = gh.status()
        assert st.dht_nodes is not None and st.dht_nodes >= 1
        # The BEP 5 port message: each side pinged the other's DHT node, which joined its table.
        seed_dht = seed_s.discovery.dht
        assert get_s.discovery is not None and get_s.discovery.dht is not None
        get_port = get_s.discovery.dht.port
        await wait_until(lambda: (LOCAL, get_port) in port_msgs, 5, "port message")
        await wait_until(lambda: seed_dht.table.get_by_addr(LOCAL, get_port) is not None, 10, "port message")


async def test_private_torrent_never_uses_dht_or_pex(tmp_path: Path, boot: DHTNode) -> None:
    src, tfile, _ = make_torrent(tmp_path, private=True)
    kw: dict[str, Any] = {"enable_dht": True, "dht_bootstrap": [(LOCAL, boot.port)]}
    async with Session(LOCAL, 0, **kw) as s:
        h = await s.add_torrent(tfile, src, seed_only=True)
        assert s.discovery is not None
        assert h.info_hash not in s.discovery._loops
        # A raw peer: our handshake must not carry the DHT bit, our ext handshake no ut_pex.
        reader, writer = await asyncio.open_connection(LOCAL, s.port)
        try:
            writer.write(wire.Handshake(h.info_hash, b"-XX0001-" + os.urandom(12), wire.make_reserved(dht=True)).encode())
            head = await asyncio.wait_for(reader.readexactly(68), 5)
            assert not wire.parse_handshake(head).dht
            ext = await asyncio.wait_for(_read_ext_handshake(reader), 5)
            assert b"ut_pex" not in ext[b"m"] and b"ut_metadata" in ext[b"m"]
        finally:
            writer.close()
        await asyncio.sleep(0)
        assert not boot.store.get(h.info_hash, 0.0)


async def _read_ext_handshake(reader: asyncio.StreamReader) -> dict[bytes, Any]:
    while True:
        n = int.from_bytes(await reader.readexactly(4), "big")
        body = await reader.readexactly(n)
        if n and body[0] == wire.EXTENDED and body[1] == 0:
            d = bdecode(body[2:])
            assert isinstance(d, dict)
            return d


async def test_public_torrent_advertises_pex_and_dht(tmp_path: Path, boot: DHTNode) -> None:
    src, tfile, _ = make_torrent(tmp_path)
    async with Session(LOCAL, 0, enable_dht=True, dht_bootstrap=[(LOCAL, boot.port)]) as s:
        h = await s.add_torrent(tfile, src, seed_only=True)
        reader, writer = await asyncio.open_connection(LOCAL, s.port)
        try:
            writer.write(wire.Handshake(h.info_hash, b"-XX0001-" + os.urandom(12), wire.make_reserved(dht=True)).encode())
            head = await asyncio.wait_for(reader.readexactly(68), 5)
            assert wire.parse_handshake(head).dht
            ext = await asyncio.wait_for(_read_ext_handshake(reader), 5)
            assert ext[b"m"][b"ut_pex"] == 1
        finally:
            writer.close()


async def test_session_defaults_are_quiet(tmp_path: Path) -> None:
    async with Session(LOCAL, 0) as s:
        assert s.discovery is None and s.dht_port() is None
        src, tfile, _ = make_torrent(tmp_path)
        h = await s.add_torrent(tfile, src, seed_only=True)
        assert h.status().dht_nodes is None


def test_bad_dht_bootstrap_is_bad_input(tmp_path: Path) -> None:
    import subprocess

    src, tfile, _ = make_torrent(tmp_path)
    for junk in ("host:abc", ":6881", "127.0.0.1:99999", "[::1"):
        r = subprocess.run(
            [*SWARM, "get", str(tfile), "-o", str(tmp_path), "--host", LOCAL, "--port", "0", "--no-lsd",
             "--dht-bootstrap", junk],
            capture_output=True, text=True, timeout=30, env=env_for(tmp_path),
        )
        assert r.returncode == 2, (junk, r.stderr)
        assert "--dht-bootstrap" in r.stderr and "Traceback" not in r.stderr


# ---------------------------------------------------------------- the loopback guard


class _SendRecorder:
    """Wraps a DHT node's datagram transport: every destination is recorded."""

    def __init__(self, inner: Any, sink: list[tuple[str, int]]) -> None:
        self._inner = inner
        self._sink = sink

    def sendto(self, data: bytes, addr: Any = None) -> None:
        self._sink.append((str(addr[0]), int(addr[1])))
        self._inner.sendto(data, addr)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@pytest.fixture
def guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Record every datagram any in-process DHT node sends, every DHT node and LSD service made."""
    rec: dict[str, Any] = {"sent": [], "nodes": [], "lsd": []}
    orig_start = DHTNode.start

    async def start(self: DHTNode, *a: Any, **kw: Any) -> None:
        # Wrap the transport the moment it exists, before the first query goes out.
        orig_send = self._send

        def send(msg: Any, addr: Any) -> None:
            if self._transport is not None and not isinstance(self._transport, _SendRecorder):
                self._transport = _SendRecorder(self._transport, rec["sent"])  # type: ignore[assignment]
            orig_send(msg, addr)

        self._send = send  # type: ignore[method-assign]
        rec["nodes"].append(self)
        await orig_start(self, *a, **kw)

    import swarm.lsd

    orig_lsd_init = swarm.lsd.LSDService.__init__

    def lsd_init(self: Any, *a: Any, **kw: Any) -> None:
        rec["lsd"].append((a, kw))
        orig_lsd_init(self, *a, **kw)

    monkeypatch.setattr(DHTNode, "start", start)
    monkeypatch.setattr(swarm.lsd.LSDService, "__init__", lsd_init)
    yield rec


def _loopback(host: str) -> bool:
    return ipaddress.ip_address(host).is_loopback


def _run_in_thread_loop(coro_factory: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}
    ready = threading.Event()

    def main() -> None:
        loop = asyncio.new_event_loop()
        box["loop"] = loop
        box["stop"] = asyncio.Event()

        async def run() -> None:
            box["value"] = await coro_factory()
            ready.set()
            await box["stop"].wait()
            await box["value"].close()

        try:
            loop.run_until_complete(run())
        finally:
            ready.set()
            loop.close()

    t = threading.Thread(target=main, daemon=True)
    t.start()
    assert ready.wait(10)
    return t, box


def test_cli_on_loopback_sends_nothing_off_machine(
    tmp_path: Path, guard: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`swarm seed` and `swarm get --host 127.0.0.1`, in this process: every DHT datagram
    goes to loopback (even with an off-machine --dht-bootstrap), no LSD, and get still
    finds the seed through the DHT."""
    from swarm.cli import main
    from swarm.cli import seed as seed_cli

    monkeypatch.setenv("SWARM_STATE_DIR", str(tmp_path / "state"))
    src, tfile, payload = make_torrent(tmp_path)
    meta = parse_metainfo(tfile.read_bytes())

    async def make_boot() -> DHTNode:
        node = DHTNode(LOCAL, bootstrap=())
        await node.start(wait=False)
        return node

    thread, box = _run_in_thread_loop(make_boot)
    boot: DHTNode = box["value"]
    bootstrap = f"{LOCAL}:{boot.port}"
    off_machine = "192.0.2.1:6881"  # TEST-NET-1: must be refused, never sent to
    try:
        # 1. seed in this thread; it stops itself once the announce reached our node.
        tasks: list[asyncio.Task[None]] = []

        def stop_when_announced(stop: asyncio.Event, got: list[int]) -> None:
            async def watch() -> None:
                deadline = time.monotonic() + 15
                while not boot.store.get(meta.info_hash, 0.0) and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                stop.set()

            tasks.append(asyncio.get_running_loop().create_task(watch()))

        monkeypatch.setattr(seed_cli, "install_stop_signals", stop_when_announced)
        rc = main(["seed", str(src / "data.bin"), "--torrent", str(tfile), "--host", LOCAL, "--port", "0",
                   "--dht-bootstrap", bootstrap, "--dht-bootstrap", off_machine, "-q"])
        assert rc == 0
        assert boot.store.get(meta.info_hash, 0.0), "the seed never announced"
        seed_node = guard["nodes"][-1]
        assert seed_node.loopback_only and seed_node._bootstrap_addrs == [(LOCAL, boot.port)]

        # 2. `swarm get` (no --peer) finds a seed through the DHT: a Session seeding in a thread.
        async def make_seed() -> Session:
            s = Session(LOCAL, 0, enable_dht=True, dht_bootstrap=[(LOCAL, boot.port)])
            await s.start()
            h = await s.add_torrent(tfile, src, seed_only=True)
            deadline = time.monotonic() + 15
            while (LOCAL, s.port) not in boot.store.get(h.info_hash, 0.0) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            return s

        seed_thread, seed_box = _run_in_thread_loop(make_seed)
        try:
            out = tmp_path / "out"
            out.mkdir()
            rc = main(["get", str(tfile), "-o", str(out), "--host", LOCAL, "--port", "0",
                       "--dht-bootstrap", bootstrap, "--dht-bootstrap", off_machine, "-q"])
            assert rc == 0
            assert (out / "data.bin").read_bytes() == payload
        finally:
            seed_box["loop"].call_soon_threadsafe(seed_box["stop"].set)
            seed_thread.join(10)
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(10)
    assert guard["sent"], "no DHT datagram was recorded: the guard saw nothing"
    assert all(_loopback(h) for h, _ in guard["sent"]), [a for a in guard["sent"] if not _loopback(a[0])]
    assert ("192.0.2.1", 6881) not in guard["sent"]
    assert all(n.loopback_only for n in guard["nodes"])
    assert guard["lsd"] == []
    # no DHT table on disk for a loopback node (a seed's resume file may be there)
    assert not list((tmp_path / "state").glob("dht*.state"))


# ---------------------------------------------------------------- PEX


class RawPeers:
    """A listening fake peer that records the handshakes it gets, and raw clients."""

    def __init__(self) -> None:
        self.handshakes: list[wire.Handshake] = []
        self.server: asyncio.Server | None = None
        self.port = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._on_conn, LOCAL, 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _on_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        try:
            hs = wire.parse_handshake(await asyncio.wait_for(reader.readexactly(68), 10))
            self.handshakes.append(hs)
            writer.write(wire.Handshake(hs.info_hash, b"-XX0001-" + os.urandom(12)).encode())
            await reader.read()  # hold the connection until the other side closes it
        except ProtocolError:
            writer.close()  # not a plain handshake (an MSE attempt): hang up, as plain-only peers do
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            pass

    async def client(self, port: int, info_hash: bytes, listen_port: int) -> tuple[Any, Any]:
        """A peer that connects to ``port``, speaks ut_pex and says it listens on ``listen_port``."""
        from swarm.core.bencode import encode as bencode

        reader, writer = await asyncio.open_connection(LOCAL, port)
        self.writers.append(writer)
        writer.write(wire.Handshake(info_hash, b"-XX0001-" + os.urandom(12)).encode())
        await asyncio.wait_for(reader.readexactly(68), 5)
        ext = bencode({b"m": {b"ut_pex": 9}, b"p": listen_port})
        writer.write(wire.encode_extended(0, ext) + wire.encode_have_none())
        return reader, writer

    async def close(self) -> None:
        for w in self.writers:
            w.close()
        if self.server is not None:
            self.server.close()


async def _read_pex(reader: asyncio.StreamReader, ext_id: int) -> dict[bytes, Any]:
    while True:
        n = int.from_bytes(await reader.readexactly(4), "big")
        body = await reader.readexactly(n)
        if n > 2 and body[0] == wire.EXTENDED and body[1] == ext_id:
            d = bdecode(body[2:])
            assert isinstance(d, dict)
            return d


async def test_pex_introduces_a_third_peer_both_ways(tmp_path: Path) -> None:
    """C (a raw peer listening on C.port) is connected to swarm seed X. Z, a swarm leech,
    knows only X: X tells Z about C by ut_pex, Z connects to C; and X tells C about Z."""
    src, tfile, _ = make_torrent(tmp_path, size=8_000_000)
    (tmp_path / "z").mkdir()
    raw = RawPeers()
    await raw.start()
    try:
        async with Session(LOCAL, 0) as x, Session(LOCAL, 0) as z:
            xh = await x.add_torrent(tfile, src, seed_only=True)
            c_reader, _ = await raw.client(x.port or 0, xh.info_hash, raw.port)
            await wait_until(lambda: xh._t.peers, 5, "C connected to X")
            zh = await z.add_torrent(tfile, tmp_path / "z", peers=[(LOCAL, x.port or 0)])
            await wait_until(
                lambda: any(h.peer_id == z.peer_id for h in raw.handshakes), 10, "Z connects to C"
            )
            assert zh._t.pex.accepted == 1
            # C heard of Z (an incoming peer of X that told its listen port) in its first message.
            d = await asyncio.wait_for(_read_pex(c_reader, 9), 10)
            assert bytes([127, 0, 0, 1]) + (z.port or 0).to_bytes(2, "big") in d[b"added"]
            await asyncio.wait_for(zh.wait_complete(), 30)
    finally:
        await raw.close()


class _FakePeer:
    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.closed = False
        self.ext_ids: dict[str, int] = {}
        self.sent: list[bytes] = []
        self.outgoing = True
        self.listen_port = address[1]
        self.have = None

    def send(self, data: bytes) -> None:
        self.sent.append(bytes(data))


class _FakeTorrent:
    def __init__(self, host: str = LOCAL, port: int = 6881, private: bool = False) -> None:
        self.session = type("S", (), {"host": host, "port": port, "self_addresses": set()})()
        self.meta = type("M", (), {"private": private})()
        self._known: set[tuple[str, int]] = set()
        self.added: list[tuple[str, int, str]] = []
        self.peers: dict[Any, None] = {}

    def is_known(self, addr: tuple[str, int]) -> bool:
        return addr in self._known

    def add_peer(self, host: str, port: int, source: str) -> None:
        self._known.add((host, port))
        self.added.append((host, port, source))


def _pex(*addrs: tuple[str, int]) -> bytes:
    return encode_pex(PexMessage([PexPeer(h, p) for h, p in addrs]))


def test_pex_receive_caps_and_filters(monkeypatch: pytest.MonkeyPatch) -> None:
    t = _FakeTorrent(host=LOCAL, port=7000)
    pm = PexManager(t)  # type: ignore[arg-type]
    sender = _FakePeer((LOCAL, 6000))
    junk = [("0.0.0.0", 1), ("224.0.0.1", 5), (LOCAL, 7000), (LOCAL, 6000), ("10.0.0.1", 80)]
    pm.on_message(sender, _pex(*junk))  # type: ignore[arg-type]
    assert t.added == []  # unspecified, multicast, ourselves, the sender, off-loopback
    many = [(LOCAL, 20000 + i) for i in range(50)]
    pm.on_message(sender, _pex(*many))  # type: ignore[arg-type]
    assert len(t.added) == PEX_MAX_PER_MESSAGE and all(s == "pex" for _, _, s in t.added)
    pm.on_message(sender, _pex(*[(LOCAL, 30000 + i) for i in range(50)]))  # type: ignore[arg-type]
    assert len(t.added) == PEX_MAX_PER_MINUTE  # the per-minute budget of this connection
    pm.on_message(_FakePeer((LOCAL, 6001)), _pex((LOCAL, 40000)))  # type: ignore[arg-type]
    assert t.added[-1] == (LOCAL, 40000, "pex")  # another connection has its own budget
    later = time.monotonic() + 61
    monkeypatch.setattr(discovery_mod.time, "monotonic", lambda: later)
    pm.on_message(sender, _pex((LOCAL, 50000)))  # type: ignore[arg-type]
    assert t.added[-1] == (LOCAL, 50000, "pex")
    with pytest.raises(ProtocolError):
        pm.on_message(sender, b"d5:added3:abce")  # type: ignore[arg-type]


def test_pex_libtorrent_sized_message_is_taken_not_fatal() -> None:
    """libtorrent sends up to 100 added peers in one ut_pex: we take our cap of them."""
    from swarm.core.bencode import encode as bencode

    t = _FakeTorrent(host=LOCAL, port=7000)
    pm = PexManager(t)  # type: ignore[arg-type]
    added = b"".join(bytes([127, 0, 0, 1]) + (20000 + i).to_bytes(2, "big") for i in range(100))
    pm.on_message(_FakePeer((LOCAL, 6000)), bencode({b"added": added, b"added.f": b"\0" * 100}))  # type: ignore[arg-type]
    assert len(t.added) == PEX_MAX_PER_MESSAGE


def test_pex_from_a_stranger_never_points_at_loopback() -> None:
    t = _FakeTorrent(host="0.0.0.0", port=7000)
    pm = PexManager(t)  # type: ignore[arg-type]
    pm.on_message(_FakePeer(("198.51.100.7", 6881)), _pex((LOCAL, 22), ("198.51.100.8", 6881)))  # type: ignore[arg-type]
    assert t.added == [("198.51.100.8", 6881, "pex")]
    assert not peer_address_ok("255.255.255.255", 1, loopback_only=False)


def test_pex_private_and_send_rate() -> None:
    t = _FakeTorrent(private=True)
    pm = PexManager(t)  # type: ignore[arg-type]
    pm.on_message(_FakePeer((LOCAL, 6000)), _pex((LOCAL, 20000)))  # type: ignore[arg-type]
    assert t.added == []
    t = _FakeTorrent()
    pm = PexManager(t)  # type: ignore[arg-type]
    a, b, c = _FakePeer((LOCAL, 1001)), _FakePeer((LOCAL, 1002)), _FakePeer((LOCAL, 1003))
    a.ext_ids["ut_pex"] = 7
    t.peers = {a: None, b: None}
    pm.tick(100.0)
    assert len(a.sent) == 1 and not b.sent  # b does not speak ut_pex
    msg = a.sent[0]
    assert msg[4] == wire.EXTENDED and msg[5] == 7
    d = bdecode(msg[6:])
    assert isinstance(d, dict) and d[b"added"] == bytes([127, 0, 0, 1]) + (1002).to_bytes(2, "big")
    t.peers[c] = None
    pm.tick(130.0)
    assert len(a.sent) == 1  # at most one a minute
    pm.tick(161.0)
    assert len(a.sent) == 2
    private = _FakeTorrent(private=True)
    pm = PexManager(private)  # type: ignore[arg-type]
    private.peers = {a: None, b: None}
    pm.tick(500.0)
    assert len(a.sent) == 2


# ---------------------------------------------------------------- wiring, without the network


class _FakeNode:
    """Stands in for DHTNode: records how Discovery built it; sends nothing."""

    made: list[_FakeNode] = []

    def __init__(self, host: str, port: int = 0, *, bootstrap: Any = None, state_file: Any = None) -> None:
        self.host, self.want_port, self.bootstrap, self.state_file = host, port, bootstrap, state_file
        self.port = 0
        self.nodes: list[tuple[str, int]] = []
        self.announced: list[bytes] = []
        self.closed = False
        _FakeNode.made.append(self)

    async def start(self, wait: bool = True) -> None:
        self.port = self.want_port or 40000

    def node_count(self) -> int:
        return 3

    def add_node(self, host: str, port: int) -> None:
        self.nodes.append((host, port))

    async def iter_peers(self, info_hash: bytes, timeout: float = 30.0) -> Any:
        # Only loopback: the torrent will dial what it is given.
        for peer in (("0.0.0.0", 1), ("224.0.0.1", 6881), (LOCAL, 9)):
            yield peer

    async def announce(self, info_hash: bytes, port: int, **kw: Any) -> int:
        self.announced.append(info_hash)
        return 1

    async def close(self) -> None:
        self.closed = True


async def test_discovery_wiring_on_a_lan_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On 0.0.0.0 (a fake DHT node that sends nothing, no LSD, no trackers, and only
    loopback peers to dial): the table is kept in the
    state dir, no --dht-bootstrap means the defaults, peers found go to the torrent with
    source "dht" (junk addresses dropped), remove/close stop the loop and the node."""
    import swarm.dht

    _FakeNode.made.clear()
    monkeypatch.setattr(swarm.dht, "DHTNode", _FakeNode)
    src, tfile, _ = make_torrent(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    async with Session("0.0.0.0", 0, enable_dht=True, state_dir=tmp_path / "st") as s:
        node = _FakeNode.made[-1]
        assert node.state_file == tmp_path / "st" / "dht.state"
        assert node.bootstrap is None and node.want_port == s.port
        assert s.dht is node and s.dht_port() == node.port and s.lsd is None
        h = await s.add_torrent(tfile, out)
        assert s.discovery is not None
        await wait_until(lambda: node.announced, 5, "an announce")
        assert (LOCAL, 9) in h._t.pool.known
        assert ("0.0.0.0", 1) not in h._t.pool.known and ("224.0.0.1", 6881) not in h._t.pool.known
        assert h.status().dht_nodes == 3
        h._t.on_messages(_FakeConn(h._t), [wire.Port(7777)])
        assert node.nodes == [("198.51.100.9", 7777)]
        loop_task = s.discovery._loops[h.info_hash]
        await h.stop()
        await wait_until(lambda: loop_task.done(), 5, "the DHT loop to stop")
    assert node.closed


class _FakeConn:
    def __init__(self, torrent: Any) -> None:
        self.address = ("198.51.100.9", 51413)
        self.closed = False
        self.am_interested = False
        self.landed_bytes = 0  # blocks booked by the decoder (PeerConnection has it too)


async def test_lsd_peers_only_for_our_public_torrents(tmp_path: Path) -> None:
    src, tfile, _ = make_torrent(tmp_path)
    psrc = tmp_path / "p"
    psrc.mkdir()
    ptfile = tmp_path / "p.torrent"
    (psrc / "p.bin").write_bytes(os.urandom(50_000))
    ptfile.write_bytes(create_torrent(psrc / "p.bin", private=True))
    async with Session(LOCAL, 0, enable_dht=True, dht_bootstrap=()) as s:
        assert s.discovery is not None
        h = await s.add_torrent(tfile, src, seed_only=True)
        ph = await s.add_torrent(ptfile, psrc, seed_only=True)
        s.discovery._on_lsd_peer(h.info_hash, LOCAL, 40001)
        s.discovery._on_lsd_peer(ph.info_hash, LOCAL, 40002)
        s.discovery._on_lsd_peer(b"\x01" * 20, LOCAL, 40003)
        s.discovery._on_lsd_peer(h.info_hash, "10.1.2.3", 40004)  # off loopback: dropped
        assert (LOCAL, 40001) in h._t.pool.known
        assert (LOCAL, 40002) not in ph._t.pool.known
        assert ("10.1.2.3", 40004) not in h._t.pool.known


async def test_a_slow_dht_start_does_not_stall_the_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Resolving the routers' names may hang on an offline LAN: the session starts anyway,
    and the torrent's DHT loop begins once the node is up."""
    import swarm.dht

    release = asyncio.Event()

    class SlowNode(_FakeNode):
        async def start(self, wait: bool = True) -> None:
            await release.wait()
            await super().start(wait)

    _FakeNode.made.clear()
    monkeypatch.setattr(swarm.dht, "DHTNode", SlowNode)
    monkeypatch.setattr(discovery_mod, "DHT_START_WAIT", 0.1)
    src, tfile, _ = make_torrent(tmp_path)
    s = Session("0.0.0.0", 0, enable_dht=True)
    await asyncio.wait_for(s.start(), 5)
    try:
        assert s.dht is None and s.dht_port() is None
        h = await s.add_torrent(tfile, src, seed_only=True)
        release.set()
        node = _FakeNode.made[-1]
        await wait_until(lambda: node.announced == [h.info_hash], 5, "the announce once the node is up")
        assert s.dht is node
    finally:
        await s.close()
    assert node.closed
