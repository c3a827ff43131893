"""Inputs the fuzzers (fuzz/targets.py) found crashing a decoder, kept as literals.

Each input once escaped as an exception other than the decoder's documented
error; now it must be refused with that error (or decoded sensibly).
"""

from __future__ import annotations

import pytest

from swarm.core.magnet import parse_magnet
from swarm.errors import MagnetError

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
