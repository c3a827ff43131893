"""`swarm seed PATH`: share a file or directory until SIGINT/SIGTERM.

Without ``--torrent`` a ``<name>.torrent`` is created in the current
directory first; with it, PATH is verified against it. ``--with-tracker``
runs the tracker in the same process and writes its URLs (HTTP and UDP, with
this machine's LAN address) into the .torrent: one command shares a file on a LAN.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from swarm.errors import BadInput, MetainfoError

from .common import (
    add_discovery_options,
    add_metrics_options,
    add_network_options,
    add_output_options,
    add_rate_options,
    check_metrics_options,
    load_torrent,
    refuse_v2_only,
    start_metrics,
)
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
    add_discovery_options(p)
    add_rate_options(p)
    add_metrics_options(p)
    add_output_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if not path.exists():
        raise BadInput(f"{args.path}: no such file or directory")
    meta = None
    if args.torrent:
        meta = load_torrent(args.torrent)
        refuse_v2_only(meta)
        if meta.name != path.name:
            raise MetainfoError(f"{args.torrent}: the torrent is for {meta.name!r}, not {path.name!r}")
    for port in (args.port, args.tracker_port):
        if not 0 <= port < 65536:
            raise BadInput(f"port {port}: not a port number")
    check_metrics_options(args)
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
    metrics = None
    try:
        trackers = list(args.tracker)
        tiers: list[list[str]] = []
        if args.with_tracker:
            from tracker.server import start_tracker

            host = args.host
            tracker = await start_tracker(host, args.tracker_port)
            # Both URLs in one tier: they reach one tracker and one store, so a client
            # announces to one of them (BEP 12), never to both. HTTP first: it becomes
            # `announce`, what a client without announce-list (or without UDP) reads, and
            # a client taking the tier in order keeps the transport seeds used before;
            # libtorrent (prefer_udp_trackers), qBittorrent and Transmission put UDP
            # first within a tier themselves, and swarm's own client shuffles a tier.
            tiers.append(tracker.urls)
        meta: Metainfo
        if given is not None:
            torrent_path: Path | str = Path(args.torrent)
            meta = given
        else:
            from swarm.create import create_torrent_async

            result = await create_torrent_async(
                path, trackers=trackers, piece_length=args.piece_length, tiers=tiers
            )
            meta = result.meta
            torrent_path = await _save_torrent(meta.name, result.data)
        from .common import discovery_options  # discovery hook

        options: dict[str, Any] = {**discovery_options(args), "max_up": args.max_up, "max_down": args.max_down}
        session = Session(args.host, args.port, **options)
        await session.start()
        handle = await session.add_torrent(meta, path.parent, seed_only=True)
        metrics = await start_metrics(args, session, [handle])
        status = handle.status()
        peer_addr = (session.reachable_host(), session.port or 0)
        reporter.start(
            status, torrent=str(torrent_path), path=str(path),
            magnet=meta.magnet_uri(peers=[peer_addr]), info_hash_v2=meta.info_hash_v2_hex,
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
        if metrics is not None:
            await metrics.close()
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

