"""Protocol encryption (MSE/PE) in the shell: a layer around a peer connection.

The handshake itself is the pure ``swarm.core.mse``; this module puts it on a
socket without touching the plain fast path of ``swarm.peer``:

* ``MseProtocol`` is the asyncio protocol the transport talks to. During the
  MSE handshake it reads into a small buffer of its own; afterwards its
  ``get_buffer`` hands out the wrapped connection's own buffer (the wire
  decoder's, or a piece buffer through the block sink), and ``buffer_updated``
  decrypts those bytes in place (``CipherStream.decrypt_into``) before passing
  the count on: still one copy from the kernel to the piece buffer.
* ``CipherTransport`` is what the wrapped connection writes to: writes are
  encrypted, and held while the handshake runs (the initiator's first write,
  the BitTorrent handshake, travels inside the MSE handshake as ``IA``).
* An incoming connection is told apart by its first bytes: a plain handshake
  is handed to the ``PeerConnection`` and the transport switched to it
  (``set_protocol``), so a plain connection costs nothing after that.

Policies (``--encryption``), matching libtorrent's ``pe_enabled`` /
``pe_forced`` / ``pe_disabled``:

* ``prefer`` (default): outgoing connections try MSE first, offering RC4 and
  plaintext, and fall back to plain if the peer drops the attempt (remembered
  per address); incoming ones may be plain or MSE. As the receiver we select
  plaintext when the initiator offers it (libtorrent's ``prefer_rc4=false``):
  the handshake is hidden, the payload costs no cipher.
* ``require``: MSE with RC4 only, both ways; a plain connection is closed
  before we send a byte.
* ``off``: plain only; an incoming MSE connection is closed.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from typing import Any, Protocol, cast

from swarm.core import mse
from swarm.core.wire import PROTOCOL
from swarm.errors import EncryptionError

log = logging.getLogger("swarm.peer")

PREFER, REQUIRE, OFF = "prefer", "require", "off"
POLICIES = (PREFER, REQUIRE, OFF)
#: What ``PeerConnection.encryption`` and ``PeerStatus.encryption`` say.
ENCRYPTED = "encrypted"  # RC4 both ways
OBFUSCATED = "obfuscated"  # MSE handshake, plaintext payload (libtorrent's plaintext_encrypted)
PLAIN = "plain"
#: Bytes read at a time during the handshake (Ya/Yb, hashes, padding: ~700 at most).
_SCRATCH = 4096
#: Held writes before the handshake is done: the BitTorrent handshake, a little more.
_MAX_HELD = 64 * 1024


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise ValueError(f"encryption must be one of {', '.join(POLICIES)}, not {policy!r}")
    return policy


class Wrapped(Protocol):
    """The connection inside the layer: ``PeerConnection`` or ``MetadataConnection``."""

    transport: Any

    def connection_made(self, transport: asyncio.BaseTransport) -> None: ...

    def connection_lost(self, exc: Exception | None) -> None: ...


class CipherTransport:
    """The transport the wrapped connection writes to: encrypts, or holds until the
    handshake is done. Everything else is the real transport's."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._stream: mse.CipherStream | None = None
        self._held: list[bytes] = []
        self._held_bytes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def take_held(self, limit: int = _MAX_HELD) -> bytes:
        """Up to ``limit`` bytes written before the handshake (the initiator sends
        them as IA); the rest stays held."""
        held = b"".join(self._held)
        self._held = [held[limit:]] if len(held) > limit else []
        self._held_bytes = len(held) - limit if len(held) > limit else 0
        return held[:limit]

    def start(self, stream: mse.CipherStream) -> None:
        """The handshake is done: send what was held, encrypted, and everything after."""
        self._stream = stream
        held = self.take_held()
        if held:
            self.write(held)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        stream = self._stream
        if stream is None:
            self._held_bytes += len(data)
            if self._held_bytes > _MAX_HELD:
                self._transport.abort()
                return
            self._held.append(bytes(data))
            return
        self._transport.write(stream.encrypt(data))

    def writelines(self, lines: Any) -> None:
        self.write(b"".join(lines))


