"""Cost of protocol encryption (swarm.core.mse): RC4 throughput and handshake time.

Run: .venv/bin/python benchmarks/bench_mse.py [MiB]

RC4 (OpenSSL through ``cryptography``) over MiB of data in 16 KiB and 64 KiB
chunks: ``update`` (a new bytes object per chunk, as the send path does),
``update_into`` into a second buffer, ``update_into`` in place, and
``CipherStream.decrypt_into`` (the one-copy receive path: the kernel writes the
wire decoder's buffer, RC4 rewrites it where it lies). A bytes copy of the same chunks is the floor.
Then the whole MSE handshake, both roles in memory (two DH exponentiations
each side dominate).
"""

from __future__ import annotations

import statistics
import sys
import time

from cryptography.hazmat.primitives.ciphers import Cipher

from swarm.core import mse

KEY = b"k" * 20
INFO_HASH = b"i" * 20


def mib_per_s(nbytes: int, seconds: float) -> float:
    return nbytes / (1 << 20) / seconds


def bench_copy(data: bytearray, chunk: int) -> float:
    view = memoryview(data)
    t = time.perf_counter()
    for off in range(0, len(data), chunk):
        bytes(view[off : off + chunk])
    return time.perf_counter() - t


def bench_update(data: bytearray, chunk: int) -> float:
    rc4 = mse.Rc4(KEY)
    view = memoryview(data)
    t = time.perf_counter()
    for off in range(0, len(data), chunk):
        rc4.update(view[off : off + chunk])
    return time.perf_counter() - t


def bench_update_into_other(data: bytearray, chunk: int) -> float:
    ctx = Cipher(mse.ARC4(KEY), mode=None).encryptor()
    view = memoryview(data)
    out = memoryview(bytearray(chunk))
    t = time.perf_counter()
    for off in range(0, len(data), chunk):
        src = view[off : off + chunk]
        ctx.update_into(src, out[: len(src)])
    return time.perf_counter() - t


def bench_rc4_in_place(data: bytearray, chunk: int) -> float:
    rc4 = mse.Rc4(KEY)
    view = memoryview(data)
    t = time.perf_counter()
    for off in range(0, len(data), chunk):
        rc4.update_into(view[off : off + chunk])
    return time.perf_counter() - t


def bench_decrypt_into(data: bytearray, chunk: int) -> float:
    stream = mse.CipherStream(mse.CRYPTO_RC4, mse.Rc4(KEY), mse.Rc4(KEY))
    view = memoryview(data)
    t = time.perf_counter()
    for off in range(0, len(data), chunk):
        stream.decrypt_into(view[off : off + chunk])
    return time.perf_counter() - t


def handshake_once(i: int) -> float:
    key_a, key_b = (1 << 159) + 2 * i + 1, (1 << 159) + 2 * i + 2
    t = time.perf_counter()
    a = mse.Initiator(INFO_HASH, key_a, initial_payload=bytes(68))
    b = mse.Receiver({mse.req2_hash(INFO_HASH): INFO_HASH}.get, key_b)
    step2 = b.feed(a.start()).send
    step4, _ = b.feed(a.feed(step2).send)
    a.feed(step4)
    assert a.done and b.done
    return time.perf_counter() - t


def main() -> None:
    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    data = bytearray(mib << 20)
    print(f"RC4 over {mib} MiB ({sys.version.split()[0]}):")
    for chunk in (16384, 65536):
        for name, fn in (
            ("bytes copy (floor)", bench_copy),
            ("update -> new bytes", bench_update),
            ("update_into other buf", bench_update_into_other),
            ("Rc4.update_into in place", bench_rc4_in_place),
            ("decrypt_into in place", bench_decrypt_into),
        ):
            seconds = min(fn(data, chunk) for _ in range(3))
            print(
                f"  {chunk // 1024:>3} KiB chunks  {name:<25} {mib_per_s(len(data), seconds):8.0f} MiB/s"
            )
    times = [handshake_once(i) for i in range(200)]
    print(
        f"handshake, both roles in memory: median {statistics.median(times) * 1e3:.2f} ms, "
        f"max {max(times) * 1e3:.2f} ms (200 runs; each side does 2 modexps)"
    )


if __name__ == "__main__":
    main()
