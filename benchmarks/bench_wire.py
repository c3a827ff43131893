"""Throughput of the wire decoder on a stream of 16 KiB piece messages.

Run: .venv/bin/python benchmarks/bench_wire.py [MiB]

In memory: chunks of 64 KiB are copied into the decoder's buffer (standing in
for the kernel's copy), through feed() (no sink: one bytes object per block)
and through get_buffer/buffer_updated with a block sink, buffered and direct.
Over TCP: a uvloop BufferedProtocol reads a 127.0.0.1 stream written by a
thread, with the sink, buffered and direct; this includes the recv syscalls.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time

from swarm.core.wire import BLOCK_SIZE, MessageDecoder, Piece, encode_piece

PIECE_LEN = 1 << 20
BLOCKS_PER_PIECE = PIECE_LEN // BLOCK_SIZE
CHUNK = 65536


def make_stream(mib: int) -> tuple[bytes, int]:
    block = bytes(range(256)) * (BLOCK_SIZE // 256)
    n_blocks = mib * 1024 * 1024 // BLOCK_SIZE
    parts = [
        encode_piece(i // BLOCKS_PER_PIECE, (i % BLOCKS_PER_PIECE) * BLOCK_SIZE, block)
        for i in range(n_blocks)
    ]
    return b"".join(parts), n_blocks


class Sink:
    """Piece buffers the way the engine holds them: one bytearray per piece."""

    def __init__(self) -> None:
        self.buf = memoryview(bytearray(PIECE_LEN))
        self.taken = 0

    def __call__(self, index: int, begin: int, length: int) -> memoryview:
        self.taken += 1
        return self.buf[begin : begin + length]


def decoder(sink: Sink | None, direct: bool, n_pieces: int) -> MessageDecoder:
    return MessageDecoder(n_pieces, PIECE_LEN, n_pieces * PIECE_LEN, block_sink=sink, direct=direct)


def bench_feed(stream: bytes, n_blocks: int) -> float:
    d = decoder(None, False, n_blocks // BLOCKS_PER_PIECE + 1)
    view = memoryview(stream)
    got = 0
    t = time.perf_counter()
    for off in range(0, len(stream), CHUNK):
        got += len(d.feed(view[off : off + CHUNK]))
    dt = time.perf_counter() - t
    assert got == n_blocks, got
    return len(stream) / dt


def bench_buffered(stream: bytes, n_blocks: int, direct: bool) -> tuple[float, int]:
    sink = Sink()
    d = decoder(sink, direct, n_blocks // BLOCKS_PER_PIECE + 1)
    view = memoryview(stream)
    total = len(stream)
    off = 0
    got = 0
    calls = 0
    t = time.perf_counter()
    while off < total:
        buf = d.get_buffer(CHUNK)
        n = min(len(buf), CHUNK, total - off)
        buf[:n] = view[off : off + n]  # the kernel's copy
        off += n
        got += len(d.buffer_updated(n))
        calls += 1
    dt = time.perf_counter() - t
    assert got == n_blocks == sink.taken, (got, sink.taken)
    return total / dt, calls


class _Proto(asyncio.BufferedProtocol):
    def __init__(self, d: MessageDecoder, done: asyncio.Future[None], n_blocks: int) -> None:
        self.d = d
        self.done = done
        self.left = n_blocks

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.d.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        for msg in self.d.buffer_updated(nbytes):
            if type(msg) is Piece:
                self.left -= 1
        if self.left == 0 and not self.done.done():
            self.done.set_result(None)

    def eof_received(self) -> None:
        if not self.done.done():
            self.done.set_exception(RuntimeError("eof before all blocks"))


async def _socket_run(stream: bytes, n_blocks: int, direct: bool) -> float:
    loop = asyncio.get_running_loop()
    lsock = socket.create_server(("127.0.0.1", 0))
    b = socket.create_connection(lsock.getsockname())
    a, _ = lsock.accept()
    lsock.close()
    sink = Sink()
    d = decoder(sink, direct, n_blocks // BLOCKS_PER_PIECE + 1)
    done: asyncio.Future[None] = loop.create_future()
    transport, _ = await loop.connect_accepted_socket(lambda: _Proto(d, done, n_blocks), a)
    writer = threading.Thread(target=b.sendall, args=(stream,))
    t = time.perf_counter()
    writer.start()
    await asyncio.wait_for(done, 120)
    dt = time.perf_counter() - t
    writer.join(30)
    transport.close()
    b.close()
    return len(stream) / dt


def bench_socket(stream: bytes, n_blocks: int, direct: bool) -> float:
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    return runner(_socket_run(stream, n_blocks, direct))


def main() -> None:
    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 512
    stream, n_blocks = make_stream(mib)
    mb = 1e6
    for _ in range(3):
        print(f"feed(), no sink:                 {bench_feed(stream, n_blocks) / mb:8.0f} MB/s")
        rate, calls = bench_buffered(stream, n_blocks, False)
        print(f"sink, buffered (1 copy/block):   {rate / mb:8.0f} MB/s  {calls} reads")
        rate, calls = bench_buffered(stream, n_blocks, True)
        print(f"sink, direct:                    {rate / mb:8.0f} MB/s  {calls} reads")
        for label, mode in (
            ("no parsing (baseline)", None),
            ("sink, buffered", False),
            ("sink, direct", True),
        ):
            rate = bench_socket(stream, n_blocks, mode)
            print(f"tcp+uvloop, {label:21s} {rate / mb:8.0f} MB/s")


if __name__ == "__main__":
    main()
