import pytest

from swarm.core.bencode import decode, encode
from swarm.errors import BencodeError


def test_round_trip_simple() -> None:
    value = {b"a": [1, -2, b"x"], b"b": {b"c": b""}}
    assert decode(encode(value)) == value


@pytest.mark.parametrize("bad", [b"i03e", b"i-0e", b"3:ab", b"d1:b0:1:a0:e", b"i1ex"])
def test_rejects(bad: bytes) -> None:
    with pytest.raises(BencodeError):
        decode(bad)
