"""DHT nodes on 127.0.0.1: a 30-node network, the loopback-only rule, state files."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from pathlib import Path
from typing import Any

from swarm.core.bencode import decode, encode
from swarm.core.dht.krpc import NodeInfo, Ping, Response, encode_message, encode_nodes
from swarm.core.dht.node_id import random_id
from swarm.core.dht.policy import is_loopback
from swarm.core.dht.routing import load_state
from swarm.dht import DHTNode

LOCAL = "127.0.0.1"


async def wait_for(cond: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def test_thirty_nodes_announce_and_find() -> None:
    nodes: list[DHTNode] = []
    try:
        first = DHTNode(LOCAL)
        await first.start()
        nodes.append(first)
        for _ in range(29):
            n = DHTNode(LOCAL, bootstrap=[(LOCAL, first.port)])
            await n.start(bootstrap_timeout=5.0)
            nodes.append(n)
        ports = {n.port for n in nodes}
        assert len(ports) == 30
        # Everyone learned someone; the bootstrap node filled its two far
        # buckets (k=8 each; only the bucket holding its own id splits).
        await wait_for(lambda: first.node_count() >= 12)
        assert all(n.node_count() >= 1 for n in nodes)

        info_hash = hashlib.sha1(b"thirty nodes").digest()
        acks = await asyncio.wait_for(nodes[7].announce(info_hash, 45678), 20)
        assert acks >= 3
        stored = [n for n in nodes if n.store.get(info_hash, 0.0)]
        assert len(stored) >= 3
        # Ask from a node that does not hold it: the answer must come over the wire.
        getter = next(n for n in nodes[8:] if n not in stored)
        peers = await asyncio.wait_for(getter.get_peers(info_hash, timeout=10.0), 20)
        assert (LOCAL, 45678) in peers
        # The streaming form finds it too.
        found = []
        streamer = next(n for n in reversed(nodes) if n not in stored)
        async for peer in streamer.iter_peers(info_hash, timeout=10.0):
            found.append(peer)
            if peer == (LOCAL, 45678):
                break
        assert (LOCAL, 45678) in found
        # A second announcer learns of the first on the way (announce = get_peers + announce).
        on_the_way: list[tuple[str, int]] = []
        assert await nodes[29].announce(info_hash, 45679, on_peers=on_the_way.extend) >= 3
        assert (LOCAL, 45678) in on_the_way
        # Nobody heard of anything outside loopback.
        for n in nodes:
            assert all(is_loopback(x.host) for x in n.table.nodes())
            assert n.stats["blocked_send"] == 0
    finally:
        await asyncio.gather(*(n.close() for n in nodes))


async def test_implied_port() -> None:
    a = DHTNode(LOCAL)
    await a.start()
    b = DHTNode(LOCAL, bootstrap=[(LOCAL, a.port)])
    await b.start()
    try:
        ih = random_id()
        assert await b.announce(ih, 1, implied_port=True, timeout=5.0) == 1
        assert a.store.get(ih, 0.0) == [(LOCAL, b.port)]
    finally:
        await b.close()
        await a.close()


class EvilRouter(asyncio.DatagramProtocol):
    """A 'bootstrap node' that answers everything with addresses outside loopback."""

    def __init__(self) -> None:
        self.node_id = random_id()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        msg = decode(data, strict_order=False)
        outside = [
            NodeInfo(random_id(), "10.1.2.3", 6881),
            NodeInfo(random_id(), "8.8.8.8", 53),
            NodeInfo(random_id(), "67.215.246.10", 6881),
            NodeInfo(random_id(), "192.168.0.1", 6881),
        ]
        reply = Response(
            msg[b"t"],
            self.node_id,
            nodes=tuple(outside),
            values=(("10.0.0.5", 6881), ("93.184.216.34", 80), (LOCAL, 4242)),
            token=b"tk",
        )
        assert self.transport is not None
        self.transport.sendto(encode_message(reply), addr)


async def test_loopback_node_never_sends_off_the_machine() -> None:
    loop = asyncio.get_running_loop()
    evil_tr, evil = await loop.create_datagram_endpoint(EvilRouter, local_addr=(LOCAL, 0))
    evil_port = evil_tr.get_extra_info("sockname")[1]
    # Default bootstrap on loopback is empty.
    assert DHTNode(LOCAL)._bootstrap_spec == ()
    assert DHTNode("0.0.0.0")._bootstrap_spec != ()
    node = DHTNode(
        LOCAL,
        bootstrap=[
            ("10.9.9.9", 6881),
            ("router.bittorrent.com", 6881),
            ("8.8.8.8", 6881),
            ("localhost", evil_port),
        ],
    )
    sent_to: list[Any] = []
    try:
        await node.start(wait=False)
        assert node._transport is not None
        real_sendto = node._transport.sendto

        def spy(data: bytes, addr: Any = None) -> None:
            sent_to.append(addr)
            real_sendto(data, addr)

        node._transport.sendto = spy  # type: ignore[method-assign]
        assert node._bootstrap_addrs == [(LOCAL, evil_port)]
        peers = await asyncio.wait_for(node.get_peers(random_id(), timeout=5.0), 10)
        node.add_node("10.0.0.1", 6881)
        assert await node.ping("8.8.8.8", 6881) is False
        assert peers == [(LOCAL, 4242)]  # outside peers dropped too
        assert (LOCAL, evil_port) in sent_to
        assert all(is_loopback(addr[0]) for addr in sent_to)
        # The last line of defence: the send path itself refuses.
        node._send(Ping(b"zz", node.node_id), ("8.8.8.8", 6881))
        assert node.stats["blocked_send"] == 1
        assert all(is_loopback(addr[0]) for addr in sent_to)
        assert all(is_loopback(n.host) for n in node.table.nodes())
    finally:
        await node.close()
        evil_tr.close()


async def test_state_file_round_trip(tmp_path: Path) -> None:
    state = tmp_path / "dht.state"
    a = DHTNode(LOCAL)
    await a.start()
    b = DHTNode(LOCAL, bootstrap=[(LOCAL, a.port)], state_file=state)
    await b.start()
    try:
        await wait_for(lambda: b.node_count() >= 1)
        b_id = b.node_id
        await b.close()
        assert state.exists()
        # A fresh node from the same state keeps its id and bootstraps from the saved table.
        c = DHTNode(LOCAL, state_file=state)
        await c.start()
        try:
            assert c.node_id == b_id
            await wait_for(lambda: c.node_count() >= 1)
        finally:
            await c.close()
        # A corrupt state file is ignored, not fatal.
        state.write_bytes(b"garbage")
        d = DHTNode(LOCAL, state_file=state)
        await d.start()
        assert len(d.node_id) == 20
        await d.close()
    finally:
        await a.close()


def _udp_client() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((LOCAL, 0))
    s.settimeout(5.0)
    return s


async def test_unknown_method_and_bad_token_answered_with_errors() -> None:
    node = DHTNode(LOCAL)
    await node.start()
    try:
        s = _udp_client()

        def ask(msg: dict[bytes, Any]) -> Any:
            s.sendto(encode(msg), (LOCAL, node.port))
            while True:  # skip the node's own verification pings to us
                reply = decode(s.recvfrom(2048)[0], strict_order=False)
                if reply[b"t"] == msg[b"t"]:
                    return reply

        me = random_id()
        r = await asyncio.to_thread(
            ask, {b"t": b"x1", b"y": b"q", b"q": b"vote", b"a": {b"id": me}}
        )
        assert r[b"y"] == b"e" and r[b"e"][0] == 204
        a = {b"id": me, b"info_hash": me, b"port": 5, b"token": b"forged"}
        r = await asyncio.to_thread(ask, {b"t": b"x2", b"y": b"q", b"q": b"announce_peer", b"a": a})
        assert r[b"y"] == b"e" and r[b"e"][0] == 203
        r = await asyncio.to_thread(
            ask, {b"t": b"x3", b"y": b"q", b"q": b"get_peers", b"a": {b"id": me, b"info_hash": me}}
        )
        a[b"token"] = r[b"r"][b"token"]
        r = await asyncio.to_thread(ask, {b"t": b"x4", b"y": b"q", b"q": b"announce_peer", b"a": a})
        assert r[b"y"] == b"r" and r[b"t"] == b"x4"
        assert node.store.get(me, 0.0) == [(LOCAL, 5)]
        s.close()
        assert encode_nodes([]) == b""
    finally:
        await node.close()


async def test_read_only_queriers_are_not_pinged_back() -> None:
    node = DHTNode(LOCAL)
    await node.start()
    ro, rw = _udp_client(), _udp_client()
    try:

        def exchange() -> tuple[bytes, list[bytes]]:
            ro.sendto(encode_message(Ping(b"r1", random_id(), read_only=True)), (LOCAL, node.port))
            assert decode(ro.recvfrom(2048)[0], strict_order=False)[b"t"] == b"r1"
            rw.sendto(encode_message(Ping(b"w1", random_id())), (LOCAL, node.port))
            seen = []
            while True:  # the reply, then the node's verification ping of us
                msg = decode(rw.recvfrom(2048)[0], strict_order=False)
                seen.append(msg[b"y"])
                if msg[b"y"] == b"q":
                    break
            ro.setblocking(False)
            extra = []
            try:
                while True:
                    extra.append(ro.recvfrom(2048)[0])
            except BlockingIOError:
                pass
            return b"".join(seen), extra

        seen, extra = await asyncio.to_thread(exchange)
        assert b"q" in seen
        assert extra == []  # the read-only node got no ping
    finally:
        ro.close()
        rw.close()
        await node.close()


async def test_ipv6_loopback_nodes() -> None:
    try:
        probe = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        import pytest
        from conftest import IN_CI

        if IN_CI:
            pytest.fail("no IPv6 loopback in CI: this machine kind has ::1")
        pytest.skip("no IPv6 loopback here")
    a = DHTNode("::1")
    await a.start()
    b = DHTNode("::1", bootstrap=[("::1", a.port), ("127.0.0.1", a.port)])
    c = DHTNode("::1", bootstrap=[("::1", a.port)])
    await b.start()
    await c.start()
    try:
        assert b._bootstrap_addrs == [("::1", a.port)]  # the IPv4 address is not ours to use
        ih = random_id()
        assert await b.announce(ih, 5555, timeout=5.0) >= 1
        assert ("::1", 5555) in await c.get_peers(ih, timeout=5.0)
    finally:
        for n in (c, b, a):
            await n.close()


async def test_rebootstraps_when_router_appears_later() -> None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind((LOCAL, 0))
    router_port = probe.getsockname()[1]
    probe.close()
    b = DHTNode(
        LOCAL, bootstrap=[(LOCAL, router_port)], maintenance_interval=0.05, query_timeout=0.2
    )
    await b.start(bootstrap_timeout=1.0)
    a = DHTNode(LOCAL, port=router_port)
    try:
        assert b.node_count() == 0  # nobody there yet
        await a.start()
        await wait_for(lambda: b.node_count() >= 1, timeout=10.0)
    finally:
        await b.close()
        await a.close()


async def test_table_saved_periodically(tmp_path: Path, monkeypatch: Any) -> None:
    import swarm.dht

    monkeypatch.setattr(swarm.dht, "SAVE_EVERY", 0.0)
    state = tmp_path / "sub" / "dht.state"
    a = DHTNode(LOCAL)
    await a.start()
    b = DHTNode(LOCAL, bootstrap=[(LOCAL, a.port)], state_file=state, maintenance_interval=0.05)
    await b.start()
    try:
        await wait_for(state.exists)
        own, nodes = load_state(state.read_bytes())
        assert own == b.node_id and [n.port for n in nodes] == [a.port]
    finally:
        await b.close()
        await a.close()


async def test_a_failing_handler_never_escapes_datagram_received() -> None:
    from swarm.dht import _Protocol

    node = DHTNode(LOCAL)
    await node.start()
    try:

        def boom(*_a: Any) -> None:
            raise RuntimeError("bug")

        node._answer = boom  # type: ignore[method-assign]
        _Protocol(node).datagram_received(encode_message(Ping(b"aa", random_id())), (LOCAL, 9))
        assert node.stats["queries"] == 1
    finally:
        await node.close()


async def test_port_in_use_is_a_swarm_error() -> None:
    import pytest

    from swarm.errors import SwarmError

    a = DHTNode(LOCAL)
    await a.start()
    try:
        with pytest.raises(SwarmError, match="cannot bind UDP"):
            await DHTNode(LOCAL, a.port).start()
    finally:
        await a.close()


async def test_close_returns_when_a_task_loses_its_first_cancel() -> None:
    """Python 3.11's ``asyncio.wait_for`` can swallow a cancel that lands as its inner
    wait times out; the maintenance loop then went on, and ``close()`` (awaiting it)
    hung (a CI run stopped at pytest's 120 s). Here a task drops its first cancel."""
    node = DHTNode(LOCAL, maintenance_interval=0.05)
    await node.start(bootstrap_timeout=0.1)

    async def deaf_once() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass  # the lost cancel
        await asyncio.sleep(3600)

    node._spawn(deaf_once())
    await asyncio.sleep(0)  # let it start and reach its first sleep
    closing = asyncio.ensure_future(node.close())
    done, _ = await asyncio.wait([closing], timeout=10)
    assert closing in done, "close() still waits for a task that dropped a cancel"
