"""BEP 52 Merkle trees: SHA-256 over 16 KiB blocks, one tree per file.

A file's leaves are the SHA-256 of each 16 KiB block (the last one may be
shorter); the leaf layer is padded with zero hashes to a power of two and
each parent is SHA-256(left + right). The root is the file's ``pieces root``;
the layer whose nodes each cover one piece is the file's *piece layer* (in
the .torrent's ``piece layers``). A node made only of padding is therefore
not zero but the root of a zero subtree: ``pad_hash(height)``.

Layers are numbered from the leaves up (0 = block hashes), as in BEP 52's
``hash request`` (its ``base layer``). Proofs are "uncle" hashes: the
siblings on the path from a subtree up towards the root, lowest first. For a
request of ``length`` hashes with ``proof layers`` P, libtorrent sends
max(0, P - log2(length) + 1) uncles after the run (``hash_picker.cpp``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache

BLOCK_SIZE = 16 * 1024
HASH_SIZE = 32
ZERO_HASH = bytes(HASH_SIZE)


def _pair(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(left + right).digest()


@lru_cache(maxsize=64)
def pad_hash(height: int) -> bytes:
    """Root of a subtree of 2**height zero leaves (the padding at that layer)."""
    if height < 0:
        raise ValueError("negative height")
    node = ZERO_HASH
    for _ in range(height):
        node = _pair(node, node)
    return node


def log2(n: int) -> int:
    """Exact log2 of a power of two; ValueError otherwise."""
    if n <= 0 or n & (n - 1):
        raise ValueError(f"{n} is not a power of two")
    return n.bit_length() - 1


def next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def block_count(length: int) -> int:
    """16 KiB blocks in a file of ``length`` bytes."""
    return -(-length // BLOCK_SIZE)


def leaf_hashes(data: bytes | bytearray | memoryview) -> list[bytes]:
    """SHA-256 of each 16 KiB block of ``data`` (the last may be shorter)."""
    view = memoryview(data)
    sha256 = hashlib.sha256
    return [sha256(view[i : i + BLOCK_SIZE]).digest() for i in range(0, len(view), BLOCK_SIZE)]


def next_layer(nodes: Sequence[bytes], pad: bytes) -> list[bytes]:
    """Parents of ``nodes``; an odd last node is paired with ``pad``."""
    out = [_pair(nodes[i], nodes[i + 1]) for i in range(0, len(nodes) - 1, 2)]
    if len(nodes) % 2:
        out.append(_pair(nodes[-1], pad))
    return out


def root(nodes: Sequence[bytes], width: int | None = None, height: int = 0) -> bytes:
    """Root of ``nodes`` (a layer at ``height`` above the leaves) padded to
    ``width`` nodes (a power of two; default: the next power of two)."""
    count = len(nodes)
    width = next_pow2(count) if width is None else width
    if count > width or width & (width - 1) or width <= 0:
        raise ValueError(f"{count} nodes do not fit a tree {width} wide")
    if count == 0:
        return pad_hash(height + log2(width))
    layer = list(nodes)
    while width > 1:
        layer = next_layer(layer, pad_hash(height))
        width //= 2
        height += 1
    return layer[0]


def layers(nodes: Sequence[bytes], height: int = 0) -> list[list[bytes]]:
    """Every layer from ``nodes`` (at ``height``) up to the root, unpadded:
    layer ``k`` of the result has the real nodes at height ``height + k``."""
    out = [list(nodes)]
    width = next_pow2(len(nodes))
    while width > 1:
        out.append(next_layer(out[-1], pad_hash(height + len(out) - 1)))
        width //= 2
    return out


def file_root(leaves: Sequence[bytes]) -> bytes:
    """A file's ``pieces root`` from its block hashes."""
    return root(leaves)


def piece_layer(leaves: Sequence[bytes], piece_length: int) -> list[bytes]:
    """The piece layer of a file from its block hashes: one hash per piece,
    the last piece's missing blocks counting as zero hashes."""
    per_piece = piece_length // BLOCK_SIZE
    return [root(leaves[i : i + per_piece], per_piece) for i in range(0, len(leaves), per_piece)]


def root_from_piece_layer(hashes: Sequence[bytes], piece_length: int) -> bytes:
    """The ``pieces root`` a piece layer hashes up to (pad pieces are zero subtrees)."""
    return root(hashes, height=log2(piece_length // BLOCK_SIZE))


def piece_hash(blocks: bytes | bytearray | memoryview, piece_length: int, file_length: int) -> bytes:
    """What a piece's data must hash to: its piece-layer entry, or for a
    file of at most one piece the file's root (whose tree is only as wide as
    the file's blocks, not the piece's)."""
    leaves = leaf_hashes(blocks)
    if file_length <= piece_length:
        return root(leaves, next_pow2(block_count(file_length)))
    return root(leaves, piece_length // BLOCK_SIZE)


# ----------------------------------------------------------------- proofs


def uncles(
    tree: Sequence[Sequence[bytes]], layer: int, index: int, count: int, num: int, base: int = 0
) -> list[bytes]:
    """Proof for the run ``[index, index + count)`` of ``tree[layer]``, where
    ``tree`` is ``layers(nodes, base)``: ``num`` sibling hashes from the run's
    subtree root upwards, lowest first (what a BEP 52 ``hashes`` message
    carries after the run). ``count`` is a power of two dividing ``index``.
    """
    if count <= 0 or count & (count - 1) or index % count:
        raise ValueError("a run is a power-of-two count at a multiple of it")
    level = layer + log2(count)
    position = index // count
    out = []
    for h in range(level, level + num):
        if h >= len(tree) - 1:
            raise ValueError("the proof would reach above the root")
        nodes = tree[h]
        sibling = position ^ 1
        out.append(nodes[sibling] if sibling < len(nodes) else pad_hash(base + h))
        position //= 2
    return out


def root_from_proof(
    run: Sequence[bytes], height: int, index: int, count: int, proof: Sequence[bytes]
) -> bytes:
    """Climb from the run ``[index, index + count)`` at ``height`` through
    ``proof`` (lowest uncle first); returns the node the proof ends at.
    Missing nodes at the end of the run are padding (the end of a file)."""
    if count <= 0 or count & (count - 1) or index % count or len(run) > count:
        raise ValueError("a run is a power-of-two count at a multiple of it")
    node = root(run, count, height)
    position = index // count
    for uncle in proof:
        node = _pair(uncle, node) if position & 1 else _pair(node, uncle)
        position //= 2
    return node


def verify_proof(
    run: Sequence[bytes],
    height: int,
    index: int,
    count: int,
    proof: Sequence[bytes],
    expected: bytes,
) -> bool:
    """True when ``run`` plus ``proof`` hash up to ``expected`` (a known
    ancestor, usually the file's ``pieces root``). Malformed input is False."""
    if any(len(h) != HASH_SIZE for h in run) or any(len(h) != HASH_SIZE for h in proof):
        return False
    try:
        return root_from_proof(run, height, index, count, proof) == expected
    except ValueError:
        return False
