"""`swarm get SOURCE`: download a torrent (a .torrent path or a magnet link).

Exits 0 once every wanted piece is verified on disk (or keeps seeding with
``--seed``), 130 on Ctrl-C after saving resume data, 1 on a runtime failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from swarm.errors import BadInput, StorageError, SwarmError

from .common import (
    MAX_TORRENT_FILE,
    add_discovery_options,
    add_metrics_options,
    add_network_options,
    add_output_options,
    add_peer_limit_options,
    add_rate_options,
    check_metrics_options,
    listening_fields,
    peer_limits,
    peer_ports,
    start_metrics,
)

if TYPE_CHECKING:
    from swarm.core.magnet import Magnet
    from swarm.core.metainfo import Metainfo
    from swarm.session import Session, TorrentHandle

T = TypeVar("T")
EXIT_INTERRUPTED = 130
UPDATE_EVERY = 0.25


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "get",
        help="download a torrent (.torrent file or magnet link)",
        description="Download SOURCE (a .torrent path or a magnet: URI) into DIR, "
        "resuming what is already there. Exits 0 when every wanted piece is verified.",
        epilog="example: swarm get ubuntu.torrent -o ~/Downloads --peer 192.168.1.10:6881",
    )
    p.add_argument("source", metavar="SOURCE", help=".torrent file or magnet: URI")
    p.add_argument(
        "-o", "--output", metavar="DIR", default=".", help="download directory (default .; created with its parents if missing)"
    )
    add_network_options(p)
    p.add_argument(
        "--peer", action="append", default=[], metavar="HOST:PORT",
        help="connect to this peer directly (repeatable; no tracker needed)",
    )
    p.add_argument(
        "--web-seed", action="append", default=[], metavar="URL",
        help="also download from this HTTP/HTTPS web seed (BEP 19; repeatable)",
    )
    p.add_argument(
        "--no-web-seeds", action="store_true",
        help="ignore the torrent's url-list and the magnet's ws= web seeds (--web-seed ones are still used)",
    )
    p.add_argument("--seed", action="store_true", help="keep seeding once complete (until Ctrl-C)")
    p.add_argument(
        "--files", action="append", default=[], metavar="GLOB",
        help="only download files matching GLOB (repeatable), e.g. '*.iso'",
    )
    add_stream_options(p)
    add_discovery_options(p)
    add_rate_options(p)
    add_peer_limit_options(p)
    add_metrics_options(p)
    add_output_options(p)
    p.set_defaults(func=run)


def add_stream_options(p: argparse.ArgumentParser) -> None:
    """Streaming and scripting options (issue 11); wired up by ``_get`` through ``swarm.cli.stream``."""
    p.add_argument("--sequential", action="store_true", help="fetch pieces in file order (streaming)")
    p.add_argument(
        "--first-last", action="store_true", help="fetch the first and last pieces of each file early"
    )
    p.add_argument(
        "--stdout", action="store_true",
        help="write the file's bytes in order to stdout (single file; implies --sequential; "
        "other output goes to stderr; exits 0 if the reader closes the pipe)",
    )
    p.add_argument(
        "--http", type=int, metavar="PORT",
        help="serve the files over HTTP with Range support (0 = any free port); keeps running until Ctrl-C",
    )
    p.add_argument("--http-host", default="127.0.0.1", metavar="ADDR", help="address for --http (default 127.0.0.1)")
    p.add_argument(
        "--on-done", metavar="CMD",
        help="run CMD via /bin/sh once complete, with SWARM_INFOHASH, SWARM_NAME, SWARM_PATH, "
        "SWARM_DOWNLOADED set",
    )
    p.add_argument("--stall-after", type=float, default=None, help=argparse.SUPPRESS)


def run_engine(main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main()`` on uvloop when it is importable, asyncio's loop otherwise."""
    try:
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())  # type: ignore[arg-type]


