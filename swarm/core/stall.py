"""Why is it stuck? One sentence naming the most specific reason a download stalls.

Pure: the engine gathers ``StallFacts`` (plain values) and the current time;
``diagnose`` returns ``None`` while things move (or have not been still for
``StallFacts.after`` seconds) and otherwise the reason a user can act on,
the most specific first: a peer-level cause (choked, missing pieces, no
metadata) beats a discovery-level one (trackers failing, no DHT nodes), which
beats the bare "no peers".
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

#: Seconds without a verified piece before we call it a stall.
DEFAULT_AFTER = 15.0
#: Files and errors named at most in one reason (the rest are counted).
MAX_NAMED = 3


@dataclass(frozen=True, slots=True)
class TrackerFact:
    url: str
    failing: bool  # its last announce failed (or it never answered and gave an error)
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class StallFacts:
    """A snapshot of what the engine knows; every field is a plain value."""

    state: str  # "metadata" | "downloading" | ... (anything else never stalls)
    last_progress: float  # time of the last verified piece, or when downloading began
    after: float = DEFAULT_AFTER
    trackers: tuple[TrackerFact, ...] = ()
    dht_enabled: bool = False
    dht_nodes: int | None = None  # None: unknown (no DHT node to ask)
    known_peers: int = 0  # addresses ever learned (any source)
    connecting: int = 0
    connected: int = 0
    connect_errors: tuple[str, ...] = ()  # recent failures to connect, newest last
    choking_us: int = 0  # connected peers with a piece we want that choke us
    useful_peers: int = 0  # connected peers holding at least one wanted missing piece
    missing_pieces: int = 0  # wanted pieces not verified yet
    unavailable_pieces: int = 0  # of those, held by no connected peer
    unavailable_files: tuple[str, ...] = ()  # files those pieces belong to
    metadata_peers: int = 0  # connected peers offering ut_metadata (state "metadata")
    layers_missing: int = 0  # BEP 52 files whose piece layer no peer has sent yet


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _names(items: tuple[str, ...]) -> str:
    shown = ", ".join(items[:MAX_NAMED])
    if len(items) > MAX_NAMED:
        shown += f" and {len(items) - MAX_NAMED} more"
    return shown


def _summary(errors: tuple[str, ...]) -> str:
    """ "connection refused x3, timeout" (most frequent first)."""
    counts = Counter(errors)
    parts = [e if n == 1 else f"{e} x{n}" for e, n in counts.most_common(MAX_NAMED)]
    if len(counts) > MAX_NAMED:
        parts.append(f"{len(counts) - MAX_NAMED} other errors")
    return ", ".join(parts)


def _discovery(f: StallFacts) -> list[str]:
    """Why no peers are coming in: failing trackers, an empty DHT."""
    out: list[str] = []
    failing = [t for t in f.trackers if t.failing]
    if failing:
        errs = "; ".join(f"{t.url}: {t.last_error or 'no answer'}" for t in failing[:MAX_NAMED])
        if len(failing) > MAX_NAMED:
            errs += f"; and {len(failing) - MAX_NAMED} more"
        if len(failing) == len(f.trackers):
            word = (
                "the only tracker is" if len(failing) == 1 else f"all {len(failing)} trackers are"
            )
        else:
            word = f"{len(failing)} of {len(f.trackers)} trackers"
        out.append(f"{word} failing ({errs})")
    if f.dht_enabled and f.dht_nodes == 0:
        out.append("no DHT nodes")
    return out


def diagnose(facts: StallFacts, now: float) -> str | None:
    """The reason nothing has been verified for ``facts.after`` seconds, or None."""
    f = facts
    if f.state not in ("downloading", "metadata"):
        return None
    if now - f.last_progress < f.after:
        return None
    if f.connected:
        if f.state == "metadata":
            if f.metadata_peers == 0:
                return (
                    f"waiting for metadata: none of the {_plural(f.connected, 'connected peer')} "
                    "offers it (no ut_metadata extension)"
                )
            return f"waiting for metadata from {_plural(f.metadata_peers, 'peer')}"
        if f.layers_missing:
            return (
                f"waiting for the piece layers of {_plural(f.layers_missing, 'file')} (BEP 52 hash "
                f"requests): none of the {_plural(f.connected, 'connected peer')} has sent them"
            )
        if f.useful_peers == 0 and f.missing_pieces:
            n = f.unavailable_pieces or f.missing_pieces
            where = f" (in {_names(f.unavailable_files)})" if f.unavailable_files else ""
            return (
                f"{_plural(n, 'wanted piece')}{where} held by none of the "
                f"{_plural(f.connected, 'connected peer')}"
            )
        if f.useful_peers and f.choking_us >= f.useful_peers:
            return (
                f"every peer that has what we want is choking us ({_plural(f.choking_us, 'peer')})"
            )
        if f.unavailable_pieces:
            where = f" (in {_names(f.unavailable_files)})" if f.unavailable_files else ""
            return (
                f"{_plural(f.unavailable_pieces, 'wanted piece')}{where} held by none of the "
                f"{_plural(f.connected, 'connected peer')}; the rest is not arriving"
            )
        return f"connected to {_plural(f.connected, 'peer')} but no data is arriving"
    if f.connecting:
        return f"connecting to {_plural(f.connecting, 'peer')}, none connected yet"
    if f.known_peers:
        errs = f": {_summary(f.connect_errors)}" if f.connect_errors else ""
        return f"{_plural(f.known_peers, 'peer')} known but none reachable{errs}"
    parts = _discovery(f)
    parts.append("no peers known")
    return "; ".join(parts)
