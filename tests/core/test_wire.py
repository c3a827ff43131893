"""Peer wire codec: round trips, chunking, validation, sink, BEP 6."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarm.core import wire
from swarm.core.wire import (
    HANDSHAKE_LEN,
    PROTOCOL,
    AllowedFast,
    BitfieldMsg,
    Cancel,
    Choke,
    Extended,
    Handshake,
    HandshakeDecoder,
    Have,
    HaveAll,
    HaveNone,
    Interested,
    KeepAlive,
    MessageDecoder,
    NotInterested,
    Piece,
    Port,
    RejectRequest,
    Request,
    Suggest,
    Unchoke,
    allowed_fast_set,
    encode,
    make_reserved,
    parse_handshake,
)
from swarm.errors import ProtocolError

# A small torrent: 10 pieces of 32 KiB, the last one 1000 bytes.
N, PLEN = 10, 32768
TOTAL = 9 * PLEN + 1000


def dec(**kw: object) -> MessageDecoder:
    return MessageDecoder(N, PLEN, TOTAL, **kw)  # type: ignore[arg-type]


ALL_MESSAGES = [
    KeepAlive(),
    Choke(),
    Unchoke(),
    Interested(),
    NotInterested(),
    Have(9),
    BitfieldMsg(b"\xff\xc0"),
    Request(1, 16384, 16384),
    Piece(9, 0, b"z" * 1000),
    Piece(0, 100, b"abc"),
    Cancel(3, 0, 16384),
    Port(6881),
    Suggest(4),
    HaveAll(),
    HaveNone(),
    RejectRequest(9, 0, 1000),
    AllowedFast(0),
    Extended(0, b"d1:md11:ut_metadatai3eee"),
    Extended(255, b""),
]


def test_every_message_round_trips() -> None:
    for msg in ALL_MESSAGES:
        assert dec().feed(encode(msg)) == [msg], msg


def test_encoders_match_the_spec_bytes() -> None:
    assert wire.encode_keepalive() == b"\0\0\0\0"
    assert wire.encode_choke() == b"\0\0\0\1\0"
    assert wire.encode_unchoke() == b"\0\0\0\1\1"
    assert wire.encode_interested() == b"\0\0\0\1\2"
    assert wire.encode_not_interested() == b"\0\0\0\1\3"
    assert wire.encode_have(258) == b"\0\0\0\5\4\0\0\1\2"
    assert wire.encode_bitfield(b"\xaa") == b"\0\0\0\2\5\xaa"
    assert wire.encode_request(1, 2, 3) == struct.pack(">IBIII", 13, 6, 1, 2, 3)
    assert wire.encode_cancel(1, 2, 3) == struct.pack(">IBIII", 13, 8, 1, 2, 3)
    assert wire.encode_port(6881) == b"\0\0\0\3\x09\x1a\xe1"
    assert wire.encode_suggest(7) == struct.pack(">IBI", 5, 0x0D, 7)
    assert wire.encode_have_all() == b"\0\0\0\1\x0e"
    assert wire.encode_have_none() == b"\0\0\0\1\x0f"
    assert wire.encode_reject(1, 2, 3) == struct.pack(">IBIII", 13, 0x10, 1, 2, 3)
    assert wire.encode_allowed_fast(7) == struct.pack(">IBI", 5, 0x11, 7)
    assert wire.encode_extended(3, b"xy") == b"\0\0\0\4\x14\x03xy"
    assert wire.piece_header(1, 2, 16384) == struct.pack(">IBII", 16393, 7, 1, 2)
    assert wire.encode_piece(1, 2, b"ab") == struct.pack(">IBII", 11, 7, 1, 2) + b"ab"


def test_encode_refuses_a_sunk_piece() -> None:
    with pytest.raises(ValueError):
        encode(Piece(0, 0, None))


# -- handshake ---------------------------------------------------------------


def test_reserved_bits() -> None:
    r = make_reserved(extensions=True, fast=True, dht=True)
    assert r == b"\0\0\0\0\0\x10\0\x05"
    assert make_reserved(False, False, False) == bytes(8)
    hs = Handshake(b"i" * 20, b"p" * 20, r)
    assert hs.extensions and hs.fast and hs.dht
    hs2 = Handshake(b"i" * 20, b"p" * 20, make_reserved(extensions=False, fast=False))
    assert not (hs2.extensions or hs2.fast or hs2.dht)


def test_handshake_round_trip() -> None:
    hs = Handshake(bytes(range(20)), b"-SW0100-abcdefghijkl", make_reserved())
    raw = hs.encode()
    assert len(raw) == HANDSHAKE_LEN and raw.startswith(PROTOCOL)
    assert parse_handshake(raw) == hs


def test_handshake_rejects_bad_input() -> None:
    raw = Handshake(b"i" * 20, b"p" * 20).encode()
    with pytest.raises(ProtocolError):
        parse_handshake(raw[:67])
    with pytest.raises(ProtocolError):
        parse_handshake(raw + b"x")
    with pytest.raises(ProtocolError):
        parse_handshake(b"\x13BitTorrent protocoX" + raw[20:])
    with pytest.raises(ProtocolError):
        parse_handshake(b"GET / HTTP/1.1\r\n" + raw[16:])


def test_handshake_decoder_head_then_rest() -> None:
    raw = Handshake(b"i" * 20, b"p" * 20).encode()
    hd = HandshakeDecoder()
    rest = hd.feed(raw[:48])
    assert rest == b"" and hd.head_done and not hd.done
    assert hd.info_hash == b"i" * 20
    assert hd.reserved == make_reserved()
    with pytest.raises(ProtocolError):
        _ = hd.handshake
    rest = hd.feed(raw[48:] + wire.encode_have(1))
    assert hd.done and hd.handshake.peer_id == b"p" * 20
    assert dec().feed(rest) == [Have(1)]


def test_handshake_decoder_buffered_never_reads_past_handshake() -> None:
    raw = Handshake(b"i" * 20, b"p" * 20).encode()
    hd = HandshakeDecoder()
    with pytest.raises(ProtocolError):
        _ = hd.info_hash
    off = 0
    while not hd.done:
        buf = hd.get_buffer(65536)
        assert len(buf) == HANDSHAKE_LEN - off
        n = min(len(buf), 30)
        buf[:n] = raw[off : off + n]
        hd.buffer_updated(n)
        off += n
    assert hd.handshake == parse_handshake(raw)


def test_handshake_decoder_rejects_wrong_protocol_early() -> None:
    hd = HandshakeDecoder()
    with pytest.raises(ProtocolError):
        hd.feed(b"GET /announce")


# -- chunking and the sink -----------------------------------------------------


def stream_of(msgs: list[object]) -> bytes:
    return b"".join(encode(m) for m in msgs)  # type: ignore[arg-type]


STREAM = stream_of(ALL_MESSAGES * 3)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=1, max_value=400), max_size=60))
def test_any_chunking_gives_the_same_messages(cuts: list[int]) -> None:
    d = dec()
    out = []
    pos = 0
    for c in cuts:
        out += d.feed(STREAM[pos : pos + c])
        pos += c
    out += d.feed(STREAM[pos:])
    assert out == ALL_MESSAGES * 3


class RecordingSink:
    def __init__(self, accept: bool = True) -> None:
        self.accept = accept
        self.slots: dict[tuple[int, int], bytearray] = {}
        self.calls: list[tuple[int, int, int]] = []

    def __call__(self, index: int, begin: int, length: int) -> memoryview | None:
        self.calls.append((index, begin, length))
        if not self.accept:
            return None
        buf = bytearray(length)
        self.slots[(index, begin)] = buf
        return memoryview(buf)


def expected_with_sink(msgs: list[object]) -> list[object]:
    return [Piece(m.index, m.begin, None) if isinstance(m, Piece) else m for m in msgs]


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.integers(min_value=1, max_value=5000), max_size=40),
    st.booleans(),
    st.booleans(),
)
def test_sink_any_chunking_buffer_protocol(cuts: list[int], direct: bool, use_feed: bool) -> None:
    sink = RecordingSink()
    d = dec(block_sink=sink, direct=direct)
    out: list[object] = []
    pos = 0
    cuts = [*cuts, len(STREAM)]
    for c in cuts:
        chunk = STREAM[pos : pos + c]
        pos += len(chunk)
        if use_feed:
            out += d.feed(chunk)
            continue
        off = 0
        while off < len(chunk):
            buf = d.get_buffer(65536)
            n = min(len(buf), len(chunk) - off)
            buf[:n] = chunk[off : off + n]
            off += n
            out += d.buffer_updated(n)
    assert out == expected_with_sink(ALL_MESSAGES * 3)
    assert sink.calls.count((9, 0, 1000)) == 3  # once per piece message, never twice
    assert bytes(sink.slots[(9, 0)]) == b"z" * 1000
    assert bytes(sink.slots[(0, 100)]) == b"abc"


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=1, max_value=5000), max_size=40))
def test_block_landed_replaces_the_message_of_a_block_copied_whole(cuts: list[int]) -> None:
    """With ``block_landed``, a block that arrived whole in one read is reported by that
    call (after its bytes are in the slot), not as a message; one split across reads
    still comes as Piece(index, begin, None). Every taken block is reported exactly once,
    in stream order among the other messages' blocks."""
    sink = RecordingSink()
    landed: list[tuple[int, int, int]] = []

    def on_landed(index: int, begin: int, length: int) -> None:
        assert bytes(sink.slots[(index, begin)][:1]) != b"\x00"  # the copy is done
        landed.append((index, begin, length))

    d = dec(block_sink=sink, block_landed=on_landed)
    out: list[object] = []
    pos = 0
    for c in [*cuts, len(STREAM)]:
        chunk = STREAM[pos : pos + c]
        pos += len(chunk)
        out += d.feed(chunk)
    pieces = [m for m in out if isinstance(m, Piece)]
    assert all(m.data is None for m in pieces)
    assert [m for m in out if not isinstance(m, Piece)] == [m for m in ALL_MESSAGES * 3 if not isinstance(m, Piece)]
    reported = sorted([(i, b) for i, b, _ in landed] + [(m.index, m.begin) for m in pieces])
    assert reported == sorted((m.index, m.begin) for m in ALL_MESSAGES * 3 if isinstance(m, Piece))
    assert bytes(sink.slots[(9, 0)]) == b"z" * 1000
    if not cuts:  # one read: every block whole
        assert not pieces and (9, 0, 1000) in landed