def parse_peers(items: list[str], option: str = "--peer") -> list[tuple[str, int]]:
    from swarm.core.magnet import parse_peer

    out = []
    for text in items:
        try:
            out.append(parse_peer(text))
        except BadInput as exc:
            raise BadInput(f"{option} {text}: {exc}") from exc
    return out


def install_stop_signals(stop: asyncio.Event, got: list[int]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):

        def handler(sig: int = sig) -> None:
            got.append(sig)
            stop.set()

        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, handler)


async def drive(
    handle: Any, reporter: Any, stop: asyncio.Event, *, until_complete: bool
) -> bool:
    """Feed the reporter until complete (when asked) or until ``stop``; True if complete."""
    events = handle.events()
    complete = False

    async def pump() -> None:
        async for kind, fields in events:
            if kind in ("piece",) and fields.get("action") == "verified" and reporter.mode != "json":
                continue  # a line per piece is noise on a terminal or in a log
            if kind == "error" and fields.get("fatal") and reporter.mode != "json":
                continue  # the command's own error line says it once
            reporter.event(kind, **fields)

    pump_task = asyncio.ensure_future(pump())
    stop_task = asyncio.ensure_future(stop.wait())
    try:
        while True:
            status = handle.status()  # not cheap (piece and availability maps): once a turn
            reporter.update(status)
            if status.state == "error":
                break
            if handle.is_complete() and not complete:
                complete = True
                if until_complete:
                    break
            wait = asyncio.ensure_future(handle.wait_complete()) if not complete else None
            pending = {stop_task} | ({wait} if wait is not None else set())
            done, _ = await asyncio.wait(pending, timeout=UPDATE_EVERY, return_when=asyncio.FIRST_COMPLETED)
            if wait is not None and not wait.done():
                wait.cancel()
            elif wait is not None:
                with contextlib.suppress(Exception):
                    wait.result()
            if stop_task in done:
                break
    finally:
        stop_task.cancel()
        await asyncio.sleep(0)  # let queued events reach the reporter
        pump_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pump_task
        with contextlib.suppress(Exception):
            await events.aclose()
    return complete or handle.is_complete()


async def _metadata(
    session: Session, magnet: Magnet, out: Path, peers: list[tuple[str, int]], reporter: Any
) -> tuple[Metainfo, Path | None]:
    """Fetch the info dictionary from peers, then keep it as <name>.torrent next to the download
    (see ``save_torrent_file``); the metadata and where it was saved."""
    if reporter.mode == "plain":
        stream = getattr(reporter, "stream", sys.stdout)  # stderr with --stdout: stdout is the data
        stream.write(f"fetching metadata of {magnet.info_hash_hex} from peers...\n")
        stream.flush()
    try:
        meta = await session.fetch_metadata(magnet, peers)
    except SwarmError as exc:
        if reporter.mode == "json":  # scripts read why on stdout too, not only stderr's line
            reporter.event("error", message=str(exc), fatal=True)
        raise
    saved = await asyncio.to_thread(save_torrent_file, out, meta.name, meta.to_bytes(), warn)
    return meta, saved


async def keep_piece_layers(handle: TorrentHandle, path: Path, saved: bytes) -> None:
    """Once a magnet's v2 piece layers are fetched and verified, put them in the .torrent
    saved for it (bytes ``saved``): seeding from that file then needs no recheck to rebuild them."""
    await handle.piece_layers_ready.wait()
    data = handle.metainfo.to_bytes()
    if data == saved:
        return  # nothing was missing (v1, hybrid)
    try:
        await asyncio.to_thread(update_torrent_file, path, saved, data)
    except OSError as exc:
        warn(f"{path}: cannot add the piece layers: {exc.strerror or exc}")


def warn(message: str) -> None:
    sys.stderr.write(f"swarm: warning: {message}\n")
    sys.stderr.flush()


#: ``<name>.torrent`` taken by another file: ``<name>.1.torrent`` ... ``<name>.9.torrent``.
TORRENT_COPIES = 10


