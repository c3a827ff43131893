"""A running DHT node under hostile traffic on 127.0.0.1 stays up and bounded."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from typing import Any

from swarm.core.bencode import decode, encode
from swarm.core.dht.krpc import (
    AnnouncePeer,
    FindNode,
    GetPeers,
    NodeInfo,
    Ping,
    Response,
    encode_message,
)
from swarm.core.dht.peer_store import PeerStore
from swarm.dht import MAX_PENDING, MAX_PINGS, DHTNode

LOCAL = "127.0.0.1"


def _ping_once(port: int, timeout: float = 5.0) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((LOCAL, 0))
    s.settimeout(timeout)
    try:
        s.sendto(encode_message(Ping(b"pp", b"P" * 20)), (LOCAL, port))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = decode(s.recvfrom(4096)[0], strict_order=False)
            if msg.get(b"t") == b"pp" and msg.get(b"y") == b"r":
                return True
        return False
    except TimeoutError:
        return False
    finally:
        s.close()


def _hostile_packets(rng: random.Random, token: bytes, n: int) -> list[bytes]:
    def rid() -> bytes:
        return rng.randbytes(20)

    valid = [
        encode_message(Ping(b"a", rid())),
        encode_message(FindNode(b"ab", rid(), rid())),
        encode_message(GetPeers(b"abc", rid(), rid())),
        encode_message(AnnouncePeer(b"x", rid(), rid(), 6881, token)),
        encode_message(Response(b"zz", rid(), nodes=(NodeInfo(rid(), "10.0.0.1", 1),))),
    ]
    out = []
    for i in range(n):
        kind = i % 8
        if kind == 0:
            out.append(rng.randbytes(rng.randrange(0, 200)))
        elif kind == 1:  # mutated valid message
            buf = bytearray(rng.choice(valid))
            for _ in range(rng.randrange(1, 5)):
                buf[rng.randrange(len(buf))] = rng.randrange(256)
            out.append(bytes(buf[: rng.randrange(1, len(buf) + 1)]))
        elif kind == 2:  # announce of a fresh info-hash with a valid token
            out.append(
                encode_message(AnnouncePeer(b"an", rid(), rid(), rng.randrange(1, 65535), token))
            )
        elif kind == 3:  # many peers on one hash
            out.append(
                encode_message(
                    AnnouncePeer(b"ao", rid(), b"H" * 20, rng.randrange(1, 65535), token)
                )
            )
        elif kind == 4:
            out.append(encode_message(FindNode(rng.randbytes(2), rid(), rid())))
        elif kind == 5:  # huge or deep
            out.append(
                b"d1:t2:aa1:y1:q1:q4:ping1:ad2:id" + str(10**8).encode() + b":" + b"x" * 3000
            )
        elif kind == 6:  # unsolicited responses and errors
            out.append(encode({b"t": rng.randbytes(2), b"y": b"r", b"r": {b"id": rid()}}))
        else:
            out.append(encode({b"t": b"q", b"y": b"q", b"q": b"get_peers", b"a": {b"id": 5}}))
    return out


async def test_flood_of_hostile_packets() -> None:
    store = PeerStore(max_per_hash=20, max_hashes=100)
    node = DHTNode(LOCAL, peer_store=store)
    await node.start()
    socks = []
    try:
        # A token for 127.0.0.1, as any local attacker could get one.
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((LOCAL, 0))
        s.settimeout(5.0)
        s.sendto(encode_message(GetPeers(b"tk", b"T" * 20, b"H" * 20)), (LOCAL, node.port))
        reply = await asyncio.to_thread(s.recvfrom, 4096)
        token = decode(reply[0], strict_order=False)[b"r"][b"token"]
        s.close()

        packets = _hostile_packets(random.Random(5), token, 10_000)
        # 50 source ports, 200 packets each: within each source's burst, so
        # almost everything reaches the decoder rather than the rate limiter.
        socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(50)]
        for sk in socks:
            sk.bind((LOCAL, 0))
            sk.setblocking(False)
        loop = asyncio.get_running_loop()
        for i, pkt in enumerate(packets):
            try:
                socks[i % 50].sendto(pkt, (LOCAL, node.port))
            except BlockingIOError:
                pass
            if i % 100 == 99:
                # Let the node drain its socket, so the kernel does not drop the flood.
                target = i + 1 - 50
                deadline = loop.time() + 2.0
                while node.stats["received"] < target and loop.time() < deadline:
                    await asyncio.sleep(0.001)

        assert await asyncio.to_thread(_ping_once, node.port)
        st = node.stats
        assert st["received"] >= 9000, st
        assert st["malformed"] >= 2500, st
        assert st["queries"] >= 3000, st
        # Bounded state.
        assert len(store) <= 100
        assert all(len(p) <= 20 for p in store._hashes.values())
        assert len(store) > 50, (len(store), st)
        assert store.get(b"H" * 20, loop.time()) and len(store.get(b"H" * 20, loop.time())) <= 20
        assert len(node._pending) <= MAX_PENDING
        assert len(node._pinging) <= MAX_PINGS
        assert node.node_count() <= 8 * 160
    finally:
        for sk in socks:
            sk.close()
        await node.close()


async def test_rate_limit_per_source() -> None:
    node = DHTNode(LOCAL, rate_limit=(10.0, 20.0))
    await node.start()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((LOCAL, 0))
    s.settimeout(0.5)
    try:
        pkt = encode_message(Ping(b"rl", b"R" * 20))
        loop = asyncio.get_running_loop()

        def blast() -> int:
            for _ in range(300):
                s.sendto(pkt, (LOCAL, node.port))
            answers = 0
            try:
                while True:
                    msg: Any = decode(s.recvfrom(4096)[0], strict_order=False)
                    answers += msg.get(b"t") == b"rl"
            except TimeoutError:
                return answers

        start = loop.time()
        answered = await asyncio.to_thread(blast)
        elapsed = loop.time() - start
        assert node.stats["rate_limited"] >= 100
        assert 20 <= answered <= 20 + 10 * elapsed + 5
        # Another source is unaffected.
        assert await asyncio.to_thread(_ping_once, node.port)
    finally:
        s.close()
        await node.close()
