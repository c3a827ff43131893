"""BEP 52 hash exchange (swarm.core.hashes): requests checked, answered,
verified against ``pieces root``, and the piece-layer fetch plan; checked
against a naive tree (tests/helpers/bep52.py) and libtorrent-made torrents."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from conftest import require_libtorrent
from hypothesis import given, settings
from hypothesis import strategies as st

from swarm.core import hashes, merkle
from swarm.core.bencode import decode
from swarm.core.wire import Hashes, HashReject, HashRequest, hash_proof_count
from swarm.errors import ProtocolError
from tests.helpers.bep52 import BLOCK, naive_tree, pow2
from tests.helpers.lt import make_lt_torrent

ROOT = bytes(32)


def random_file(blocks: int, tail: int, seed: int) -> tuple[int, list[list[bytes]]]:
    """(file length, naive tree over random block hashes) of a file of ``blocks``
    blocks whose last one is ``tail`` bytes short."""
    rng = random.Random(seed)
    leaves = [rng.randbytes(32) for _ in range(blocks)]
    return blocks * BLOCK - tail, naive_tree(leaves, pow2(blocks))


@st.composite
def file_and_request(draw: st.DrawFn) -> tuple[int, list[list[bytes]], HashRequest]:
    blocks = draw(st.integers(2, 1500))
    length, tree = random_file(blocks, draw(st.integers(0, BLOCK - 1)), draw(st.integers(0, 2**32)))
    layers = len(tree) - 1
    base = draw(st.integers(0, layers - 1))
    width = 1 << (layers - base)
    count = 1 << draw(st.integers(1, min(9, layers - base)))
    index = count * draw(st.integers(0, width // count - 1))
    proof = draw(st.integers(0, layers - base - 1))
    return length, tree, HashRequest(tree[-1][0], base, index, count, proof)


def real_layer(tree: list[list[bytes]], base: int, length: int) -> list[bytes]:
    return tree[base][: hashes.layer_width(length, base)]


@given(case=file_and_request())
@settings(max_examples=150, deadline=None)
def test_answer_is_the_run_and_the_naive_uncles_and_verifies(
    case: tuple[int, list[list[bytes]], HashRequest],
) -> None:
    length, tree, req = case
    assert hashes.check_request(req, length) is None
    answer = hashes.answer_request(
        req, real_layer(tree, req.base_layer, length), req.base_layer, length
    )
    assert isinstance(answer, Hashes)
    assert list(answer.base) == tree[req.base_layer][req.index : req.index + req.length]
    # uncles from the naive tree: siblings from the run's subtree root up, lowest first
    level, pos, want = req.base_layer + merkle.log2(req.length), req.index // req.length, []
    for _ in range(hash_proof_count(req.length, req.proof_layers)):
        want.append(tree[level][pos ^ 1])
        level, pos = level + 1, pos // 2
    assert list(answer.proof) == want
    reaches_root = level == len(tree) - 1
    if reaches_root:
        real = hashes.verify_hashes(answer, req.pieces_root, length)
        assert real == real_layer(tree, req.base_layer, length)[req.index : req.index + req.length]
    else:
        with pytest.raises(ProtocolError, match="does not reach"):
            hashes.verify_hashes(answer, req.pieces_root, length)


@given(case=file_and_request(), pick=st.integers(0), bit=st.integers(0, 255))
@settings(max_examples=150, deadline=None)
def test_a_flipped_bit_anywhere_fails_verification(
    case: tuple[int, list[list[bytes]], HashRequest], pick: int, bit: int
) -> None:
    length, tree, req = case
    layers = len(tree) - 1
    req = HashRequest(
        req.pieces_root, req.base_layer, req.index, req.length, layers - req.base_layer - 1
    )
    answer = hashes.answer_request(
        req, real_layer(tree, req.base_layer, length), req.base_layer, length
    )
    assert isinstance(answer, Hashes)
    hashes.verify_hashes(answer, req.pieces_root, length)  # the untouched answer is good
    values = list(answer.hashes)
    i = pick % len(values)
    h = bytearray(values[i])
    h[bit // 8] ^= 1 << (bit % 8)
    values[i] = bytes(h)
    bad = Hashes(
        answer.pieces_root, req.base_layer, req.index, req.length, req.proof_layers, tuple(values)
    )
    with pytest.raises(ProtocolError, match="do not match"):
        hashes.verify_hashes(bad, req.pieces_root, length)


# 40 blocks (width 64, 6 layers): a file of 40 * 16 KiB
FILE = 40 * BLOCK


@pytest.mark.parametrize(
    ("req", "reason"),
    [
        (HashRequest(ROOT, 0, 0, 64, 5), None),
        (HashRequest(ROOT, 0, 48, 16, 5), None),  # past the real blocks, inside the padding
        (HashRequest(ROOT, 0, 0, 1, 0), None),  # libtorrent asks for 1 at a layer's tail
        (HashRequest(ROOT, 5, 0, 2, 0), None),
        (HashRequest(ROOT, 6, 0, 1, 0), "at or above the root"),
        (HashRequest(ROOT, 0, 0, 3, 0), "power of two"),
        (HashRequest(ROOT, 0, 0, 0, 0), "power of two"),
        (HashRequest(ROOT, 0, 0, 1024, 0), "power of two"),
        (HashRequest(ROOT, 0, 2, 4, 0), "multiple"),
        (HashRequest(ROOT, 0, 64, 2, 0), "past the layer"),
        (HashRequest(ROOT, 2, 16, 16, 0), "past the layer"),
        (HashRequest(ROOT, 0, 0, 2, 6), "above the root"),
        (HashRequest(ROOT, 3, 0, 2, 3), "above the root"),
        (HashRequest(ROOT, 2**32 - 1, 2**32 - 1, 2**32 - 1, 2**32 - 1), "at or above"),
    ],
)
def test_check_request(req: HashRequest, reason: str | None) -> None:
    got = hashes.check_request(req, FILE)
    if reason is None:
        assert got is None
    else:
        assert got is not None and reason in got


def test_a_one_block_file_has_nothing_to_ask() -> None:
    assert hashes.check_request(HashRequest(ROOT, 0, 0, 2, 0), BLOCK) is not None
    assert hashes.check_request(HashRequest(ROOT, 0, 0, 2, 0), 0) == "empty file"


def test_server_rejects_other_files_layers_and_bad_requests() -> None:
    length, tree = random_file(40, 100, 1)
    server = hashes.HashServer(real_layer(tree, 2, length), 2, length)
    assert server.root == tree[-1][0]
    good = HashRequest(server.root, 2, 0, 16, 3)
    assert isinstance(server.answer(good), Hashes)
    for req in (
        HashRequest(bytes(32), 2, 0, 16, 3),  # another file
        HashRequest(server.root, 0, 0, 16, 3),  # a layer we do not hold
        HashRequest(server.root, 2, 0, 3, 3),
    ):
        assert server.answer(req) == HashReject(
            *(
                getattr(req, f)
                for f in ("pieces_root", "base_layer", "index", "length", "proof_layers")
            )
        )
    with pytest.raises(ValueError):
        hashes.HashServer(real_layer(tree, 2, length)[:-1], 2, length)


def test_verify_refuses_answers_that_fit_no_request() -> None:
    length, tree = random_file(40, 0, 2)
    with pytest.raises(ProtocolError, match="fits no request"):
        hashes.verify_hashes(Hashes(tree[-1][0], 0, 0, 3, 5, (bytes(32),) * 3), tree[-1][0], length)
    with pytest.raises(ProtocolError, match="hashes answer with"):
        hashes.verify_hashes(
            Hashes(tree[-1][0], 0, 0, 64, 5, (bytes(32),) * 63), tree[-1][0], length
        )


# ----------------------------------------------------------------- fetcher


def serve_all(
    fetcher: hashes.PieceLayerFetcher,
    servers: dict[bytes, hashes.HashServer] | dict[bytes, hashes.PieceLayerServer],
) -> int:
    """Answer every request the fetcher makes from one peer; the number of requests."""
    sent = 0
    while (req := fetcher.next_request("seed", 0.0)) is not None:
        sent += 1
        answer = servers[req.pieces_root].answer(req)
        assert isinstance(answer, Hashes), req
        assert fetcher.on_hashes(answer)
    return sent


@pytest.mark.parametrize(
    ("piece_length", "pieces"),
    [(BLOCK, 2), (BLOCK, 3), (4 * BLOCK, 512), (BLOCK, 513), (2 * BLOCK, 1100)],
)
def test_fetcher_gets_whole_piece_layers_in_chunks_of_512(piece_length: int, pieces: int) -> None:
    per = piece_length // BLOCK
    length, tree = random_file(pieces * per, 1000, pieces)
    base = merkle.log2(per)
    small_length, small_tree = random_file(per, 5, 99)  # one piece: no piece layer
    fetcher = hashes.PieceLayerFetcher(
        [(tree[-1][0], length), (small_tree[-1][0], small_length)], piece_length
    )
    assert not fetcher.done
    servers = {tree[-1][0]: hashes.HashServer(real_layer(tree, base, length), base, length)}
    assert serve_all(fetcher, servers) == -(-pieces // 512)
    assert fetcher.done
    layer = real_layer(tree, base, length)
    assert fetcher.piece_layer(tree[-1][0]) == layer
    assert fetcher.piece_layers() == {tree[-1][0]: b"".join(layer)}
    assert merkle.root_from_piece_layer(layer, piece_length) == tree[-1][0]


def test_fetcher_requests_are_valid_and_prove_up_to_the_root() -> None:
    length, tree = random_file(1100, 0, 3)
    fetcher = hashes.PieceLayerFetcher([(tree[-1][0], length)], BLOCK)
    reqs = []
    while (req := fetcher.next_request(len(reqs), 0.0)) is not None:
        reqs.append(req)
    assert [(r.index, r.length) for r in reqs] == [(0, 512), (512, 512), (1024, 128)]
    for r in reqs:
        assert hashes.check_request(r, length) is None
        assert r.proof_layers == hashes.tree_layers(length) - 1


def test_fetcher_retries_after_reject_timeout_and_peer_gone() -> None:
    length, tree = random_file(6, 0, 4)
    root = tree[-1][0]
    server = hashes.HashServer(tree[0][:6], 0, length)
    fetcher = hashes.PieceLayerFetcher([(root, length)], BLOCK, timeout=10.0)
    req = fetcher.next_request("a", 0.0)
    assert req == HashRequest(root, 0, 0, 8, 2)
    assert fetcher.next_request("b", 1.0) is None  # in flight with a
    assert fetcher.next_request("b", 10.0) == req  # a timed out
    fetcher.on_reject("b", HashReject(root, 0, 0, 8, 2))
    assert fetcher.next_request("b", 11.0) is None  # b said no: not b again
    assert fetcher.next_request("c", 11.0) == req  # but anyone else
    fetcher.peer_gone("c")
    fetcher.on_reject("a", HashReject(root, 0, 0, 8, 2))
    assert fetcher.next_request("a", 12.0) is None and fetcher.next_request("b", 12.0) is None
    assert fetcher.next_request("d", 12.0) == req  # c left, so its request is free again
    answer = server.answer(req)
    assert isinstance(answer, Hashes)
    assert fetcher.on_hashes(answer) and fetcher.done
    assert not fetcher.on_hashes(Hashes(bytes(32), 0, 0, 2, 0, (bytes(32),) * 2))  # not ours
    assert fetcher.on_hashes(answer)  # a late duplicate changes nothing
    assert fetcher.piece_layer(root) == tree[0][:6]


def test_fetcher_raises_on_a_forged_answer_and_keeps_asking() -> None:
    length, tree = random_file(6, 0, 5)
    root = tree[-1][0]
    fetcher = hashes.PieceLayerFetcher([(root, length)], BLOCK)
    req = fetcher.next_request("liar", 0.0)
    assert req is not None
    forged = Hashes(root, 0, 0, 8, 2, (b"\x01" * 32,) * 8)
    with pytest.raises(ProtocolError):
        fetcher.on_hashes(forged)
    fetcher.peer_gone("liar")  # the engine drops the peer that raised
    assert not fetcher.done and fetcher.next_request("honest", 1.0) == req


# ----------------------------------------------------------------- libtorrent


def lt_v2_torrent(tmp_path: Path, sizes: dict[str, int], piece_length: int) -> dict[bytes, Any]:
    lt = require_libtorrent()
    top = tmp_path / "content"
    top.mkdir()
    rng = random.Random(7)
    for name, size in sizes.items():
        (top / name).write_bytes(rng.randbytes(size))
    meta: dict[bytes, Any] = decode(make_lt_torrent(lt, top, piece_length, v1_only=False))
    return meta


@pytest.mark.parametrize("piece_length", [BLOCK, 4 * BLOCK])
def test_libtorrent_piece_layers_verify_against_its_pieces_roots(
    tmp_path: Path, piece_length: int
) -> None:
    sizes = {"big": 520 * piece_length + 77, "mid": 3 * piece_length + 1, "one": piece_length - 3}
    meta = lt_v2_torrent(tmp_path, sizes, piece_length)
    info, layers = meta[b"info"], meta[b"piece layers"]
    tree = info[b"file tree"]  # paths under the torrent name
    files = [(tree[n.encode()][b""][b"pieces root"], size) for n, size in sizes.items()]
    base = merkle.log2(piece_length // BLOCK)
    servers = {}
    for root, size in files:
        if size > piece_length:
            layer = [layers[root][i : i + 32] for i in range(0, len(layers[root]), 32)]
            servers[root] = hashes.HashServer(layer, base, size)
            assert servers[root].root == root  # libtorrent's layer hashes to libtorrent's root
    fetcher = hashes.PieceLayerFetcher(files, piece_length)
    assert serve_all(fetcher, servers) == 2 + 1  # big: 521 pieces in 2 chunks; mid: 1
    assert fetcher.done and fetcher.piece_layers() == dict(layers)
    # the same from the whole-torrent server, built on libtorrent's piece layers
    server = hashes.PieceLayerServer(layers, files, piece_length)
    again = hashes.PieceLayerFetcher(files, piece_length)
    assert serve_all(again, {root: server for root, _ in files}) == 3
    assert again.piece_layers() == dict(layers)


def test_piece_layer_server_rejects_what_it_cannot_answer() -> None:
    length, tree = random_file(12, 0, 8)  # 3 pieces of 64 KiB
    root = tree[-1][0]
    one_length, one_tree = random_file(4, 0, 9)  # a one-piece file: no piece layer
    server = hashes.PieceLayerServer(
        {root: b"".join(tree[2][:3])}, [(root, length), (one_tree[-1][0], one_length)], 4 * BLOCK
    )
    assert isinstance(server.answer(HashRequest(root, 2, 0, 4, 1)), Hashes)
    for req in (
        HashRequest(bytes(32), 2, 0, 4, 1),  # unknown root
        HashRequest(root, 0, 0, 4, 1),  # the block layer: not held
        HashRequest(one_tree[-1][0], 2, 0, 2, 0),
        HashRequest(root, 2, 0, 4, 2),  # proof above the root
    ):
        assert isinstance(server.answer(req), HashReject)


def test_a_self_consistent_answer_for_another_root_is_refused() -> None:
    """Found by the hashes fuzz target: an answer naming its own pieces root
    (its hashes do hash up to it) passed when checked against msg.pieces_root;
    the file's root is now passed in."""
    length, tree = random_file(2, 1, 6)
    other = [bytes([7]) * 32, bytes([8]) * 32]
    forged = Hashes(merkle.root(other), 0, 0, 2, 0, tuple(other))
    assert hashes.verify_hashes(forged, forged.pieces_root, length) == other  # its own claim holds
    with pytest.raises(ProtocolError, match="another file"):
        hashes.verify_hashes(forged, tree[-1][0], length)


