"""The daemon's HTTP API (JSON) and web page; reference: docs/daemon.md.

Security rules, checked in one middleware before any handler runs:

* ``Host`` must name the bound address, ``localhost``, ``127.0.0.1`` or
  ``::1`` (with any port), else 421: a page on ``evil.example`` whose name is
  re-pointed at 127.0.0.1 (DNS rebinding) cannot reach the API. Bound to a
  wildcard address (with its mandatory token), any IP literal is accepted too:
  rebinding needs a name.
* With ``--token``, every ``/api/`` request needs ``Authorization: Bearer TOKEN``
  (401 otherwise); compared in constant time.
* A state-changing request (POST, DELETE, ...) carrying an ``Origin`` other than
  the API's own, or ``Sec-Fetch-Site: cross-site``/``same-site``, gets 403 (CSRF).
* Bodies over 16 MiB get 413, before they are read.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from swarm import __version__
from swarm.errors import BadInput, SwarmError

from .core import AddOptions, Conflict, Daemon, Forbidden, NotFound

log = logging.getLogger("swarm.daemon")

MAX_BODY = 16 * 1024 * 1024
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
TORRENT_TYPE = "application/x-bittorrent"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


def host_name(host_header: str) -> str:
    """The name of a ``Host`` header without its port: ``[::1]:9091`` -> ``::1``."""
    h = host_header.strip().lower()
    if h.startswith("["):
        return h[1 : h.find("]")] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


def is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class Api:
    """The aiohttp application of one daemon."""

    def __init__(self, daemon: Daemon, *, bound_host: str, token: str | None = None) -> None:
        self.daemon = daemon
        self.bound_host = bound_host.strip("[]").lower()
        self.token = token
        self.wildcard = self.bound_host in ("0.0.0.0", "::", "")

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.guard], client_max_size=MAX_BODY)
        app.router.add_get("/", self.page)
        app.router.add_get("/favicon.ico", self.no_icon)
        app.router.add_get("/api/session", self.session_info)
        app.router.add_get("/api/torrents", self.list)
        app.router.add_post("/api/torrents", self.add)
        app.router.add_get("/api/torrents/{ih}", self.one)
        app.router.add_delete("/api/torrents/{ih}", self.remove)
        app.router.add_get("/api/torrents/{ih}/torrent", self.torrent_file)
        app.router.add_post("/api/torrents/{ih}/pause", self.pause)
        app.router.add_post("/api/torrents/{ih}/resume", self.resume)
        app.router.add_get("/api/events", self.events)
        return app

    # -- the rules ---------------------------------------------------------------------
    def host_allowed(self, host_header: str | None) -> bool:
        if not host_header:
            return False
        name = host_name(host_header)
        return name in LOOPBACK_NAMES or name == self.bound_host or (self.wildcard and is_ip(name))

    def authorized(self, request: web.Request) -> bool:
        if self.token is None:
            return True
        given = request.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self.token.encode())

    @staticmethod
    def cross_origin(request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        if origin is not None and origin.lower() != f"http://{request.host}".lower():
            return True
        return request.headers.get("Sec-Fetch-Site", "").lower() in ("cross-site", "same-site")

    @web.middleware
    async def guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not self.host_allowed(request.headers.get("Host")):
            return error(421, "Host not allowed: use the address the daemon is bound to, or localhost")
        if request.path.startswith("/api/") and not self.authorized(request):
            return error(401, "a token is needed: Authorization: Bearer TOKEN", **{"WWW-Authenticate": "Bearer"})
        if request.method not in SAFE_METHODS and self.cross_origin(request):
            return error(403, "cross-origin request refused")
        if request.content_length is not None and request.content_length > MAX_BODY:
            return error(413, f"body larger than {MAX_BODY} bytes")
        try:
            return await handler(request)
        except web.HTTPRequestEntityTooLarge:
            return error(413, f"body larger than {MAX_BODY} bytes")
        except BadInput as exc:
            return error(400, str(exc))
        except Conflict as exc:
            return error(409, str(exc))
        except NotFound as exc:
            return error(404, str(exc))
        except Forbidden as exc:
            return error(403, str(exc))
        except SwarmError as exc:
            return error(400, str(exc))
        except OSError as exc:  # the daemon's own disk (state files): not the client's fault
            log.error("%s %s: %s", request.method, request.path, exc)
            return error(500, f"the daemon cannot write its state: {exc.strerror or exc}")

    # -- handlers ------------------------------------------------------------------------
    async def page(self, request: web.Request) -> web.Response:
        from .page import CSP, PAGE

        return web.Response(
            text=PAGE, content_type="text/html",
            headers={
                "Content-Security-Policy": CSP,
                "X-Frame-Options": "DENY",
                "Referrer-Policy": "no-referrer",
            },
        )

    async def no_icon(self, request: web.Request) -> web.Response:
        """Browsers ask for it on every page: answered, so their consoles stay clean."""
        return web.Response(status=204)

    async def session_info(self, request: web.Request) -> web.Response:
        d = self.daemon
        return web.json_response(
            {"version": __version__, "peer_port": d.session.port, "dir": str(d.root), "torrents": len(d.torrents)}
        )

    async def list(self, request: web.Request) -> web.Response:
        return web.json_response([m.to_json() for m in self.daemon.torrents.values()])

    async def one(self, request: web.Request) -> web.Response:
        return web.json_response(self.daemon.get(request.match_info["ih"]).to_json())

    async def add(self, request: web.Request) -> web.Response:
        ctype = request.content_type
        if ctype == TORRENT_TYPE:
            q = request.query
            opts = AddOptions.from_json(
                {
                    "dir": q.get("dir"),
                    "files": q.getall("files", None),
                    "sequential": q.get("sequential", "") in ("1", "true"),
                    "paused": q.get("paused", "") in ("1", "true"),
                }
            )
            ih = await self.daemon.add_torrent_bytes(await request.read(), opts)
        elif ctype == "application/json":
            try:
                body: Any = json.loads(await request.read())
            except (ValueError, UnicodeDecodeError) as exc:
                raise BadInput(f"body is not JSON: {exc}") from None
            if not isinstance(body, dict):
                raise BadInput('expected a JSON object with "magnet" or "seed"')
            opts = AddOptions.from_json(body)
            if isinstance(body.get("magnet"), str):
                ih = await self.daemon.add_magnet(body["magnet"], opts)
            elif isinstance(body.get("seed"), str):
                ih = await self.daemon.add_seed(body["seed"], opts)
            else:
                raise BadInput('expected "magnet" (a magnet URI) or "seed" (a path)')
        else:
            raise BadInput(f"Content-Type must be {TORRENT_TYPE} or application/json")
        return web.json_response({"info_hash": ih}, status=201)

    async def torrent_file(self, request: web.Request) -> web.Response:
        m = self.daemon.get(request.match_info["ih"])
        data = self.daemon.store.load_torrent(m.entry.info_hash)
        if data is None:
            raise NotFound(f"{m.entry.info_hash}: no metadata yet")
        name = (m.entry.name or m.entry.info_hash).replace('"', "")
        return web.Response(
            body=data, content_type=TORRENT_TYPE,
            headers={"Content-Disposition": f"attachment; filename*=UTF-8''{_quote(name)}.torrent"},
        )

    async def pause(self, request: web.Request) -> web.Response:
        await self.daemon.pause(request.match_info["ih"])
        return web.Response(status=204)

    async def resume(self, request: web.Request) -> web.Response:
        await self.daemon.resume(request.match_info["ih"])
        return web.Response(status=204)

    async def remove(self, request: web.Request) -> web.Response:
        delete = request.query.get("delete_data", "") in ("1", "true")
        await self.daemon.remove(request.match_info["ih"], delete_data=delete)
        return web.Response(status=204)

    async def events(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson", "Cache-Control": "no-store"})
        await resp.prepare(request)
        q = self.daemon.hub.subscribe()
        try:
            while True:
                line = await q.get()
                if line is None:
                    break
                await resp.write(line.encode() + b"\n")
        except (ConnectionError, RuntimeError):
            pass  # the listener went away
        finally:
            self.daemon.hub.unsubscribe(q)
        return resp


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")
