"""Transfer rates, request pipeline depth and snubbing: pure, time passed in.

``RateMeter.add`` runs once per 16 KiB block (65,536 times per GiB), so it is
O(1): a ring of per-second buckets and a running sum, no list rebuilding.
"""

from __future__ import annotations

import math

#: libtorrent keeps ``request_queue_time`` (3 s) of data at the peer's rate in
#: flight; shorter windows drain the pipe on any scheduling hiccup.
DEFAULT_QUEUE_TIME = 3.0
DEFAULT_BLOCK_SIZE = 16384
MIN_QUEUE_DEPTH = 4
#: libtorrent's ``max_out_request_queue`` default.
MAX_QUEUE_DEPTH = 500


class RateMeter:
    """Bytes per second over a sliding window of whole seconds plus the current one.

    The window is exact at one-second granularity: at time ``now`` it covers
    ``[floor(now) - (window - 1), now)``. A meter younger than the window
    divides by its age (at least one second, so the first block does not read
    as an enormous rate).
    """

    __slots__ = ("_buckets", "_n", "_sec", "_start", "_sum", "total")

    def __init__(self, window: int = 5) -> None:
        if window < 1:
            raise ValueError("window must be at least one second")
        self._n = int(window)
        self._buckets = [0] * self._n
        self._sec = 0
        self._sum = 0
        self._start: float | None = None
        #: Every byte ever added (for "downloaded"/"uploaded" counters).
        self.total = 0

    def _advance(self, sec: int) -> None:
        gap = sec - self._sec
        if gap <= 0:
            return  # same second, or a clock step backwards: keep counting here
        buckets = self._buckets
        n = self._n
        if gap >= n:
            for i in range(n):
                buckets[i] = 0
            self._sum = 0
        else:
            for s in range(self._sec + 1, sec + 1):
                j = s % n
                self._sum -= buckets[j]
                buckets[j] = 0
        self._sec = sec

    def add(self, nbytes: int, now: float) -> None:
        sec = math.floor(now)
        if self._start is None:
            self._start = now
            self._sec = sec
        elif sec != self._sec:
            self._advance(sec)
        self._buckets[self._sec % self._n] += nbytes
        self._sum += nbytes
        self.total += nbytes

    def age(self, now: float) -> float:
        """Seconds since the first byte counted (0 before any)."""
        return 0.0 if self._start is None else now - self._start

    def rate(self, now: float) -> float:
        start = self._start
        if start is None:
            return 0.0
        sec = math.floor(now)
        self._advance(sec)
        span = min(now - start, (self._n - 1) + (now - sec))
        if span < 1.0:
            span = 1.0
        return self._sum / span


def queue_depth(
    rate: float,
    rtt: float = DEFAULT_QUEUE_TIME,
    block_size: int = DEFAULT_BLOCK_SIZE,
    min_depth: int = MIN_QUEUE_DEPTH,
    max_depth: int = MAX_QUEUE_DEPTH,
    reqq: int | None = None,
) -> int:
    """Requests to keep outstanding so the peer's pipe never drains.

    ``rtt`` is the seconds of data to keep in flight at the peer's current rate
    (it must cover the round trip plus jitter; libtorrent uses 3 s). ``reqq`` is
    what the peer advertised in its extended handshake: asking for more than
    that gets requests dropped or the connection closed.
    """
    if rate > 0.0 and rtt > 0.0 and block_size > 0:
        want = rate * rtt / block_size
        depth = max_depth if want >= max_depth else int(math.ceil(want))
    else:
        depth = min_depth
    depth = max(min_depth, min(depth, max_depth))
    if reqq is not None and reqq > 0:
        depth = min(depth, reqq)
    return max(1, depth)


def is_snubbed(last_piece_at: float, now: float, timeout: float = 60.0) -> bool:
    """A peer that has sent us no block for ``timeout`` seconds while we asked.

    ``last_piece_at`` should be the later of the last block received and the
    moment we started requesting from this peer (unchoke), so a freshly
    unchoked peer is not snubbed at once.
    """
    return now - last_piece_at >= timeout
