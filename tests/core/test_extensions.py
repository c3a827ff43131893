from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarm.core import bencode
from swarm.core.extensions import (
    MAX_METADATA_SIZE,
    OUR_EXTENSIONS,
    PEX_SEED,
    ExtHandshake,
    MetadataAssembler,
    MetadataData,
    MetadataReject,
    MetadataRequest,
    PexMessage,
    PexPeer,
    PexState,
    decode_ext_handshake,
    decode_metadata_message,
    decode_pex,
    encode_ext_handshake,
    encode_metadata_data,
    encode_metadata_reject,
    encode_metadata_request,
    encode_pex,
)
from swarm.errors import ProtocolError

# -- extended handshake ----------------------------------------------------------


def test_ext_handshake_round_trip() -> None:
    hs = ExtHandshake(
        m=dict(OUR_EXTENSIONS),
        v="swarm 0.1.0",
        p=6881,
        reqq=500,
        yourip=bytes([10, 0, 0, 1]),
        metadata_size=31337,
        upload_only=True,
    )
    assert decode_ext_handshake(encode_ext_handshake(hs)) == hs
    assert OUR_EXTENSIONS == {"ut_pex": 1, "ut_metadata": 3}


def test_ext_handshake_libtorrent_style_and_unknown_keys() -> None:
    raw = bencode.encode(
        {
            "m": {"ut_metadata": 2, "ut_pex": 1, "lt_donthave": 7, "ut_holepunch": 0},
            "v": "libtorrent 2.0.8",
            "reqq": 500,
            "complete_ago": 1,
            "metadata_size": 1234,
            "yourip": b"\0" * 16,
            "e": 0,
        }
    )
    hs = decode_ext_handshake(raw)
    assert hs.m == {"ut_metadata": 2, "ut_pex": 1, "lt_donthave": 7}  # id 0 = disabled
    assert hs.v == "libtorrent 2.0.8" and hs.metadata_size == 1234 and hs.reqq == 500
    assert hs.p is None


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"le",
        b"d1:mi1ee",
        b"d1:md3:fooi256eee",
        b"d1:md3:fooi-1eee",
        b"d1:md3:foo3:abcee",
        b"d1:v5:abcde13:metadata_sizei-1ee",
        b"d13:metadata_sizei16777217ee",
        b"d13:metadata_size3:abce",
        b"d6:yourip3:abce",
        b"d6:youripi1ee",
        b"d1:pi1ee" + b"x",
        b"d4:reqq1:xe",
        b"d1:v" + b"i1ee",
    ],
)
def test_ext_handshake_rejects(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_ext_handshake(raw)


def test_ext_handshake_ignores_unusable_port_reqq_and_zero_size() -> None:
    hs = decode_ext_handshake(b"d13:metadata_sizei0e1:pi0e4:reqqi0ee")
    assert hs.p is None and hs.reqq is None and hs.m == {} and hs.metadata_size is None


@given(st.binary(max_size=300))
def test_ext_handshake_random_bytes(raw: bytes) -> None:
    try:
        decode_ext_handshake(raw)
    except ProtocolError:
        pass


# -- ut_metadata -----------------------------------------------------------------

SIZE = 16384 * 2 + 100


def test_metadata_messages_round_trip() -> None:
    assert decode_metadata_message(encode_metadata_request(2), SIZE) == MetadataRequest(2)
    assert decode_metadata_message(encode_metadata_reject(1), SIZE) == MetadataReject(1)
    data = b"x" * 100
    assert decode_metadata_message(encode_metadata_data(2, SIZE, data), SIZE) == MetadataData(
        2, SIZE, data
    )
    full = b"y" * 16384
    assert decode_metadata_message(encode_metadata_data(0, SIZE, full), None) == MetadataData(
        0, SIZE, full
    )


def test_metadata_unknown_msg_type_ignored() -> None:
    assert decode_metadata_message(b"d8:msg_typei7e5:piecei0ee", SIZE) is None


@pytest.mark.parametrize(
    "raw",
    [
        encode_metadata_request(3),  # ceil(SIZE / 16384) = 3 pieces
        b"d8:msg_typei0e5:piecei-1ee",
        b"d8:msg_typei0ee",
        b"d5:piecei0ee",
        b"d8:msg_type1:05:piecei0ee",
        encode_metadata_data(2, SIZE, b"x" * 99),
        encode_metadata_data(2, SIZE, b"x" * 101),
        encode_metadata_data(0, SIZE, b"x" * 100),
        encode_metadata_data(0, SIZE + 1, b"x" * 16384),
        encode_metadata_data(0, MAX_METADATA_SIZE + 1, b"x" * 16384),
        b"d8:msg_typei1e5:piecei0ee" + b"x" * 16384,
        encode_metadata_request(0) + b"junk",
        b"garbage",
    ],
)
def test_metadata_rejects(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_metadata_message(raw, SIZE)


@given(st.binary(max_size=200), st.one_of(st.none(), st.integers(1, 100000)))
def test_metadata_random_bytes(raw: bytes, size: int | None) -> None:
    try:
        decode_metadata_message(raw, size)
    except ProtocolError:
        pass


def test_metadata_assembler() -> None:
    info = bytes(range(256)) * 200  # 51200 bytes: 4 pieces, last 2048
    ih = hashlib.sha1(info).digest()
    asm = MetadataAssembler(ih, len(info))
    assert asm.num_pieces == 4 and asm.missing() == [0, 1, 2, 3]
    for i in (3, 1, 0):
        assert asm.add(i, info[i * 16384 : (i + 1) * 16384]) is None
    assert asm.missing() == [2]
    assert asm.add(2, info[2 * 16384 : 3 * 16384]) == info


def test_metadata_assembler_checks_a_v2_hash_by_sha256() -> None:
    """A `urn:btmh:` magnet names the SHA-256 of the info dict (32 bytes):
    the metadata is checked against that, not against a SHA-1."""
    info = b"d12:file treed1:ad0:d6:lengthi1eeee12:meta versioni2e4:name1:ae"
    asm = MetadataAssembler(hashlib.sha256(info).digest(), len(info))
    assert asm.add(0, info) == info
    wrong = MetadataAssembler(hashlib.sha256(info + b"x").digest(), len(info))
    with pytest.raises(ProtocolError):
        wrong.add(0, info)
    with pytest.raises(ProtocolError):
        MetadataAssembler(b"\0" * 31, len(info))


def test_metadata_assembler_mismatch_resets() -> None:
    info = b"d4:name1:xe"
    asm = MetadataAssembler(b"\0" * 20, len(info))
    with pytest.raises(ProtocolError):
        asm.add(0, info)
    assert asm.missing() == [0]
    with pytest.raises(ProtocolError):
        asm.add(1, b"")
    with pytest.raises(ProtocolError):
        asm.add(0, info + b"x")
    with pytest.raises(ProtocolError):
        MetadataAssembler(b"\0" * 20, 0)
    with pytest.raises(ProtocolError):
        MetadataAssembler(b"\0" * 20, MAX_METADATA_SIZE + 1)


# -- ut_pex ----------------------------------------------------------------------


def test_pex_round_trip_v4_and_v6() -> None:
    msg = PexMessage(
        added=[PexPeer("10.0.0.1", 6881, 0x12), PexPeer("fe80::1", 51413, 0x02)],
        dropped=[("10.0.0.2", 1), ("2001:db8::5", 2)],
    )
    assert decode_pex(encode_pex(msg)) == msg


def test_pex_wire_format() -> None:
    raw = encode_pex(PexMessage([PexPeer("1.2.3.4", 0x1AE1, 2)], []))
    d = bencode.decode(raw)
    assert d == {b"added": b"\x01\x02\x03\x04\x1a\xe1", b"added.f": b"\x02", b"dropped": b""}


def test_pex_missing_flags_and_port_zero() -> None:
    raw = bencode.encode({"added": b"\x01\x02\x03\x04\x00\x00" + b"\x05\x06\x07\x08\x00\x01"})
    assert decode_pex(raw).added == [PexPeer("5.6.7.8", 1, 0)]


@pytest.mark.parametrize(
    "raw",
    [
        bencode.encode({"added": b"\x01" * 7}),
        bencode.encode({"added6": b"\x01" * 17}),
        bencode.encode({"dropped": b"\x01" * 5}),
        bencode.encode({"added": 5}),
        # more than MAX_PEX_DECODE (200; libtorrent sends up to 100 added)
        bencode.encode({"added": b"\x01\x02\x03\x04\x00\x01" * 201}),
        bencode.encode(
            {"added": b"\x01\x02\x03\x04\x00\x01" * 120, "added6": (b"\x01" * 16 + b"\0\1") * 81}
        ),
        bencode.encode({"dropped": b"\x01\x02\x03\x04\x00\x01" * 201}),
        b"le",
        b"d5:added0:e junk",
    ],
)
def test_pex_rejects(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_pex(raw)


@given(st.binary(max_size=300))
def test_pex_random_bytes(raw: bytes) -> None:
    try:
        decode_pex(raw)
    except ProtocolError:
        pass


def test_pex_state_diffs_and_rate_limit() -> None:
    st_ = PexState()
    a, b, c = PexPeer("10.0.0.1", 1), PexPeer("10.0.0.2", 2, PEX_SEED), PexPeer("10.0.0.3", 3)
    first = st_.make([a, b], now=0.0)
    assert first == PexMessage([a, b], [])
    assert st_.make([a, c], now=30.0) is None  # too early
    second = st_.make([a, c], now=60.0)
    assert second == PexMessage([c], [("10.0.0.2", 2)])
    assert st_.make([a, c], now=200.0) is None  # nothing changed
    # Nothing changed did not restart the clock: a change goes out at once.
    assert st_.make([a], now=201.0) == PexMessage([], [("10.0.0.3", 3)])


def test_pex_state_caps_at_50_and_sends_the_rest_later() -> None:
    st_ = PexState()
    peers = [PexPeer(f"10.0.{i // 256}.{i % 256}", 1000 + i) for i in range(120)]
    got: list[PexPeer] = []
    now = 0.0
    while len(got) < 120:
        msg = st_.make(peers, now)
        assert msg is not None and len(msg.added) <= 50
        got += msg.added
        now += 60
    assert sorted(got, key=lambda p: p.port) == peers
