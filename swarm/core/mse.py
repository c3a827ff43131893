"""Message Stream Encryption (MSE/PE, "protocol encryption"): the handshake, sans-IO.

The Vuze/libtorrent specification, both roles::

    1 A->B: Ya, PadA
    2 B->A: Yb, PadB
    3 A->B: HASH('req1', S), HASH('req2', SKEY) xor HASH('req3', S),
            ENCRYPT(VC, crypto_provide, len(PadC), PadC, len(IA)), ENCRYPT(IA)
    4 B->A: ENCRYPT(VC, crypto_select, len(PadD), PadD), ENCRYPT2(payload)
    5 A->B: ENCRYPT2(payload)

Diffie-Hellman over the 768-bit prime ``P`` with ``G = 2`` gives the secret
``S``; ``SKEY`` is the info-hash, which B recognises through ``req2 xor req3``
without it ever crossing the wire. ``HASH`` is SHA-1. A encrypts with RC4 keyed
``HASH('keyA', S, SKEY)``, B with ``HASH('keyB', S, SKEY)``, each discarding
the first 1024 bytes of keystream. ``ENCRYPT2`` is RC4 continuing the same
keystreams, or nothing if plaintext was selected (then only the handshake is
obfuscated).

Like the wire codec: bytes in, bytes out, no sockets, clock or randomness; the
shell passes the private key (160 random bits) and the padding in. Every
buffer is bounded: the two sync points (``req1`` for B, ``ENCRYPT(VC)`` for A)
must appear within ``MAX_PAD`` bytes of padding, PadC/PadD may not announce
more than ``MAX_PAD`` bytes; anything else raises :class:`EncryptionError`.

RC4 runs in OpenSSL through ``cryptography`` (never a Python loop), and
:meth:`CipherStream.decrypt_into` decrypts in place so the one-copy receive
path (kernel -> piece buffer) stays one copy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import NamedTuple

from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext

try:
    from cryptography.hazmat.decrepit.ciphers.algorithms import ARC4
except ImportError:  # cryptography < 43 kept ARC4 with the modern ciphers
    from cryptography.hazmat.primitives.ciphers.algorithms import ARC4

from swarm.core.wire import PROTOCOL
from swarm.errors import EncryptionError

P = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A63A36210000000000090563",
    16,
)
G = 2
KEY_LEN = 96  # bytes of Ya, Yb and S (768 bits, big-endian, zero-padded)
PRIVATE_KEY_BITS = 160
VC = bytes(8)
CRYPTO_PLAIN = 0x01
CRYPTO_RC4 = 0x02
CRYPTO_ALL = CRYPTO_PLAIN | CRYPTO_RC4
MAX_PAD = 512  # PadA..PadD are 0..512 bytes
MAX_IA = 0xFFFF  # len(IA) is two bytes
RC4_DISCARD = 1024

Buffer = bytes | bytearray | memoryview
#: Maps ``HASH('req2', info_hash)`` to that info-hash, or None if not ours.
Req2Lookup = Callable[[bytes], bytes | None]


# --------------------------------------------------------------------------
# Primitives


def _hash(*parts: bytes) -> bytes:
    return hashlib.sha1(b"".join(parts)).digest()


def public_key(private_key: int) -> bytes:
    """``G**X mod P`` as the 96 bytes sent as Ya or Yb."""
    if not 0 < private_key < P:
        raise ValueError("private key out of range")
    return pow(G, private_key, P).to_bytes(KEY_LEN, "big")


def shared_secret(private_key: int, their_public: bytes) -> bytes:
    """``S = Y**X mod P`` as 96 bytes; refuses the degenerate keys 0, 1 and P-1."""
    y = int.from_bytes(their_public, "big")
    if not 1 < y < P - 1:
        raise EncryptionError("peer sent a degenerate Diffie-Hellman key")
    return pow(y, private_key, P).to_bytes(KEY_LEN, "big")


def req1_hash(secret: bytes) -> bytes:
    return _hash(b"req1", secret)


def req2_hash(info_hash: bytes) -> bytes:
    """What a session indexes its torrents by to answer a :class:`Receiver`'s lookup."""
    return _hash(b"req2", info_hash)


def req3_hash(secret: bytes) -> bytes:
    return _hash(b"req3", secret)


def rc4_keys(secret: bytes, info_hash: bytes) -> tuple[bytes, bytes]:
    """(keyA, keyB): A encrypts and B decrypts with keyA; the other way round with keyB."""
    return _hash(b"keyA", secret, info_hash), _hash(b"keyB", secret, info_hash)


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


