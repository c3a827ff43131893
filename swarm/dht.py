"""The DHT node's UDP glue: sockets, timers and transactions around swarm.core.dht.

All decisions (routing, lookups, tokens, limits, where we may send) are made
in the pure core; this module moves datagrams and wakes lookups up. Nothing
raised while handling a datagram escapes ``datagram_received``: a hostile
packet costs a debug log line and nothing else.

A node bound to a loopback address sends only to loopback addresses: it has
no default bootstrap routers, does not resolve host names, and ignores every
node or peer outside loopback that it hears about.

Use from the engine::

    node = DHTNode(host, 0, bootstrap=[parse_hostport(s) for s in args.dht_bootstrap] or None,
                   state_file=state_dir / "dht.state")
    await node.start()                       # binds, bootstraps (bounded wait)
    async for peer in node.iter_peers(ih):   # or: await node.get_peers(ih)
        ...
    await node.announce(ih, listen_port)     # every ~15 min while active
    node.add_node(peer_ip, port)             # on a BEP 5 ``port`` wire message
    await node.close()                       # saves the table
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from swarm.core.dht.krpc import (
    METHOD_UNKNOWN,
    PROTOCOL_ERROR,
    AnnouncePeer,
    Error,
    FindNode,
    GetPeers,
    KRPCError,
    Message,
    NodeInfo,
    Peer,
    Ping,
    Query,
    Response,
    decode_message,
    encode_message,
)
from swarm.core.dht.lookup import Lookup, LookupResult
from swarm.core.dht.node_id import random_id
from swarm.core.dht.peer_store import PeerStore
from swarm.core.dht.policy import address_allowed, default_bootstrap, is_loopback
from swarm.core.dht.ratelimit import RateLimiter
from swarm.core.dht.routing import RoutingTable, load_state
from swarm.core.dht.tokens import TokenManager
from swarm.errors import SwarmError

log = logging.getLogger("swarm.dht")

VERSION = b"SW\x00\x01"
#: Outstanding queries we track at once; more and new queries fail at once.
MAX_PENDING = 2048
#: Concurrent liveness/verification pings.
MAX_PINGS = 64
#: Seconds between saves of the routing table (besides the one on close).
SAVE_EVERY = 600.0
#: Per-source incoming packets: rate per second and burst.
DEFAULT_RATE = (100.0, 200.0)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, node: DHTNode) -> None:
        self.node = node

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            self.node.on_datagram(data, addr)
        except Exception:  # never let one packet kill the node
            log.debug("dht: error handling a datagram from %s", addr, exc_info=True)

    def error_received(self, exc: Exception) -> None:
        log.debug("dht: socket error: %s", exc)


async def _cancel_all(tasks: set[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until they end. Python 3.11's ``wait_for`` can swallow
    a cancel that lands as its inner wait times out: a task still running a second
    later is cancelled again (awaiting it once hung ``close()``)."""
    for task in tasks:
        task.cancel()
    while tasks:
        done, tasks = await asyncio.wait(tasks, timeout=1.0)
        for task in done:
            if not task.cancelled():
                task.exception()  # retrieved: a failure on the way out is not news
        for task in tasks:
            task.cancel()


