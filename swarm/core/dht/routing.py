"""Kademlia routing table (BEP 5): k-buckets over the 160-bit id space.

Only the bucket holding our own id splits, so the table knows the id space
near us in detail and the far side coarsely (about k * log2(n) nodes).
Decisions that need I/O come back as actions: ``insert`` returns the
questionable nodes to ping before a newcomer may take their place; a failed
ping (``failed``) turns them bad and lets the newcomer in.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass

from swarm.core.bencode import decode, encode
from swarm.core.dht.krpc import KRPCError, NodeInfo, decode_nodes, encode_nodes
from swarm.core.dht.node_id import ID_BITS, ID_SPACE, id_to_int, random_id_in
from swarm.errors import BencodeError

K = 8
GOOD_FOR = 15 * 60.0
REFRESH_AFTER = 15 * 60.0
MAX_FAILS = 2
#: Do not ping the same questionable node again within this many seconds.
PING_BACKOFF = 30.0
#: Largest state file we read back (160 buckets x 8 nodes x 38 bytes < 50 KB).
MAX_STATE = 128 * 1024


@dataclass(slots=True)
class Node:
    id: bytes
    host: str
    port: int
    int_id: int
    last_response: float | None = None
    last_query: float = float("-inf")
    fails: int = 0
    pinged_at: float = float("-inf")

    @property
    def info(self) -> NodeInfo:
        return NodeInfo(self.id, self.host, self.port)

    def state(self, now: float) -> str:
        """'good', 'questionable' or 'bad' (BEP 5's three states)."""
        if self.fails >= MAX_FAILS:
            return "bad"
        if self.last_response is not None and (
            now - self.last_response < GOOD_FOR or now - self.last_query < GOOD_FOR
        ):
            return "good"
        return "questionable"


@dataclass(slots=True)
class Bucket:
    lo: int
    hi: int
    nodes: list[Node]
    replacements: list[Node]
    last_changed: float

    def covers(self, value: int) -> bool:
        return self.lo <= value < self.hi


class RoutingTable:
    def __init__(self, own_id: bytes, now: float, k: int = K) -> None:
        self.own_id = own_id
        self.own_int = id_to_int(own_id)
        self.k = k
        self.buckets: list[Bucket] = [Bucket(0, ID_SPACE, [], [], now)]
        self._by_id: dict[bytes, Node] = {}
        self._by_addr: dict[tuple[str, int], Node] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, node_id: bytes) -> Node | None:
        return self._by_id.get(node_id)

    def get_by_addr(self, host: str, port: int) -> Node | None:
        return self._by_addr.get((host, port))

    def nodes(self) -> list[Node]:
        return [n for b in self.buckets for n in b.nodes]

    def _bucket_index(self, value: int) -> int:
        return bisect.bisect_right([b.lo for b in self.buckets], value) - 1

    def bucket_for(self, node_id: bytes) -> Bucket:
        return self.buckets[self._bucket_index(id_to_int(node_id))]

    # -- events ---------------------------------------------------------------

    def on_response(self, node_id: bytes, host: str, port: int, now: float) -> list[NodeInfo]:
        """The node answered one of our queries: it is good. Returns nodes to ping."""
        node = self._by_id.get(node_id)
        if node is not None:
            if (node.host, node.port) != (host, port):
                return []  # an id moving address is more likely spoofed than real
            node.last_response = now
            node.fails = 0
            self.bucket_for(node_id).last_changed = now
            return []
        new = Node(node_id, host, port, id_to_int(node_id), last_response=now)
        return self._insert(new, now)

    def on_query(self, node_id: bytes, host: str, port: int, now: float) -> bool:
        """The node queried us. Returns True if it is unknown and worth a ping
        (only a node that answers us may enter the table)."""
        if node_id == self.own_id:
            return False
        node = self._by_id.get(node_id)
        if node is not None:
            if (node.host, node.port) == (host, port):
                node.last_query = now
            return False
        if (host, port) in self._by_addr:
            return False
        bucket = self.bucket_for(node_id)
        return (
            len(bucket.nodes) < self.k
            or bucket.covers(self.own_int)
            or any(n.state(now) != "good" for n in bucket.nodes)
        )

    def failed(self, node_id: bytes, now: float) -> None:
        """A query to the node timed out; after MAX_FAILS a replacement takes its place."""
        node = self._by_id.get(node_id)
        if node is None:
            return
        node.fails += 1
        if node.fails < MAX_FAILS:
            return
        bucket = self.bucket_for(node_id)
        if bucket.replacements:
            self._remove(bucket, node)
            newcomer = bucket.replacements.pop()
            self._add(bucket, newcomer, now)

    # -- insertion ------------------------------------------------------------

    def _add(self, bucket: Bucket, node: Node, now: float) -> None:
        bucket.nodes.append(node)
        bucket.last_changed = now
        self._by_id[node.id] = node
        self._by_addr[(node.host, node.port)] = node

    def _remove(self, bucket: Bucket, node: Node) -> None:
        bucket.nodes.remove(node)
        del self._by_id[node.id]
        self._by_addr.pop((node.host, node.port), None)

    def _split(self, index: int) -> None:
        bucket = self.buckets[index]
        mid = (bucket.lo + bucket.hi) // 2
        low = Bucket(bucket.lo, mid, [], [], bucket.last_changed)
        high = Bucket(mid, bucket.hi, [], [], bucket.last_changed)
        for n in bucket.nodes:
            (low if n.int_id < mid else high).nodes.append(n)
        for n in bucket.replacements:
            (low if n.int_id < mid else high).replacements.append(n)
        self.buckets[index : index + 1] = [low, high]

    def _insert(self, node: Node, now: float) -> list[NodeInfo]:
        if node.id == self.own_id or (node.host, node.port) in self._by_addr:
            return []
        while True:
            index = self._bucket_index(node.int_id)
            bucket = self.buckets[index]
            if len(bucket.nodes) < self.k:
                self._add(bucket, node, now)
                return []
            if bucket.covers(self.own_int) and bucket.hi - bucket.lo > self.k:
                self._split(index)
                continue
            break
        for old in bucket.nodes:
            if old.state(now) == "bad":
                self._remove(bucket, old)
                self._add(bucket, node, now)
                return []
        # Full of good or questionable nodes: keep the newcomer in reserve and
        # ask the caller to ping the questionable ones.
        if all(r.id != node.id for r in bucket.replacements):
            bucket.replacements.append(node)
            if len(bucket.replacements) > self.k:
                bucket.replacements.pop(0)
        to_ping = []
        for old in bucket.nodes:
            if old.state(now) == "questionable" and now - old.pinged_at >= PING_BACKOFF:
                old.pinged_at = now
                to_ping.append(old.info)
        return to_ping

    # -- queries --------------------------------------------------------------

    def closest(self, target: bytes, count: int | None = None) -> list[NodeInfo]:
        """The ``count`` (default k) non-bad nodes nearest ``target`` by XOR."""
        want = self.k if count is None else count
        t = id_to_int(target)
        live = [n for n in self._by_id.values() if n.fails < MAX_FAILS]
        live.sort(key=lambda n: n.int_id ^ t)
        return [n.info for n in live[:want]]

    def refresh_due(self, now: float, rng: random.Random | None = None) -> list[bytes]:
        """Random targets in each bucket idle for REFRESH_AFTER; marks them refreshed."""
        targets = []
        for b in self.buckets:
            if now - b.last_changed >= REFRESH_AFTER:
                b.last_changed = now
                targets.append(random_id_in(b.lo, b.hi, rng))
        return targets

    def to_ping(self, now: float) -> list[NodeInfo]:
        """Questionable nodes due for a liveness ping (marks them pinged)."""
        out = []
        for n in self._by_id.values():
            if n.state(now) == "questionable" and now - n.pinged_at >= PING_BACKOFF:
                n.pinged_at = now
                out.append(n.info)
        return out

    def depth(self) -> int:
        """Number of splits so far (bucket count - 1); at most ID_BITS."""
        return min(len(self.buckets) - 1, ID_BITS)

    # -- persistence ----------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Our id and the non-bad nodes, compact, for the state directory."""
        v4 = [n.info for n in self._by_id.values() if n.fails < MAX_FAILS and ":" not in n.host]
        v6 = [n.info for n in self._by_id.values() if n.fails < MAX_FAILS and ":" in n.host]
        return encode({b"id": self.own_id, b"nodes": encode_nodes(v4), b"nodes6": encode_nodes(v6)})


def load_state(data: bytes) -> tuple[bytes, list[NodeInfo]]:
    """Parse ``RoutingTable.to_bytes``: our saved id and the nodes to bootstrap from.

    Loaded nodes are only lookup seeds; they enter the table when they answer.
    """
    try:
        state = decode(data, max_size=MAX_STATE, max_depth=4)
    except BencodeError as exc:
        raise KRPCError(f"bad DHT state: {exc}") from None
    if not isinstance(state, dict):
        raise KRPCError("bad DHT state: not a dict")
    own = state.get(b"id")
    raw4 = state.get(b"nodes", b"")
    raw6 = state.get(b"nodes6", b"")
    if not isinstance(own, bytes) or len(own) != 20:
        raise KRPCError("bad DHT state: id")
    if not isinstance(raw4, bytes) or not isinstance(raw6, bytes):
        raise KRPCError("bad DHT state: nodes")
    limit = MAX_STATE // 26
    nodes = list(decode_nodes(raw4, max_nodes=limit)) + list(
        decode_nodes(raw6, ipv6=True, max_nodes=limit)
    )
    return own, nodes