def save_torrent_file(out: Path, name: str, data: bytes, warn: Callable[[str], None]) -> Path | None:
    """Keep a magnet's metadata as ``out/<name>.torrent``; the path written, or None.

    Opened relative to ``out`` without following symlinks, written to a temp
    file and linked into place, so nothing outside ``out`` and no existing file
    is ever written. An existing ``<name>.torrent`` with the same bytes (the
    same magnet fetched again), or with those bytes and the piece layers
    ``keep_piece_layers`` added, is kept; another file or a symlink of that name
    is left alone and the first free ``<name>.N.torrent`` is used, with a
    warning. The name is cut to fit the 255-byte limit of a file name.
    """
    from swarm import safefile

    try:
        dir_fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise StorageError(f"{out}: cannot open: {exc.strerror or exc}") from None
    try:
        for n in range(TORRENT_COPIES):
            candidate = safefile.fit_name(name, ".torrent" if n == 0 else f".{n}.torrent")
            existing = safefile.read_small(dir_fd, candidate, MAX_TORRENT_FILE)
            if existing is not None and (existing == data or _plus_piece_layers(existing, data)):
                return out / candidate
            if safefile.write_atomic(dir_fd, candidate, data, replace=False):
                if n:
                    warn(f"{out / safefile.fit_name(name, '.torrent')} exists and is not ours; "
                         f"saved the metadata as {out / candidate}")
                return out / candidate
    except OSError as exc:
        raise StorageError(f"{out}: cannot write {name}.torrent: {exc.strerror or exc}") from None
    finally:
        os.close(dir_fd)
    warn(f"{out}: {name}.torrent and its numbered variants exist; metadata not saved")
    return None


def _plus_piece_layers(existing: bytes, data: bytes) -> bool:
    """``existing`` is the .torrent ``data`` with BEP 52 piece layers added."""
    from dataclasses import replace

    from swarm.core.metainfo import parse_metainfo

    try:
        ours, theirs = parse_metainfo(data), parse_metainfo(existing)
    except BadInput:
        return False
    return bool(theirs.piece_layers) and replace(ours, piece_layers=theirs.piece_layers).to_bytes() == existing


def update_torrent_file(path: Path, old: bytes, new: bytes) -> bool:
    """Replace ``path`` by ``new`` (atomically, never through a symlink) if it still holds
    ``old``; False, leaving it alone, if someone changed or removed it meanwhile."""
    from swarm import safefile

    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if safefile.read_small(dir_fd, path.name, len(old) + 1) != old:
            return False
        return safefile.write_atomic(dir_fd, path.name, new, replace=True)
    finally:
        os.close(dir_fd)


