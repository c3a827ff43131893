"""Bencode: round trips (with bencode.py as an oracle), rejections with offsets, fuzzing."""

from __future__ import annotations

from typing import Any

import bencodepy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarm.core.bencode import Raw, decode, decode_prefix, decode_with_spans, encode
from swarm.errors import BencodeError

ints = st.integers(min_value=-(2**70), max_value=2**70)
leaves = ints | st.binary(max_size=40)
values = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.binary(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)


@given(values)
def test_round_trip(value: Any) -> None:
    assert decode(encode(value)) == value


@given(values)
def test_encoding_matches_bencodepy(value: Any) -> None:
    ours = encode(value)
    assert bencodepy.encode(value) == ours
    assert decode(bencodepy.encode(value)) == value
    assert bencodepy.decode(ours) == value


@given(values)
def test_encoding_is_canonical(value: Any) -> None:
    data = encode(value)
    assert encode(decode(data)) == data


@pytest.mark.parametrize(
    ("bad", "offset", "reason"),
    [
        (b"i03e", 1, "leading zero"),
        (b"i-0e", 1, "invalid negative"),
        (b"i-e", 1, "invalid integer"),
        (b"ie", 1, "invalid integer"),
        (b"i12", 1, "unterminated integer"),
        (b"i1.5e", 1, "invalid integer"),
        (b"i" + b"1" * 40 + b"e", 1, "integer too long"),
        (b"3:ab", 0, "runs past the end"),
        (b"03:abc", 0, "leading zero"),
        (b"-1:a", 0, "unexpected byte"),
        (b"d1:b0:1:a0:e", 6, "out of order"),
        (b"d1:a0:1:a0:e", 6, "duplicate"),
        (b"di1e0:e", 1, "not a string"),
        (b"dle0:e", 1, "not a string"),
        (b"d1:a", 4, "unexpected end"),
        (b"d1:ai1e", 7, "unterminated dictionary"),
        (b"li1e", 4, "unterminated list"),
        (b"i1ex", 3, "trailing data"),
        (b"i1e\n", 3, "trailing data"),
        (b"", 0, "unexpected end"),
        (b"x", 0, "unexpected byte"),
        (b"le", None, None),  # valid: control row
    ],
)
def test_rejections_carry_offsets(bad: bytes, offset: int | None, reason: str | None) -> None:
    if offset is None:
        assert decode(bad) == []
        return
    with pytest.raises(BencodeError) as info:
        decode(bad)
    assert info.value.offset == offset
    assert reason is not None and reason in info.value.reason


def test_unsorted_keys_allowed_when_not_strict() -> None:
    assert decode(b"d1:b0:1:a0:e", strict_order=False) == {b"b": b"", b"a": b""}
    with pytest.raises(BencodeError, match="duplicate"):
        decode(b"d1:a0:1:a0:e", strict_order=False)


def test_depth_limit() -> None:
    ok = b"l" * 100 + b"e" * 100
    assert decode(ok, max_depth=100) is not None
    with pytest.raises(BencodeError) as info:
        decode(b"l" * 101 + b"e" * 101, max_depth=100)
    assert info.value.offset == 100
    # far deeper than Python's recursion limit: still our error, not RecursionError
    with pytest.raises(BencodeError, match="depth"):
        decode(b"d1:a" * 900 + b"i1e" + b"e" * 900)


def test_size_limit() -> None:
    with pytest.raises(BencodeError, match="exceeds") as info:
        decode(b"4:abcd", max_size=5)
    assert info.value.offset == 0
    assert decode(b"4:abcd", max_size=6) == b"abcd"


def test_huge_length_prefix_does_not_allocate() -> None:
    with pytest.raises(BencodeError, match="runs past the end"):
        decode(b"99999999999999999999:x")


def test_not_bytes() -> None:
    with pytest.raises(BencodeError):
        decode("i1e")  # type: ignore[arg-type]
    assert decode(memoryview(b"i7e")) == 7
    assert decode(bytearray(b"i7e")) == 7


