"""`swarm create` and `swarm info` as a user runs them: exit codes, stdout, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from swarm.core.metainfo import parse_metainfo

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / ".." / "shared" / "corpus" / "libtorrent-test-torrents"


def swarm(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "swarm", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_one_error_line(proc: subprocess.CompletedProcess[str], starts: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"swarm: error: {starts}"), lines[0]
    assert "Traceback" not in proc.stderr


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    (root / "2024").mkdir(parents=True)
    (root / "a.jpg").write_bytes(os.urandom(50_000))
    (root / "2024" / "b.jpg").write_bytes(os.urandom(20_000))
    return root


def test_create_then_info(tmp_path: Path, tree: Path) -> None:
    proc = swarm(
        "create",
        "photos",
        "-t",
        "http://127.0.0.1:6969/announce",
        "--comment",
        "trip",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "photos.torrent"
    meta = parse_metainfo(out.read_bytes())
    assert f"info-hash: {meta.info_hash_hex}" in proc.stdout
    assert f"magnet:?xt=urn:btih:{meta.info_hash_hex}" in proc.stdout
    assert [("/".join(f.path), f.length) for f in meta.files] == [
        ("photos/2024/b.jpg", 20_000),
        ("photos/a.jpg", 50_000),
    ]
    assert meta.trackers == [["http://127.0.0.1:6969/announce"]] and meta.comment == "trip"

    info = swarm("info", "photos.torrent", cwd=tmp_path)
    assert info.returncode == 0, info.stderr
    for needle in (
        "photos",
        "70000 bytes",
        meta.info_hash_hex,
        "2024/b.jpg",
        "a.jpg",
        "tier 0: http://127.0.0.1:6969/announce",
        "trip",
    ):
        assert needle in info.stdout

    js = swarm("info", "photos.torrent", "--json", cwd=tmp_path)
    assert js.returncode == 0
    obj = json.loads(js.stdout)
    assert (
        obj["event"] == "info" and obj["info_hash"] == meta.info_hash_hex and obj["size"] == 70_000
    )
    assert [f["path"] for f in obj["files"]] == ["photos/2024/b.jpg", "photos/a.jpg"]


def test_create_options_and_json(tmp_path: Path, tree: Path) -> None:
    out = tmp_path / "out" / "x.torrent"
    out.parent.mkdir()
    proc = swarm(
        "create",
        str(tree),
        "-o",
        str(out),
        "--piece-length",
        "32K",
        "--private",
        "--web-seed",
        "http://127.0.0.1:8000/",
        "-t",
        "http://a/ann",
        "-t",
        "http://b/ann",
        "--json",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert all("event" in e for e in events)
    created = events[-1]
    assert created["event"] == "created" and created["path"] == str(out)
    meta = parse_metainfo(out.read_bytes())
    assert created["info_hash"] == meta.info_hash_hex
    assert (
        meta.piece_length == 32768 and meta.private and meta.url_list == ["http://127.0.0.1:8000/"]
    )
    assert meta.trackers == [["http://a/ann"], ["http://b/ann"]]


def test_quiet_single_file(tmp_path: Path, tree: Path) -> None:
    proc = swarm("create", "photos/a.jpg", "-q", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == ""
    meta = parse_metainfo((tmp_path / "a.jpg.torrent").read_bytes())
    assert not meta.multi_file and meta.total_length == 50_000


@pytest.mark.parametrize(
    ("args", "starts"),
    [
        (["create", "nope"], "nope: no such file or directory"),
        (
            ["create", "photos", "--piece-length", "1000"],
            "--piece-length 1000 must be a power of two",
        ),
        (
            ["create", "photos", "--piece-length", "49152"],
            "--piece-length 49152 must be a power of two",
        ),
        (["create", "photos", "-o", "missing/dir/x.torrent"], "missing/dir/x.torrent: directory"),
        (["create", "empty"], "empty: no data to share"),
        (
            ["create", "photos", "-t", "192.168.1.10:6969"],
            "tracker '192.168.1.10:6969' is not a http/https/udp URL",
        ),
        (
            ["create", "photos", "--web-seed", "ftp://x/"],
            "web seed 'ftp://x/' is not a http/https URL",
        ),
        (["info", "missing.torrent"], "missing.torrent: no such file"),
        (["info", "photos"], "photos: is a directory"),
    ],
)
def test_usage_errors(tmp_path: Path, tree: Path, args: list[str], starts: str) -> None:
    (tmp_path / "empty").mkdir()
    assert_one_error_line(swarm(*args, cwd=tmp_path), starts)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"garbage", "bad.torrent: not valid bencoding"),
        (b"", "bad.torrent: not valid bencoding"),
        (
            b"d4:infod4:name1:x12:piece lengthi0e6:pieces0:6:lengthi1eee",
            "bad.torrent: info.piece length is not a positive integer",
        ),
        (
            b"d4:infod4:name1:x12:piece lengthi16384e6:pieces3:abc6:lengthi1eee",
            "bad.torrent: info.pieces length is not a multiple of 20",
        ),
    ],
)
def test_bad_torrent_is_one_line_exit_2(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "bad.torrent").write_bytes(content)
    assert_one_error_line(swarm("info", "bad.torrent", cwd=tmp_path), message)


@pytest.mark.parametrize(
    "name",
    ["v2_deep_recursion.torrent", "many_pieces.torrent", "v2_zero_root.torrent", "string.torrent"],
)
def test_corpus_errors_through_cli(tmp_path: Path, name: str) -> None:
    path = CORPUS / name
    if not path.exists():
        pytest.skip("corpus missing (test_corpus.py fails for that in CI)")
    assert_one_error_line(swarm("info", str(path), cwd=tmp_path), str(path))


def test_info_shows_warnings_for_hostile_paths(tmp_path: Path) -> None:
    path = CORPUS / "parent_path.torrent"
    if not path.exists():
        pytest.skip("corpus missing (test_corpus.py fails for that in CI)")
    proc = swarm("info", str(path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "warning:" in proc.stderr and "sanitised" in proc.stderr


# ------------------------------------------------------------------ swarm.create as a library


def _sha1_pieces(blob: bytes, piece_length: int) -> bytes:
    import hashlib

    return b"".join(
        hashlib.sha1(blob[i : i + piece_length]).digest() for i in range(0, len(blob), piece_length)
    )


@pytest.mark.parametrize("piece_length", [16384, 32768])
def test_hash_pieces_across_files_and_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, piece_length: int
) -> None:
    from swarm import create

    monkeypatch.setattr(create, "BATCH_BYTES", 65536)  # many batches, files straddling them
    sizes = [1, 65535, 65536, 0, 65537, 16384, 3, 200_000]
    files = []
    blob = b""
    for i, n in enumerate(sizes):
        data = os.urandom(n)
        p = tmp_path / f"f{i}"
        p.write_bytes(data)
        files.append(create.SourceFile(str(p), (p.name.encode(),), n))
        blob += data
    seen: list[tuple[int, int]] = []
    pieces = create.hash_pieces(files, piece_length, lambda d, t: seen.append((d, t)), workers=2)
    assert pieces == _sha1_pieces(blob, piece_length)
    assert seen[-1] == (len(blob), len(blob))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_choose_piece_length() -> None:
    from swarm.create import choose_piece_length

    assert choose_piece_length(1) == 16384
    assert choose_piece_length(1 << 30) == 1 << 20  # 1024 pieces
    assert choose_piece_length(100 << 30) == 16 << 20  # clamped at 16 MiB
    for total in (10**6, 10**8, 3 * 10**9, 7 * 10**10):
        pl = choose_piece_length(total)
        assert pl & (pl - 1) == 0 and 16384 <= pl <= 16 << 20
        assert -(-total // pl) <= 2000 or pl == 16 << 20
        assert pl == 16384 or -(-total // pl) > 1000


def test_walk_skips_what_it_must(tmp_path: Path) -> None:
    from swarm.create import collect_files

    root = tmp_path / "d"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "f").write_bytes(b"12345")
    (root / "inside").symlink_to(root / "sub" / "f")
    (tmp_path / "secret").write_bytes(b"secret")
    (root / "outside").symlink_to(tmp_path / "secret")
    (root / "dirlink").symlink_to(tmp_path)
    (root / "dangling").symlink_to(tmp_path / "nope")
    os.mkfifo(root / "fifo")
    (root / "emptydir").mkdir()
    name, files, single, skipped = collect_files(root)
    assert (name, single) == ("d", False)
    assert [(f.path, f.length) for f in files] == [((b"sub", b"f"), 5)]
    text = "\n".join(skipped)
    for what in ("inside", "outside", "dirlink", "dangling", "fifo"):
        assert what in text


def test_create_torrent_bytes_and_async(tmp_path: Path) -> None:
    import asyncio

    from swarm.create import create_torrent, create_torrent_async

    (tmp_path / "f.bin").write_bytes(os.urandom(100_000))
    data = create_torrent(tmp_path / "f.bin", trackers=["http://127.0.0.1:1/a"])
    meta = parse_metainfo(data)
    assert meta.name == "f.bin" and meta.trackers == [["http://127.0.0.1:1/a"]]
    result = asyncio.run(asyncio.wait_for(create_torrent_async(tmp_path / "f.bin"), 30))
    assert result.meta.info_hash == parse_metainfo(result.data).info_hash
    assert result.meta.pieces == meta.pieces
    assert [s.fs_path for s in result.sources] == [str(tmp_path / "f.bin")]


def test_sources_map_sanitised_names(tmp_path: Path) -> None:
    from swarm.create import build_torrent

    root = tmp_path / "d"
    root.mkdir()
    (root / "con.txt").write_bytes(b"abc")
    (root / "ok").write_bytes(b"de")
    result = build_torrent(root)
    assert [
        ("/".join(f.path), s.fs_path)
        for f, s in zip(result.meta.files, result.sources, strict=True)
    ] == [
        ("d/con_.txt", str(root / "con.txt")),
        ("d/ok", str(root / "ok")),
    ]


def _corpus_files() -> list[Path]:
    return sorted(CORPUS.glob("*.torrent")) if CORPUS.is_dir() else []


@pytest.mark.parametrize("path", _corpus_files(), ids=lambda p: p.name)
def test_info_in_process_on_every_corpus_file(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every hostile file renders (rich markup in names escaped) or fails with one line, exit 2."""
    from swarm.cli import main

    code = main(["info", str(path)])
    out, err = capsys.readouterr()
    if code == 0:
        assert ("info-hash:" in out or "info-hash v2:" in out) and "warning" not in out
        # sanitised names are reported on stderr, one warning per line, nothing else
        assert all(line.startswith("swarm: warning: ") for line in err.splitlines())
        code_json = main(["info", str(path), "--json"])
        out, _ = capsys.readouterr()
        assert code_json == 0 and json.loads(out)["event"] == "info"
    else:
        assert code == 2
        assert err.count("\n") == 1 and err.startswith(f"swarm: error: {path}: ")


