"""Byte-rate limits (--max-up, --max-down): a token bucket that may go into debt, time passed in.

The shell learns a read's size only after the bytes are in, so ``consume``
always succeeds and may leave the bucket in debt; ``wait`` says how long to
pause (reading, or the next upload) until the debt is repaid. The burst is
small (a tenth of a second of rate, at least one block), so the bytes moved
in any window of T seconds stay within ``rate * T + burst + one read``:
within 10 % over 5 s for any rate above a few KiB/s.
"""

from __future__ import annotations

from swarm.errors import BadInput

#: Burst allowance, in seconds of the rate (and at least one 16 KiB block).
BURST_SECONDS = 0.1
MIN_BURST = 16 * 1024

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def parse_rate(text: str) -> int:
    """``500K``, ``2M``, ``1.5G``, ``1000`` (bytes per second; K, M, G are KiB, MiB, GiB;
    an optional trailing ``B``/``iB``/``/s``); ``0`` means unlimited."""
    s = text.strip().upper().removesuffix("/S").removesuffix("IB").removesuffix("B")
    unit = s[-1:] if s[-1:] in ("K", "M", "G") else ""
    number = s[: len(s) - len(unit)]
    try:
        value = float(number)
    except ValueError:
        raise BadInput(f"rate {text!r}: expected a number with an optional K, M or G suffix (e.g. 500K, 2M)") from None
    if not value >= 0 or value == float("inf"):
        raise BadInput(f"rate {text!r}: must be zero (unlimited) or positive")
    return int(value * _UNITS[unit])


class RateLimit:
    """A token bucket of bytes; ``rate`` 0 is unlimited (every call is then free)."""

    __slots__ = ("_at", "burst", "rate", "tokens")

    def __init__(self, rate: float, now: float = 0.0) -> None:
        self.rate = float(rate)
        self.burst = max(self.rate * BURST_SECONDS, MIN_BURST)
        self.tokens = self.burst
        self._at = now

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0

    def _refill(self, now: float) -> None:
        if now > self._at:
            self.tokens = min(self.burst, self.tokens + (now - self._at) * self.rate)
        self._at = max(self._at, now)

    def consume(self, nbytes: int, now: float) -> None:
        """``nbytes`` moved (or about to be): taken from the bucket, into debt if need be."""
        if self.unlimited:
            return
        self._refill(now)
        self.tokens -= nbytes

    def wait(self, now: float) -> float:
        """Seconds until the bucket is out of debt (0: go on)."""
        if self.unlimited:
            return 0.0
        self._refill(now)
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def reserve(self, nbytes: int, now: float) -> float:
        """Take ``nbytes`` and say how long to wait before moving them (uploads)."""
        self.consume(nbytes, now)
        return self.wait(now)

    def depth_cap(self, seconds: float, block: int) -> int | None:
        """Requests worth ``seconds`` of the allowed rate (None: unlimited): a pipeline
        deeper than that only queues blocks at the peer."""
        if self.unlimited:
            return None
        return max(1, int(self.rate * seconds / block) + 1)
