"""Web seeds (BEP 19, "GetRight style"): the pure decisions, time passed in.

A web seed is an HTTP(S) server holding the torrent's files under their
names. The shell (``swarm.parts.webseed``) asks the picker for blocks as for
any peer; this module says which URL and byte range hold them
(``plan_fetch``), which pieces a web seed should take so that peers serve
what they can and the origin serves each byte about once
(``web_seed_scope``), and when a failing web seed is tried again or dropped
(``Backoff``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import quote, urlsplit

from swarm.core.layout import Layout
from swarm.errors import BadInput

#: Failures in a row (HTTP errors, stalls, wrong bytes) before a web seed is dropped.
MAX_FAILURES = 3
#: Seconds before the first retry; doubled after each further failure, capped.
BACKOFF_BASE = 1.0
BACKOFF_MAX = 60.0
#: Seconds that peers still connecting get before a web seed takes pieces they may have.
GRACE = 3.0
#: Run sizes: seconds of the web seed's rate, bounded. Small runs matter for a fleet:
#: a run claims its pieces before other hosts can see them (examples/fleet_demo.py,
#: 4 hosts: origin bytes / file size 1.5 with 8 MiB runs, 1.2 with 2 MiB ones).
RUN_SECONDS = 2.0
MIN_RUN = 256 * 1024
MAX_RUN = 2 * 1024 * 1024


def check_url(url: str) -> str:
    """An http(s) URL with a host, or BadInput naming it."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInput(f"web seed {url!r}: not an http:// or https:// URL")
    return url


def file_url(base: str, path: Sequence[str], multi_file: bool) -> str:
    """The URL of one file of the torrent (BEP 19); ``path`` starts with the torrent's
    name (``FileEntry.path``).

    Single-file: ``base`` is the file itself, unless it ends with ``/``, then
    the torrent's name is appended. Multi-file: ``base/name/path...`` (a
    missing final ``/`` is added, as libtorrent does). Every appended
    component is percent-encoded, so spaces, ``#`` or ``?`` in names stay
    part of the path.
    """
    if not multi_file:
        return base + quote(path[-1], safe="") if base.endswith("/") else base
    if not base.endswith("/"):
        base += "/"
    return base + "/".join(quote(c, safe="") for c in path)


class Fetch(NamedTuple):
    """``length`` bytes at ``file_offset`` of ``url`` (an HTTP Range), landing at
    ``offset`` of the torrent's byte stream. ``url`` None: a pad file (zeros, never fetched)."""

    url: str | None
    file_offset: int
    length: int
    offset: int


def plan_fetch(layout: Layout, base: str, multi_file: bool, offset: int, length: int) -> list[Fetch]:
    """The HTTP Range requests covering ``[offset, offset+length)`` of the torrent:
    one per file segment (a run of pieces spanning files is fetched per file)."""
    out: list[Fetch] = []
    pos = offset
    for seg in layout.segments(offset, length):
        f = layout.files[seg.file_index]
        url = None if f.pad else file_url(base, f.path, multi_file)
        out.append(Fetch(url, seg.file_offset, seg.length, pos))
        pos += seg.length
    return out


def runs(blocks: Iterable[tuple[int, int, int]], piece_length: int) -> list[tuple[int, int]]:
    """Blocks ``(index, begin, length)`` merged into contiguous ``(offset, length)``
    runs of the torrent's byte stream, in order (one Range request each)."""
    spans = sorted((i * piece_length + b, n) for i, b, n in blocks)
    out: list[tuple[int, int]] = []
    for start, n in spans:
        if out and out[-1][0] + out[-1][1] == start:
            out[-1] = (out[-1][0], out[-1][1] + n)
        else:
            out.append((start, n))
    return out


def web_seed_scope(
    num_pieces: int,
    availability: Callable[[int], int],
    peers_serving: int,
    peers_pending: int = 0,
    waited: float = GRACE,
) -> list[bool] | None:
    """Which pieces a web seed may fetch: None for any, else a mask.

    While some peer serves us (has unchoked us), pieces that peers hold are
    left to them: the origin then serves each byte about once across a
    fleet. Peers still connecting get ``GRACE`` seconds (``waited``: since
    the torrent started) before the web seed takes what they might have
    given; with no peer serving after that, the web seed takes anything.
    """
    if peers_serving <= 0:
        if peers_pending > 0 and waited < GRACE:
            return [False] * num_pieces
        return None
    return [availability(i) == 0 for i in range(num_pieces)]


def run_bytes(rate: float, piece_length: int) -> int:
    """Bytes to ask a web seed for at once: ``RUN_SECONDS`` at its rate, at least one
    piece (and ``MIN_RUN``), at most ``MAX_RUN`` (or one piece if bigger), so a
    fresh web seed does not claim a large share before peers show what they have."""
    low = max(piece_length, MIN_RUN)
    high = max(piece_length, MAX_RUN)
    return int(min(high, max(low, rate * RUN_SECONDS)))


@dataclass
class Backoff:
    """One web seed's health: failures in a row, when it may be tried again, dropped or not."""

    max_failures: int = MAX_FAILURES
    base: float = BACKOFF_BASE
    cap: float = BACKOFF_MAX
    failures: int = 0  # transport failures in a row (HTTP errors, stalls)
    bad_pieces: int = 0  # pieces that failed the hash check: never forgiven by a good answer
    retry_at: float = 0.0
    dropped: bool = False

    def ready(self, now: float) -> bool:
        return not self.dropped and now >= self.retry_at

    def failed(self, now: float, *, bad_data: bool = False) -> float | None:
        """Note a failure (``bad_data``: a piece it served failed the hash check):
        seconds until the next try, or None once dropped."""
        if bad_data:
            self.bad_pieces += 1
        else:
            self.failures += 1
        worst = max(self.failures, self.bad_pieces)
        if worst >= self.max_failures:
            self.dropped = True
            return None
        delay: float = min(self.cap, self.base * 2.0 ** (worst - 1))
        self.retry_at = now + delay
        return delay

    def succeeded(self) -> None:
        """An answer of the right length: transport failures are forgiven (bad data is not)."""
        self.failures = 0
        self.retry_at = 0.0