class MseProtocol(asyncio.BufferedProtocol):
    """MSE for one connection, then a decrypting pass-through to ``inner``.

    ``info_hash`` given: we dial (MSE initiator). None: an incoming connection,
    plain or MSE by its first bytes; ``lookup`` finds the torrent of an MSE one.
    ``outcome`` resolves True once the MSE handshake is done, False if the
    connection ends before (the dialler then may try plain).
    """

    def __init__(
        self,
        inner: Wrapped,
        policy: str,
        *,
        info_hash: bytes | None = None,
        lookup: mse.Req2Lookup | None = None,
    ) -> None:
        self.inner = inner
        self.policy = check_policy(policy)
        self._info_hash = info_hash
        self._lookup = lookup
        self._raw: asyncio.Transport | None = None
        self._cipher: CipherTransport | None = None
        self._handshake: mse.Initiator | mse.Receiver | None = None
        self._stream: mse.CipherStream | None = None
        self._scratch_view = memoryview(bytearray(_SCRATCH))
        self._head = 0  # incoming: bytes in _scratch_view while telling plain from MSE
        self._landing: memoryview | None = None  # inner's buffer handed to the kernel
        self._buffered = isinstance(inner, asyncio.BufferedProtocol)
        self._done = False
        self.outcome: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    # -- asyncio protocol ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        raw = self._raw = cast(asyncio.Transport, transport)
        if self._info_hash is None:
            # incoming: the plain path must see the real transport (set_protocol below)
            self.inner.connection_made(raw)
            return
        cipher = self._cipher = CipherTransport(raw)
        self.inner.connection_made(cast(asyncio.Transport, cipher))
        provide = mse.CRYPTO_RC4 if self.policy == REQUIRE else mse.CRYPTO_ALL
        initiator = mse.Initiator(
            self._info_hash,
            _private_key(),
            padding=_padding(),
            provide=provide,
            initial_payload=cipher.take_held(mse.MAX_IA),
        )
        self._handshake = initiator
        raw.write(initiator.start())

    def connection_lost(self, exc: Exception | None) -> None:
        self._settle(False)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        _call(self.inner, "pause_writing")

    def resume_writing(self) -> None:
        _call(self.inner, "resume_writing")

    def eof_received(self) -> bool | None:
        return False  # close the transport

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._stream is not None and self._buffered:
            view = cast(memoryview, cast(asyncio.BufferedProtocol, self.inner).get_buffer(sizehint))
            self._landing = view
            return view
        return self._scratch_view[self._head :]

    def buffer_updated(self, nbytes: int) -> None:
        stream = self._stream
        if stream is not None:
            if self._buffered:
                assert self._landing is not None
                stream.decrypt_into(self._landing[:nbytes])
                cast(asyncio.BufferedProtocol, self.inner).buffer_updated(nbytes)
                self._step_aside()
            else:
                view = self._scratch_view[:nbytes]
                stream.decrypt_into(view)
                cast(asyncio.Protocol, self.inner).data_received(bytes(view))
            return
        try:
            if self._handshake is None:
                self._detect(nbytes)
            else:
                self._advance(bytes(self._scratch_view[:nbytes]))
        except EncryptionError as exc:
            self._fail(f"encryption: {exc}")

    # -- the handshake ------------------------------------------------------

    def _detect(self, nbytes: int) -> None:
        """Incoming: a plain BitTorrent handshake or an MSE one?"""
        self._head += nbytes
        head = self._scratch_view[: self._head]
        plain = mse.is_plain_handshake(head)
        if plain is None:
            return
        if not plain:
            garbage = _not_a_public_key(head)
            if garbage is None:
                return
            plain = garbage  # a broken handshake or an HTTP probe: the plain path refuses it at once
        if plain:
            if self.policy == REQUIRE:
                self._fail("plain connection refused: encryption required")
                return
            # hand the connection to the plain path for good
            assert self._raw is not None
            self._raw.set_protocol(cast(asyncio.BaseProtocol, self.inner))
            self._settle(False)
            self._deliver(bytes(head))
            return
        assert self._lookup is not None
        allowed = mse.CRYPTO_RC4 if self.policy == REQUIRE else mse.CRYPTO_ALL
        self._handshake = mse.Receiver(
            self._lookup,
            _private_key(),
            padding=_padding(),
            allowed=allowed,
            prefer_plaintext=self.policy != REQUIRE,
        )
        data, self._head = bytes(head), 0
        self._advance(data)

    def _advance(self, data: bytes) -> None:
        hs = self._handshake
        assert hs is not None and self._raw is not None
        send, payload = hs.feed(data)
        if send:
            self._raw.write(send)
        if not hs.done:
            return
        stream = hs.stream
        if self._cipher is None:  # incoming: the inner connection has written nothing yet
            self._cipher = CipherTransport(self._raw)
            self.inner.transport = self._cipher
        self._stream = stream
        if self._buffered:  # from now on the kernel writes into the inner connection's buffers
            self._scratch_view = memoryview(bytearray())
        self.inner.encryption = ENCRYPTED if stream.encrypted else OBFUSCATED  # type: ignore[attr-defined]
        self._cipher.start(stream)
        self._settle(True)
        if payload:
            self._deliver(payload)
        self._step_aside()

    def _step_aside(self) -> None:
        """Plaintext was selected and nothing more is under RC4: hand the transport to
        the connection itself, so an obfuscated connection runs the plain path."""
        raw, stream = self._raw, self._stream
        if not self._buffered or raw is None or stream is None or not stream.passthrough or raw.is_closing():
            return
        raw.set_protocol(cast(asyncio.BaseProtocol, self.inner))
        self.inner.transport = raw  # nothing is held any more: start() sent it

    def _deliver(self, data: bytes) -> None:
        """Bytes already decrypted (or plain) to the inner connection, the way the
        transport would: through its get_buffer / buffer_updated."""
        if not self._buffered:
            cast(asyncio.Protocol, self.inner).data_received(data)
            return
        inner = cast(asyncio.BufferedProtocol, self.inner)
        view = memoryview(data)
        raw = self._raw
        while view and raw is not None and not raw.is_closing():
            buf = cast(memoryview, inner.get_buffer(len(view)))
            n = min(len(buf), len(view))
            buf[:n] = view[:n]
            view = view[n:]
            inner.buffer_updated(n)

    def _settle(self, ok: bool) -> None:
        if not self._done:
            self._done = True
            if not self.outcome.done():
                self.outcome.set_result(ok)

    def _fail(self, reason: str) -> None:
        """Close through the inner connection, so its close reason and log say why."""
        self._settle(False)
        close = getattr(self.inner, "close", None)
        if isinstance(self.inner, asyncio.BufferedProtocol) and close is not None:
            close(reason)
        elif self._raw is not None:
            log.info("closing connection: %s", reason)
            self._raw.close()


def _not_a_public_key(head: memoryview) -> bool | None:
    """Bytes no MSE initiator sends (None: too few to tell). Its Ya is a random
    768-bit number: it starts with ``\x13Bit`` once in 2**32, with 20 printable
    ASCII bytes once in 4e8; a broken BitTorrent handshake or an HTTP probe does."""
    if bytes(head[:4]) == PROTOCOL[:4]:
        return True
    if not all(32 <= b < 127 or b in (9, 10, 13) for b in head[:20]):
        return False
    return True if len(head) >= 20 else None


def _call(obj: object, name: str) -> None:
    method: Callable[[], None] | None = getattr(obj, name, None)
    if method is not None:
        method()


def _private_key() -> int:
    return secrets.randbits(mse.PRIVATE_KEY_BITS) | 1  # never 0


def _padding() -> bytes:
    """PadA/PadB: random length and bytes, so no two handshakes are the same size."""
    return secrets.token_bytes(secrets.randbelow(mse.MAX_PAD + 1))


__all__ = [
    "ENCRYPTED",
    "OBFUSCATED",
    "OFF",
    "PLAIN",
    "POLICIES",
    "PREFER",
    "REQUIRE",
    "CipherTransport",
    "MseProtocol",
    "check_policy",
]
