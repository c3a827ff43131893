"""A naive BEP 52 reference for tests: Merkle trees and v2/hybrid .torrent
building written straight from the BEP, sharing no code with swarm.core."""

from __future__ import annotations

import hashlib
from typing import Any

from swarm.core.bencode import encode

BLOCK = 16384


def sha(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def pow2(n: int) -> int:
    w = 1
    while w < n:
        w *= 2
    return w


def naive_tree(leaves: list[bytes], width: int) -> list[list[bytes]]:
    """Every layer, the leaves padded with zero hashes to ``width``."""
    layer = leaves + [bytes(32)] * (width - len(leaves))
    out = [layer]
    while len(layer) > 1:
        layer = [sha(layer[i] + layer[i + 1]) for i in range(0, len(layer), 2)]
        out.append(layer)
    return out


def naive_file(data: bytes) -> list[list[bytes]]:
    leaves = [sha(data[i : i + BLOCK]) for i in range(0, len(data), BLOCK)]
    return naive_tree(leaves, pow2(len(leaves)))


def root_and_layer(data: bytes, piece_length: int) -> tuple[bytes, bytes | None]:
    """(pieces root, piece layer or None for a file of at most one piece)."""
    tree = naive_file(data)
    if len(data) <= piece_length:
        return tree[-1][0], None
    height = (piece_length // BLOCK).bit_length() - 1
    return tree[-1][0], b"".join(tree[height][: -(-len(data) // piece_length)])


def v2_torrent(
    files: dict[tuple[bytes, ...], bytes],
    piece_length: int,
    *,
    name: bytes = b"root",
    hybrid: bool = False,
    single: bool = False,
    extra_info: dict[bytes, Any] | None = None,
) -> tuple[bytes, dict[bytes, Any], dict[bytes, bytes]]:
    """(.torrent bytes, info dict, piece layers) for ``files`` (paths in the
    torrent, without the name). Hybrids get pad files after every file but the last."""
    tree: dict[bytes, Any] = {}
    layers: dict[bytes, bytes] = {}
    v1_files: list[dict[bytes, Any]] = []
    stream = b""
    order = sorted(files)
    for i, path in enumerate(order):
        data = files[path]
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        leaf: dict[bytes, Any] = {b"length": len(data)}
        if data:
            root, layer = root_and_layer(data, piece_length)
            leaf[b"pieces root"] = root
            if layer is not None:
                layers[root] = layer
        node[path[-1]] = {b"": leaf}
        v1_files.append({b"length": len(data), b"path": list(path)})
        stream += data
        if data and i < len(order) - 1 and len(data) % piece_length:
            gap = piece_length - len(data) % piece_length
            v1_files.append({b"attr": b"p", b"length": gap, b"path": [b".pad", b"%d" % gap]})
            stream += bytes(gap)
    info: dict[bytes, Any] = {
        b"file tree": tree,
        b"meta version": 2,
        b"name": order[0][0] if single else name,
        b"piece length": piece_length,
    }
    if hybrid:
        info[b"pieces"] = b"".join(
            hashlib.sha1(stream[i : i + piece_length]).digest()
            for i in range(0, len(stream), piece_length)
        )
        if single:
            info[b"length"] = len(stream)
        else:
            info[b"files"] = v1_files
    info.update(extra_info or {})
    top: dict[bytes, Any] = {b"info": info}
    if layers:
        top[b"piece layers"] = layers
    return encode(top), info, layers
