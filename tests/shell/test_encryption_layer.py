"""swarm.encryption without sockets: an outgoing MseProtocol against the core's
Receiver, bytes arriving in any chunking. After the handshake the kernel's bytes
land in the wrapped connection's own buffer and are decrypted there (one copy);
writes are encrypted; the first write travels as IA."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pytest

from swarm.core import mse
from swarm.encryption import CipherTransport, MseProtocol

INFO_HASH = hashlib.sha1(b"layer").digest()
HANDSHAKE = b"\x13BitTorrent protocol" + bytes(8) + INFO_HASH + b"-XX0000-" + bytes(12)


class FakeTransport:
    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str) -> Any:
        return None


class Inner(asyncio.BufferedProtocol):
    """A stand-in PeerConnection: one fixed buffer, writes its handshake on connect."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.buf = bytearray(1000)
        self.views: list[memoryview] = []
        self.got = bytearray()
        self.encryption = "plain"
        self.lost = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(HANDSHAKE)

    def get_buffer(self, sizehint: int) -> memoryview:
        view = memoryview(self.buf)
        self.views.append(view)
        return view

    def buffer_updated(self, nbytes: int) -> None:
        self.got += self.buf[:nbytes]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


def _recv(proto: MseProtocol, data: bytes, chunk: int) -> None:
    """What the event loop does: get_buffer, copy at most ``chunk`` bytes, buffer_updated."""
    while data:
        buf = proto.get_buffer(len(data))
        n = min(len(buf), len(data), chunk)
        buf[:n] = data[:n]
        proto.buffer_updated(n)
        data = data[n:]


@pytest.mark.parametrize("chunk", [1, 7, 96, 5000])
@pytest.mark.parametrize("policy", ["prefer", "require"])
async def test_outgoing_layer_in_any_chunking(chunk: int, policy: str) -> None:
    inner = Inner()
    layer = MseProtocol(inner, policy, info_hash=INFO_HASH)
    raw = FakeTransport()
    layer.connection_made(raw)  # type: ignore[arg-type]
    assert isinstance(inner.transport, CipherTransport)
    assert HANDSHAKE not in raw.written  # held, to go out as IA
    b = mse.Receiver({mse.req2_hash(INFO_HASH): INFO_HASH}.get, 0xBEEF, allowed=mse.CRYPTO_RC4)
    step2 = b.feed(bytes(raw.written)).send
    raw.written.clear()
    _recv(layer, step2, chunk)
    step4, ia = b.feed(bytes(raw.written))
    assert b.done and ia == HANDSHAKE and b.stream.encrypted
    assert not layer.outcome.done()  # until B's answer arrives
    message = b"\x00\x00\x00\x05\x04\x00\x00\x00\x07" * 50
    _recv(layer, step4 + b.stream.encrypt(message), chunk)
    assert layer.outcome.result() is True and inner.encryption == "encrypted"
    assert bytes(inner.got) == message
    # after the handshake the kernel wrote into the inner connection's buffer
    assert inner.views and all(v.obj is inner.buf for v in inner.views)
    raw.written.clear()
    inner.transport.write(b"hello")
    assert b.stream.decrypt(bytes(raw.written)) == b"hello"
    layer.connection_lost(None)
    assert inner.lost


async def test_a_dropped_attempt_settles_false() -> None:
    inner = Inner()
    layer = MseProtocol(inner, "prefer", info_hash=INFO_HASH)
    layer.connection_made(FakeTransport())  # type: ignore[arg-type]
    layer.connection_lost(ConnectionResetError())
    assert layer.outcome.result() is False and inner.lost


def test_held_writes_beyond_ia_stay_held() -> None:
    cipher = CipherTransport(FakeTransport())  # type: ignore[arg-type]
    cipher.write(b"a" * 10)
    cipher.write(b"b" * 10)
    assert cipher.take_held(15) == b"a" * 10 + b"b" * 5
    assert cipher.take_held() == b"b" * 5