class Rc4:
    """One direction's RC4 keystream, its first 1024 bytes already discarded."""

    __slots__ = ("_ctx",)

    def __init__(self, key: bytes) -> None:
        self._ctx: CipherContext = Cipher(ARC4(key), mode=None).encryptor()
        self._ctx.update(bytes(RC4_DISCARD))

    def update(self, data: Buffer) -> bytes:
        return self._ctx.update(data)

    def update_into(self, buf: memoryview) -> None:
        """Encrypt or decrypt ``buf`` in place (OpenSSL reads and writes the same bytes)."""
        if len(buf):
            self._ctx.update_into(buf, buf)


def is_plain_handshake(head: Buffer) -> bool | None:
    """Route an incoming connection by its first bytes: True for a plain BitTorrent
    handshake, False for anything else (an MSE ``Ya``), None while too few bytes
    have arrived to tell."""
    n = min(len(head), len(PROTOCOL))
    if bytes(head[:n]) != PROTOCOL[:n]:
        return False
    return True if n == len(PROTOCOL) else None


# --------------------------------------------------------------------------
# After the handshake


class CipherStream:
    """The payload stream once the handshake is done: RC4 both ways, or plaintext.

    ``rc4_prefix`` counts received bytes still under RC4 although plaintext was
    selected: a receiver's IA is always encrypted, and may not have arrived yet.
    """

    __slots__ = ("_decryptor", "_encryptor", "_rc4_prefix", "method")

    def __init__(self, method: int, encryptor: Rc4, decryptor: Rc4, rc4_prefix: int = 0) -> None:
        self.method = method
        self._encryptor = encryptor
        self._decryptor = decryptor
        self._rc4_prefix = rc4_prefix if method == CRYPTO_PLAIN else 0

    @property
    def encrypted(self) -> bool:
        return self.method == CRYPTO_RC4

    @property
    def passthrough(self) -> bool:
        """Neither direction changes a byte any more (plaintext selected, IA all in):
        the shell may take the cipher out of the path."""
        return self.method == CRYPTO_PLAIN and not self._rc4_prefix

    def encrypt(self, data: Buffer) -> bytes:
        if self.method == CRYPTO_RC4:
            return self._encryptor.update(data)
        return data if isinstance(data, bytes) else bytes(data)

    def decrypt(self, data: Buffer) -> bytes:
        if self.method == CRYPTO_RC4:
            return self._decryptor.update(data)
        if self._rc4_prefix:
            buf = bytearray(data)
            self.decrypt_into(memoryview(buf))
            return bytes(buf)
        return data if isinstance(data, bytes) else bytes(data)

    def decrypt_into(self, buf: memoryview) -> None:
        """Decrypt received bytes in place, e.g. right after the kernel wrote them
        into the wire decoder's buffer: no extra copy on the receive path."""
        if self.method == CRYPTO_RC4:
            self._decryptor.update_into(buf)
        elif self._rc4_prefix:
            n = min(self._rc4_prefix, len(buf))
            self._decryptor.update_into(buf[:n])
            self._rc4_prefix -= n


# --------------------------------------------------------------------------
# The handshake


class Output(NamedTuple):
    """What one ``feed`` produced: bytes to write to the peer, and peer payload
    (IA, then whatever followed the handshake) already decrypted."""

    send: bytes
    payload: bytes


def _check_pad(pad: bytes, what: str) -> bytes:
    if len(pad) > MAX_PAD:
        raise ValueError(f"{what} longer than {MAX_PAD} bytes")
    return bytes(pad)