def test_allow_trailing_and_prefix() -> None:
    assert decode(b"i1exyz", allow_trailing=True) == 1
    value, end = decode_prefix(b"d8:msg_typei1e5:piecei0eeRAWBYTES")
    assert value == {b"msg_type": 1, b"piece": 0}
    assert end == len(b"d8:msg_typei1e5:piecei0ee")
    value, end = decode_prefix(b"xxi5e", 2)
    assert (value, end) == (5, 5)
    for start in (-1, 6):
        with pytest.raises(BencodeError, match="start outside"):
            decode_prefix(b"xxi5e", start)
    with pytest.raises(BencodeError, match="unexpected end"):
        decode_prefix(b"xxi5e", 5)


def test_spans_are_raw_bytes() -> None:
    data = b"d4:infod1:bi1e1:ai2ee3:zzz0:e"  # info keys unsorted: kept as they stand
    value, spans, end = decode_with_spans(data)
    assert end == len(data)
    start, stop = spans[b"info"]
    assert data[start:stop] == b"d1:bi1e1:ai2ee"
    assert value[b"info"] == {b"a": 2, b"b": 1}
    assert data[slice(*spans[b"zzz"])] == b"0:"


@settings(max_examples=50)
@given(st.dictionaries(st.binary(max_size=8), values, max_size=4))
def test_spans_match_encoding(value: dict[bytes, Any]) -> None:
    data = encode(value)
    decoded, spans, _ = decode_with_spans(data)
    assert decoded == value
    for key, (start, stop) in spans.items():
        assert data[start:stop] == encode(value[key])


def test_raw_is_copied_verbatim() -> None:
    inner = b"d1:bi1e1:ai2ee"  # not canonical on purpose
    assert encode({b"info": Raw(inner), b"a": 1}) == b"d1:ai1e4:info" + inner + b"e"


def test_encode_refuses_programming_errors() -> None:
    with pytest.raises(TypeError):
        encode(True)
    with pytest.raises(TypeError):
        encode(1.5)
    with pytest.raises(ValueError):
        encode({b"a": 1, "a": 2})
    assert encode({"k": "v"}) == b"d1:k1:ve"


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_bencode_error(data: bytes) -> None:
    for strict in (True, False):
        try:
            decode(data, strict_order=strict)
        except BencodeError:
            pass
        try:
            decode_with_spans(data)
        except BencodeError:
            pass


@settings(max_examples=250, suppress_health_check=[HealthCheck.too_slow])
@given(values, st.data())
def test_mutations_raise_only_bencode_error(value: Any, data: st.DataObject) -> None:
    raw = bytearray(encode(value))
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        pos = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if op == "flip" and raw:
            raw[pos] = data.draw(st.sampled_from(b"0123456789:ilde-x\x00"))
        elif op == "insert":
            raw.insert(pos, data.draw(st.sampled_from(b"0123456789:ilde-")))
        elif op == "delete" and raw:
            del raw[pos]
        elif op == "truncate":
            del raw[pos:]
    try:
        result = decode(bytes(raw), strict_order=False)
    except BencodeError:
        return
    assert decode(encode(result)) == result


@settings(max_examples=250, suppress_health_check=[HealthCheck.too_slow])
@given(values, st.data())
def test_acceptance_agrees_with_bencodepy_on_canonical_input(
    value: Any, data: st.DataObject
) -> None:
    """Mutated encodings: whatever is canonical bencoding, both decoders read alike."""
    raw = bytearray(encode(value))
    if raw:
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.sampled_from(b"0123456789:ilde-"))
    blob = bytes(raw)
    try:
        theirs = bencodepy.decode(blob)
        canonical = bencodepy.encode(theirs) == blob
    except Exception:  # the oracle's own failures say nothing about us
        theirs, canonical = None, False
    try:
        ours = decode(blob)
    except BencodeError:
        assert not canonical, f"we refused canonical input {blob!r}"
        return
    assert encode(ours) == blob  # strict mode accepts canonical input only
    assert theirs == ours
