"""When a peer's requests have timed out, when it is snubbing us, and how deep its pipeline is.

Pure; time passed in. The download side of a torrent (``swarm.parts.download``)
asks these once a tick per peer and acts on the answer (drop the requests and
hand their blocks to other peers, or keep one request in flight): the
decision is here, the bookkeeping there. Conventions follow libtorrent's
``request_timeout`` / ``snub`` handling, with our own numbers:

* a peer whose oldest outstanding request is older than ``REQUEST_TIMEOUT``
  *and* which sent no block for as long has timed out: its requests are
  re-issued to others and it is snubbed (one request at a time);
* an unchoking peer we are interested in that has no request outstanding and
  sent nothing for ``SNUB_TIMEOUT`` is snubbed too (it cannot serve us);
* the pipeline holds ``REQUEST_QUEUE_TIME`` seconds of data at the peer's
  rate (``queue_depth``), at least one request per block received so far on
  top of ``SLOW_START`` while the rate meter warms up, and never more than
  the peer's ``reqq``.
"""

from __future__ import annotations

import enum

from swarm.core.rate import DEFAULT_QUEUE_TIME, queue_depth
from swarm.core.wire import BLOCK_SIZE

REQUEST_TIMEOUT = 30.0
SNUB_TIMEOUT = 45.0
#: Requests in flight to a new peer before its rate is known.
SLOW_START = 16
#: Seconds of blocks from a peer before its rate meter, not slow start, sets the depth.
RATE_WARMUP = 2.0
#: A peer that has sent no block for this long is no longer delivering: endgame may
#: ask others for the blocks it holds (while it delivers, their copy would come second).
ENDGAME_PATIENCE = 2.0
#: Seconds we do not ask an unchoking peer again for a piece it refused (a seed in its
#: first pass gives each piece to one peer: core.seeding.FirstPass).
REFUSED_FOR = 5.0
#: The most requests we keep at one peer, whatever its ``reqq``.
MAX_PIPELINE = 500



class Verdict(enum.Enum):
    """What a tick decides about one peer's requests."""

    OK = "ok"
    TIMED_OUT = "timed out"  # drop its requests, give the blocks to others, snub it
    SNUBBED = "snubbed"  # nothing outstanding, nothing received: one request at a time


def request_verdict(
    oldest_request: float | None,
    last_block: float,
    *,
    interested: bool,
    peer_choking: bool,
    now: float,
    timeout: float = REQUEST_TIMEOUT,
    snub_after: float = SNUB_TIMEOUT,
) -> Verdict:
    """``oldest_request``: when the oldest outstanding request was sent (None: none is)."""
    if oldest_request is not None:
        if now - oldest_request > timeout and now - last_block > timeout:
            return Verdict.TIMED_OUT
        return Verdict.OK
    if interested and not peer_choking and now - last_block > snub_after:
        return Verdict.SNUBBED
    return Verdict.OK


def pipeline_depth(
    rate: float,
    reqq: int,
    downloaded: int,
    *,
    snubbed: bool,
    warming: bool = True,
    queue_time: float = DEFAULT_QUEUE_TIME,
) -> int:
    """Requests to keep outstanding at a peer sending ``rate`` bytes/s.

    ``warming``: the peer's rate meter has not seen ``RATE_WARMUP`` seconds of
    blocks yet. After that the rate alone sets the depth: a pipeline deeper
    than the rate needs only queues requests at the peer, and at a seed those
    are pieces the other leechers cannot know are taken (second copies).
    """
    if snubbed:
        return 1
    reqq = min(reqq, MAX_PIPELINE)
    depth = queue_depth(rate, queue_time, reqq=reqq)
    # slow start: the rate meter needs a second to see the rate; meanwhile grow
    # the pipeline by one request per block received (doubling per round trip)
    grown = SLOW_START + downloaded // BLOCK_SIZE if warming else SLOW_START
    return max(depth, min(reqq, grown))


#: Seconds of data kept requested from a seed that other leechers share with us.
SHARED_SEED_QUEUE_TIME = 1.0


def shared_seed_queue_time(peer_is_seed: bool, leechers_about: bool) -> float:
    """How much to keep queued at this peer. A seed other leechers share is the
    swarm's scarcest uplink: what we queue there are pieces no other leecher can
    know are taken, and they ask for the same ones (second copies). One second
    still covers the round trip and scheduling hiccups many times on a LAN."""
    return SHARED_SEED_QUEUE_TIME if peer_is_seed and leechers_about else DEFAULT_QUEUE_TIME


def is_delivering(last_block: float, now: float, timeout: float = REQUEST_TIMEOUT) -> bool:
    """Is a peer sending us blocks (so endgame leaves its blocks to it)? Quiet for
    ``ENDGAME_PATIENCE``, or half the request ``timeout`` if that is shorter (a peer
    must count as quiet well before the requests waiting on it time out)."""
    return now - last_block < min(ENDGAME_PATIENCE, timeout / 2)


def refill_count(depth: int, outstanding: int) -> int:
    """How many requests to send now (0: wait). Refills in batches of at least
    an eighth of the pipeline: fewer picker calls and fuller writes."""
    count = depth - outstanding
    if count <= 0 or (outstanding and count < depth // 8):
        return 0
    return count