class _Handshake:
    """Buffer, state and result shared by both roles; subclasses implement ``_step``."""

    def __init__(self, private_key: int, padding: bytes, crypto_padding: bytes) -> None:
        self._private_key = private_key
        self._public = public_key(private_key)
        self._padding = _check_pad(padding, "padding")
        self._crypto_padding = _check_pad(crypto_padding, "crypto_padding")
        self._buf = bytearray()
        self._state = "start"
        self._pad_left = 0  # PadC/PadD bytes still to skip
        self._stream: CipherStream | None = None
        self._failed: EncryptionError | None = None

    @property
    def done(self) -> bool:
        return self._stream is not None

    @property
    def stream(self) -> CipherStream:
        """The cipher pair for everything after the handshake (only once ``done``)."""
        if self._stream is None:
            raise RuntimeError("MSE handshake not done")
        return self._stream

    def feed(self, data: Buffer) -> Output:
        """Take bytes from the peer; return what to send and any decrypted payload.

        Once ``done``, use :attr:`stream` instead of feeding more.
        """
        if self._failed is not None:
            raise self._failed
        if self.done:
            raise RuntimeError("MSE handshake already done: use .stream")
        self._buf += data
        send: list[bytes] = []
        try:
            while self._stream is None and self._step(send):
                pass
        except EncryptionError as e:
            self._failed = e
            raise
        payload = b""
        if self._stream is not None and self._buf:
            payload = self._stream.decrypt(bytes(self._buf))
            self._buf.clear()
        return Output(b"".join(send), payload)

    def eof(self) -> None:
        """The peer closed the connection: an error unless the handshake was done."""
        if not self.done:
            raise EncryptionError(f"connection closed during the MSE handshake ({self._state})")

    def _step(self, send: list[bytes]) -> bool:
        """Advance one state if the buffer allows; return whether it did."""
        raise NotImplementedError

    def _take(self, n: int) -> bytes | None:
        if len(self._buf) < n:
            return None
        chunk = bytes(self._buf[:n])
        del self._buf[:n]
        return chunk

    def _sync(self, marker: bytes, what: str) -> bool:
        """Skip the peer's padding up to and including ``marker``, which must start
        within ``MAX_PAD`` bytes; False while it may still arrive."""
        at = self._buf.find(marker, 0, MAX_PAD + len(marker))
        if at < 0:
            if len(self._buf) >= MAX_PAD + len(marker):
                raise EncryptionError(f"no {what} within {MAX_PAD} bytes of padding")
            return False
        del self._buf[: at + len(marker)]
        return True

    def _read_secret(self) -> bytes | None:
        their_public = self._take(KEY_LEN)
        return None if their_public is None else shared_secret(self._private_key, their_public)


class Initiator(_Handshake):
    """Role A: we connect, knowing the torrent's info-hash.

    ``initial_payload`` (IA) is sent inside step 3, usually the BitTorrent
    handshake; anything more must wait until ``done``, because only then is it
    known whether the payload stream is RC4 or plaintext.
    """

    def __init__(
        self,
        info_hash: bytes,
        private_key: int,
        *,
        padding: bytes = b"",
        provide: int = CRYPTO_ALL,
        initial_payload: bytes = b"",
        crypto_padding: bytes = b"",
    ) -> None:
        super().__init__(private_key, padding, crypto_padding)
        if len(info_hash) != 20:
            raise ValueError("info-hash must be 20 bytes")
        if not provide & CRYPTO_ALL:
            raise ValueError("provide must include CRYPTO_RC4 or CRYPTO_PLAIN")
        if len(initial_payload) > MAX_IA:
            raise ValueError(f"initial payload longer than {MAX_IA} bytes")
        self.info_hash = bytes(info_hash)
        self.provide = provide
        self._initial_payload = bytes(initial_payload)
        self._encryptor: Rc4 | None = None
        self._decryptor: Rc4 | None = None
        self._vc_marker = b""
        self._select = 0

    def start(self) -> bytes:
        """Step 1, the first bytes on the connection: Ya and PadA."""
        if self._state != "start":
            raise RuntimeError("start() already called")
        self._state = "wait Yb"
        return self._public + self._padding

    def _step(self, send: list[bytes]) -> bool:
        if self._state == "start":
            raise RuntimeError("call start() before feed()")
        if self._state == "wait Yb":
            secret = self._read_secret()
            if secret is None:
                return False
            key_a, key_b = rc4_keys(secret, self.info_hash)
            self._encryptor, self._decryptor = Rc4(key_a), Rc4(key_b)
            # B's first encrypted bytes are VC: its keystream over 8 zero bytes.
            self._vc_marker = self._decryptor.update(VC)
            ia, pad = self._initial_payload, self._crypto_padding
            send.append(req1_hash(secret) + _xor(req2_hash(self.info_hash), req3_hash(secret)))
            send.append(
                self._encryptor.update(
                    VC
                    + self.provide.to_bytes(4, "big")
                    + len(pad).to_bytes(2, "big")
                    + pad
                    + len(ia).to_bytes(2, "big")
                    + ia
                )
            )
            self._state = "sync VC"
            return True
        assert self._encryptor is not None and self._decryptor is not None
        if self._state == "sync VC":
            if not self._sync(self._vc_marker, "encrypted VC"):
                return False
            self._state = "read crypto_select"
            return True
        if self._state == "read crypto_select":
            raw = self._take(6)
            if raw is None:
                return False
            head = self._decryptor.update(raw)
            select = int.from_bytes(head[:4], "big")
            if select not in (CRYPTO_PLAIN, CRYPTO_RC4) or not select & self.provide:
                raise EncryptionError(
                    f"peer selected crypto {select:#x}, we offered {self.provide:#x}"
                )
            pad_len = int.from_bytes(head[4:], "big")
            if pad_len > MAX_PAD:
                raise EncryptionError(f"PadD of {pad_len} bytes (at most {MAX_PAD})")
            self._select, self._pad_left = select, pad_len
            self._state = "read PadD"
            return True
        # read PadD
        pad_d = self._take(self._pad_left)
        if pad_d is None:
            return False
        self._decryptor.update(pad_d)
        self._stream = CipherStream(self._select, self._encryptor, self._decryptor)
        self._state = "done"
        return True


