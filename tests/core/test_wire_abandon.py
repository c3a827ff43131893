"""MessageDecoder.abandon_block: a block given up mid-copy stops writing into its slot."""

from __future__ import annotations

from swarm.core import wire

BLOCK = wire.BLOCK_SIZE


def _decoder(piece: bytearray) -> wire.MessageDecoder:
    view = memoryview(piece)
    return wire.MessageDecoder(
        1, len(piece), len(piece), block_sink=lambda i, b, n: view[b : b + n]
    )


def test_abandoned_block_lands_in_a_throwaway_buffer() -> None:
    piece = bytearray(BLOCK)
    dec = _decoder(piece)
    data = bytes(range(256)) * (BLOCK // 256)
    msg = wire.encode_piece(0, 0, data)
    half = 13 + BLOCK // 2
    assert dec.feed(msg[:half]) == []
    assert dec.abandon_block(0, 0)
    assert not dec.abandon_block(0, 0)  # already diverted
    piece[:] = b"\x01" * BLOCK  # another peer's copy of the block, landed meanwhile
    out = dec.feed(msg[half:] + wire.encode_keepalive())
    assert out[0] == wire.Piece(0, 0, data)  # the whole late block, as a declined one
    assert piece == b"\x01" * BLOCK  # untouched by the late tail


def test_abandon_of_another_block_changes_nothing() -> None:
    piece = bytearray(BLOCK)
    dec = _decoder(piece)
    msg = wire.encode_piece(0, 0, b"\x07" * BLOCK)
    dec.feed(msg[:100])
    assert not dec.abandon_block(0, BLOCK)
    assert dec.feed(msg[100:]) == [wire.Piece(0, 0, None)]
    assert piece == b"\x07" * BLOCK
