"""BEP 52 metainfo: v2-only and hybrid torrents, built by a naive reference (tests/helpers/bep52)."""

from __future__ import annotations

import copy
import hashlib
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarm.core.bencode import decode, encode
from swarm.core.magnet import parse_magnet
from swarm.core.metainfo import parse_info, parse_metainfo
from swarm.core.metainfo_v2 import PieceChecks
from swarm.errors import MetainfoError
from tests.helpers.bep52 import BLOCK, v2_torrent

PL = 4 * BLOCK


def data(n: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(n)


FILES = {
    (b"a.bin",): data(3 * PL + 100, 1),  # several pieces: has a piece layer
    (b"d", b"small"): data(5000, 2),  # less than a piece
    (b"d", b"empty"): b"",
    (b"z",): data(PL, 3),  # exactly one piece
}


def info_span(torrent: bytes) -> bytes:
    top = decode(torrent)
    return encode(top[b"info"])


@pytest.mark.parametrize("hybrid", [False, True])
def test_multi_file(hybrid: bool) -> None:
    raw, info, layers = v2_torrent(FILES, PL, hybrid=hybrid)
    meta = parse_metainfo(raw)
    full = hashlib.sha256(encode(info)).digest()
    assert meta.info_hash_v2 == full
    assert meta.version == ("hybrid" if hybrid else 2)
    if hybrid:
        assert meta.info_hash == hashlib.sha1(encode(info)).digest()
    else:
        assert meta.info_hash == full[:20] and meta.pieces == b""
    real = [f for f in meta.files if not f.pad]
    assert [(f.path, f.length) for f in real] == [
        (("root", "a.bin"), 3 * PL + 100),
        (("root", "d", "empty"), 0),
        (("root", "d", "small"), 5000),
        (("root", "z"), PL),
    ]
    # every file with data starts on a piece boundary; pads fill the gaps
    assert all(f.offset % PL == 0 for f in real if f.length)
    assert meta.num_pieces == 4 + 1 + 1
    assert meta.piece_layers == layers and len(layers) == 1
    roots = {f.path[-1]: f.pieces_root for f in real}
    tree = info[b"file tree"]
    assert roots["a.bin"] == tree[b"a.bin"][b""][b"pieces root"]
    assert roots["small"] == tree[b"d"][b"small"][b""][b"pieces root"]
    assert roots["empty"] is None
    # the .torrent round-trips with its piece layers
    again = parse_metainfo(meta.to_bytes())
    assert again.info_hash_v2 == full and again.piece_layers == layers


def test_single_file_v2_takes_its_name_from_the_tree() -> None:
    raw, info, _ = v2_torrent({(b"movie.mkv",): data(PL * 2 + 1)}, PL, single=True)
    info[b"name"] = b"advisory"
    meta = parse_metainfo(encode({b"info": info}))
    assert not meta.multi_file and meta.name == "movie.mkv"
    assert [(f.path, f.length, f.offset) for f in meta.files] == [(("movie.mkv",), PL * 2 + 1, 0)]
    assert meta.num_pieces == 3 and meta.piece_layers == {}  # no layers: fetched from peers later
    with pytest.raises(ValueError, match="no SHA-1 piece hashes"):
        meta.piece_hash(0)  # not an empty hash that a v1 code path would compare against


def test_hybrid_single_file() -> None:
    raw, info, _ = v2_torrent({(b"f",): data(PL + 1)}, PL, hybrid=True, single=True)
    meta = parse_metainfo(raw)
    assert meta.version == "hybrid" and not meta.multi_file and meta.files[0].pieces_root


def test_magnets_of_v2_and_hybrid() -> None:
    raw, _, _ = v2_torrent(FILES, PL)
    meta = parse_metainfo(raw)
    uri = meta.magnet_uri()
    assert f"xt=urn:btmh:1220{meta.info_hash_v2.hex()}" in uri and "btih" not in uri
    m = parse_magnet(uri)
    assert m.v2_only and m.info_hash_v2 == meta.info_hash_v2 and m.info_hash == meta.info_hash
    raw, _, _ = v2_torrent(FILES, PL, hybrid=True)
    meta = parse_metainfo(raw)
    m = parse_magnet(meta.magnet_uri())
    assert not m.v2_only and (m.info_hash, m.info_hash_v2) == (meta.info_hash, meta.info_hash_v2)


@pytest.mark.parametrize("truncated", [False, True])
def test_metadata_from_peers_checked_against_the_v2_hash(truncated: bool) -> None:
    _, info, _ = v2_torrent(FILES, PL)
    info_bytes = encode(info)
    full = hashlib.sha256(info_bytes).digest()
    meta = parse_info(info_bytes, expected_hash=full[:20] if truncated else full)
    assert meta.info_hash_v2 == full
    with pytest.raises(MetainfoError, match="does not match"):
        parse_info(info_bytes, expected_hash=bytes(20))
    v1 = encode({b"name": b"x", b"piece length": PL, b"pieces": bytes(20), b"length": 5})
    with pytest.raises(MetainfoError, match="not a v2"):
        parse_info(v1, expected_hash=hashlib.sha256(v1).digest()[:20])


def _mutated(change: Any, hybrid: bool = False) -> bytes:
    raw, _, _ = v2_torrent(FILES, PL, hybrid=hybrid)
    top = copy.deepcopy(decode(raw))
    change(top)
    return encode(top)


def _leaf(top: dict[bytes, Any], *path: bytes) -> dict[bytes, Any]:
    node = top[b"info"][b"file tree"]
    for p in path:
        node = node[p]
    return node[b""]  # type: ignore[no-any-return]


def _set(d: dict[bytes, Any], key: bytes, value: Any) -> None:
    d[key] = value


A_ROOT = lambda top: _leaf(top, b"a.bin")[b"pieces root"]  # noqa: E731


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: _set(t[b"info"], b"piece length", 3 * BLOCK), "power of two"),
        (lambda t: _set(t[b"info"], b"piece length", BLOCK // 2), "power of two"),
        (lambda t: _set(t[b"info"], b"meta version", 3), "meta version 3 is not supported"),
        (lambda t: _set(t[b"info"], b"file tree", {}), "file tree is missing"),
        (lambda t: _set(t[b"info"][b"file tree"], b"", {b"": {b"length": 1}}), "empty file name"),
        (lambda t: _set(_leaf(t, b"z"), b"attr", b"p"), "pad file"),
        (lambda t: _set(_leaf(t, b"z"), b"pieces root", bytes(32)), "no valid pieces root"),
        (lambda t: _set(_leaf(t, b"z"), b"pieces root", b"x" * 31), "no valid pieces root"),
        (lambda t: _leaf(t, b"z").pop(b"pieces root"), "no valid pieces root"),
        (lambda t: _set(_leaf(t, b"z"), b"length", -1), "no valid length"),
        (lambda t: _set(_leaf(t, b"z"), b"length", 1 << 44), "too large"),
        (lambda t: _set(_leaf(t, b"z"), b"attr", b"l"), "no valid symlink path"),
        (lambda t: _set(t[b"info"][b"file tree"], b"d", {b"x": 5}), "invalid entry"),
        (lambda t: _set(t[b"info"][b"file tree"], b"d", {}), "invalid entry"),
        (
            lambda t: _set(t[b"info"][b"file tree"], b"z", {b"": {b"length": 1}, b"q": {}}),
            "invalid file entry",
        ),
        (lambda t: _set(t, b"piece layers", [1]), "not a dictionary"),
        (lambda t: _set(t[b"piece layers"], b"\x07" * 32, bytes(32)), "no file's root"),
        (lambda t: _set(t[b"piece layers"], A_ROOT(t), bytes(32 * 4)), "does not hash up"),
        (lambda t: _set(t[b"piece layers"], A_ROOT(t), bytes(32 * 3)), "128 expected"),
        (lambda t: _set(t[b"piece layers"], A_ROOT(t), 5), "not a 32-byte root"),
    ],
)
def test_v2_rejections(change: Any, message: str) -> None:
    with pytest.raises(MetainfoError, match=message):
        parse_metainfo(_mutated(change))


