from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarm.core.bitfield import Bitfield
from swarm.errors import ProtocolError


def test_wire_order_high_bit_first() -> None:
    bf = Bitfield(10)
    bf.set(0)
    bf.set(9)
    assert bf.to_bytes() == b"\x80\x40"
    assert list(bf) == [0, 9]
    assert list(bf.missing()) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert bf.count == 2 and bf.any() and not bf.all()


def test_set_clear_report_changes() -> None:
    bf = Bitfield(3)
    assert bf.set(1) and not bf.set(1)
    assert bf.clear(1) and not bf.clear(1)
    assert bf.count == 0
    with pytest.raises(IndexError):
        bf.set(3)
    with pytest.raises(IndexError):
        _ = bf[-1]
    assert 5 not in bf and "x" not in bf


def test_full_and_set_all_leave_spare_bits_clear() -> None:
    assert Bitfield(10, full=True).to_bytes() == b"\xff\xc0"
    bf = Bitfield(10)
    bf.set_all()
    assert bf.all() and bf.count == 10 and bf.to_bytes() == b"\xff\xc0"
    assert list(bf.missing()) == []
    assert Bitfield(0, full=True).all()


def test_from_bytes_validation() -> None:
    assert Bitfield.from_bytes(b"\xff\xc0", 10).count == 10
    with pytest.raises(ProtocolError):
        Bitfield.from_bytes(b"\xff", 10)
    with pytest.raises(ProtocolError):
        Bitfield.from_bytes(b"\xff\xc0\x00", 10)
    with pytest.raises(ProtocolError):
        Bitfield.from_bytes(b"\xff\xe0", 10)
    assert Bitfield.from_bytes(b"", 0).count == 0


def test_count_and_not() -> None:
    theirs = Bitfield.from_bytes(b"\xf0\x80", 9)
    ours = Bitfield.from_bytes(b"\x30\x00", 9)
    assert theirs.count_and_not(ours) == 3
    with pytest.raises(ValueError):
        theirs.count_and_not(Bitfield(8))


@given(
    st.integers(0, 300).flatmap(
        lambda n: st.tuples(st.just(n), st.sets(st.integers(0, max(n - 1, 0))))
    )
)
def test_model(case: tuple[int, set[int]]) -> None:
    n, bits = case
    bits = {b for b in bits if b < n}
    bf = Bitfield(n)
    for b in bits:
        bf.set(b)
    assert list(bf) == sorted(bits)
    assert list(bf.missing()) == sorted(set(range(n)) - bits)
    assert bf.count == len(bits)
    again = Bitfield.from_bytes(bf.to_bytes(), n)
    assert again == bf and hash(again) == hash(bf) and again.count == len(bits)
    other = bf.copy()
    if n:
        other.set_all()
        assert other.count_and_not(bf) == n - len(bits)
        assert bf.count_and_not(other) == 0


@given(st.binary(max_size=40), st.integers(0, 400))
def test_from_bytes_hostile(data: bytes, n: int) -> None:
    try:
        bf = Bitfield.from_bytes(data, n)
    except ProtocolError:
        return
    assert bf.to_bytes() == data and bf.count == sum(bin(b).count("1") for b in data)
