"""Acceptance: hostile .torrent files, paths, magnets and output directories.

Crafted torrents (real piece hashes of data we make, hostile names and paths)
are downloaded with the real `swarm get` from a fake seed that serves the
bytes whatever the paths say. Nothing may appear outside the output
directory (the whole test directory is snapshotted before and after, the
output directory sits five levels deep so every `..` lands inside the
snapshot), symlinks placed in the output directory are never followed, and
the command either downloads to a sanitised path (exit 0, right bytes) or
refuses with one clear line. Broken .torrent files and magnets exit 2 with
one `swarm: error: ...` line and never a traceback.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers_qa.peers import ScriptedSeed
from helpers_qa.torrents import craft, piece_hashes, snapshot

from swarm.core.bencode import encode
from swarm.core.metainfo import Metainfo, parse_metainfo
from swarm.errors import MetainfoError

SWARM = [sys.executable, "-m", "swarm"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
STATE_FILE = re.compile(r"\.swarm/[0-9a-f]{40}\.resume(\.tmp\d+)?")
NET = ["--host", "127.0.0.1", "--port", "0", "--no-dht", "--no-lsd"]


def serve_bytes(meta: Metainfo, payload: bytes) -> Any:
    def serve(index: int, begin: int, length: int) -> bytes:
        off = index * meta.piece_length + begin
        return payload[off : off + length]

    return serve


async def run_swarm(*args: str, cwd: Path, timeout: float = 30) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *SWARM,
        *args,
        cwd=cwd,
        env=ENV,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await asyncio.wait_for(proc.wait(), 10)
        raise AssertionError(f"swarm {' '.join(args)} did not exit in {timeout}s") from None
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def assert_one_error_line(err: str) -> None:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("swarm: error: ")]
    assert len(errors) == 1, f"expected one 'swarm: error:' line, got: {err!r}"


def files_under(root: Path) -> dict[str, bytes]:
    """Regular files under root (not .swarm/), by relative path; fails on symlinks or escapes."""
    out: dict[str, bytes] = {}
    real_root = os.path.realpath(root)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for n in filenames + dirnames:
            p = os.path.join(dirpath, n)
            assert os.path.realpath(p).startswith(real_root + os.sep), f"{p} resolves outside"
        for n in filenames:
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            if STATE_FILE.fullmatch(rel):
                continue  # swarm's own resume data
            assert not os.path.islink(p), f"swarm created a symlink {p} -> {os.readlink(p)}"
            out[rel] = Path(p).read_bytes()
    return out


class Site:
    """tmp_path/w1/w2/w3/w4/out: the output directory, deep enough for ../../../.."""

    def __init__(self, tmp_path: Path) -> None:
        self.top = tmp_path
        self.out = tmp_path / "w1" / "w2" / "w3" / "w4" / "out"
        self.out.mkdir(parents=True)
        self.outside = tmp_path / "outside"
        self.outside.mkdir()
        (self.outside / "precious.txt").write_bytes(b"do not touch\n")
        self.tfile = tmp_path / "t.torrent"

    def before(self) -> dict[str, Any]:
        """Everything outside the output directory (but the .torrent the test writes)."""
        snap = snapshot(self.top, skip=self.out)
        snap.pop(str(self.tfile), None)
        return snap


async def get_crafted(site: Site, torrent: bytes, payload: bytes) -> tuple[int, str, str]:
    site.tfile.write_bytes(torrent)
    try:
        meta = parse_metainfo(torrent)
    except MetainfoError:  # our own parser refuses it: swarm get must refuse it too
        return await run_swarm("get", str(site.tfile), "-o", str(site.out), *NET, cwd=site.top)
    async with ScriptedSeed(meta, serve_bytes(meta, payload)) as fake:
        return await run_swarm(
            "get",
            str(site.tfile),
            "-o",
            str(site.out),
            "--peer",
            f"127.0.0.1:{fake.port}",
            *NET,
            cwd=site.top,
        )


def check_outcome(
    site: Site, before: dict[str, Any], rc: int, err: str, torrent: bytes, payload: bytes
) -> None:
    after = site.before()
    assert after == before, (
        f"written outside the output directory: "
        f"{sorted(set(after) ^ set(before)) or [k for k in after if after[k] != before.get(k)]}"
    )
    assert (site.outside / "precious.txt").read_bytes() == b"do not touch\n"
    got = files_under(site.out)
    if rc == 2:
        assert_one_error_line(err)
        return
    assert rc == 0, f"exit {rc}: {err}"
    assert "Traceback" not in err, err
    # downloaded to sanitised paths: every file of the (sanitised) metainfo is there with its bytes
    meta = parse_metainfo(torrent)
    saved = got.pop(f"{meta.name}.torrent", None)
    if saved is not None:  # a magnet download keeps the fetched metadata as <name>.torrent
        assert parse_metainfo(saved).info_hash == meta.info_hash
    for f in meta.files:
        if f.pad or f.symlink is not None:
            continue
        rel = os.path.join(*f.path)
        assert rel in got, f"{rel!r} missing; have {sorted(got)}"
        assert got[rel] == payload[f.offset : f.offset + f.length], rel
    total = sum(f.length for f in meta.files if not f.pad and f.symlink is None)
    assert sum(len(v) for v in got.values()) == total, sorted(got)


def _abs(site_root: Path, *parts: str) -> str:
    return str(site_root / "abs-target" / Path(*parts))


# name (single file) cases: raw names a hostile creator could write
SINGLE_NAMES: dict[str, Any] = {
    "dotdot": "..",
    "dot": ".",
    "empty": "",
    "up2": "../../escape-single",
    "up4": "../../../../escape-single",
    "absolute": "@ABS@",
    "a_dotdot_b": "a/../../b",
    "nul": "evil\x00name",
    "slash": "dir/file",
    "backslash": "..\\..\\escape-win",
    "con": "CON",
    "nul_txt": "nul.txt",
    "com1": "COM1.log",
    "long": "x" * 1000,
    "long_utf8": "\u00e9" * 300 + ".bin",
    "control": "bell\x07\x1b[31mred",
    "invalid_utf8": b"bad\xff\xfename",
    "trailing_dot_space": "name. ",
}


@pytest.mark.parametrize("case", list(SINGLE_NAMES))
async def test_single_file_hostile_name(case: str, tmp_path: Path) -> None:
    site = Site(tmp_path)
    name = SINGLE_NAMES[case]
    if name == "@ABS@":
        name = _abs(tmp_path, "x")
    torrent, payload = craft(name)
    before = site.before()
    rc, _out, err = await get_crafted(site, torrent, payload)
    check_outcome(site, before, rc, err, torrent, payload)
    assert not (tmp_path / "abs-target").exists()


MULTI: dict[str, tuple[Any, list[tuple[list[Any], int]]]] = {
    "dotdot_components": ("multi", [(["..", "..", "escape-m"], 20_000), (["ok.txt"], 5_000)]),
    "deep_dotdot": ("multi", [([".."] * 6 + ["escape-deep"], 20_000)]),
    "absolute_component": ("multi", [(["@ABS@"], 20_000)]),
    "absolute_first_empty": ("multi", [(["", "etc", "passwd-x"], 20_000)]),
    "a_dotdot_b_component": ("multi", [(["a/../../b"], 20_000)]),
    "a_dotdot_b_list": ("multi", [(["a", "..", "..", "b"], 20_000)]),
    "nul_component": ("multi", [(["x\x00y"], 20_000)]),
    "dot_only": ("multi", [(["."], 20_000), ([".."], 1_000)]),
    "empty_path": ("multi", [([], 20_000)]),
    "reserved": ("multi", [(["CON"], 3_000), (["aux.txt"], 3_000), (["lpt9", "x"], 3_000)]),
    "long_component": ("multi", [(["y" * 5000], 20_000)]),
    "many_components": ("multi", [(["d"] * 200 + ["f"], 20_000)]),
    "duplicates": ("multi", [(["dup"], 10_000), (["dup"], 10_000), (["dup", "inner"], 5_000)]),
    "name_dotdot": ("..", [(["x"], 20_000)]),
    "name_up": ("../../../../escape-name", [(["x"], 20_000)]),
    "name_swarm_state": (".swarm", [(["deadbeef.resume"], 20_000)]),
    "zero_length_files": ("multi", [(["..", "zero"], 0), (["real"], 20_000)]),
}


@pytest.mark.parametrize("case", list(MULTI))
async def test_multi_file_hostile_paths(case: str, tmp_path: Path) -> None:
    site = Site(tmp_path)
    name, files = MULTI[case]
    files = [
        ([_abs(tmp_path, "m") if p == "@ABS@" else p for p in path], size) for path, size in files
    ]
    torrent, payload = craft(name, files)
    before = site.before()
    rc, _out, err = await get_crafted(site, torrent, payload)
    check_outcome(site, before, rc, err, torrent, payload)
    assert not (tmp_path / "abs-target").exists()


async def test_bep47_symlink_entries_are_not_created(tmp_path: Path) -> None:
    """attr 'l' files pointing out of the tree: never created as links (or refused)."""
    site = Site(tmp_path)
    files = [(["link"], 0), (["real.bin"], 30_000), (["link2"], 0)]
    extra = [
        {
            b"attr": b"l",
            b"symlink path": [b"..", b"..", b"..", b"..", b"..", b"outside", b"precious.txt"],
        },
        {},
        {b"attr": b"l", b"symlink path": [str(site.outside / "precious.txt").encode()]},
    ]
    torrent, payload = craft("withlinks", files, file_extra=extra)
    before = site.before()
    rc, _out, err = await get_crafted(site, torrent, payload)
    check_outcome(site, before, rc, err, torrent, payload)
    for dirpath, dirnames, filenames in os.walk(site.out):
        for n in dirnames + filenames:
            assert not os.path.islink(os.path.join(dirpath, n))


# ----------------------------------------------------------------- symlinks placed in the output dir


async def _get_into_prepared(site: Site, torrent: bytes, payload: bytes) -> tuple[int, str]:
    before = site.before()
    rc, _out, err = await get_crafted(site, torrent, payload)
    after = site.before()
    assert after == before, "something outside the output directory changed"
    assert (site.outside / "precious.txt").read_bytes() == b"do not touch\n"
    assert "Traceback" not in err, err
    if rc != 0:
        assert rc in (1, 2), err
        assert_one_error_line(err)
    return rc, err


async def test_symlinked_file_in_output_dir_is_not_followed(tmp_path: Path) -> None:
    site = Site(tmp_path)
    torrent, payload = craft("f.bin")
    (site.out / "f.bin").symlink_to(site.outside / "precious.txt")
    rc, err = await _get_into_prepared(site, torrent, payload)
    link = site.out / "f.bin"
    if rc == 0:  # replaced the link by a real file: acceptable, the target is untouched
        assert not link.is_symlink() and link.read_bytes() == payload
    else:
        assert "f.bin" in err and "symlink" in err.lower(), err


async def test_symlinked_directory_in_output_dir_is_not_followed(tmp_path: Path) -> None:
    site = Site(tmp_path)
    torrent, payload = craft("multi", [(["a.bin"], 20_000), (["sub", "b.bin"], 20_000)])
    (site.out / "multi").symlink_to(site.outside, target_is_directory=True)
    rc, err = await _get_into_prepared(site, torrent, payload)
    assert sorted(os.listdir(site.outside)) == ["precious.txt"]
    if rc != 0:
        assert "multi" in err, err


async def test_symlinked_subdirectory_in_output_dir_is_not_followed(tmp_path: Path) -> None:
    site = Site(tmp_path)
    torrent, payload = craft("multi", [(["a.bin"], 20_000), (["sub", "b.bin"], 20_000)])
    (site.out / "multi").mkdir()
    (site.out / "multi" / "sub").symlink_to(site.outside, target_is_directory=True)
    await _get_into_prepared(site, torrent, payload)
    assert sorted(os.listdir(site.outside)) == ["precious.txt"]


async def test_symlinked_state_dir_is_not_followed(tmp_path: Path) -> None:
    """.swarm/ (resume data) as a symlink out of the output directory: never written through."""
    site = Site(tmp_path)
    torrent, payload = craft("f.bin")
    (site.out / ".swarm").symlink_to(site.outside, target_is_directory=True)
    await _get_into_prepared(site, torrent, payload)
    assert sorted(os.listdir(site.outside)) == ["precious.txt"]


async def test_dangling_symlink_in_output_dir_is_not_followed(tmp_path: Path) -> None:
    site = Site(tmp_path)
    torrent, payload = craft("f.bin")
    target = site.outside / "created-through-link"
    (site.out / "f.bin").symlink_to(target)
    await _get_into_prepared(site, torrent, payload)
    assert not target.exists()


# ----------------------------------------------------------------- broken .torrent files


def _good_info() -> dict[bytes, Any]:
    data = b"z" * 40_000
    return {
        b"name": b"data.bin",
        b"piece length": 16384,
        b"pieces": piece_hashes(data, 16384),
        b"length": 40_000,
    }


def _good() -> bytes:
    return encode({b"info": _good_info()})


def _with(**kw: Any) -> bytes:
    info = _good_info()
    for k, v in kw.items():
        key = k.replace("_", " ").encode()
        if v is None:
            info.pop(key, None)
        else:
            info[key] = v
    return encode({b"info": info})


BROKEN: dict[str, bytes] = {
    "empty": b"",
    "truncated": _good()[: len(_good()) // 2],
    "truncated_by_one": _good()[:-1],
    "not_bencode": b"<html>404 Not Found</html>\n",
    "top_level_list": b"li1ei2ee",
    "piece_length_zero": _with(piece_length=0),
    "piece_length_negative": _with(piece_length=-16384),
    "piece_length_string": _with(piece_length=b"16384"),
    "piece_length_huge": _with(piece_length=2**62),
    "pieces_not_multiple_of_20": _with(pieces=piece_hashes(b"z" * 40_000, 16384) + b"x"),
    "pieces_count_wrong": _with(pieces=piece_hashes(b"z" * 40_000, 16384)[:20]),
    "pieces_missing": _with(pieces=None),
    "length_negative": _with(length=-1),
    "length_string": _with(length=b"40000"),
    "name_missing": _with(name=None),
    "name_integer": _with(name=7),
    "missing_info": encode({b"announce": b"http://127.0.0.1:1/announce"}),
    "info_is_a_list": encode({b"info": [1, 2, 3]}),
    "files_and_length": _with(files=[{b"length": 1, b"path": [b"a"]}]),
    "files_empty": encode(
        {b"info": {**{k: v for k, v in _good_info().items() if k != b"length"}, b"files": []}}
    ),
    "file_path_not_list": encode(
        {
            b"info": {
                **{k: v for k, v in _good_info().items() if k != b"length"},
                b"files": [{b"length": 40_000, b"path": b"a"}],
            }
        }
    ),
    "deep_nesting_900": b"d4:info" + b"l" * 900 + b"e" * 900 + b"e",
    "deep_nesting_100k": b"l" * 100_000 + b"e" * 100_000,
    "huge_string_length": b"d4:info999999999999:",
    "leading_zero_int": _good().replace(b"i16384e", b"i016384e"),
    "binary_noise": bytes(range(256)) * 8,
}


def _run_sync(*args: str, cwd: Path) -> tuple[int, str]:
    r = subprocess.run(
        [*SWARM, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=30
    )
    return r.returncode, r.stderr


COMMANDS = {
    "info": lambda t, d: ("info", t),
    "check": lambda t, d: ("check", t, "-o", d),
    "get": lambda t, d: ("get", t, "-o", d, *NET),
    "seed": lambda t, d: ("seed", os.path.join(d, "data.bin"), "--torrent", t, *NET),
}


@pytest.mark.parametrize(
    "command",
    [
        "info",
        "check",
        "get",
        "seed",
    ],
)
async def test_broken_torrent_files(command: str, tmp_path: Path) -> None:
    """Every broken file: exit 2, one line 'swarm: error: <file>: <reason>', no traceback."""
    (tmp_path / "data.bin").write_bytes(b"z" * 40_000)
    jobs = []
    for case, data in BROKEN.items():
        t = tmp_path / f"{case}.torrent"
        t.write_bytes(data)
        jobs.append(
            (
                case,
                asyncio.to_thread(
                    _run_sync, *COMMANDS[command](str(t), str(tmp_path)), cwd=tmp_path
                ),
            )
        )
    results = await asyncio.wait_for(asyncio.gather(*(j for _, j in jobs)), 90)
    problems = []
    for (case, _), (rc, err) in zip(jobs, results, strict=True):
        lines = [ln for ln in err.splitlines() if ln.strip()]
        ok = (
            rc == 2
            and "Traceback" not in err
            and len(lines) == 1
            and lines[0].startswith(f"swarm: error: {tmp_path / case}.torrent: ")
            and len(lines[0]) > len(f"swarm: error: {tmp_path / case}.torrent: ") + 3
        )
        if not ok:
            problems.append(f"{case}: exit {rc}, stderr {err[-300:]!r}")
    assert not problems, "\n".join(problems)


async def test_good_torrent_passes_the_same_commands(tmp_path: Path) -> None:
    """Control for the test above: the well-formed file is accepted by info and check."""
    (tmp_path / "data.bin").write_bytes(b"z" * 40_000)
    t = tmp_path / "good.torrent"
    t.write_bytes(_good())
    rc, out, err = await run_swarm("info", str(t), cwd=tmp_path)
    assert rc == 0 and "data.bin" in out, err
    rc, out, err = await run_swarm("check", str(t), "-o", str(tmp_path), cwd=tmp_path)
    assert rc == 0, err


BAD_MAGNETS = [
    "magnet:?xt=urn:btih:zz",
    "magnet:?",
    "magnet:",
    "magnet:?dn=only-a-name",
    "magnet:?xt=urn:btih:" + "a" * 39,
    "magnet:?xt=urn:btih:" + "a" * 41,
    "magnet:?xt=urn:btih:" + "g" * 40,
    "magnet:?xt=urn:btih:" + "1" * 32,  # base32 has no '1'
    "magnet:?xt=urn:sha1:" + "a" * 40,
    "magnet:?xt=urn:btih:%zz%zz",
    "magnet:?xt=urn:btih:" + "a" * 40 + "&xt=urn:btih:" + "b" * 40 + "&tr=" + "%" * 3,
    "magnet:?xt=" + "x" * 100_000,
    "magnet:?xt=urn:btih:%00" + "a" * 38,
]


async def test_bad_magnets_exit_2(tmp_path: Path) -> None:
    async def one(m: str) -> tuple[str, int, str]:
        rc, _out, err = await run_swarm("get", m, "-o", str(tmp_path), *NET, cwd=tmp_path)
        return m, rc, err

    results = await asyncio.wait_for(asyncio.gather(*(one(m) for m in BAD_MAGNETS)), 90)
    problems = []
    for m, rc, err in results:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        if (
            rc != 2
            or "Traceback" in err
            or len(lines) != 1
            or not lines[0].startswith("swarm: error: ")
        ):
            problems.append(f"{m[:60]!r}: exit {rc}, {err[-200:]!r}")
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------- output directory problems


async def test_output_is_a_regular_file(tmp_path: Path) -> None:
    torrent, _payload = craft("f.bin")
    t = tmp_path / "t.torrent"
    t.write_bytes(torrent)
    f = tmp_path / "afile"
    f.write_bytes(b"keep\n")
    rc, _out, err = await run_swarm("get", str(t), "-o", str(f), *NET, cwd=tmp_path)
    assert rc in (1, 2), err
    assert_one_error_line(err)
    assert "afile" in err
    assert f.read_bytes() == b"keep\n"


async def test_output_is_a_dangling_symlink(tmp_path: Path) -> None:
    torrent, _payload = craft("f.bin")
    t = tmp_path / "t.torrent"
    t.write_bytes(torrent)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    rc, _out, err = await run_swarm(
        "get", str(t), "-o", str(tmp_path / "dangling"), *NET, cwd=tmp_path
    )
    assert rc in (1, 2), err
    assert_one_error_line(err)
    assert not (tmp_path / "nowhere").exists()


async def test_torrent_path_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "d.torrent").mkdir()
    for args in (("info", "d.torrent"), ("get", "d.torrent", *NET), ("check", "d.torrent")):
        rc, _out, err = await run_swarm(*args, cwd=tmp_path)
        assert rc == 2, (args, err)
        assert_one_error_line(err)


# ----------------------------------------------------------------- magnets and hostile metadata (BEP 9)


def _big_info_torrent(name: str = "many") -> tuple[bytes, bytes]:
    """A multi-file torrent whose info dictionary spans two ut_metadata pieces (> 16 KiB)."""
    files = [([f"file-{i:04d}-" + "n" * 40 + ".txt"], 300) for i in range(300)]
    torrent, payload = craft(name, files, piece_length=16384)
    assert len(parse_metainfo(torrent).info_bytes) > 16384
    return torrent, payload


async def _get_magnet(
    site: Site, magnet: str, *ports: int, timeout: float = 30
) -> tuple[int, str, str]:
    peers = [a for p in ports for a in ("--peer", f"127.0.0.1:{p}")]
    return await run_swarm(
        "get", magnet, "-o", str(site.out), *peers, *NET, cwd=site.top, timeout=timeout
    )


METADATA_LIES = [
    "wrong_hash",
    "huge_size",
    "zero_size",
    "negative_size",
    "short_piece",
    "bad_bencode",
    "out_of_range",
    "reject",
]


@pytest.mark.parametrize("mode", METADATA_LIES)
async def test_magnet_from_a_lying_metadata_peer_fails_cleanly(mode: str, tmp_path: Path) -> None:
    """Its only peer lies about the metadata: one error line, exit 1 or 2, nothing written."""
    from helpers_qa.peers import MetadataSeed

    site = Site(tmp_path)
    torrent, payload = _big_info_torrent()
    meta = parse_metainfo(torrent)
    before = site.before()
    async with MetadataSeed(meta, serve_bytes(meta, payload), meta.info_bytes, mode) as liar:
        rc, _out, err = await _get_magnet(site, meta.magnet_uri(), liar.port)
        assert liar.connections >= 1, "swarm never asked the peer"
    assert site.before() == before
    assert rc in (1, 2), f"exit {rc}: {err}"
    assert_one_error_line(err)
    assert files_under(site.out) == {}, "data written from unverified metadata"


async def test_magnet_liar_and_honest_peer_completes(tmp_path: Path) -> None:
    """A peer with forged metadata next to an honest one: the download completes, right bytes."""
    from helpers_qa.peers import MetadataSeed

    site = Site(tmp_path)
    torrent, payload = _big_info_torrent()
    meta = parse_metainfo(torrent)
    serve = serve_bytes(meta, payload)
    before = site.before()
    async with (
        MetadataSeed(meta, serve, meta.info_bytes, "wrong_hash") as liar,
        MetadataSeed(meta, serve, meta.info_bytes, "honest") as honest,
    ):
        rc, _out, err = await _get_magnet(site, meta.magnet_uri(), liar.port, honest.port)
    check_outcome(site, before, rc, err, torrent, payload)
    assert rc == 0, err


@pytest.mark.parametrize("case", ["up_name", "dotdot_files", "absolute"])
async def test_magnet_metadata_with_hostile_paths(case: str, tmp_path: Path) -> None:
    """Metadata that hashes right (the attacker made the magnet) but names escaping paths."""
    from helpers_qa.peers import MetadataSeed

    site = Site(tmp_path)
    if case == "up_name":
        torrent, payload = craft("../../../../escape-magnet")
    elif case == "dotdot_files":
        torrent, payload = craft(
            "m", [(["..", "..", "..", "..", "..", "esc"], 20_000), (["ok"], 3000)]
        )
    else:
        torrent, payload = craft("m", [([str(tmp_path / "abs-target" / "x")], 20_000)])
    meta = parse_metainfo(torrent)
    before = site.before()
    async with MetadataSeed(meta, serve_bytes(meta, payload), meta.info_bytes, "honest") as seed:
        rc, _out, err = await _get_magnet(site, meta.magnet_uri(), seed.port)
    check_outcome(site, before, rc, err, torrent, payload)
    assert not (tmp_path / "abs-target").exists()


# ----------------------------------------------------------------- hostile trackers named by a torrent


class HostileTracker:
    """An HTTP tracker on 127.0.0.1 that answers announces according to ``mode``."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.announces = 0
        self.runner: Any = None
        self.url = ""

    async def __aenter__(self) -> HostileTracker:
        from aiohttp import web

        async def announce(req: web.Request) -> web.StreamResponse:
            self.announces += 1
            m = self.mode
            if m == "garbage":
                return web.Response(body=b"<html>502 Bad Gateway</html>")
            if m == "failure":
                return web.Response(body=encode({b"failure reason": b"\xff" * 10_000}))
            if m == "huge_peers":
                peers = b"".join(
                    bytes([127, 0, 0, 1]) + (40000 + i).to_bytes(2, "big") for i in range(5000)
                )
                return web.Response(body=encode({b"interval": 1800, b"peers": peers}))
            if m == "bad_dict_peers":
                peers = [
                    {b"ip": b"999.1.1.1", b"port": 1},
                    {b"ip": b"\xff\xfe", b"port": -1},
                    {b"ip": b"127.0.0.1", b"port": 2**40},
                    {b"ip": 7, b"port": b"x"},
                    b"not a dict",
                ]
                return web.Response(body=encode({b"interval": 1800, b"peers": peers}))
            if m == "odd_compact":
                return web.Response(
                    body=encode({b"interval": 1800, b"peers": b"\x7f\x00\x00\x01\x00"})
                )
            if m == "interval_zero":
                return web.Response(
                    body=encode({b"interval": 0, b"min interval": 0, b"peers": b""})
                )
            if m == "redirect_loop":
                raise web.HTTPFound(str(req.url))
            if m == "huge_body":
                return web.Response(
                    body=b"d8:intervali1800e5:peers" + b"20000000:" + b"\0" * 20_000_000 + b"e"
                )
            if m == "hang":
                await asyncio.sleep(3600)
            raise AssertionError(m)

        app = web.Application()
        app.router.add_get("/announce", announce)
        self.runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/announce"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.wait_for(self.runner.cleanup(), 10)