def test_declined_block_is_yielded_with_data_and_sink_called_once() -> None:
    sink = RecordingSink(accept=False)
    d = dec(block_sink=sink)
    raw = wire.encode_piece(1, 0, b"q" * 16384) + wire.encode_have(2)
    out = []
    for i in range(0, len(raw), 1000):
        out += d.feed(raw[i : i + 1000])
    assert out == [Piece(1, 0, b"q" * 16384), Have(2)]
    assert sink.calls == [(1, 0, 16384)]


def test_sink_must_return_the_exact_length() -> None:
    d = dec(block_sink=lambda i, b, n: memoryview(bytearray(n + 1)))
    with pytest.raises(ValueError):
        d.feed(wire.encode_piece(0, 0, b"abc"))


def test_large_extended_message_grows_then_shrinks_the_buffer() -> None:
    big = Extended(3, b"x" * 700_000)
    d = dec()
    raw = encode(big) + wire.encode_have(1)
    out = []
    for i in range(0, len(raw), 65536):
        out += d.feed(raw[i : i + 65536])
    assert out == [big, Have(1)]
    d.feed(wire.encode_have(2))
    assert len(d.get_buffer(-1)) <= 256 * 1024


def test_unknown_ids_are_skipped_even_across_chunks() -> None:
    unknown = struct.pack(">IB", 1 + 5000, 0x42) + b"u" * 5000
    raw = wire.encode_have(1) + unknown + wire.encode_have(2)
    d = dec()
    out = []
    for i in range(0, len(raw), 777):
        out += d.feed(raw[i : i + 777])
    assert out == [Have(1), Have(2)]


