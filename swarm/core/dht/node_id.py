"""160-bit node ids as ints: XOR distance and bucket arithmetic.

Ids travel as 20 raw bytes but every comparison is on ints, because XOR and
``bit_length`` on ints are what Kademlia's routing is made of.
"""

from __future__ import annotations

import random

from swarm.errors import ProtocolError

ID_BITS = 160
ID_LEN = 20
ID_SPACE = 1 << ID_BITS


def id_to_int(node_id: bytes) -> int:
    if len(node_id) != ID_LEN:
        raise ProtocolError(f"node id must be {ID_LEN} bytes, got {len(node_id)}")
    return int.from_bytes(node_id, "big")


def int_to_id(value: int) -> bytes:
    if not 0 <= value < ID_SPACE:
        raise ValueError("node id out of range")
    return value.to_bytes(ID_LEN, "big")


def distance(a: bytes, b: bytes) -> int:
    """XOR metric between two 20-byte ids."""
    return id_to_int(a) ^ id_to_int(b)


def random_id(rng: random.Random | None = None) -> bytes:
    r = rng or random.SystemRandom()
    return int_to_id(r.getrandbits(ID_BITS))


def random_id_in(lo: int, hi: int, rng: random.Random | None = None) -> bytes:
    """A random id in [lo, hi): the target of a bucket refresh."""
    r = rng or random.SystemRandom()
    return int_to_id(lo + r.randrange(hi - lo))
