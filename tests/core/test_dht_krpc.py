"""KRPC codec: round trips, and hostile datagrams raise KRPCError and nothing else."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarm.core.bencode import encode
from swarm.core.dht.krpc import (
    MAX_PACKET,
    METHOD_UNKNOWN,
    AnnouncePeer,
    Error,
    FindNode,
    GetPeers,
    KRPCError,
    Message,
    NodeInfo,
    Ping,
    Response,
    decode_message,
    decode_nodes,
    encode_message,
    encode_nodes,
)
from swarm.errors import ProtocolError

ID_A = bytes(range(20))
ID_B = bytes(range(20, 40))

MESSAGES: list[Message] = [
    Ping(b"aa", ID_A),
    FindNode(b"ab", ID_A, ID_B),
    GetPeers(b"\x00\x01", ID_A, ID_B),
    GetPeers(b"ro", ID_A, ID_B, read_only=True),
    AnnouncePeer(b"t3", ID_A, ID_B, 1, b"tok", False, read_only=True),
    AnnouncePeer(b"t1", ID_A, ID_B, 6881, b"tok", False),
    AnnouncePeer(b"t2", ID_A, ID_B, 0, b"tok", True),
    AnnouncePeer(b"t2", ID_A, ID_B, 51413, b"tok", True),
    Response(b"aa", ID_B),
    Response(b"aa", ID_B, nodes=(NodeInfo(ID_A, "127.0.0.1", 6881), NodeInfo(ID_B, "10.1.2.3", 1))),
    Response(b"aa", ID_B, nodes6=(NodeInfo(ID_A, "::1", 6881),)),
    Response(b"aa", ID_B, values=(("127.0.0.1", 5), ("::1", 65535)), token=b"xyz"),
    Response(b"aa", ID_B, nodes=(NodeInfo(ID_A, "1.2.3.4", 80),), token=b"\x00" * 8),
    Error(b"aa", 201, "A Generic Error Ocurred"),
    Error(b"zz", 204, "Method Unknown"),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip(msg: Message) -> None:
    data = encode_message(msg)
    assert decode_message(data) == msg
    assert decode_message(encode_message(msg, version=b"SW01")) == msg


def test_bep5_example_ping() -> None:
    data = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe"
    assert decode_message(data) == Ping(b"aa", b"abcdefghij0123456789")


def test_unsorted_keys_accepted() -> None:
    data = b"d1:y1:q1:t2:aa1:q4:ping1:ad2:id20:abcdefghij0123456789ee"
    assert decode_message(data) == Ping(b"aa", b"abcdefghij0123456789")


def test_compact_nodes() -> None:
    nodes = (NodeInfo(ID_A, "192.168.1.2", 443), NodeInfo(ID_B, "127.0.0.1", 65535))
    raw = encode_nodes(nodes)
    assert len(raw) == 52
    assert raw[20:26] == bytes([192, 168, 1, 2, 1, 187])
    assert decode_nodes(raw) == nodes


def _msg(**overrides: object) -> bytes:
    base: dict[bytes, object] = {b"t": b"aa", b"y": b"q", b"q": b"ping", b"a": {b"id": ID_A}}
    for k, v in overrides.items():
        key = k.encode()
        if v is None:
            base.pop(key, None)
        else:
            base[key] = v
    return encode(base)


BAD = [
    b"",
    b"d1:t2:aae",  # no y
    b"i1e",
    b"l1:te",
    _msg(y=b"x"),
    _msg(y=None),
    _msg(t=None),
    _msg(t=1),
    _msg(t=b"x" * 100),
    _msg(a={b"id": b"short"}),
    _msg(a={b"id": 5}),
    _msg(a=None),
    _msg(a=[]),
    _msg(q=b"find_node"),  # no target
    _msg(q=b"get_peers", a={b"id": ID_A, b"info_hash": b"x" * 21}),
    _msg(q=b"announce_peer", a={b"id": ID_A, b"info_hash": ID_B, b"token": b"t"}),  # no port
    _msg(q=b"announce_peer", a={b"id": ID_A, b"info_hash": ID_B, b"token": b"t", b"port": 70000}),
    _msg(q=b"announce_peer", a={b"id": ID_A, b"info_hash": ID_B, b"token": b"t", b"port": 0}),
    _msg(q=b"announce_peer", a={b"id": ID_A, b"info_hash": ID_B, b"port": 1}),  # no token
    _msg(
        q=b"announce_peer",
        a={b"id": ID_A, b"info_hash": ID_B, b"token": b"t", b"port": 1, b"implied_port": 2},
    ),
    _msg(y=b"r", r={b"id": ID_A, b"nodes": b"x" * 27}),
    _msg(y=b"r", r={b"id": ID_A, b"nodes": b"x" * 26 * 33}),
    _msg(y=b"r", r={b"id": ID_A, b"nodes6": b"x" * 26}),
    _msg(y=b"r", r={b"id": ID_A, b"values": b"notalist"}),
    _msg(y=b"r", r={b"id": ID_A, b"values": [b"x" * 7]}),
    _msg(y=b"r", r={b"id": ID_A, b"values": [1]}),
    _msg(y=b"r", r={b"id": ID_A, b"values": [b"x" * 6] * 201}),
    _msg(y=b"r", r={b"id": ID_A, b"token": b"x" * 65}),
    _msg(y=b"r", r=None),
    _msg(y=b"e", e=b"oops"),
    _msg(y=b"e", e=[b"201", b"x"]),
    _msg(y=b"e", e=[201]),
    b"d1:t2:aa1:y1:q1:q4:ping1:ad2:id20:" + b"x" * 20 + b"e" + b"x" * MAX_PACKET,
    b"d1:t2:aa1:y1:q1:q4:ping1:ad2:id99999999:",  # huge string length
    b"d" * 50 + b"e" * 50,  # deep nesting
    _msg(a={b"id": ID_A}) + b"trailing",
]


@pytest.mark.parametrize("data", BAD)
def test_bad_messages_raise_krpc_error(data: bytes) -> None:
    with pytest.raises(KRPCError):
        decode_message(data)


def test_unknown_method_is_204_with_tid() -> None:
    with pytest.raises(KRPCError) as info:
        decode_message(_msg(q=b"vote"))
    assert info.value.code == METHOD_UNKNOWN
    assert info.value.t == b"aa"
    assert isinstance(info.value, ProtocolError)


def test_error_text_is_truncated_and_decoded() -> None:
    msg = decode_message(_msg(y=b"e", e=[202, b"\xff" * 1000]))
    assert isinstance(msg, Error) and msg.code == 202 and len(msg.message) <= 200


def _check(data: bytes) -> None:
    try:
        msg = decode_message(data)
    except KRPCError:
        return
    # Whatever decodes must encode back to something that decodes the same.
    assert decode_message(encode_message(msg)) == msg


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data: bytes) -> None:
    _check(data)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from([encode_message(m) for m in MESSAGES]),
    st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=6),
    st.integers(0, 400),
)
def test_fuzz_mutated_valid(data: bytes, flips: list[tuple[int, int]], cut: int) -> None:
    buf = bytearray(data)
    for pos, val in flips:
        if buf:
            buf[pos % len(buf)] = val
    _check(bytes(buf[: len(buf) - cut % (len(buf) + 1)]))


bvalues = st.recursive(
    st.integers(-(2**70), 2**70) | st.binary(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    b"id",
                    b"t",
                    b"y",
                    b"q",
                    b"a",
                    b"r",
                    b"e",
                    b"nodes",
                    b"values",
                    b"token",
                    b"port",
                    b"target",
                    b"info_hash",
                    b"implied_port",
                    b"nodes6",
                ]
            ),
            inner,
            max_size=6,
        )
    ),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            b"t": st.binary(max_size=4) | st.integers(),
            b"y": st.sampled_from([b"q", b"r", b"e", b"x"]),
        },
        optional={
            b"q": st.sampled_from([b"ping", b"find_node", b"get_peers", b"announce_peer", b"x"]),
            b"a": bvalues,
            b"r": bvalues,
            b"e": bvalues,
        },
    )
)
def test_fuzz_structured(msg: dict[bytes, object]) -> None:
    _check(encode(msg))