def test_unknown_torrent_allows_anything_in_range_then_set_torrent_checks() -> None:
    d = MessageDecoder()
    assert d.feed(wire.encode_have(10**6) + wire.encode_bitfield(b"\xff" * 3)) == [
        Have(10**6),
        BitfieldMsg(b"\xff" * 3),
    ]
    d.set_torrent(N, PLEN, TOTAL)
    with pytest.raises(ProtocolError):
        d.feed(wire.encode_have(N))


def test_set_torrent_rejects_inconsistent_dimensions() -> None:
    with pytest.raises(ValueError):
        MessageDecoder(10, PLEN, 11 * PLEN)
    with pytest.raises(ValueError):
        MessageDecoder(10, PLEN, None)


# -- validation ---------------------------------------------------------------

BAD = {
    "have index": wire.encode_have(N),
    "suggest index": wire.encode_suggest(N),
    "allowed_fast index": wire.encode_allowed_fast(N),
    "request index": wire.encode_request(N, 0, 16384),
    "cancel index": wire.encode_cancel(N, 0, 16384),
    "reject index": wire.encode_reject(N, 0, 16384),
    "request past piece end": wire.encode_request(0, 16385, 16384),
    "request past last piece end": wire.encode_request(9, 0, 1001),
    "request zero": wire.encode_request(0, 0, 0),
    "request too big": wire.encode_request(0, 0, 131073),
    "reject past end": wire.encode_reject(9, 500, 501),
    "piece past end": wire.encode_piece(9, 1, b"x" * 1000),
    "piece index": wire.encode_piece(N, 0, b"x"),
    "piece empty": wire.encode_piece(0, 0, b""),
    "piece too big": wire.piece_header(0, 0, 131073),
    "bitfield short": wire.encode_bitfield(b"\xff"),
    "bitfield long": wire.encode_bitfield(b"\xff\xc0\x00"),
    "bitfield spare bits": wire.encode_bitfield(b"\xff\xe0"),
    "choke with payload": b"\0\0\0\2\0\0",
    "have short": b"\0\0\0\4\4\0\0\0",
    "request long": struct.pack(">IBIIII", 17, 6, 0, 0, 1, 0),
    "port long": b"\0\0\0\4\x09\0\0\0",
    "have_all with payload": b"\0\0\0\2\x0e\0",
    "extended without id": b"\0\0\0\1\x14",
    "extended too big": struct.pack(">IBB", 2 + (1 << 20) + 1, 20, 0),
    "unknown too big": struct.pack(">IB", 131073 + 10, 0x42),
    "length prefix huge": b"\xff\xff\xff\xff",
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_validation_rule(name: str) -> None:
    with pytest.raises(ProtocolError):
        dec().feed(BAD[name])


def test_oversized_prefix_rejected_before_payload() -> None:
    # Only the header arrives: the error must come now, not after buffering.
    with pytest.raises(ProtocolError):
        dec().feed(struct.pack(">IB", 50_000_000, 20))
    with pytest.raises(ProtocolError):
        MessageDecoder().feed(struct.pack(">IB", 1 + (1 << 17) + 1, 5))


def test_last_piece_block_exactly_at_end_is_fine() -> None:
    assert dec().feed(wire.encode_request(9, 0, 1000)) == [Request(9, 0, 1000)]
    assert dec().feed(wire.encode_request(8, 16384, 16384)) == [Request(8, 16384, 16384)]


def test_max_block_is_configurable() -> None:
    d = dec(max_block=16384)
    with pytest.raises(ProtocolError):
        d.feed(wire.encode_request(0, 0, 16385))


# -- hostile input --------------------------------------------------------------


@settings(max_examples=300)
@given(st.binary(max_size=2000), st.booleans())
def test_random_bytes_only_raise_protocol_error(data: bytes, known: bool) -> None:
    d = dec(block_sink=RecordingSink()) if known else MessageDecoder()
    try:
        d.feed(data)
    except ProtocolError:
        pass


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(st.integers(0, len(STREAM) - 1), st.integers(0, 255)), min_size=1, max_size=8
    ),
    st.booleans(),
)
def test_mutated_streams_only_raise_protocol_error(
    edits: list[tuple[int, int]], with_sink: bool
) -> None:
    raw = bytearray(STREAM)
    for pos, val in edits:
        raw[pos] = val
    d = dec(block_sink=RecordingSink()) if with_sink else dec()
    try:
        for i in range(0, len(raw), 301):
            d.feed(bytes(raw[i : i + 301]))
    except ProtocolError:
        pass