def _check_output_dir(path: Path) -> None:
    """Create DIR with its parents if needed (as wget, aria2 and transmission-cli do); it must be writable."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        pass  # a file (or a dangling symlink) of that name: refused below
    except OSError as exc:
        raise StorageError(f"{path}: cannot create the output directory: {exc.strerror or exc}") from None
    if not path.is_dir():
        raise StorageError(f"{path}: not a directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise StorageError(f"{path}: output directory is not writable")


def run(args: argparse.Namespace) -> int:
    from swarm.core.webseed import check_url

    if args.http is not None and not 0 <= args.http < 65536:
        raise BadInput(f"--http {args.http}: not a port number")
    peer_ports(args)  # a bad --port is exit 2
    check_metrics_options(args)
    peers = parse_peers(args.peer)
    for url in args.web_seed:
        check_url(url)  # a bad URL: exit 2
    source: str = args.source
    src: Path | Magnet
    if source.startswith("magnet:"):
        from swarm.core.magnet import parse_magnet

        src = parse_magnet(source)  # a bad magnet: exit 2
    else:
        src = Path(source)
        if not src.is_file():
            raise BadInput(f"{source}: no such .torrent file")
    out = Path(args.output)
    _check_output_dir(out)
    return run_engine(lambda: _get(args, src, out, peers))


async def _get(
    args: argparse.Namespace, src: Path | Magnet, out: Path, peers: list[tuple[str, int]]
) -> int:
    from swarm.session import Session
    from swarm.ui import choose_mode, make_reporter

    from .stream import StreamExtras

    if args.stdout:
        # the data owns stdout: everything else goes to stderr
        mode = choose_mode(args.json, args.quiet, sys.stderr.isatty())
        reporter = make_reporter(mode, stream=sys.stderr)
    else:
        mode = choose_mode(args.json, args.quiet, sys.stdout.isatty())
        reporter = make_reporter(mode)
    stop = asyncio.Event()
    got: list[int] = []
    install_stop_signals(stop, got)
    from .common import discovery_options  # discovery hook

    options: dict[str, Any] = {
        **peer_ports(args), **discovery_options(args), "max_up": args.max_up, "max_down": args.max_down
    }
    options.update(peer_limits(args))
    session = Session(args.host, **options)
    await session.start()
    started = False
    complete = False
    extras: StreamExtras | None = None
    handles: list[TorrentHandle] = []  # what --metrics reports
    layers_saver: asyncio.Task[None] | None = None
    metrics = None
    try:
        metrics = await start_metrics(args, session, handles)
        source: Path | Metainfo
        torrent_file: Path | None
        if isinstance(src, Path):
            source = torrent_file = src
        else:
            source, torrent_file = await _metadata(session, src, out, peers, reporter)
        if not isinstance(src, Path):
            extra = list(src.peers) + session.take_metadata_peers(src.info_hash)
            peers = peers + [p for p in extra if p not in peers]
        handle = await session.add_torrent(
            source, out, files=args.files or None, peers=peers,
            web_seeds=args.web_seed, torrent_web_seeds=not args.no_web_seeds,
        )
        handles.append(handle)
        if torrent_file is not None and not isinstance(source, Path):
            layers_saver = asyncio.get_running_loop().create_task(
                keep_piece_layers(handle, torrent_file, source.to_bytes())
            )
        # issue 11: --sequential/--first-last/--stdout/--http/--on-done (swarm/cli/stream.py)
        extras = StreamExtras(args, handle, reporter, stop)
        extras.configure()
        status = handle.status()
        saved = {"torrent": str(torrent_file)} if torrent_file is not None else {}
        reporter.start(status, **saved, path=str(out / status.name), magnet=handle.metainfo.magnet_uri(),
                       info_hash_v2=handle.metainfo.info_hash_v2_hex)
        started = True
        if not isinstance(src, Path):
            reporter.event(
                "metadata", name=status.name, total_size=handle.metainfo.total_length,
                num_pieces=status.num_pieces, piece_length=status.piece_length,
            )
        reporter.event("listening", **listening_fields(args, session))
        await extras.start()
        # --http keeps serving after completion, like --seed
        complete = await drive(handle, reporter, stop, until_complete=not (args.seed or args.http is not None))
        await extras.finish(complete)
    finally:
        if layers_saver is not None:
            if not handle.piece_layers_ready.is_set():
                layers_saver.cancel()  # stopped before the layers came: nothing to save
            with contextlib.suppress(asyncio.CancelledError):
                await layers_saver
        if extras is not None:
            await extras.close()
        if metrics is not None:
            await metrics.close()
        await session.close()
        if started:
            reporter.close(handle.status())
        else:
            reporter.close()
    if started and handle.status().error:
        raise StorageError(handle.status().error or "download failed")
    if extras is not None and extras.pipe_closed:
        return 0  # the --stdout reader went away (as `yes | head`): documented, not a failure
    if complete:
        # a stop after completion is clean, whether it served on (--seed,
        # --http) or not: the download succeeded (Ctrl-C included)
        return 0
    return EXIT_INTERRUPTED if got and got[0] == signal.SIGINT else 1
