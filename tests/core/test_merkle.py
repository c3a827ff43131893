"""BEP 52 Merkle trees: swarm.core.merkle against a naive reference written from the BEP."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarm.core import merkle
from tests.helpers.bep52 import BLOCK, naive_file, naive_tree, pow2, sha


def blob(length: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(length)


lengths = st.integers(1, 40 * BLOCK + 100)
piece_lengths = st.sampled_from([BLOCK, 2 * BLOCK, 4 * BLOCK, 16 * BLOCK])


@given(length=lengths, seed=st.integers(0, 2**32))
@settings(max_examples=60)
def test_file_root_matches_reference(length: int, seed: int) -> None:
    data = blob(length, seed)
    assert merkle.file_root(merkle.leaf_hashes(data)) == naive_file(data)[-1][0]


@given(length=lengths, seed=st.integers(0, 2**32), piece_length=piece_lengths)
@settings(max_examples=60)
def test_piece_layer_and_piece_hashes(length: int, seed: int, piece_length: int) -> None:
    data = blob(length, seed)
    tree = naive_file(data)
    per_piece = piece_length // BLOCK
    height = per_piece.bit_length() - 1
    layer = merkle.piece_layer(merkle.leaf_hashes(data), piece_length)
    pieces = -(-length // piece_length)
    if length > piece_length:
        # the piece layer is the tree's layer at the piece height, without its padding
        assert layer == tree[height][:pieces]
        assert merkle.root_from_piece_layer(layer, piece_length) == tree[-1][0]
        for i in range(pieces):
            chunk = data[i * piece_length : (i + 1) * piece_length]
            assert merkle.piece_hash(chunk, piece_length, length) == layer[i]
    else:
        # a file of one piece is checked against its root, whose tree is narrower
        assert merkle.piece_hash(data, piece_length, length) == tree[-1][0]


@given(st.integers(0, 12))
def test_pad_hash_is_a_zero_subtree(height: int) -> None:
    assert merkle.pad_hash(height) == naive_tree([], 1 << height)[-1][0]


@given(
    n=st.integers(1, 70),
    seed=st.integers(0, 2**32),
    log_count=st.integers(0, 4),
    data=st.data(),
)
@settings(max_examples=80)
def test_proofs_verify_and_catch_tampering(n: int, seed: int, log_count: int, data: st.DataObject) -> None:
    rng = random.Random(seed)
    leaves = [rng.randbytes(32) for _ in range(n)]
    width = pow2(n)
    ref = naive_tree(leaves, width)
    count = min(1 << log_count, width)
    index = data.draw(st.integers(0, width // count - 1)) * count
    tree = merkle.layers(leaves)
    assert tree[-1][0] == ref[-1][0] == merkle.root(leaves)
    num = len(ref) - 1 - (count.bit_length() - 1)  # uncles up to the root
    proof = merkle.uncles(tree, 0, index, count, num)
    run = ref[0][index : index + count]
    assert merkle.verify_proof(run, 0, index, count, proof, ref[-1][0])
    # the same run without its trailing padding verifies too
    real = [h for h in leaves[index : index + count]]
    assert merkle.verify_proof(real, 0, index, count, proof, ref[-1][0])
    if proof:
        bad = list(proof)
        k = data.draw(st.integers(0, len(bad) - 1))
        bad[k] = sha(bad[k])
        assert not merkle.verify_proof(run, 0, index, count, bad, ref[-1][0])
    if real:
        forged = [sha(real[0]), *real[1:]]
        assert not merkle.verify_proof(forged, 0, index, count, proof, ref[-1][0])
    # a shorter proof ends at the matching ancestor
    if num:
        level = count.bit_length() - 1 + num - 1
        assert merkle.root_from_proof(run, 0, index, count, proof[:-1]) == ref[level][index >> level]


def test_proofs_from_a_piece_layer() -> None:
    """A seeder that only has the piece layer proves piece hashes up to the root."""
    data = blob(21 * 4 * BLOCK + 5, 7)
    piece_length = 4 * BLOCK
    layer = merkle.piece_layer(merkle.leaf_hashes(data), piece_length)
    root = merkle.file_root(merkle.leaf_hashes(data))
    tree = merkle.layers(layer, height=2)
    proof = merkle.uncles(tree, 0, 16, 8, 2, base=2)
    assert merkle.verify_proof(layer[16:22], 2, 16, 8, proof, root)
    with pytest.raises(ValueError):
        merkle.uncles(tree, 0, 16, 8, 3, base=2)  # past the root


@pytest.mark.parametrize(
    ("run", "index", "count", "proof"),
    [([b"x" * 31], 0, 1, []), ([bytes(32)] * 3, 0, 2, []), ([bytes(32)], 1, 2, []), ([bytes(32)], 0, 3, [])],
)
def test_malformed_proofs_are_false(run: list[bytes], index: int, count: int, proof: list[bytes]) -> None:
    assert not merkle.verify_proof(run, 0, index, count, proof, bytes(32))
