"""CPU per 16 KiB block of the leecher's receive path, in one process, no sockets.

Run: .venv/bin/python benchmarks/bench_receive.py [PIECES]   (1 MiB pieces, default 512)

The engine's own objects (MessageDecoder with the Downloader's block sink and
block_landed callback, Torrent.on_messages, the PiecePicker, Downloader.fill)
take a stream of piece messages answering exactly the requests they sent,
in 128 KiB reads; the torrent around them is a stub (no hashing, no disk,
no event loop: the request writes pile up and are dropped). Only the
decode-and-book part is timed: the memcpy standing in for the kernel's recv
copy included, building the stream not. A whole leecher adds the recv
syscalls, uvloop, SHA-1 and the writes (see docs/performance.md, Loopback).
"""

from __future__ import annotations

import random
import sys
import time
from typing import Any

from swarm.core import wire
from swarm.core.bitfield import Bitfield
from swarm.core.picker import PiecePicker
from swarm.parts.download import Downloader
from swarm.peer import PeerConnection
from swarm.torrent import Torrent

PIECE = 1 << 20
READ = 128 * 1024


class _Meta:
    piece_length = PIECE
    name = "bench"

    def piece_size(self, index: int) -> int:
        return PIECE


class _Throttle:
    def cap_depth(self, depth: int) -> int:
        return depth

    def received(self, peer: object, n: int) -> None:
        pass


class _Session:
    throttle = _Throttle()


class _Completion:
    """Who sent each block, as the engine keeps it; a complete piece's buffer is recycled at once."""

    def __init__(self, torrent: Any) -> None:
        self.torrent = torrent
        self.senders: dict[int, dict[int, object]] = {}
        self.done = 0

    def note_sender(self, index: int, begin: int, peer: object) -> None:
        senders = self.senders.get(index)
        if senders is None:
            senders = self.senders[index] = {}
        senders[begin] = peer

    def piece_complete(self, index: int) -> None:
        d = self.torrent.downloader
        view = d.take_buffer(index)
        d.written(view)
        d.recycle(index, view)
        self.senders.pop(index, None)
        self.done += 1


def run(pieces: int) -> float:
    """Seconds of CPU per block."""
    t: Any = type("StubTorrent", (), {})()
    t.num_pieces = pieces
    t.meta = _Meta()
    t.session = _Session()
    t.completion = _Completion(t)
    t.picker = PiecePicker(pieces, PIECE, pieces * PIECE, rng=random.Random(1))
    t.have = Bitfield(pieces)
    t.seed_only = False
    t._handlers = {}
    t.superseed = None
    t.downloader = Downloader(t)
    peer = PeerConnection(_Session())  # type: ignore[arg-type]
    peer.have = Bitfield(pieces, full=True)
    peer.am_interested = True
    peer.peer_choking = False
    peer.reqq = 500
    peer._flush_pending = True  # no event loop: requests pile up in peer._out, dropped below
    t.peers = [peer]
    t.picker.add_peer_have_all(peer)
    d = t.downloader
    decoder = wire.MessageDecoder(
        pieces, PIECE, pieces * PIECE, block_sink=d.make_sink(peer), block_landed=d.make_landed(peer)
    )
    block = bytes(wire.BLOCK_SIZE)
    answered: set[tuple[int, int]] = set()
    stream = bytearray()
    cpu = 0.0
    d.fill(peer)
    while t.completion.done < pieces:
        for key, (length, _) in list(peer.requests.items()):
            if key not in answered:
                answered.add(key)
                stream += wire.piece_header(key[0], key[1], length)
                stream += block
        view = memoryview(stream)
        start = time.process_time()
        off = 0
        while off < len(stream):
            buf = decoder.get_buffer(-1)
            n = min(len(buf), READ, len(stream) - off)
            buf[:n] = view[off : off + n]
            off += n
            msgs = decoder.buffer_updated(n)
            if msgs or peer.landed_bytes:
                Torrent.on_messages(t, peer, msgs)
        cpu += time.process_time() - start
        view.release()
        stream.clear()
        peer._out.clear()
    return cpu / (pieces * PIECE // wire.BLOCK_SIZE)


def main() -> None:
    pieces = int(sys.argv[1]) if len(sys.argv) > 1 else 512
    per_block = run(pieces)
    print(f"{pieces} MiB: {per_block * 1e6:.2f} us of CPU per 16 KiB block ({per_block * 65536:.2f} CPU-s per GiB)")


if __name__ == "__main__":
    main()