def test_unsorted_tree_and_deep_tree_are_refused() -> None:
    raw, info, _ = v2_torrent(FILES, PL)
    text = encode({b"info": info})
    swapped = text.replace(b"5:a.bin", b"5:zzzzz", 1)  # now 'zzzzz' sorts after 'z'
    with pytest.raises(MetainfoError, match="not sorted"):
        parse_metainfo(swapped)
    node: dict[bytes, Any] = {b"f": {b"": {b"length": 1, b"pieces root": b"\x01" * 32}}}
    for _ in range(70):
        node = {b"d": node}
    info = {b"file tree": node, b"meta version": 2, b"name": b"x", b"piece length": PL}
    with pytest.raises(MetainfoError, match="nested more than 64"):
        parse_metainfo(encode({b"info": info}))


def test_hybrid_halves_must_agree() -> None:
    def rename(top: dict[bytes, Any]) -> None:
        top[b"info"][b"files"][0][b"path"] = [b"b.bin"]

    with pytest.raises(MetainfoError, match="do not match"):
        parse_metainfo(_mutated(rename, hybrid=True))

    def drop_pad(top: dict[bytes, Any]) -> None:
        files = top[b"info"][b"files"]
        del files[1]  # a.bin's pad: the next file is no longer piece-aligned
        stream_len = sum(f[b"length"] for f in files)
        top[b"info"][b"pieces"] = bytes(20 * -(-stream_len // PL))

    with pytest.raises(MetainfoError, match="piece boundary"):
        parse_metainfo(_mutated(drop_pad, hybrid=True))

    def symlink_in_v1(top: dict[bytes, Any]) -> None:
        top[b"info"][b"files"][2][b"attr"] = b"l"  # d/empty
        top[b"info"][b"files"][2][b"symlink path"] = [b"z"]

    with pytest.raises(MetainfoError, match="do not match"):
        parse_metainfo(_mutated(symlink_in_v1, hybrid=True))

    def symlinks_elsewhere(top: dict[bytes, Any]) -> None:
        symlink_in_v1(top)
        _leaf(top, b"d", b"empty").update({b"attr": b"l", b"symlink path": [b"a.bin"]})

    with pytest.raises(MetainfoError, match="do not match"):
        parse_metainfo(_mutated(symlinks_elsewhere, hybrid=True))

    def same_symlinks(top: dict[bytes, Any]) -> None:
        symlink_in_v1(top)
        _leaf(top, b"d", b"empty").update({b"attr": b"l", b"symlink path": [b"z"]})

    meta = parse_metainfo(_mutated(same_symlinks, hybrid=True))
    assert [f.symlink for f in meta.files if f.path[-1] == "empty"] == [("z",)]


@pytest.mark.parametrize("path", [(b".pad", b"5"), (b"_____padding_file_0",)])
def test_a_real_file_named_like_padding_is_refused(path: tuple[bytes, ...]) -> None:
    """Else the v1-shaped layout would treat its data as zeros never written."""
    raw, _, _ = v2_torrent({**FILES, path: data(5)}, PL)
    with pytest.raises(MetainfoError, match="named like a BEP 47 pad file"):
        parse_metainfo(raw)
    raw, _, _ = v2_torrent({**FILES, path: data(5)}, PL, hybrid=True)
    with pytest.raises(MetainfoError, match="do not match"):
        parse_metainfo(raw)


def test_sanitised_and_deduplicated_like_v1() -> None:
    files = {(b"..",): data(10), (b"a\\b",): data(11), (b"con.txt",): data(12)}
    raw, _, _ = v2_torrent(files, PL)
    meta = parse_metainfo(raw)
    paths = [f.path for f in meta.files if not f.pad]
    assert all(".." not in p and all("\\" not in c for c in p) for p in paths)
    assert len(set(paths)) == len(paths) and meta.warnings


@pytest.mark.parametrize("hybrid", [False, True])
def test_piece_checks_verify_v2_pieces(hybrid: bool) -> None:
    raw, _, _ = v2_torrent(FILES, PL, hybrid=hybrid)
    meta = parse_metainfo(raw)
    checks = PieceChecks(meta)
    contents = {f.path[1:]: FILES[tuple(p.encode() for p in f.path[1:])] for f in meta.files if not f.pad}
    stream = bytearray()
    for f in meta.files:
        stream += bytes(f.length) if f.pad else contents[f.path[1:]]
    for index in range(meta.num_pieces):
        start = index * PL
        good = checks.new(index)
        for f in meta.files:  # feed in odd-sized chunks, pads apart
            lo, hi = max(start, f.offset), min(start + PL, f.end)
            if lo >= hi:
                continue
            chunk = bytes(stream[lo:hi])
            if f.pad:
                good.pad(chunk)
            else:
                for i in range(0, len(chunk), 7000):
                    good.update(chunk[i : i + 7000])
        assert good.matches(), index
        bad = checks.new(index)
        piece = bytearray(stream[start : start + PL])
        piece[0] ^= 1
        f = next(f for f in meta.files if f.offset <= start < f.end and not f.pad)
        bad.update(bytes(piece[: f.end - start]))
        assert not bad.matches(), index


hostile = st.recursive(
    st.integers(-3, 1 << 45) | st.binary(max_size=40),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from([b"", b"a", b"b", b"length", b"pieces root", b"attr"]), children, max_size=3),
    max_leaves=12,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.booleans())
def test_mutated_v2_torrents_raise_only_metainfo_error(data: st.DataObject, hybrid: bool) -> None:
    """Byte flips anywhere, or hostile values in the tree and the layers:
    a clean MetainfoError or a consistent torrent, never another exception."""
    raw, _, _ = v2_torrent(FILES, PL, hybrid=hybrid)
    if data.draw(st.booleans()):
        buf = bytearray(raw)
        for _ in range(data.draw(st.integers(1, 3))):
            buf[data.draw(st.integers(0, len(buf) - 1))] = data.draw(st.integers(0, 255))
        raw = bytes(buf)
    else:
        top = decode(raw)
        where = data.draw(st.sampled_from(["tree", "leaf", "layers", "layer"]))
        value = data.draw(hostile)
        if where == "tree":
            top[b"info"][b"file tree"][data.draw(st.sampled_from([b"a.bin", b"d", b"q"]))] = value
        elif where == "leaf":
            _leaf(top, b"z")[data.draw(st.sampled_from([b"length", b"pieces root", b"attr", b"symlink path"]))] = value
        elif where == "layers":
            top[b"piece layers"] = value
        else:
            top[b"piece layers"][A_ROOT(top)] = value
        raw = encode(top)
    try:
        meta = parse_metainfo(raw)
    except MetainfoError:
        return
    assert meta.num_pieces * meta.piece_length >= meta.total_length
    assert all(f.offset % meta.piece_length == 0 for f in meta.files if f.length and not f.pad)
    checks = PieceChecks(meta)
    for i in range(meta.num_pieces):
        checks.new(i)
