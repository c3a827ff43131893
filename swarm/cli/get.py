"""`swarm get SOURCE`: download a torrent (a .torrent path or a magnet link).

Exits 0 once every wanted piece is verified on disk (or keeps seeding with
``--seed``), 130 on Ctrl-C after saving resume data, 1 on a runtime failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from swarm.errors import BadInput, StorageError

from .common import add_discovery_options, add_network_options, add_output_options

if TYPE_CHECKING:
    from swarm.core.magnet import Magnet
    from swarm.core.metainfo import Metainfo
    from swarm.session import Session

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
    p.add_argument("-o", "--output", metavar="DIR", default=".", help="download directory (default .)")
    add_network_options(p)
    p.add_argument(
        "--peer", action="append", default=[], metavar="HOST:PORT",
        help="connect to this peer directly (repeatable; no tracker needed)",
    )
    p.add_argument("--seed", action="store_true", help="keep seeding once complete (until Ctrl-C)")
    p.add_argument(
        "--files", action="append", default=[], metavar="GLOB",
        help="only download files matching GLOB (repeatable), e.g. '*.iso'",
    )
    p.add_argument("--sequential", action="store_true", help="fetch pieces in order (streaming)")
    p.add_argument("--first-last", action="store_true", help="fetch the first and last pieces first")
    p.add_argument("--stdout", action="store_true", help="write the file's bytes in order to stdout")
    p.add_argument("--http", type=int, metavar="PORT", help="serve the files over HTTP on 127.0.0.1:PORT")
    p.add_argument("--on-done", metavar="CMD", help="run CMD once complete")
    add_discovery_options(p)
    add_output_options(p)
    p.set_defaults(func=run)


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
            reporter.update(handle.status())
            if handle.status().state == "error":
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


async def _serve_http(handle: Any, port: int) -> Any:
    """--http: the torrent's files over HTTP on 127.0.0.1, with Range, served as pieces arrive."""
    from aiohttp import web

    meta = handle.metainfo
    files = {"/".join(f.path): f for f in meta.files if not f.pad}
    pl = meta.piece_length

    async def index(request: web.Request) -> web.Response:
        links = "".join(f'<li><a href="/{quote(p)}">{html.escape(p)}</a> ({f.length} bytes)</li>' for p, f in files.items())
        return web.Response(text=f"<ul>{links}</ul>", content_type="text/html")

    async def serve(request: web.Request) -> web.StreamResponse:
        f = files.get(request.match_info["path"])
        if f is None:
            raise web.HTTPNotFound()
        try:
            rng = request.http_range
        except ValueError:
            raise web.HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{f.length}"}) from None
        start, stop, partial = 0, f.length, False
        if rng.start is not None or rng.stop is not None:
            start = rng.start if rng.start is not None else 0
            stop = rng.stop if rng.stop is not None else f.length
            if start < 0:
                start, stop = max(0, f.length + start), f.length
            stop = min(stop, f.length)
            if start >= stop:
                raise web.HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{f.length}"})
            partial = True
        headers = {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream",
                   "Content-Length": str(stop - start)}
        if partial:
            headers["Content-Range"] = f"bytes {start}-{stop - 1}/{f.length}"
        resp = web.StreamResponse(status=206 if partial else 200, headers=headers)
        await resp.prepare(request)
        pos, end = f.offset + start, f.offset + stop
        while pos < end:
            index = pos // pl
            while not handle.have_piece(index):
                if handle.status().state in ("error", "stopped"):
                    return resp
                await asyncio.sleep(0.05)
            data = await handle.read_piece(index)
            base = index * pl
            hi = min(len(data), end - base)
            await resp.write(bytes(data[pos - base : hi]))
            pos = base + hi
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/{path:.+}", serve)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
    except OSError as exc:
        await runner.cleanup()
        raise StorageError(f"--http {port}: cannot listen: {exc.strerror or exc}") from None
    bound = runner.addresses[0][1]
    sys.stderr.write(f"swarm: streaming {meta.name} on http://127.0.0.1:{bound}/\n")
    sys.stderr.flush()
    return runner


async def _stream_to_stdout(handle: Any) -> None:
    """--stdout: write verified pieces in order (padding files left out) as they arrive."""
    meta = handle.metainfo
    pads = [(f.offset, f.end) for f in meta.files if f.pad]
    out = sys.stdout.buffer
    for index in range(meta.num_pieces):
        while not handle.have_piece(index):
            await asyncio.sleep(0.05)
        data = await handle.read_piece(index)
        start = index * meta.piece_length
        if pads:
            keep = bytearray()
            pos = start
            for lo, hi in pads:
                if hi <= pos or lo >= start + len(data):
                    continue
                keep += data[pos - start : max(pos, lo) - start]
                pos = max(pos, hi)
            keep += data[pos - start :]
            data = memoryview(keep)
        await asyncio.to_thread(out.write, data)
    await asyncio.to_thread(out.flush)


