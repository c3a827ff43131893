"""`swarm remote`: drive a running `swarm daemon` through its HTTP API (docs/daemon.md).

Exit codes: 0 done; 1 a runtime failure (`wait` on a torrent in error, an add
of a torrent already there, a daemon error); 2 bad usage or bad input (the
daemon's 400, 401, 403, 404, 413) and when no daemon answers at all.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from swarm.errors import BadInput, SwarmError

from .common import MAX_TORRENT_FILE, add_output_options

DEFAULT_URL = "http://127.0.0.1:9091"
#: Seconds between polls of `wait`.
WAIT_POLL = 0.5


class NoDaemon(BadInput):
    """Nothing answers at the API's address: exit 2, as the contract says."""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "remote",
        help="drive a running swarm daemon (list, add, seed, pause, resume, remove, wait)",
        description="Talk to a swarm daemon's HTTP API. Exit 2 when no daemon answers.",
        epilog="example: swarm remote add debian.torrent -o isos && swarm remote list",
    )
    p.add_argument("--api", metavar="URL", default=DEFAULT_URL, help=f"the daemon's API (default {DEFAULT_URL})")
    p.add_argument(
        "--token", metavar="T", default=os.environ.get("SWARM_TOKEN"),
        help="the daemon's --token (default: $SWARM_TOKEN)",
    )
    add_output_options(p)
    cmds = p.add_subparsers(dest="action", metavar="ACTION")
    cmds.required = True
    cmds.add_parser("list", help="the torrents as a table (--json: the API's JSON)")
    add = cmds.add_parser("add", help="add a .torrent file or a magnet link")
    add.add_argument("source", metavar="SOURCE", help=".torrent file or magnet: URI")
    add.add_argument("-o", "--output", metavar="DIR", help="download directory (relative to the daemon's DIR)")
    add.add_argument("--files", action="append", metavar="GLOB", help="only files matching GLOB (repeatable)")
    add.add_argument("--sequential", action="store_true", help="fetch pieces in file order")
    add.add_argument("--paused", action="store_true", help="add it paused")
    seed = cmds.add_parser("seed", help="share a file or directory the daemon can read")
    seed.add_argument("path", metavar="PATH", help="inside the daemon's DIR or a --share directory")
    for name, what in (("pause", "pause a torrent"), ("resume", "resume a torrent"), ("wait", "wait until complete")):
        c = cmds.add_parser(name, help=what)
        c.add_argument("ih", metavar="IH", help="info-hash (or a unique prefix of it)")
    rm = cmds.add_parser("remove", help="remove a torrent")
    rm.add_argument("ih", metavar="IH", help="info-hash (or a unique prefix of it)")
    rm.add_argument("--delete-data", action="store_true", help="also delete its files")
    p.set_defaults(func=run)


