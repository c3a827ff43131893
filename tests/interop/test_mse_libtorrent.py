"""The MSE/PE state machine against libtorrent with encryption forced (issue 21).

A blocking socket with a timeout on every read drives swarm.core.mse; no
engine. Both directions: we connect to a libtorrent seed (initiator), and a
libtorrent leech connects to us (receiver). After the MSE handshake the
BitTorrent handshake and messages travel over the RC4 stream, received the
one-copy way (recv_into the wire decoder's buffer, decrypt_into in place).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest
from conftest import require_libtorrent

from swarm.core import mse, wire
from swarm.core.peerid import make_peer_id
from tests.helpers.lt import lt_session, make_lt_torrent, wait_seeding
from tests.helpers.wait import wait_for

pytestmark = pytest.mark.interop

PIECE_LEN = 32768
SIZE = 3 * PIECE_LEN - 777
TIMEOUT = 15.0
PRIVATE_KEY = 0x6B1D3A9F0C2E4B5A7D8F9E0A1B2C3D4E5F607182  # fixed: reproducible runs
PADDING = b"\x5a" * 333


def _session(lt: Any, enc_level: int) -> Any:
    """Encryption forced both ways; TCP only (no uTP attempt first)."""
    return lt_session(
        lt,
        enable_outgoing_utp=False,
        enable_incoming_utp=False,
        out_enc_policy=int(lt.enc_policy.pe_forced),
        in_enc_policy=int(lt.enc_policy.pe_forced),
        allowed_enc_level=enc_level,
    )


def _add(lt: Any, ses: Any, ti: Any, save: Path) -> Any:
    p = lt.add_torrent_params()
    p.ti = ti
    p.save_path = str(save)
    return ses.add_torrent(p)


def _torrent(lt: Any, tmp: Path) -> tuple[Any, bytes]:
    data = os.urandom(SIZE)
    (tmp / "data.bin").write_bytes(data)
    return lt.torrent_info(lt.bdecode(make_lt_torrent(lt, tmp / "data.bin", PIECE_LEN))), data


def _recv(sock: socket.socket) -> bytes:
    chunk = sock.recv(65536)
    assert chunk, "libtorrent closed the connection"
    return chunk


def _drive(sock: socket.socket, hs: mse.Initiator | mse.Receiver, first: bytes = b"") -> bytes:
    """Run the handshake to its end; return the peer payload already decrypted."""
    payload = bytearray()
    chunk = first
    while not hs.done:
        send, got = hs.feed(chunk or _recv(sock))
        chunk = b""
        if send:
            sock.sendall(send)
        payload += got
    return bytes(payload)


def _read_handshake(
    sock: socket.socket, stream: mse.CipherStream, payload: bytes
) -> tuple[wire.Handshake, bytes]:
    hd = wire.HandshakeDecoder()
    rest = hd.feed(payload)
    while not hd.done:
        rest = hd.feed(stream.decrypt(_recv(sock)))
    return hd.handshake, rest


def _messages_until(
    sock: socket.socket,
    stream: mse.CipherStream,
    dec: wire.MessageDecoder,
    pending: list[Any],
    kind: type,
) -> Any:
    """Decode until a message of ``kind``: recv_into the decoder's buffer, decrypt in place."""
    while True:
        for msg in pending:
            if isinstance(msg, kind):
                pending.remove(msg)
                return msg
        pending.clear()
        view = dec.get_buffer(65536)
        n = sock.recv_into(view)
        assert n, "libtorrent closed the connection"
        stream.decrypt_into(view[:n])
        pending.extend(dec.buffer_updated(n))


def _encrypted_peer(h: Any, flag: Any) -> bool:
    return any(p.flags & flag for p in h.get_peer_info())


