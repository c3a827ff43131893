"""BEP 52 wire messages (hash request 21, hashes 22, hash reject 23) and the upgrade bit."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarm.core import wire
from swarm.errors import ProtocolError

ROOT = bytes(range(32))
H = [bytes([i]) * 32 for i in range(40)]


def test_spec_bytes_of_a_hash_request_and_reject() -> None:
    body = ROOT + struct.pack(">IIII", 3, 512, 256, 7)
    assert wire.encode_hash_request(ROOT, 3, 512, 256, 7) == struct.pack(">IB", 49, 21) + body
    assert wire.encode_hash_reject(ROOT, 3, 512, 256, 7) == struct.pack(">IB", 49, 23) + body


def test_spec_bytes_of_hashes() -> None:
    # 4 base hashes, proof layers 3: uncles at layers 2 and 3 (3 - log2(4) + 1 = 2)
    hashes = tuple(H[:6])
    raw = wire.encode_hashes(ROOT, 0, 4, 4, 3, hashes)
    assert raw == struct.pack(">IB", 49 + 6 * 32, 22) + ROOT + struct.pack(
        ">IIII", 0, 4, 4, 3
    ) + b"".join(hashes)
    msg = wire.MessageDecoder().feed(raw)
    assert msg == [wire.Hashes(ROOT, 0, 4, 4, 3, hashes)]
    assert msg[0].base == hashes[:4] and msg[0].proof == hashes[4:]  # type: ignore[union-attr]
    assert msg[0].request == wire.HashRequest(ROOT, 0, 4, 4, 3)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("length", "proof", "uncles"),
    [
        (2, 0, 0),
        (2, 1, 1),
        (2, 5, 5),
        (4, 1, 0),
        (4, 2, 1),
        (512, 8, 0),
        (512, 9, 1),
        (512, 12, 4),
        (1, 0, 1),
    ],
)
def test_proof_count_is_libtorrents(length: int, proof: int, uncles: int) -> None:
    assert wire.hash_proof_count(length, proof) == uncles


messages = st.one_of(
    st.builds(
        wire.HashRequest,
        st.binary(min_size=32, max_size=32),
        st.integers(0, 2**32 - 1),
        st.integers(0, 2**32 - 1),
        st.integers(0, 2**32 - 1),
        st.integers(0, 2**32 - 1),
    ),
    st.builds(
        wire.HashReject,
        st.binary(min_size=32, max_size=32),
        st.integers(0, 2**32 - 1),
        st.integers(0, 2**32 - 1),
        st.integers(0, 2**32 - 1),
        st.integers(0, 2**32 - 1),
    ),
    st.tuples(
        st.binary(min_size=32, max_size=32),
        st.integers(0, 2**32 - 1),
        st.integers(0, 2**32 - 1),
        st.integers(0, 9),
        st.integers(0, wire.MAX_PROOF_LAYERS - 1),
        st.randoms(use_true_random=False),
    ).map(
        lambda t: wire.Hashes(
            t[0],
            t[1],
            t[2],
            1 << t[3],
            t[4],
            tuple(
                t[5].randbytes(32)
                for _ in range((1 << t[3]) + wire.hash_proof_count(1 << t[3], t[4]))
            ),
        )
    ),
)


@given(msgs=st.lists(messages, min_size=1, max_size=4), cut=st.integers(1, 97))
@settings(max_examples=80)
def test_round_trip_in_any_chunking(msgs: list[wire.Message], cut: int) -> None:
    stream = b"".join(wire.encode(m) for m in msgs) + wire.encode_have(1)
    whole = wire.MessageDecoder().feed(stream)
    dec = wire.MessageDecoder()
    chunked: list[wire.Message] = []
    for i in range(0, len(stream), cut):
        chunked += dec.feed(stream[i : i + cut])
    assert whole == chunked == [*msgs, wire.Have(1)]


def _hashes_raw(count: int, proof: int, n_hashes: int, length: int | None = None) -> bytes:
    body = ROOT + struct.pack(">IIII", 0, 0, count, proof) + bytes(32) * n_hashes
    return struct.pack(">IB", length if length is not None else 1 + len(body), 22) + body


@pytest.mark.parametrize(
    "raw",
    [
        _hashes_raw(3, 0, 3),  # length not a power of two
        _hashes_raw(0, 0, 0),  # no hashes asked for
        _hashes_raw(1024, 0, 1024),  # more than 512
        _hashes_raw(2, 64, 2 + 64),  # absurd proof layers
        _hashes_raw(2, 1, 2),  # the uncle is missing
        _hashes_raw(2, 0, 3),  # one hash too many
        _hashes_raw(2, 0, 2)[:-1] + b"",  # truncated: prefix says more than sent (caught below)
        struct.pack(">IB", 48, 21) + bytes(47),  # short hash request
        struct.pack(">IB", 50, 23) + bytes(49),  # long hash reject
        struct.pack(">IB", 20, 22) + bytes(19),  # hashes without a full header
        struct.pack(">IB", 1 << 20, 22),  # hashes larger than any legal one: refused at once
    ],
)
def test_mis_sized_hash_messages_are_protocol_errors(raw: bytes) -> None:
    dec = wire.MessageDecoder()
    if raw == _hashes_raw(2, 0, 2)[:-1]:
        assert dec.feed(raw) == []  # incomplete, not wrong: waits for the rest
        return
    with pytest.raises(ProtocolError):
        dec.feed(raw)


def test_a_bad_hashes_header_is_refused_before_its_hashes_arrive() -> None:
    raw = _hashes_raw(512, 0, 511)  # the length prefix disagrees with the header
    with pytest.raises(ProtocolError):
        wire.MessageDecoder().feed(raw[: 5 + 48])


def test_the_largest_legal_hashes_message_decodes() -> None:
    proof = wire.MAX_PROOF_LAYERS - 1
    n = 512 + wire.hash_proof_count(512, proof)
    msgs = wire.MessageDecoder(max_block=16384).feed(_hashes_raw(512, proof, n))
    assert len(msgs) == 1 and len(msgs[0].hashes) == n  # type: ignore[union-attr]


def test_encoders_refuse_bad_sizes() -> None:
    with pytest.raises(ValueError):
        wire.encode_hash_request(ROOT[:31], 0, 0, 2, 0)
    with pytest.raises(ValueError):
        wire.encode_hashes(ROOT, 0, 0, 2, 0, (H[0], b"short"))


def test_v2_upgrade_bit_keeps_other_bits() -> None:
    plain = wire.make_reserved(extensions=True, fast=True, dht=True)
    assert not wire.supports_v2(plain)
    upgraded = wire.with_v2(plain)
    assert upgraded[7] == plain[7] | 0x10 and upgraded[:7] == plain[:7]
    assert wire.supports_v2(upgraded) and wire.with_v2(upgraded, on=False) == plain
    assert wire.make_reserved(v2=True) == wire.with_v2(wire.make_reserved())
    hs = wire.Handshake(bytes(20), bytes(20), upgraded)
    parsed = wire.parse_handshake(hs.encode())
    assert parsed.v2 and parsed.extensions and parsed.fast and parsed.dht
    assert not wire.Handshake(bytes(20), bytes(20)).v2  # default: off, as before
    with pytest.raises(ValueError):
        wire.with_v2(b"\x00" * 7)