# -- BEP 6 -------------------------------------------------------------------


def test_allowed_fast_set_bep6_example() -> None:
    ih = b"\xaa" * 20
    assert allowed_fast_set("80.4.4.200", ih, 1313, 7) == [1059, 431, 808, 1217, 287, 376, 1188]
    assert allowed_fast_set("80.4.4.200", ih, 1313, 9) == [
        1059, 431, 808, 1217, 287, 376, 1188, 353, 508,
    ]  # fmt: skip
    # Same /24, same set.
    assert allowed_fast_set("80.4.4.1", ih, 1313, 7) == allowed_fast_set("80.4.4.200", ih, 1313, 7)


def test_allowed_fast_set_edges() -> None:
    ih = b"\xaa" * 20
    assert sorted(allowed_fast_set("10.0.0.1", ih, 3, 10)) == [0, 1, 2]
    assert allowed_fast_set("10.0.0.1", ih, 0) == []
    assert allowed_fast_set("::1", ih, 100) == []
    assert allowed_fast_set("::ffff:80.4.4.200", ih, 1313, 7)[0] == 1059
    with pytest.raises(ProtocolError):
        allowed_fast_set("not an ip", ih, 10)


class CoinSink(RecordingSink):
    """Accepts or declines each block according to a list of coin flips."""

    def __init__(self, flips: list[bool]) -> None:
        super().__init__()
        self.flips = flips
        self.n = 0

    def __call__(self, index: int, begin: int, length: int) -> memoryview | None:
        self.accept = self.flips[self.n % len(self.flips)] if self.flips else True
        self.n += 1
        return super().__call__(index, begin, length)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.integers(min_value=1, max_value=3000), max_size=40),
    st.lists(st.booleans(), max_size=8),
    st.booleans(),
)
def test_mixed_accept_and_decline_any_chunking(
    cuts: list[int], flips: list[bool], direct: bool
) -> None:
    sink = CoinSink(flips)
    d = dec(block_sink=sink, direct=direct)
    out: list[object] = []
    pos = 0
    for c in [*cuts, len(STREAM)]:
        out += d.feed(STREAM[pos : pos + c])
        pos += c
    msgs = ALL_MESSAGES * 3
    pieces = [m for m in msgs if isinstance(m, Piece)]
    assert len(sink.calls) == len(pieces)  # exactly one sink call per piece message
    expected = []
    k = 0
    for m in msgs:
        if isinstance(m, Piece):
            took = flips[k % len(flips)] if flips else True
            expected.append(Piece(m.index, m.begin, None) if took else m)
            k += 1
        else:
            expected.append(m)
    assert out == expected