@pytest.mark.parametrize(
    ("enc_level", "provide", "method"),
    [("rc4", mse.CRYPTO_ALL, mse.CRYPTO_RC4), ("both", mse.CRYPTO_PLAIN, mse.CRYPTO_PLAIN)],
)
def test_we_connect_to_a_libtorrent_seed_that_forces_encryption(
    tmp_path: Path, enc_level: str, provide: int, method: int
) -> None:
    lt = require_libtorrent()
    ti, data = _torrent(lt, tmp_path)
    ses = _session(lt, int(getattr(lt.enc_level, enc_level)))
    h = _add(lt, ses, ti, tmp_path)
    wait_seeding(h, 20)
    info_hash = ti.info_hashes().v1.to_bytes()
    ours = wire.Handshake(info_hash, make_peer_id(), wire.make_reserved(True, True))
    hs = mse.Initiator(
        info_hash, PRIVATE_KEY, padding=PADDING, provide=provide, initial_payload=ours.encode()
    )
    with socket.create_connection(("127.0.0.1", ses.listen_port()), timeout=TIMEOUT) as sock:
        sock.sendall(hs.start())
        payload = _drive(sock, hs)
        stream = hs.stream
        assert stream.method == method
        theirs, rest = _read_handshake(sock, stream, payload)
        assert theirs.info_hash == info_hash and theirs.fast

        # The stream stays in step past the handshake: fetch a block and compare.
        num_pieces = (SIZE + PIECE_LEN - 1) // PIECE_LEN
        dec = wire.MessageDecoder(num_pieces, PIECE_LEN, SIZE)
        pending = dec.feed(rest)
        sock.sendall(stream.encrypt(wire.encode_interested()))
        _messages_until(sock, stream, dec, pending, wire.Unchoke)
        sock.sendall(stream.encrypt(wire.encode_request(2, 0, wire.BLOCK_SIZE)))
        piece = _messages_until(sock, stream, dec, pending, wire.Piece)
        assert (piece.index, piece.begin) == (2, 0)
        assert piece.data == data[2 * PIECE_LEN : 2 * PIECE_LEN + wire.BLOCK_SIZE]
        flag = (
            lt.peer_info.rc4_encrypted
            if method == mse.CRYPTO_RC4
            else lt.peer_info.plaintext_encrypted
        )
        wait_for(lambda: _encrypted_peer(h, flag), TIMEOUT, "libtorrent to list us as encrypted")


def test_libtorrent_connects_to_us_with_encryption_forced(tmp_path: Path) -> None:
    lt = require_libtorrent()
    ti, _ = _torrent(lt, tmp_path)
    empty = tmp_path / "leech"
    empty.mkdir()
    ses = _session(lt, int(lt.enc_level.rc4))
    h = _add(lt, ses, ti, empty)
    wait_for(
        lambda: h.status().state == lt.torrent_status.downloading,
        20,
        "libtorrent to start downloading",
    )
    info_hash = ti.info_hashes().v1.to_bytes()
    others = [bytes([i]) * 20 for i in range(5)]
    lookup = {mse.req2_hash(ih): ih for ih in [*others, info_hash]}.get
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(TIMEOUT)
        h.connect_peer(("127.0.0.1", server.getsockname()[1]))
        sock, _ = server.accept()
        with sock:
            sock.settimeout(TIMEOUT)
            first = b""
            while mse.is_plain_handshake(first) is None:
                first += _recv(sock)
            assert mse.is_plain_handshake(first) is False  # libtorrent never sends plain here
            hs = mse.Receiver(lookup, PRIVATE_KEY, padding=PADDING, allowed=mse.CRYPTO_RC4)
            payload = _drive(sock, hs, first)
            assert hs.info_hash == info_hash and hs.stream.encrypted
            assert hs.provided & mse.CRYPTO_RC4
            theirs, rest = _read_handshake(sock, hs.stream, payload)
            assert theirs.info_hash == info_hash
            ours = wire.Handshake(info_hash, make_peer_id(), wire.make_reserved(True, True))
            sock.sendall(hs.stream.encrypt(ours.encode()))
            # libtorrent, with nothing, answers the fast extension with have_none.
            dec = wire.MessageDecoder(ti.num_pieces(), PIECE_LEN, SIZE)
            _messages_until(sock, hs.stream, dec, dec.feed(rest), wire.HaveNone)
            wait_for(
                lambda: _encrypted_peer(h, lt.peer_info.rc4_encrypted),
                TIMEOUT,
                "libtorrent to list us as an RC4 peer",
            )
