"""BEP 52 through the command line: `create --v1|--hybrid|--v2`, `info`, `check`,
`seed`/`get` of v2 torrents, and a clean refusal of what needs hash requests."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from swarm.cli import main
from swarm.core.metainfo import parse_metainfo
from swarm.ui.events import validate

PL = 16384


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    rng = random.Random(52)
    root = tmp_path / "data" / "pack"
    (root / "sub").mkdir(parents=True)
    (root / "a.bin").write_bytes(rng.randbytes(5 * PL + 123))  # several pieces
    (root / "sub" / "b.txt").write_bytes(rng.randbytes(700))  # less than a block
    (root / "sub" / "empty").write_bytes(b"")
    (root / "z.bin").write_bytes(rng.randbytes(2 * PL))
    return root


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def create(capsys: pytest.CaptureFixture[str], tree: Path, flag: str) -> tuple[Path, str]:
    out = tree.parent.parent / f"pack{flag}.torrent"
    code, stdout, err = run(capsys, "create", str(tree), "-o", str(out), "--piece-length", str(PL), flag)
    assert code == 0, err
    return out, stdout


@pytest.mark.parametrize("flag", ["--v1", "--hybrid", "--v2"])
def test_create_prints_the_right_hashes(tmp_path: Path, tree: Path, capsys: pytest.CaptureFixture[str], flag: str) -> None:
    path, stdout = create(capsys, tree, flag)
    meta = parse_metainfo(path.read_bytes())
    assert meta.version == {"--v1": 1, "--hybrid": "hybrid", "--v2": 2}[flag]
    assert (f"info-hash: {meta.info_hash_hex}" in stdout) == (flag != "--v2")
    assert (f"info-hash v2: {meta.info_hash_v2_hex}" in stdout) == (flag != "--v1")
    assert ("urn:btmh:1220" in stdout) == (flag != "--v1")
    assert ("urn:btih:" in stdout) == (flag != "--v2")

    code, out, err = run(capsys, "info", str(path), "--json")
    assert code == 0, err
    obj = json.loads(out)
    assert validate(obj) == []
    assert obj["version"] == {"--v1": "v1", "--hybrid": "hybrid", "--v2": "v2"}[flag]
    assert obj.get("info_hash_v2") == meta.info_hash_v2_hex
    assert [f["path"] for f in obj["files"]] == [
        "pack/a.bin", "pack/sub/b.txt", "pack/sub/empty", "pack/z.bin"
    ]
    code, out, err = run(capsys, "info", str(path))
    assert code == 0, err
    assert (meta.info_hash_v2_hex or "no v2") in out or flag == "--v1"


def test_create_json_names_the_version(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tree.parent.parent / "j.torrent"
    code, stdout, err = run(capsys, "create", str(tree), "-o", str(out), "--hybrid", "--json")
    assert code == 0, err
    created = json.loads(stdout.splitlines()[-1])
    meta = parse_metainfo(out.read_bytes())
    assert created["event"] == "created" and created["version"] == "hybrid"
    assert created["info_hash_v2"] == meta.info_hash_v2_hex and created["info_hash"] == meta.info_hash_hex


def test_default_is_v1_and_flags_exclude_each_other(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = create(capsys, tree, "--private")  # no version flag
    assert parse_metainfo(path.read_bytes()).version == 1
    code, _, err = run(capsys, "create", str(tree), "--v1", "--v2")
    assert code == 2 and "not allowed with" in err
    code, out, _ = run(capsys, "create", "--help")
    assert code == 0 and "--hybrid" in out and "only v2 clients" in out


@pytest.mark.parametrize("flag", ["--hybrid", "--v2"])
def test_check_verifies_v2_pieces(tree: Path, capsys: pytest.CaptureFixture[str], flag: str) -> None:
    path, _ = create(capsys, tree, flag)
    data_dir = str(tree.parent)
    code, out, err = run(capsys, "check", str(path), "-o", data_dir)
    assert code == 0, err
    assert "all 9 pieces OK" in out  # 6 + 1 + 2: every file on its own pieces

    code, out, err = run(capsys, "check", str(path), "-o", data_dir, "--json")
    first = json.loads(out.splitlines()[0])
    assert first["event"] == "added" and validate(first) == []
    assert first["info_hash_v2"] == parse_metainfo(path.read_bytes()).info_hash_v2_hex

    with open(tree / "a.bin", "r+b") as fh:  # one byte in a.bin's third piece
        fh.seek(2 * PL + 5)
        byte = fh.read(1)
        fh.seek(2 * PL + 5)
        fh.write(bytes([byte[0] ^ 1]))
    code, out, err = run(capsys, "check", str(path), "-o", data_dir)
    assert code == 1, err
    assert "pack/a.bin: bad pieces 2" in out and "8/9 pieces OK" in out


@pytest.mark.parametrize(("flag", "by_magnet"), [("--v2", False), ("--hybrid", False), ("--v2", True)])
def test_seed_and_get_v2_by_the_cli(
    tree: Path, capsys: pytest.CaptureFixture[str], flag: str, by_magnet: bool
) -> None:
    """`swarm seed --torrent` of `create --v2`/`--hybrid`, `swarm get` of the
    .torrent or of a `urn:btmh:`-only magnet (piece layers by hash requests):
    identical files, and `added` names the v2 info-hash."""
    from tests.helpers.procs import start_seed, stop_process
    from tests.helpers.trees import same_tree

    path, _ = create(capsys, tree, flag)
    meta = parse_metainfo(path.read_bytes())
    seed, port = start_seed(
        tree.parent, str(tree), "--torrent", str(path), "--host", "127.0.0.1", "--port", "0",
        "--no-dht", "--no-lsd",
    )
    try:
        out = tree.parent.parent / "out"
        source = f"magnet:?xt=urn:btmh:1220{meta.info_hash_v2_hex}" if by_magnet else str(path)
        code, stdout, err = run(
            capsys, "get", source, "-o", str(out), "--peer", f"127.0.0.1:{port}", "--port", "0",
            "--host", "127.0.0.1", "--no-dht", "--no-lsd", "--json",
        )
        assert code == 0, err
    finally:
        stop_process(seed)  # type: ignore[arg-type]
    added = next(e for e in map(json.loads, stdout.splitlines()) if e["event"] == "added")
    assert validate(added) == []
    assert added["info_hash_v2"] == meta.info_hash_v2_hex and added["info_hash"] == meta.info_hash_hex
    assert same_tree(tree, out / "pack")


def test_a_btmh_magnets_saved_torrent_gets_its_piece_layers(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The .torrent `get` saves from a `urn:btmh:` magnet is rewritten with the piece layers
    once they are fetched and verified (seeding from it needs no rebuild); its info-hash is
    the magnet's, and fetching the magnet again keeps that file (no `NAME.1.torrent`)."""
    from tests.helpers.procs import start_seed, stop_process

    path, _ = create(capsys, tree, "--v2")
    meta = parse_metainfo(path.read_bytes())
    assert meta.piece_layers
    seed, port = start_seed(
        tree.parent, str(tree), "--torrent", str(path), "--host", "127.0.0.1", "--port", "0",
        "--no-dht", "--no-lsd",
    )
    out = tree.parent.parent / "out"
    try:
        for _ in range(2):
            code, stdout, err = run(
                capsys, "get", f"magnet:?xt=urn:btmh:1220{meta.info_hash_v2_hex}", "-o", str(out),
                "--peer", f"127.0.0.1:{port}", "--port", "0", "--host", "127.0.0.1", "--no-dht", "--no-lsd",
                "--json",
            )
            assert code == 0, err
            assert "warning" not in err
            added = next(e for e in map(json.loads, stdout.splitlines()) if e["event"] == "added")
            assert added["torrent"] == str(out / "pack.torrent")
            saved = parse_metainfo((out / "pack.torrent").read_bytes())
            assert saved.info_hash_v2 == meta.info_hash_v2 and saved.info_bytes == meta.info_bytes
            assert saved.piece_layers == meta.piece_layers
    finally:
        stop_process(seed)  # type: ignore[arg-type]
    assert sorted(p.name for p in out.iterdir()) == [".swarm", "pack", "pack.torrent"]  # no .1, no temp file


def test_check_without_piece_layers_verifies_files_whole(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A v2 torrent may lack piece layers (they come from peers): each such
    file is then checked against its root as a whole."""
    from swarm.core.bencode import decode, encode

    path, _ = create(capsys, tree, "--v2")
    top = decode(path.read_bytes())
    assert top.pop(b"piece layers")
    path.write_bytes(encode(top))
    code, out, err = run(capsys, "check", str(path), "-o", str(tree.parent))
    assert code == 0, err
    assert "all 9 pieces OK" in out
    with open(tree / "a.bin", "r+b") as fh:
        fh.seek(3 * PL)
        fh.write(b"\x00" * 3)
    code, out, err = run(capsys, "check", str(path), "-o", str(tree.parent))
    assert code == 1, err
    assert "pack/a.bin: bad pieces 0-5" in out and "3/9 pieces OK" in out