async def _run_on_done(cmd: str, handle: Any, out: Path, stop: asyncio.Event) -> None:
    """--on-done: run CMD once, when complete, with the torrent described in its environment."""
    import os

    await handle.wait_complete()
    st = handle.status()
    env = {
        **os.environ,
        "SWARM_INFOHASH": st.info_hash,
        "SWARM_NAME": st.name,
        "SWARM_PATH": str((out / st.name).resolve()),
        "SWARM_DOWNLOADED": str(st.downloaded),
    }
    proc = await asyncio.create_subprocess_shell(cmd, env=env)
    rc = await proc.wait()
    if rc:
        logging.getLogger("swarm.cli").warning("--on-done command exited with %d", rc)


async def _metadata(
    session: Session, magnet: Magnet, out: Path, peers: list[tuple[str, int]], reporter: Any
) -> Metainfo:
    """Fetch the info dictionary from peers, then keep it as <name>.torrent next to the download."""
    if reporter.mode == "plain":
        sys.stdout.write(f"fetching metadata of {magnet.info_hash_hex} from peers...\n")
        sys.stdout.flush()
    meta = await session.fetch_metadata(magnet, peers)
    target = out / f"{meta.name}.torrent"
    try:
        await asyncio.to_thread(target.write_bytes, meta.to_bytes())
    except OSError as exc:
        raise StorageError(f"{target}: cannot write: {exc.strerror or exc}") from None
    return meta


def _check_output_dir(path: Path) -> None:
    import os

    if not path.exists():
        raise StorageError(f"{path}: output directory does not exist")
    if not path.is_dir():
        raise StorageError(f"{path}: not a directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise StorageError(f"{path}: output directory is not writable")


def run(args: argparse.Namespace) -> int:
    if args.stdout and args.files:
        raise BadInput("--stdout streams the whole torrent; it cannot be combined with --files")
    if args.http is not None and not 0 <= args.http < 65536:
        raise BadInput(f"--http {args.http}: not a port number")
    if not 0 <= args.port < 65536:
        raise BadInput(f"--port {args.port}: not a port number")
    peers = parse_peers(args.peer)
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

    session = Session(args.host, args.port, **discovery_options(args))  # type: ignore[arg-type]
    await session.start()
    started = False
    complete = False
    http = None
    try:
        source: Path | Metainfo = src if isinstance(src, Path) else await _metadata(session, src, out, peers, reporter)
        if not isinstance(src, Path):
            extra = list(src.peers) + session._metadata_peers.pop(src.info_hash, [])
            peers = peers + [p for p in extra if p not in peers]
        handle = await session.add_torrent(source, out, files=args.files or None, peers=peers)
        streamer = None
        http = None
        if args.sequential or args.stdout or args.http is not None:
            handle.set_sequential(True)
        if args.http is not None:
            http = await _serve_http(handle, args.http)
        if args.stdout:
            streamer = asyncio.ensure_future(_stream_to_stdout(handle))
        if args.first_last:
            handle.prioritize_first_last()
        status = handle.status()
        torrent_file = src if isinstance(src, Path) else out / f"{status.name}.torrent"
        reporter.start(status, torrent=str(torrent_file), path=str(out / status.name),
                       magnet=handle.metainfo.magnet_uri())
        started = True
        if not isinstance(src, Path):
            reporter.event(
                "metadata", name=status.name, total_size=handle.metainfo.total_length,
                num_pieces=status.num_pieces, piece_length=status.piece_length,
            )
        reporter.event("listening", host=args.host, port=session.port)
        if args.on_done:
            on_done = asyncio.ensure_future(_run_on_done(args.on_done, handle, out, stop))
        # with --http the stream stays up (and we seed) until Ctrl-C
        complete = await drive(handle, reporter, stop, until_complete=not (args.seed or http))
        if streamer is not None:
            if complete:
                await streamer
            else:
                streamer.cancel()
        if args.on_done:
            if complete:
                await on_done
            else:
                on_done.cancel()

    finally:
        if http is not None:
            await http.cleanup()
        await session.close()
        if started:
            reporter.close(handle.status())
        else:
            reporter.close()
    if started and handle.status().error:
        raise StorageError(handle.status().error or "download failed")
    if got and got[0] == signal.SIGINT and not (complete and not args.seed):
        return EXIT_INTERRUPTED
    if complete:
        return 0
    return EXIT_INTERRUPTED if got and got[0] == signal.SIGINT else 1