class Client:
    """A few blocking HTTP requests to the daemon; errors become our exit codes."""

    def __init__(self, url: str, token: str | None) -> None:
        if "://" not in url:
            url = "http://" + url
        self.url = url.rstrip("/")
        self.token = token

    def request(
        self, method: str, path: str, body: bytes | None = None, ctype: str | None = None
    ) -> tuple[int, bytes]:
        req = urllib.request.Request(self.url + path, data=body, method=method)
        if ctype:
            req.add_header("Content-Type", ctype)
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - the user's own URL
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            data = exc.read()
            try:
                message = json.loads(data)["error"]
            except (ValueError, KeyError, TypeError):
                message = data.decode(errors="replace")[:200] or exc.reason
            if exc.code in (400, 401, 403, 404, 413, 421):
                raise BadInput(f"{method} {path}: {message}") from None
            raise SwarmError(f"{method} {path}: {exc.code} {message}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise NoDaemon(f"no swarm daemon answers at {self.url}: {reason}") from None

    def json(self, method: str, path: str, obj: object = None) -> Any:
        body = None if obj is None else json.dumps(obj).encode()
        _, data = self.request(method, path, body, "application/json" if body is not None else None)
        return json.loads(data) if data else None

    def resolve(self, ih: str) -> str:
        """A full info-hash from a unique prefix (as git does for commits), of the API's IH
        or of a hybrid's v2 hash."""
        ih = ih.lower()
        if len(ih) in (40, 64):
            return ih
        matches = [
            t["info_hash"] for t in self.json("GET", "/api/torrents")
            if any(h.startswith(ih) for h in (t["info_hash"], t.get("info_hash_v2") or ""))
        ]
        if len(matches) != 1:
            raise BadInput(f"{ih}: {'no' if not matches else 'more than one'} torrent with that info-hash prefix")
        return str(matches[0])


def run(args: argparse.Namespace) -> int:
    client = Client(args.api, args.token)
    action = args.action
    if action == "list":
        torrents = client.json("GET", "/api/torrents")
        if args.json:
            print(json.dumps(torrents, indent=1))
        elif not args.quiet:
            print_table(torrents)
        return 0
    if action in ("add", "seed"):
        ih = add(client, args)
        if args.json:
            print(json.dumps({"info_hash": ih}))
        elif not args.quiet:
            print(ih)
        return 0
    ih = client.resolve(args.ih)
    if action in ("pause", "resume"):
        client.request("POST", f"/api/torrents/{ih}/{action}")
        return 0
    if action == "remove":
        client.request("DELETE", f"/api/torrents/{ih}" + ("?delete_data=1" if args.delete_data else ""))
        return 0
    assert action == "wait"
    return wait(client, ih, args)


def add(client: Client, args: argparse.Namespace) -> str:
    if args.action == "seed":
        # absolute as the user meant it; the daemon resolves symlinks and confines it
        return str(client.json("POST", "/api/torrents", {"seed": os.path.abspath(args.path)})["info_hash"])
    options: dict[str, Any] = {"sequential": args.sequential, "paused": args.paused}
    if args.output:
        options["dir"] = args.output
    if args.files:
        options["files"] = args.files
    if args.source.startswith("magnet:"):
        return str(client.json("POST", "/api/torrents", {"magnet": args.source, **options})["info_hash"])
    path = Path(args.source)
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_TORRENT_FILE + 1)
    except OSError as exc:
        raise BadInput(f"{args.source}: {exc.strerror or exc}") from None
    query: list[tuple[str, str]] = [(k, "1") for k in ("sequential", "paused") if options[k]]
    query += [("dir", options["dir"])] if "dir" in options else []
    query += [("files", g) for g in options.get("files", [])]
    qs = ("?" + urllib.parse.urlencode(query)) if query else ""
    _, body = client.request("POST", "/api/torrents" + qs, data, "application/x-bittorrent")
    return str(json.loads(body)["info_hash"])


def wait(client: Client, ih: str, args: argparse.Namespace) -> int:
    """0 once the torrent is complete, 1 on its error (or if it is removed meanwhile)."""
    last = -1.0
    while True:
        try:
            t = client.json("GET", f"/api/torrents/{ih}")
        except BadInput as exc:
            raise SwarmError(str(exc)) from None  # removed while waiting: a runtime failure
        if t["state"] == "error":
            sys.stderr.write(f"swarm: error: {t['name']}: {t['error']}\n")
            return 1
        if t["progress"] >= 1.0 and t["state"] in ("seeding", "downloading", "paused"):
            if not args.quiet and not args.json:
                print(f"{t['name']}: complete")
            return 0
        if not args.quiet and not args.json and t["progress"] != last:
            last = t["progress"]
            print(f"{t['name']}: {t['state']} {last * 100:.1f}%", flush=True)
        time.sleep(WAIT_POLL)


def print_table(torrents: list[dict[str, Any]]) -> None:
    from swarm.ui.format import clip, human_duration, human_rate, human_size, safe

    print(f"{'IH':<8} {'name':<30} {'state':<11} {'done':>6} {'size':>10} {'down':>11} {'up':>11} {'peers':>5} {'eta':>7}")
    for t in torrents:
        print(
            f"{t['info_hash'][:8]:<8} {clip(safe(t['name']), 30):<30} {t['state']:<11} "
            f"{t['progress'] * 100:>5.1f}% {human_size(t['size']):>10} {human_rate(t['down_rate']):>11} "
            f"{human_rate(t['up_rate']):>11} {t['peers']:>5} {human_duration(t['eta']):>7}"
        )
        if t.get("error"):
            print(f"{'':<8} error: {safe(t['error'])}")
