"""Inputs the fuzzers (fuzz/targets.py) found crashing a decoder, kept as literals.

Each input once escaped as an exception other than the decoder's documented
error; now it must be refused with that error (or decoded sensibly).
"""

from __future__ import annotations

import pytest

from swarm.core.magnet import parse_magnet
from swarm.errors import MagnetError
from swarm.httpstream import BadRange, parse_range

BTIH = "magnet:?xt=urn:btih:000102030405060708090a0b0c0d0e0f10111213"


def test_magnet_with_a_lone_surrogate_is_refused() -> None:
    """Found by the magnet target: undecodable bytes in argv reach us as surrogates
    (surrogateescape); the link parsed, then to_uri() and any tracker URL built
    from it raised UnicodeEncodeError."""
    with pytest.raises(MagnetError, match="UTF-8"):
        parse_magnet(BTIH + "&ws=http%3A%2\udcc6%2Fws%2F")


@pytest.mark.parametrize("tail", ["&x.pe=a:\u00b2", "&so=\u00b2", "&so=1-\u00b2"])
def test_magnet_unicode_digits_are_refused(tail: str) -> None:
    """str.isdigit() is true for '²' but int() refuses it: a ValueError escaped."""
    with pytest.raises(MagnetError):
        parse_magnet(BTIH + tail)


def test_range_with_thousands_of_digits() -> None:
    """int() refuses more than 4300 digits: a ValueError escaped (a 500 over --http)."""
    many = "1" * 5000
    with pytest.raises(BadRange):
        parse_range(f"bytes={many}-", 1000)
    assert parse_range(f"bytes=0-{many}", 1000) == (0, 999)
    assert parse_range(f"bytes=-{many}", 1000) == (0, 999)
    assert parse_range(f"bytes={'0' * 5000}7-8", 1000) == (7, 8)


def test_range_digits_are_ascii_only() -> None:
    """RFC 9110 ranges are ASCII digits; other Unicode digits make the header ignored."""
    assert parse_range("bytes=\u0661-", 1000) is None