def test_info_escapes_markup_in_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from swarm.cli import main
    from swarm.core.metainfo import build_info, build_metainfo

    info = build_info(
        name="[bold]x[/bold]", piece_length=16384, pieces=bytes(20), files=[(("[red]f",), 5)]
    )
    (tmp_path / "m.torrent").write_bytes(build_metainfo(info, comment="[link=http://evil]c[/link]"))
    assert main(["info", str(tmp_path / "m.torrent")]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "[bold]x[_bold]" in out and "[red]f" in out and "[link=http://evil]c[/link]" in out
    assert "[bold]x[/bold]" in captured.err  # the warning about the sanitised name, on stderr


def test_create_dot_never_hashes_its_own_output(tree: Path) -> None:
    first = swarm("create", ".", "--json", cwd=tree)
    assert first.returncode == 0, first.stderr
    out = tree / "photos.torrent"
    assert out.is_file()
    second = swarm("create", ".", "--json", cwd=tree)
    assert second.returncode == 0, second.stderr
    h1 = json.loads(first.stdout.splitlines()[-1])["info_hash"]
    h2 = json.loads(second.stdout.splitlines()[-1])["info_hash"]
    assert h1 == h2
    assert all(f.path[-1] != "photos.torrent" for f in parse_metainfo(out.read_bytes()).files)