@settings(max_examples=150, deadline=None)
@given(
    blocks=st.integers(1, 200), per_piece=st.sampled_from([2, 4, 8]), tail=st.integers(0, BLOCK - 1),
    seed=st.integers(0, 2**32), data=st.data(),
)
def test_block_requests_are_answered_from_a_pieces_leaves(
    blocks: int, per_piece: int, tail: int, seed: int, data: st.DataObject
) -> None:
    """A block-layer request inside one piece, answered from that piece's block hashes,
    verifies against the pieces root (the proof climbs the piece, then the piece layer);
    leaves that do not hash to the piece's node are refused, as is a run over two pieces."""
    rng = random.Random(seed)
    leaves = [rng.randbytes(32) for _ in range(blocks)]
    length = max(1, blocks * BLOCK - tail)
    piece_length = per_piece * BLOCK
    root = merkle.file_root(leaves)
    layer = b"".join(merkle.piece_layer(leaves, piece_length)) if length > piece_length else b""
    server = hashes.PieceLayerServer({root: layer} if layer else {}, [(root, length)], piece_length)
    width = min(per_piece, merkle.next_pow2(blocks))
    if blocks == 1:
        assert server.block_piece(HashRequest(root, 0, 0, 1, 0)) is None  # nothing below the root
        return
    run = 1 << data.draw(st.integers(0, merkle.log2(width)))
    index = data.draw(st.integers(0, (blocks - 1) // run)) * run
    proof = data.draw(st.integers(0, hashes.tree_layers(length) - 1))
    req = HashRequest(root, 0, index, run, proof)
    piece = server.block_piece(req)
    assert piece == index // per_piece
    mine = leaves[piece * per_piece : (piece + 1) * per_piece]
    answer = server.answer_blocks(req, mine)
    assert isinstance(answer, Hashes)
    uncles = hash_proof_count(run, proof)
    assert list(answer.hashes[:run]) == (leaves + [bytes(32)] * run)[index : index + run]
    # the proof ends at the naive tree's node above the run (the root when asked for it)
    top = merkle.log2(run) + uncles
    tree = naive_tree(leaves, pow2(blocks))
    assert merkle.root_from_proof(answer.hashes[:run], 0, index, run, answer.hashes[run:]) == tree[top][index >> top]
    if top == hashes.tree_layers(length):
        assert hashes.verify_hashes(answer, root, length) == leaves[index : index + run]
    forged = [*mine]
    forged[rng.randrange(len(forged))] = bytes(32)
    assert isinstance(server.answer_blocks(req, forged), HashReject)
    if width * 2 <= merkle.next_pow2(blocks):
        assert server.block_piece(HashRequest(root, 0, 0, width * 2, proof)) is None