class DHTNode:
    """A mainline DHT node (BEP 5) on one UDP socket.

    ``bootstrap=None`` means the public routers unless ``host`` is loopback
    (then none); pass ``()`` for none at all.
    """

    def __init__(
        self,
        host: str = "0.0.0.0",
        port: int = 0,
        *,
        bootstrap: Sequence[tuple[str, int]] | None = None,
        state_file: Path | None = None,
        node_id: bytes | None = None,
        query_timeout: float = 2.0,
        rate_limit: tuple[float, float] = DEFAULT_RATE,
        peer_store: PeerStore | None = None,
        maintenance_interval: float = 30.0,
    ) -> None:
        if node_id is not None and len(node_id) != 20:
            raise ValueError("node_id must be 20 bytes")
        self.host = host
        self._want_port = port
        self.loopback_only = is_loopback(host)
        self._bootstrap_spec = tuple(default_bootstrap(host) if bootstrap is None else bootstrap)
        self.state_file = state_file
        self.node_id = node_id or b""
        self.query_timeout = query_timeout
        self.maintenance_interval = maintenance_interval
        self.store = peer_store if peer_store is not None else PeerStore()
        self._limiter = RateLimiter(*rate_limit)
        self._family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._transport: asyncio.DatagramTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._table: RoutingTable | None = None
        self._tokens: TokenManager | None = None
        self._pending: dict[bytes, tuple[Peer, asyncio.Future[Message]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pinging: set[Peer] = set()
        self._bootstrap_addrs: list[Peer] = []
        self._saved_nodes: list[NodeInfo] = []
        self._port = 0
        self._closed = False
        self.stats: dict[str, int] = {
            "received": 0,
            "malformed": 0,
            "rate_limited": 0,
            "refused_addr": 0,
            "queries": 0,
            "responses": 0,
            "sent": 0,
            "blocked_send": 0,
        }

    # -- public API -------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    def node_count(self) -> int:
        return len(self._table) if self._table is not None else 0

    @property
    def table(self) -> RoutingTable:
        if self._table is None:
            raise SwarmError("DHT node not started")
        return self._table

    async def start(self, *, wait: bool = True, bootstrap_timeout: float = 10.0) -> None:
        """Bind the socket and bootstrap (find_node of our own id).

        With ``wait`` the call returns once the bootstrap lookup has finished or
        ``bootstrap_timeout`` has passed; otherwise it runs in the background.
        """
        self._loop = loop = asyncio.get_running_loop()
        if self.state_file is not None:
            await self._load_state(self.state_file)
        if not self.node_id:
            self.node_id = random_id()
        now = loop.time()
        self._table = RoutingTable(self.node_id, now)
        self._tokens = TokenManager(now)
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Protocol(self),
                local_addr=(self.host, self._want_port),
                family=self._family,
            )
        except OSError as exc:
            raise SwarmError(
                f"DHT cannot bind UDP {self.host}:{self._want_port}: {exc.strerror or exc}"
            ) from exc
        self._transport = transport
        self._port = transport.get_extra_info("sockname")[1]
        self._bootstrap_addrs = await self._resolve_bootstrap()
        log.debug("dht: listening on %s:%d, id %s", self.host, self._port, self.node_id.hex())
        self._spawn(self._maintenance())
        if wait:
            await self._bootstrap(bootstrap_timeout)
        else:
            self._spawn(self._bootstrap(bootstrap_timeout))

    async def close(self) -> None:
        """Stop timers, fail outstanding queries, close the socket, save the table."""
        if self._closed:
            return
        self._closed = True
        await _cancel_all(set(self._tasks))
        for _, fut in self._pending.values():
            if not fut.done():
                fut.cancel()
        self._pending.clear()
        if self._transport is not None:
            self._transport.close()
        if self.state_file is not None and self._table is not None:
            data = self._table.to_bytes()
            await asyncio.to_thread(_write_atomic, self.state_file, data)

    async def __aenter__(self) -> DHTNode:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def add_node(self, host: str, port: int) -> None:
        """A node we heard of (the BEP 5 ``port`` peer message): ping it; if it
        answers it joins the table."""
        if self._address_ok(host, port):
            self._ping((host, port))

    async def get_peers(self, info_hash: bytes, timeout: float = 30.0) -> list[Peer]:
        """Every peer found by a get_peers lookup of ``info_hash`` (and our own store)."""
        result = await self._lookup(info_hash, get_peers=True, timeout=timeout)
        found = dict.fromkeys(result.peers)
        found.update(dict.fromkeys(self._local_peers(info_hash)))
        return list(found)

    async def iter_peers(self, info_hash: bytes, timeout: float = 30.0) -> AsyncIterator[Peer]:
        """Yield peers of ``info_hash`` as the lookup finds them."""
        queue: asyncio.Queue[list[Peer] | None] = asyncio.Queue()
        local = self._local_peers(info_hash)
        if local:
            queue.put_nowait(local)
        seen: set[Peer] = set()
        task = asyncio.ensure_future(
            self._lookup(info_hash, get_peers=True, timeout=timeout, on_peers=queue.put_nowait)
        )
        task.add_done_callback(lambda _t: queue.put_nowait(None))
        try:
            while (batch := await queue.get()) is not None:
                for peer in batch:
                    if peer not in seen:
                        seen.add(peer)
                        yield peer
        finally:
            await _cancel_all({task})

    async def announce(
        self,
        info_hash: bytes,
        port: int,
        implied_port: bool = False,
        timeout: float = 30.0,
        *,
        on_peers: Callable[[list[Peer]], object] | None = None,
    ) -> int:
        """Announce that we serve ``info_hash`` on ``port`` to the k closest nodes.

        An announce is a get_peers lookup first: ``on_peers`` receives the
        peers it finds on the way. Returns how many nodes acknowledged.
        """
        result = await self._lookup(info_hash, get_peers=True, timeout=timeout, on_peers=on_peers)
        targets = [(n, tok) for n, tok in result.closest if tok is not None]

        async def one(node: NodeInfo, token: bytes) -> bool:
            reply = await self._query(
                node.addr,
                lambda t: AnnouncePeer(t, self.node_id, info_hash, port, token, implied_port),
            )
            return isinstance(reply, Response)

        acks = await asyncio.gather(*(one(n, tok) for n, tok in targets))
        return sum(acks)

    async def find_node(self, target: bytes, timeout: float = 30.0) -> list[NodeInfo]:
        """The k closest nodes to ``target`` that answered us."""
        result = await self._lookup(target, get_peers=False, timeout=timeout)
        return [n for n, _ in result.closest]

    async def ping(self, host: str, port: int) -> bool:
        """True if the node at (host, port) answered a ping."""
        if not self._address_ok(host, port):
            return False
        reply = await self._query((host, port), lambda t: Ping(t, self.node_id))
        return isinstance(reply, Response)

    # -- addresses --------------------------------------------------------------

    def _address_ok(self, host: str, port: int) -> bool:
        if not address_allowed(host, port, self.loopback_only):
            return False
        return (":" in host) == (self._family == socket.AF_INET6)

    def _local_peers(self, info_hash: bytes) -> list[Peer]:
        now = self._now()
        return [p for p in self.store.get(info_hash, now) if self._peer_ok(p)]

    def _peer_ok(self, peer: Peer) -> bool:
        return address_allowed(peer[0], peer[1], self.loopback_only)

    async def _resolve_bootstrap(self) -> list[Peer]:
        out: list[Peer] = []
        assert self._loop is not None
        for host, port in self._bootstrap_spec:
            if self.loopback_only:
                # No DNS: a lookup would itself be a packet off the machine.
                if host == "localhost":
                    host = "::1" if self._family == socket.AF_INET6 else "127.0.0.1"
                if not self._address_ok(host, port):
                    log.warning(
                        "dht: ignoring bootstrap %s:%d (node bound to loopback)", host, port
                    )
                    continue
                out.append((host, port))
                continue
            try:
                infos = await self._loop.getaddrinfo(
                    host, port, family=self._family, type=socket.SOCK_DGRAM
                )
            except OSError as exc:
                log.info("dht: cannot resolve bootstrap %s: %s", host, exc)
                continue
            for info in infos:
                addr = (str(info[4][0]), int(info[4][1]))
                if self._address_ok(*addr) and addr not in out:
                    out.append(addr)
        return out

    # -- sending and transactions -----------------------------------------------

    def _now(self) -> float:
        return self._loop.time() if self._loop is not None else 0.0

    def _send(self, msg: Message, addr: Peer) -> None:
        # The one place a datagram leaves: the address policy is enforced here too.
        if self._transport is None or self._closed or not self._address_ok(*addr):
            self.stats["blocked_send"] += 1
            return
        self.stats["sent"] += 1
        self._transport.sendto(encode_message(msg, VERSION), addr)

    def _next_tid(self) -> bytes:
        # Random, not sequential: an off-path forger must guess it (and our port).
        for _ in range(8):
            t = os.urandom(2)
            if t not in self._pending:
                return t
        while (t := os.urandom(4)) in self._pending:
            pass
        return t

    async def _query(self, addr: Peer, build: Callable[[bytes], Query]) -> Message | None:
        """Send a query and wait for its answer; None on timeout or refusal."""
        if self._loop is None or self._closed or len(self._pending) >= MAX_PENDING:
            return None
        if not self._address_ok(*addr):
            self.stats["blocked_send"] += 1
            return None
        t = self._next_tid()
        fut: asyncio.Future[Message] = self._loop.create_future()
        self._pending[t] = (addr, fut)
        try:
            self._send(build(t), addr)
            try:
                reply = await asyncio.wait_for(fut, self.query_timeout)
            except TimeoutError:
                reply = None
            if isinstance(reply, Response):
                if reply.id != self.node_id and self._table is not None:
                    for info in self._table.on_response(reply.id, addr[0], addr[1], self._now()):
                        self._ping(info.addr)
            elif reply is None and self._table is not None:
                known = self._table.get_by_addr(*addr)
                if known is not None:
                    self._table.failed(known.id, self._now())
            return reply
        finally:
            entry = self._pending.get(t)
            if entry is not None and entry[1] is fut:
                del self._pending[t]

    def _ping(self, addr: Peer) -> None:
        if addr in self._pinging or len(self._pinging) >= MAX_PINGS or self._closed:
            return
        self._pinging.add(addr)

        async def go() -> None:
            try:
                await self._query(addr, lambda t: Ping(t, self.node_id))
            finally:
                self._pinging.discard(addr)

        self._spawn(go())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- incoming ---------------------------------------------------------------

    def on_datagram(self, data: bytes, addr: Any) -> None:
        self.stats["received"] += 1
        host, port = str(addr[0]), int(addr[1])
        if not self._address_ok(host, port):
            self.stats["refused_addr"] += 1
            return
        now = self._now()
        key: Any = (host, port) if self.loopback_only else host
        if not self._limiter.allow(key, now):
            self.stats["rate_limited"] += 1
            return
        try:
            msg = decode_message(data)
        except KRPCError as exc:
            self.stats["malformed"] += 1
            log.debug("dht: malformed datagram from %s:%d: %s", host, port, exc)
            if exc.t is not None and exc.code == METHOD_UNKNOWN:
                self._send(Error(exc.t, METHOD_UNKNOWN, "Method Unknown"), (host, port))
            return
        if isinstance(msg, (Response, Error)):
            entry = self._pending.get(msg.t)
            if entry is None or entry[0] != (host, port) or entry[1].done():
                return  # unsolicited, late, or spoofed from another address
            self.stats["responses"] += 1
            entry[1].set_result(msg)
            return
        self.stats["queries"] += 1
        self._answer(msg, host, port, now)

    def _answer(self, q: Query, host: str, port: int, now: float) -> None:
        table, tokens = self._table, self._tokens
        assert table is not None and tokens is not None
        if not q.read_only and q.id != self.node_id and table.on_query(q.id, host, port, now):
            self._ping((host, port))
        reply: Message
        if isinstance(q, Ping):
            reply = Response(q.t, self.node_id)
        elif isinstance(q, FindNode):
            reply = self._nodes_reply(q.t, q.target)
        elif isinstance(q, GetPeers):
            base = self._nodes_reply(q.t, q.info_hash)
            values = tuple(self.store.get(q.info_hash, now))
            reply = Response(
                q.t, self.node_id, base.nodes, base.nodes6, values, tokens.token_for(host, now)
            )
        else:
            if not tokens.check(q.token, host, now):
                reply = Error(q.t, PROTOCOL_ERROR, "Bad token")
            else:
                peer_port = port if q.implied_port else q.port
                self.store.add(q.info_hash, (host, peer_port), now)
                reply = Response(q.t, self.node_id)
        self._send(reply, (host, port))

    def _nodes_reply(self, t: bytes, target: bytes) -> Response:
        assert self._table is not None
        closest = self._table.closest(target)
        if self._family == socket.AF_INET6:
            return Response(t, self.node_id, nodes6=tuple(closest))
        return Response(t, self.node_id, nodes=tuple(closest))

    # -- lookups ----------------------------------------------------------------

    def _seeds(self, target: bytes) -> list[NodeInfo | Peer]:
        table = self.table
        seeds: list[NodeInfo | Peer] = list(table.closest(target, 16))
        if len(seeds) < table.k:
            seeds.extend(n for n in self._saved_nodes if self._address_ok(n.host, n.port))
            seeds.extend(self._bootstrap_addrs)
        return seeds

    async def _lookup(
        self,
        target: bytes,
        *,
        get_peers: bool,
        timeout: float,
        on_peers: Callable[[list[Peer]], Any] | None = None,
    ) -> LookupResult:
        if self._loop is None or self._table is None:
            raise SwarmError("DHT node not started")
        loop = self._loop
        lk = Lookup(
            target,
            self._seeds(target),
            get_peers=get_peers,
            own_id=self.node_id,
            timeout=self.query_timeout + 0.5,
        )
        wake = asyncio.Event()
        tasks: set[asyncio.Task[None]] = set()

        async def ask(addr: Peer) -> None:
            def build(t: bytes) -> Query:
                if get_peers:
                    return GetPeers(t, self.node_id, target)
                return FindNode(t, self.node_id, target)

            try:
                reply = await self._query(addr, build)
                now = loop.time()
                if isinstance(reply, Response):
                    nodes = [
                        n
                        for n in reply.nodes + reply.nodes6
                        if n.id != self.node_id and self._address_ok(n.host, n.port)
                    ]
                    values = [p for p in reply.values if self._peer_ok(p)]
                    fresh = lk.on_response(addr, reply.id, nodes, values, reply.token, now)
                    if fresh and on_peers is not None:
                        on_peers(fresh)
                else:
                    lk.on_timeout(addr, now)
            finally:
                wake.set()

        deadline = loop.time() + timeout
        try:
            while True:
                for action in lk.next_queries(loop.time()):
                    task = asyncio.ensure_future(ask(action.addr))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                if lk.done or (lk.inflight == 0 and not tasks):
                    break
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), min(remaining, self.query_timeout + 1))
        finally:
            for task in list(tasks):
                task.cancel()
        result = lk.result()
        log.debug(
            "dht: lookup %s done: %d queries, %d closest, %d peers",
            target.hex()[:8],
            result.queries,
            len(result.closest),
            len(result.peers),
        )
        return result

    async def _bootstrap(self, timeout: float) -> None:
        try:
            await self._lookup(self.node_id, get_peers=False, timeout=timeout)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.debug("dht: bootstrap failed", exc_info=True)

    async def _maintenance(self) -> None:
        last_save = self._now()
        while True:
            await asyncio.sleep(self.maintenance_interval)
            try:
                now = self._now()
                table = self.table
                self.store.expire(now)
                for info in table.to_ping(now):
                    self._ping(info.addr)
                if len(table) == 0:
                    await self._bootstrap(10.0)
                for target in table.refresh_due(now)[:4]:
                    await self._lookup(target, get_peers=False, timeout=10.0)
                if self.state_file is not None and now - last_save >= SAVE_EVERY and len(table):
                    # Also on a timer, so a crash does not lose the table.
                    last_save = now
                    await asyncio.to_thread(_write_atomic, self.state_file, table.to_bytes())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.debug("dht: maintenance failed", exc_info=True)

    # -- state ------------------------------------------------------------------

    async def _load_state(self, path: Path) -> None:
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return
        except OSError as exc:
            log.info("dht: cannot read %s: %s", path, exc)
            return
        try:
            own, nodes = load_state(data)
        except KRPCError as exc:
            log.info("dht: ignoring bad state file %s: %s", path, exc)
            return
        if not self.node_id:
            self.node_id = own
        self._saved_nodes = nodes


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_bytes(data)
    os.replace(tmp, path)
