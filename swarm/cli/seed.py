"""`swarm seed PATH`: share a file or directory until SIGINT/SIGTERM.

Without ``--torrent`` a ``<name>.torrent`` is created in the current
directory first; with it, PATH is verified against it. ``--with-tracker``
runs the HTTP tracker in the same process and writes its URL (with this
machine's LAN address) into the .torrent: one command shares a file on a LAN.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from swarm.errors import BadInput, MetainfoError

from .common import add_discovery_options, add_network_options, add_output_options, load_torrent
from .get import drive, install_stop_signals, run_engine

if TYPE_CHECKING:
    from swarm.core.metainfo import Metainfo


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "seed",
        help="share a file or directory (creates the .torrent if needed)",
        description="Serve PATH to the swarm until Ctrl-C. Without --torrent, "
        "<name>.torrent is created in the current directory first.",
        epilog="example: swarm seed ./photos --with-tracker   (then: swarm get photos.torrent)",
    )
    p.add_argument("path", metavar="PATH", help="file or directory to share")
    p.add_argument("--torrent", metavar="FILE", help="an existing .torrent for PATH (verified first)")
    p.add_argument(
        "-t", "--tracker", action="append", default=[], metavar="URL",
        help="tracker announce URL for a new .torrent (repeatable)",
    )
    add_network_options(p)
    p.add_argument("--with-tracker", action="store_true", help="run the tracker in this process too")
    p.add_argument("--tracker-port", type=int, default=6969, metavar="N", help="its port (default 6969; 0 = free)")
    p.add_argument(
        "--piece-length", type=int, metavar="BYTES", help="piece length of a new .torrent (power of two)"
    )
    p.add_argument(
        "--super-seed", action="store_true",
        help="BEP 16: show each peer one piece at a time, so each first copy leaves once",
    )
    add_discovery_options(p)
    add_output_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if not path.exists():
        raise BadInput(f"{args.path}: no such file or directory")
    meta = None
    if args.torrent:
        meta = load_torrent(args.torrent)
        if meta.name != path.name:
            raise MetainfoError(f"{args.torrent}: the torrent is for {meta.name!r}, not {path.name!r}")
    for port in (args.port, args.tracker_port):
        if not 0 <= port < 65536:
            raise BadInput(f"port {port}: not a port number")
    return run_engine(lambda: _seed(args, path, meta))


async def _seed(args: argparse.Namespace, path: Path, given: Metainfo | None) -> int:
    from swarm.session import Session
    from swarm.ui import choose_mode, make_reporter

    mode = choose_mode(args.json, args.quiet, sys.stdout.isatty())
    reporter = make_reporter(mode)
    stop = asyncio.Event()
    got: list[int] = []
    install_stop_signals(stop, got)
    tracker = None
    session: Session | None = None
    handle = None
    try:
        trackers = list(args.tracker)
        if args.with_tracker:
            from tracker.server import start_tracker

            host = args.host
            tracker = await start_tracker(host, args.tracker_port)
            trackers.insert(0, tracker.url)
        meta: Metainfo
        if given is not None:
            torrent_path: Path | str = Path(args.torrent)
            meta = given
        else:
            from swarm.create import create_torrent_async

            result = await create_torrent_async(
                path, trackers=trackers, piece_length=args.piece_length
            )
            meta = result.meta
            torrent_path = await _save_torrent(meta.name, result.data)
        from .common import discovery_options  # discovery hook

        session = Session(args.host, args.port, **discovery_options(args))  # type: ignore[arg-type]
        await session.start()
        handle = await session.add_torrent(meta, path.parent, seed_only=True, super_seed=args.super_seed)
        status = handle.status()
        peer_addr = (session.reachable_host(), session.port or 0)
        reporter.start(
            status, torrent=str(torrent_path), path=str(path),
            magnet=meta.magnet_uri(peers=[peer_addr]),
        )
        reporter.event("listening", host=args.host, port=session.port or 0)
        if status.state != "seeding":
            reporter.event(
                "error",
                message=f"{path}: only {status.verified} of {status.total_size} bytes match the torrent; "
                "seeding what is there",
                fatal=False,
            )
        await drive(handle, reporter, stop, until_complete=False)
    finally:
        if session is not None:
            await session.close()
        if tracker is not None:
            await tracker.close()
        reporter.close(handle.status() if handle is not None else None)
    return 0


async def _save_torrent(name: str, data: bytes) -> Path | str:
    """Keep the new .torrent as ./<name>.torrent the way `get` keeps a magnet's (no symlink
    followed, no other file replaced: a numbered name instead, with a warning on stderr)."""
    from .get import save_torrent_file, warn

    saved = await asyncio.to_thread(save_torrent_file, Path.cwd(), name, data, warn)
    return saved if saved is not None else "(not saved)"

