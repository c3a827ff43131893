"""Metainfo parse/validate/build: clear errors, safe paths, lenient optional fields."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarm.core.bencode import decode, encode
from swarm.core.magnet import parse_magnet
from swarm.core.metainfo import (
    Metainfo,
    build_info,
    build_metainfo,
    parse_info,
    parse_metainfo,
)
from swarm.errors import MetainfoError

PL = 16384


def _pieces(total: int, piece_length: int = PL) -> bytes:
    return bytes(20) * (-(-total // piece_length))


def _keys(extra: dict[Any, Any]) -> dict[bytes, Any]:
    def key(k: Any) -> bytes:
        if not isinstance(k, str):
            return bytes(k)
        return k.replace("_", "-" if k in ("announce_list", "url_list") else " ").encode()

    return {key(k): v for k, v in extra.items()}


def single(length: Any = 1000, **extra: Any) -> dict[bytes, Any]:
    ok = isinstance(length, int) and 0 <= length < 1 << 30
    info: dict[bytes, Any] = {
        b"name": b"file.bin",
        b"piece length": PL,
        b"pieces": _pieces(length) if ok else bytes(20),
        b"length": length,
    }
    info.update(_keys(extra))
    return info


def multi(
    paths: list[list[bytes]], lengths: list[int] | None = None, **extra: Any
) -> dict[bytes, Any]:
    lengths = lengths or [100] * len(paths)
    info: dict[bytes, Any] = {
        b"name": b"root",
        b"piece length": PL,
        b"pieces": _pieces(sum(lengths)),
        b"files": [{b"length": n, b"path": p} for p, n in zip(paths, lengths, strict=True)],
    }
    info.update(_keys(extra))
    return info


def torrent(info: dict[bytes, Any], **top: Any) -> bytes:
    d: dict[bytes, Any] = {b"info": info}
    d.update(_keys(top))
    return encode(d)


def paths(meta: Metainfo) -> list[str]:
    return ["/".join(f.path) for f in meta.files]


def test_single_file_basics() -> None:
    data = torrent(single(40000), announce=b"http://t/a", comment=b"hi", creation_date=5)
    meta = parse_metainfo(data)
    info_bytes = encode(single(40000))
    assert meta.info_bytes == info_bytes
    assert meta.info_hash == hashlib.sha1(info_bytes).digest()
    assert (meta.name, meta.total_length, meta.num_pieces, meta.multi_file) == (
        "file.bin",
        40000,
        3,
        False,
    )
    assert meta.files[0].path == ("file.bin",)
    assert [meta.piece_size(i) for i in range(3)] == [PL, PL, 40000 - 2 * PL]
    assert meta.piece_hash(2) == bytes(20)
    with pytest.raises(IndexError):
        meta.piece_size(3)
    assert meta.trackers == [["http://t/a"]]
    assert (meta.comment, meta.creation_date, meta.warnings) == ("hi", 5, [])


def test_multi_file_offsets() -> None:
    meta = parse_metainfo(torrent(multi([[b"a"], [b"d", b"b"], [b"c"]], [10, 0, 20000])))
    assert paths(meta) == ["root/a", "root/d/b", "root/c"]
    assert [f.offset for f in meta.files] == [0, 10, 10]
    assert meta.total_length == 20010 and meta.multi_file


def test_info_hash_of_unsorted_raw_bytes() -> None:
    raw_info = b"d6:lengthi5e4:name1:x12:piece lengthi16384e6:pieces20:" + bytes(20) + b"e"
    unsorted = b"d4:name1:x6:lengthi5e12:piece lengthi16384e6:pieces20:" + bytes(20) + b"e"
    for info in (raw_info, unsorted):
        meta = parse_metainfo(b"d4:info" + info + b"e")
        assert meta.info_hash == hashlib.sha1(info).digest()
    assert parse_metainfo(b"d4:info" + unsorted + b"e\n").warnings == [
        "ignored 1 trailing bytes after the torrent"
    ]


@pytest.mark.parametrize(
    ("info", "message"),
    [
        (single(piece_length=0), "info.piece length is not a positive integer"),
        (single(piece_length=-1), "info.piece length is not a positive integer"),
        (single(piece_length=b"16384"), "info.piece length is not a positive integer"),
        (single(piece_length=1 << 30), "info.piece length 1073741824 exceeds"),
        (single(pieces=bytes(30)), "info.pieces length is not a multiple of 20"),
        (single(pieces=5), "info.pieces is not a string"),
        (
            single(PL * 13 - 1, pieces=bytes(240)),
            "info.pieces has 12 hashes but the files need 13 pieces",
        ),
        (single(length=-1), "info.length is not a non-negative integer"),
        (single(length=[1]), "info.length is not a non-negative integer"),
        (single(length=0, pieces=b""), "total length is 0"),
        (single(name=7), "info.name is not a string"),
        ({k: v for k, v in single().items() if k != b"name"}, "info.name is missing"),
        ({k: v for k, v in single().items() if k != b"pieces"}, "info.pieces is missing"),
        (
            {b"meta version": 2, b"file tree": {}, b"name": b"x", b"piece length": PL},
            "info.file tree is missing, empty or not a dictionary",
        ),
        (multi([[b"a"]], files=[]), "info.files is empty"),
        (multi([[b"a"]], files=b"x"), "info.files is not a list"),
        (multi([[b"a"]], files=[5]), "info.files[0] is not a dictionary"),
        (multi([[b"a", 5]]), "info.files[0].path has a component that is not a string"),
        (multi([[b"a"]], files=[{b"length": 5}]), "info.files[0].path is missing"),
        (multi([[b"a"]], [-5]), "info.files[0].length is not a non-negative integer"),
        (single(length=1 << 63), "info.length is not a non-negative integer"),
        (single(length=PL * (1 << 22), pieces=b""), "too many pieces"),
    ],
)
def test_errors_name_the_field(info: dict[bytes, Any], message: str) -> None:
    with pytest.raises(MetainfoError) as exc:
        parse_metainfo(torrent(info))
    assert message in str(exc.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"4:spam", "top level is not a dictionary"),
        (b"d4:info4:spame", "info is missing or not a dictionary"),
        (b"d3:foo3:bare", "info is missing or not a dictionary"),
        (b"d4:infod", "not valid bencoding"),
        (b"", "not valid bencoding"),
    ],
)
def test_errors_outside_info(data: bytes, message: str) -> None:
    with pytest.raises(MetainfoError, match=message):
        parse_metainfo(data)


def test_piece_length_not_power_of_two_warns() -> None:
    meta = parse_metainfo(torrent(single(100, piece_length=536854528, pieces=bytes(20))))
    assert meta.piece_length == 536854528
    assert any("not a power of two" in w for w in meta.warnings)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ([b"..", b"..", b"etc", b"passwd"], "root/etc/passwd"),
        ([b"/etc/passwd"], "root/etc_passwd"),
        ([b"a\\..\\..\\b"], "root/a_b"),
        ([b".", b"x"], "root/x"),
        ([b"", b"x", b""], "root/x"),
        ([b"a\x00b", b"c\nd"], "root/a_b/c_d"),
        ([b"CON"], "root/CON_"),
        ([b"nul.txt"], "root/nul_.txt"),
        ([b"com1.tar.gz"], "root/com1_.tar.gz"),
        ([b"console"], "root/console"),
        ([b"\xff\xfebad"], "root/__bad"),
        ([b".."], "root/_"),
        ([b"x" * 300 + b".mkv"], "root/" + "x" * 251 + ".mkv"),
    ],
)
def test_paths_are_sanitised(path: list[bytes], expected: str) -> None:
    meta = parse_metainfo(torrent(multi([path])))
    assert paths(meta) == [expected]
    changed = expected != "root/" + "/".join(p.decode("latin-1") for p in path)
    assert bool(meta.warnings) == changed  # every change is reported, and only changes


def test_name_sanitised_or_derived() -> None:
    meta = parse_metainfo(torrent(single(name=b"../../x")))
    assert meta.name == "x" and meta.files[0].path == ("x",)
    meta = parse_metainfo(torrent(single(name=b"..")))
    assert meta.name == meta.info_hash_hex
    assert any("unusable" in w for w in meta.warnings)


def test_utf8_keys_preferred() -> None:
    info = multi([[b"a"]])
    info[b"name.utf-8"] = "réseau".encode()
    info[b"files"][0][b"path.utf-8"] = ["été".encode()]
    meta = parse_metainfo(torrent(info))
    assert paths(meta) == ["réseau/été"]


def test_duplicates_made_unique() -> None:
    meta = parse_metainfo(torrent(multi([[b"foo", b"bar.txt"]] * 3 + [[b"foo", b"bar.1.txt"]])))
    assert paths(meta) == [
        "root/foo/bar.txt",
        "root/foo/bar.1.txt",
        "root/foo/bar.2.txt",
        "root/foo/bar.1.1.txt",
    ]
    # sanitising may create collisions: still unique
    meta = parse_metainfo(torrent(multi([[b"a/b"], [b"a\\b"], [b"a_b"]])))
    assert len(set(paths(meta))) == 3


def test_file_and_directory_with_one_name() -> None:
    meta = parse_metainfo(torrent(multi([[b"a"], [b"a", b"b"], [b"c", b"d"], [b"c"]])))
    got = paths(meta)
    assert got[0] == "root/a" and got[3] != "root/c"
    files = {tuple(p.split("/")) for p in got}
    for p in files:  # no file is also a directory of another
        assert not any(q[: len(p)] == p and q != p for q in files)


def test_pad_files() -> None:
    info = multi([[b"a"], [b".pad", b"16284"], [b"b"]], [100, 16284, 5])
    info[b"files"].append({b"length": 3, b"attr": b"p"})
    info[b"files"].append({b"length": 2, b"path": [b"_____padding_file_0"]})
    info[b"pieces"] = _pieces(100 + 16284 + 5 + 3 + 2)
    meta = parse_metainfo(torrent(info))
    assert [f.pad for f in meta.files] == [False, True, False, True, True]


def test_symlinks() -> None:
    info = multi([[b"a"]], [10])
    info[b"files"].append(
        {b"length": 99, b"attr": b"l", b"path": [b"s"], b"symlink path": [b"..", b"a"]}
    )
    meta = parse_metainfo(torrent(info))
    link = meta.files[1]
    assert (link.symlink, link.length, meta.total_length) == (("a",), 0, 10)
    info[b"files"][1][b"symlink path"] = [5]
    with pytest.raises(MetainfoError, match="symlink path"):
        parse_metainfo(torrent(info))


def test_trackers_and_web_seeds() -> None:
    meta = parse_metainfo(
        torrent(
            single(),
            announce=b"http://a/x",
            announce_list=[[b"http://b/x", b" http://a/x\t"], [b"http://b/x"], [], [5], b"x"],
            url_list=b"http://w/f",
        )
    )
    assert meta.trackers == [["http://b/x", "http://a/x"]]
    assert meta.url_list == ["http://w/f"]
    assert any("announce-list" in w for w in meta.warnings)
    meta = parse_metainfo(
        torrent(single(), announce=b"http://a/x", url_list=[b"http://w/", b"http://w/", 3, [b""]])
    )
    assert meta.trackers == [["http://a/x"]]
    assert meta.url_list == ["http://w/"]


def test_bad_optional_fields_are_warnings() -> None:
    meta = parse_metainfo(
        torrent(
            single(private=b"yes"), comment=5, created_by=[1], creation_date=b"today", announce=7
        )
    )
    assert (meta.comment, meta.created_by, meta.creation_date, meta.private) == (
        None,
        None,
        None,
        False,
    )
    assert len(meta.warnings) == 5


def test_private_flag() -> None:
    assert parse_metainfo(torrent(single(private=1))).private
    assert not parse_metainfo(torrent(single(private=0))).private


def test_parse_info_checks_hash() -> None:
    info_bytes = encode(single(5000))
    digest = hashlib.sha1(info_bytes).digest()
    meta = parse_info(info_bytes, trackers=[["http://t/a"]], expected_hash=digest)
    assert meta.info_hash == digest and meta.trackers == [["http://t/a"]]
    with pytest.raises(MetainfoError, match="does not match"):
        parse_info(info_bytes, expected_hash=bytes(20))
    with pytest.raises(MetainfoError):
        parse_info(b"le")
    with pytest.raises(MetainfoError):
        parse_info(info_bytes + b"x")


def test_magnet_uri_round_trip() -> None:
    meta = parse_metainfo(
        torrent(single(), announce_list=[[b"http://a/x"], [b"udp://b:1"]], url_list=b"http://w/")
    )
    mag = parse_magnet(meta.magnet_uri(peers=[("127.0.0.1", 6881), ("::1", 7000)]))
    assert mag.info_hash == meta.info_hash
    assert mag.name == "file.bin"
    assert mag.trackers == ["http://a/x", "udp://b:1"]
    assert mag.peers == [("127.0.0.1", 6881), ("::1", 7000)]
    assert mag.web_seeds == ["http://w/"]


def test_build_round_trip_and_to_bytes() -> None:
    info = build_info(
        name="d",
        piece_length=PL,
        pieces=_pieces(300),
        files=[(("x", "y"), 100), (("z",), 200)],
        private=True,
    )
    data = build_metainfo(
        info,
        trackers=[["http://a/"], ["http://b/"]],
        url_list=["http://w/"],
        comment="c",
        created_by="me",
        creation_date=7,
    )
    meta = parse_metainfo(data)
    assert meta.info_bytes == info and meta.private
    assert paths(meta) == ["d/x/y", "d/z"]
    assert meta.trackers == [["http://a/"], ["http://b/"]]
    assert decode(data)[b"announce"] == b"http://a/"
    assert meta.to_bytes() == data
    with pytest.raises(ValueError):
        build_info(name="d", piece_length=PL, pieces=b"", length=1, files=[])


files_strategy = st.lists(
    st.tuples(
        st.lists(st.binary(min_size=0, max_size=12), min_size=1, max_size=4),
        st.integers(0, 70000),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(files_strategy, st.sampled_from([16384, 32768, 65536, 1 << 20]))
def test_any_file_list_gives_safe_unique_paths(
    files: list[tuple[list[bytes], int]], pl: int
) -> None:
    total = sum(n for _, n in files)
    if total == 0:
        return
    info = build_info(name=b"n", piece_length=pl, pieces=_pieces(total, pl), files=files)
    meta = parse_info(info)
    assert meta.total_length == total and meta.num_pieces == -(-total // pl)
    real = [f.path for f in meta.files if not f.pad]
    assert len(real) == len(set(real))
    offset = 0
    for f in meta.files:
        assert f.offset == offset
        offset += f.length
        assert f.path[0] == "n"
        for part in f.path:
            assert part not in ("", ".", "..")
            assert "/" not in part and "\\" not in part and "\x00" not in part
            assert len(part.encode()) <= 255


hostile = st.recursive(
    st.integers(-5, 1 << 65) | st.binary(max_size=30),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.binary(max_size=12), c, max_size=4),
    max_leaves=20,
)
keys = st.sampled_from(
    [
        b"name",
        b"piece length",
        b"pieces",
        b"length",
        b"files",
        b"private",
        b"name.utf-8",
        b"meta version",
    ]
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(keys, hostile, max_size=6),
    st.dictionaries(
        st.sampled_from([b"announce", b"announce-list", b"url-list", b"comment", b"creation date"]),
        hostile,
    ),
)
def test_hostile_dicts_raise_only_metainfo_error(
    info: dict[bytes, Any], top: dict[bytes, Any]
) -> None:
    base = single(3 * PL)
    base.update(info)
    try:
        parse_metainfo(encode({b"info": base, **top}))
    except MetainfoError:
        pass


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_torrents_raise_only_metainfo_error(data: st.DataObject) -> None:
    raw = bytearray(torrent(multi([[b"a", b"b"], [b"c"]], [20000, 5]), announce=b"http://t/"))
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    try:
        meta = parse_metainfo(bytes(raw))
    except MetainfoError:
        return
    assert meta.num_pieces * meta.piece_length >= meta.total_length


def _hybrid(
    files: list[tuple[list[bytes], int]], tree: dict[bytes, Any], pad: bool = True
) -> bytes:
    entries: list[dict[bytes, Any]] = []
    for i, (path, n) in enumerate(files):
        entries.append({b"length": n, b"path": path})
        if pad and i < len(files) - 1 and n % PL:
            entries.append(
                {b"length": PL - n % PL, b"path": [b".pad", b"%d" % (PL - n % PL)], b"attr": b"p"}
            )
    total = sum(e[b"length"] for e in entries)
    info = {
        b"name": b"h",
        b"piece length": PL,
        b"pieces": _pieces(total),
        b"files": entries,
        b"meta version": 2,
        b"file tree": tree,
    }
    return torrent(info)


def _leaf(n: int) -> dict[bytes, Any]:
    return {b"": {b"length": n, b"pieces root": b"\x01" * 32}}


def test_hybrid_v1_and_v2_must_agree() -> None:
    files = [([b"a"], 100), ([b"d", b"b"], 20000)]
    good = {b"a": _leaf(100), b"d": {b"b": _leaf(20000)}}
    meta = parse_metainfo(_hybrid(files, good))
    assert [f.pad for f in meta.files] == [False, True, False]
    with pytest.raises(MetainfoError, match="do not match"):
        parse_metainfo(_hybrid(files, {b"a": _leaf(100), b"d": {b"c": _leaf(20000)}}))
    with pytest.raises(MetainfoError, match="do not match"):
        parse_metainfo(_hybrid(files, {b"a": _leaf(101), b"d": {b"b": _leaf(20000)}}))
    with pytest.raises(MetainfoError, match="piece boundary"):
        parse_metainfo(_hybrid(files, good, pad=False))
    with pytest.raises(MetainfoError, match="pieces root"):
        parse_metainfo(_hybrid(files, {b"a": {b"": {b"length": 100}}, b"d": {b"b": _leaf(20000)}}))
    with pytest.raises(MetainfoError, match="file tree"):
        parse_metainfo(_hybrid(files, {b"a": 5}))


@given(st.text(max_size=300))
def test_component_is_safe_and_idempotent(text: str) -> None:
    from swarm.core.metainfo import _component

    out = _component(text)
    assert _component(out) == out
    assert out not in (".", "..") and "/" not in out and "\\" not in out
    assert not any(ord(ch) < 32 or ord(ch) == 127 for ch in out)
    assert len(out.encode("utf-8", "surrogatepass")) <= 255


def test_many_duplicate_paths_are_linear() -> None:
    n = 20_000
    info = multi([[b"a", b"b.txt"]] * n, [1] * n)
    meta = parse_info(encode(info))
    assert meta.files[-1].path == ("root", "a", f"b.{n - 1}.txt")
    assert len(meta.warnings) <= 21
    meta = parse_info(encode(multi([[b"..", b"f%d" % i] for i in range(500)])))
    assert len(meta.warnings) == 21 and meta.warnings[-1] == "500 paths sanitised in all"