class Receiver(_Handshake):
    """Role B: a peer connected to us with an MSE handshake (see :func:`is_plain_handshake`).

    ``lookup`` finds the torrent among all of the session's: it is called with
    ``HASH('req2', info_hash)`` (recovered from ``req2 xor req3``) and returns
    that info-hash, or None; build it as ``{req2_hash(ih): ih for ih in ...}.get``.
    ``allowed`` is what we accept; RC4 is chosen when both sides allow it,
    unless ``prefer_plaintext`` (libtorrent's default, ``prefer_rc4=false``):
    then plaintext when the initiator offers it, RC4 only when it insists.
    """

    def __init__(
        self,
        lookup: Req2Lookup,
        private_key: int,
        *,
        padding: bytes = b"",
        allowed: int = CRYPTO_ALL,
        crypto_padding: bytes = b"",
        prefer_plaintext: bool = False,
    ) -> None:
        super().__init__(private_key, padding, crypto_padding)
        self.prefer_plaintext = prefer_plaintext
        if not allowed & CRYPTO_ALL:
            raise ValueError("allowed must include CRYPTO_RC4 or CRYPTO_PLAIN")
        self._lookup = lookup
        self.allowed = allowed
        self.info_hash: bytes | None = None
        #: The initiator's crypto_provide, once read.
        self.provided = 0
        self._secret = b""
        self._req1 = b""
        self._encryptor: Rc4 | None = None
        self._decryptor: Rc4 | None = None
        self._state = "wait Ya"

    def _step(self, send: list[bytes]) -> bool:
        if self._state == "wait Ya":
            secret = self._read_secret()
            if secret is None:
                return False
            self._secret, self._req1 = secret, req1_hash(secret)
            send.append(self._public + self._padding)
            self._state = "sync req1"
            return True
        if self._state == "sync req1":
            if not self._sync(self._req1, "req1 hash"):
                return False
            self._state = "read req2^req3"
            return True
        if self._state == "read req2^req3":
            masked = self._take(20)
            if masked is None:
                return False
            info_hash = self._lookup(_xor(masked, req3_hash(self._secret)))
            if info_hash is None:
                raise EncryptionError("peer asked for a torrent we do not have (req2 hash)")
            self.info_hash = info_hash
            key_a, key_b = rc4_keys(self._secret, info_hash)
            self._decryptor, self._encryptor = Rc4(key_a), Rc4(key_b)
            self._state = "read VC"
            return True
        assert self._encryptor is not None and self._decryptor is not None
        if self._state == "read VC":
            raw = self._take(14)
            if raw is None:
                return False
            head = self._decryptor.update(raw)
            if head[:8] != VC:
                raise EncryptionError("bad verification constant (wrong secret or garbage)")
            self.provided = int.from_bytes(head[8:12], "big")
            pad_len = int.from_bytes(head[12:], "big")
            if pad_len > MAX_PAD:
                raise EncryptionError(f"PadC of {pad_len} bytes (at most {MAX_PAD})")
            self._pad_left = pad_len
            self._state = "read PadC"
            return True
        # read PadC and len(IA)
        tail = self._take(self._pad_left + 2)
        if tail is None:
            return False
        ia_len = int.from_bytes(self._decryptor.update(tail)[-2:], "big")
        common = self.provided & self.allowed
        first, second = (CRYPTO_PLAIN, CRYPTO_RC4) if self.prefer_plaintext else (CRYPTO_RC4, CRYPTO_PLAIN)
        select = first if common & first else second if common & second else 0
        if not select:
            raise EncryptionError(
                f"no common crypto method: peer offers {self.provided:#x}, we allow {self.allowed:#x}"
            )
        pad = self._crypto_padding
        send.append(
            self._encryptor.update(
                VC + select.to_bytes(4, "big") + len(pad).to_bytes(2, "big") + pad
            )
        )
        # IA is the start of the payload: under RC4 even when plaintext was selected.
        self._stream = CipherStream(select, self._encryptor, self._decryptor, rc4_prefix=ia_len)
        self._state = "done"
        return True
