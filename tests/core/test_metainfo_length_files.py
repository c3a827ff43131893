"""BEP 3: an info dictionary has exactly one of ``length`` (one file) and ``files`` (several).
With both, clients disagree on what the torrent holds (issue 16, item 14): refuse it."""

from __future__ import annotations

import pytest

from swarm.core.bencode import encode
from swarm.core.metainfo import parse_info, parse_metainfo
from swarm.errors import MetainfoError

PL = 16384


def _info(**keys: object) -> dict[bytes, object]:
    info: dict[bytes, object] = {b"name": b"x", b"piece length": PL, b"pieces": bytes(20)}
    info.update({k.encode(): v for k, v in keys.items()})
    return info


def test_length_and_files_together_are_refused() -> None:
    info = _info(length=1000, files=[{b"length": 1000, b"path": [b"a"]}])
    with pytest.raises(MetainfoError, match="both 'length' and 'files'"):
        parse_metainfo(encode({b"info": info}))
    with pytest.raises(MetainfoError, match="both 'length' and 'files'"):
        parse_info(encode(info))  # the same rule for metadata fetched from a magnet's peers


def test_neither_length_nor_files_is_refused() -> None:
    with pytest.raises(MetainfoError):
        parse_metainfo(encode({b"info": _info()}))


@pytest.mark.parametrize("keys", [{"length": 1000}, {"files": [{b"length": 1000, b"path": [b"a"]}]}])
def test_exactly_one_is_accepted(keys: dict[str, object]) -> None:
    assert parse_metainfo(encode({b"info": _info(**keys)})).total_length == 1000