U32 = st.integers(0, 2**32 - 1)
BLEN = st.integers(1, wire.MAX_BLOCK)
MESSAGES = st.one_of(
    st.sampled_from(
        [KeepAlive(), Choke(), Unchoke(), Interested(), NotInterested(), HaveAll(), HaveNone()]
    ),
    st.builds(Have, U32),
    st.builds(Suggest, U32),
    st.builds(AllowedFast, U32),
    st.builds(BitfieldMsg, st.binary(max_size=64)),
    st.builds(Request, U32, U32, BLEN),
    st.builds(Cancel, U32, U32, BLEN),
    st.builds(RejectRequest, U32, U32, BLEN),
    st.builds(Piece, U32, U32, st.binary(min_size=1, max_size=300)),
    st.builds(Port, st.integers(0, 65535)),
    st.builds(Extended, st.integers(0, 255), st.binary(max_size=100)),
)


@given(st.lists(MESSAGES, max_size=30), st.integers(1, 50))
def test_random_messages_round_trip_without_torrent(msgs: list[object], step: int) -> None:
    raw = stream_of(msgs)
    d = MessageDecoder()
    out = []
    for i in range(0, len(raw), step):
        out += d.feed(raw[i : i + step])
    assert out == msgs


@given(st.binary(min_size=0, max_size=100))
def test_handshake_parsers_only_raise_protocol_error(data: bytes) -> None:
    try:
        parse_handshake(data)
    except ProtocolError:
        pass
    hd = HandshakeDecoder()
    try:
        hd.feed(data)
        if hd.done:
            assert len(hd.handshake.peer_id) == 20
    except ProtocolError:
        pass