TRACKER_MODES = [
    "garbage",
    "failure",
    "huge_peers",
    "bad_dict_peers",
    "odd_compact",
    "interval_zero",
    "redirect_loop",
    "huge_body",
    "hang",
]


@pytest.mark.parametrize("mode", TRACKER_MODES)
async def test_hostile_tracker_does_not_stop_a_download(mode: str, tmp_path: Path) -> None:
    """The torrent's tracker misbehaves; the --peer seed still serves; exit 0 promptly, no traceback."""
    site = Site(tmp_path)
    async with HostileTracker(mode) as tracker:
        torrent, payload = craft("f.bin", length=300_000, extra_info=None)
        # the announce URL lives outside the info dict: add it to the top level
        from swarm.core.bencode import decode

        top = decode(torrent)
        top[b"announce"] = tracker.url.encode()
        torrent = encode(top)
        meta = parse_metainfo(torrent)
        before = site.before()
        site.tfile.write_bytes(torrent)
        async with ScriptedSeed(meta, serve_bytes(meta, payload)) as fake:
            rc, _out, err = await run_swarm(
                "get",
                str(site.tfile),
                "-o",
                str(site.out),
                "--peer",
                f"127.0.0.1:{fake.port}",
                *NET,
                cwd=site.top,
                timeout=25,
            )
        announces = tracker.announces
    check_outcome(site, before, rc, err, torrent, payload)
    assert rc == 0, err
    assert announces >= 1, "the tracker was never asked"
    if mode == "interval_zero":
        assert announces <= 5, (
            f"{announces} announces in one short download: interval 0 not clamped"
        )


async def test_tracker_interval_zero_is_clamped(tmp_path: Path) -> None:
    """A tracker answering interval 0 must not be re-announced to in a loop (seed side)."""
    from swarm import Session
    from swarm.core.bencode import decode
    from tests.helpers.wait import poll

    async with HostileTracker("interval_zero") as tracker:
        torrent, payload = craft("f.bin", length=100_000)
        top = decode(torrent)
        top[b"announce"] = tracker.url.encode()
        torrent = encode(top)
        (tmp_path / "f.bin").write_bytes(payload)
        async with Session("127.0.0.1", 0) as s:
            await s.add_torrent(torrent, tmp_path, seed_only=True)
            assert await poll(lambda: tracker.announces >= 1, 10), "never announced"
            # a measurement window, not a synchronisation: more than 3 announces in 4 s is a loop
            hammered = await poll(lambda: tracker.announces > 3, 4)
        assert not hammered, f"{tracker.announces} announces in 4 s"
