"""`swarm create PATH`: make a .torrent, print its info-hash and magnet URI."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from swarm.errors import BadInput

from .common import add_output_options

_SIZE = re.compile(r"(?i)\s*(\d+)\s*(k|m|g|kib|mib|gib|kb|mb|gb)?\s*\Z")
_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_size(text: str) -> int:
    """Bytes, or a binary suffix: 256K, 1MiB, 4m."""
    match = _SIZE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size in bytes: {text!r}")
    unit = (match.group(2) or "")[:1].lower()
    return int(match.group(1)) * _UNITS.get(unit, 1)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "create",
        help="make a .torrent for a file or directory",
        description="Make a .torrent for a file or a directory (multi-file) and print "
        "its info-hash and magnet URI. Symlinks inside PATH are left out with a warning on "
        "stderr (a seed never follows symlinks, so it could not serve them); PATH itself must "
        "not be a symlink (give the path it points to).",
        epilog="example: swarm create ./photos -t http://192.168.1.10:6969/announce",
    )
    p.add_argument("path", metavar="PATH", help="file or directory to share")
    p.add_argument(
        "-o", "--output", metavar="OUT", help="where to write (default ./<name>.torrent)"
    )
    p.add_argument(
        "-t",
        "--tracker",
        action="append",
        default=[],
        metavar="URL",
        help="tracker announce URL (repeatable; each is its own tier)",
    )
    p.add_argument(
        "--piece-length",
        type=parse_size,
        metavar="BYTES",
        help="piece length: a power of two >= 16 KiB (default: chosen for ~1000-2000 pieces)",
    )
    p.add_argument("--private", action="store_true", help="set the private flag (no DHT/PEX)")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument(
        "--v1",
        dest="version",
        action="store_const",
        const=1,
        help="BitTorrent v1 (the default): every client can download it",
    )
    kind.add_argument(
        "--hybrid",
        dest="version",
        action="store_const",
        const="hybrid",
        help="v1 and v2 (BEP 52) in one torrent, one swarm: old and new clients "
        "share it; files are padded to piece boundaries and the .torrent is larger",
    )
    kind.add_argument(
        "--v2",
        dest="version",
        action="store_const",
        const=2,
        help="v2 only (BEP 52): per-file SHA-256 Merkle hashes (verifiable per "
        "block, identical files share hashes); only v2 clients such as "
        "libtorrent 2 / qBittorrent 4.4+ can use it",
    )
    p.set_defaults(version=1)
    p.add_argument("--comment", metavar="TEXT", help="free-text comment")
    p.add_argument(
        "--web-seed",
        action="append",
        default=[],
        metavar="URL",
        help="BEP 19 web seed URL (repeatable)",
    )
    add_output_options(p)
    p.set_defaults(func=run)


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def run(args: argparse.Namespace) -> int:
    from swarm.create import build_torrent

    from .info import VERSION_NAMES

    as_json = bool(getattr(args, "json", False))
    quiet = bool(getattr(args, "quiet", False))
    progress_cb = None
    bar = None
    if as_json:
        last = [0.0]

        def progress_cb(done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] >= 0.5 or done >= total:
                last[0] = now
                _emit({"event": "progress", "done": done, "total": total})

    elif not quiet and sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        bar = Progress(
            "hashing",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        task = bar.add_task("hash", total=None)

        def progress_cb(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

    if args.output:
        target = Path(args.output)
        parent = target if target.is_dir() else (target.parent if str(target.parent) else Path("."))
        if not parent.is_dir():
            raise BadInput(f"{args.output}: directory {parent} does not exist")
    name = os.path.basename(os.path.abspath(args.path))
    out = Path(args.output) if args.output else Path.cwd() / f"{name}.torrent"
    if out.is_dir():
        out = out / f"{name}.torrent"
    options = dict(
        trackers=args.tracker,
        piece_length=args.piece_length,
        private=args.private,
        comment=args.comment,
        web_seeds=args.web_seed,
        progress=progress_cb,
        exclude=[out],  # never hash the .torrent we are about to (over)write
        version=args.version,
    )
    started = time.monotonic()
    if bar is not None:
        with bar:
            result = build_torrent(args.path, **options)
    else:
        result = build_torrent(args.path, **options)
    elapsed = time.monotonic() - started
    meta = result.meta
    _write_atomically(out, result.data)
    magnet = meta.magnet_uri()
    if as_json:
        for line in result.skipped:
            _emit({"event": "warning", "message": f"skipped {line}"})
        _emit(
            {
                "event": "created",
                "path": str(out),
                "name": meta.name,
                "info_hash": meta.info_hash_hex,
                **({"info_hash_v2": meta.info_hash_v2_hex} if meta.info_hash_v2_hex else {}),
                "version": VERSION_NAMES[meta.version],
                "magnet": magnet,
                "size": meta.total_length,
                "files": sum(1 for f in meta.files if not f.pad),
                "piece_length": meta.piece_length,
                "pieces": meta.num_pieces,
                "private": meta.private,
                "seconds": round(elapsed, 3),
            }
        )
    elif not quiet:
        for line in result.skipped:
            sys.stderr.write(f"swarm: warning: skipped {line}\n")
        rate = meta.total_length / elapsed / (1 << 20) if elapsed > 0 else 0.0
        print(f"wrote {out}")
        print(f"name:      {meta.name}")
        print(
            f"size:      {meta.total_length} bytes in {meta.num_pieces} pieces of "
            f"{meta.piece_length} (hashed in {elapsed:.2f} s, {rate:.0f} MiB/s)"
        )
        if meta.version != 2:
            print(f"info-hash: {meta.info_hash_hex}")
        if meta.info_hash_v2_hex is not None:
            print(f"info-hash v2: {meta.info_hash_v2_hex}")
        print(f"magnet:    {magnet}")
    return 0


def _write_atomically(out: Path, data: bytes) -> None:
    """Temp file + rename, so a reader never sees half a .torrent."""
    directory = out.parent if str(out.parent) else Path(".")
    if not directory.is_dir():
        raise BadInput(f"{out}: directory {directory} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=".swarm-", suffix=".torrent.tmp", dir=directory)
    umask = os.umask(0o022)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, out)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise BadInput(f"{out}: cannot write: {exc.strerror}") from None
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
