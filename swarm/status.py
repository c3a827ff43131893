"""Snapshots of a torrent's state: the contract between the engine and its viewers.

The engine builds these plain, immutable values on demand (a few times a
second at most); the live display, the plain log, ``--json`` and the public
API read only these, never the engine's live objects, so a viewer can neither
slow the transfer down by holding locks nor break it by mutating state.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class PeerStatus:
    address: str  # "host:port"
    client: str  # parsed from the peer id, e.g. "libtorrent 2.1.1"
    am_choking: bool
    am_interested: bool
    peer_choking: bool
    peer_interested: bool
    snubbed: bool
    down_rate: float  # bytes/s, smoothed
    up_rate: float
    downloaded: int  # bytes of piece data received from this peer this session
    uploaded: int
    progress: float  # 0.0..1.0, from the peer's bitfield/haves
    source: str = "manual"  # manual | tracker | dht | lsd | pex | incoming
    outgoing: bool = True
    flags: str = ""  # compact flags for tables, e.g. "dI uC"
    #: "encrypted" (MSE, RC4 payload), "obfuscated" (MSE handshake, plaintext payload) or "plain"
    encryption: str = "plain"


@dataclass(frozen=True, slots=True)
class TrackerStatus:
    url: str
    state: str  # "idle" | "announcing" | "ok" | "error"
    last_announce: float | None  # unix time of the last answer
    next_announce: float | None  # unix time of the next planned announce
    last_error: str | None
    peers: int = 0  # peers in the last answer
    seeders: int | None = None
    leechers: int | None = None


@dataclass(frozen=True, slots=True)
class WebSeedStatus:
    """A BEP 19 web seed as the display shows it."""

    url: str
    state: str  # "idle" | "fetching" | "backoff" | "dropped"
    down_rate: float  # bytes/s, smoothed
    downloaded: int  # payload bytes received from it this session
    error: str | None = None  # the last failure


#: Every value ``TorrentStatus.state`` takes.
STATES = ("metadata", "checking", "downloading", "seeding", "stopped", "error")


@dataclass(frozen=True, slots=True)
class TorrentStatus:
    info_hash: str  # 40 hex digits
    name: str
    state: str  # one of STATES
    total_size: int  # bytes of wanted data (the whole torrent unless --files)
    verified: int  # bytes of wanted data verified on disk
    num_pieces: int
    piece_length: int
    down_rate: float  # bytes/s, smoothed
    up_rate: float
    downloaded: int  # payload bytes received this session
    uploaded: int  # payload bytes sent this session
    peers: tuple[PeerStatus, ...] = ()
    trackers: tuple[TrackerStatus, ...] = ()
    #: One char per cell of the piece map: "#" have, "+" in flight, "." missing,
    #: " " not wanted. The engine picks the cell count; the display rescales.
    piece_map: str = ""
    #: Per-cell count of connected peers holding that part (availability line).
    availability: tuple[int, ...] = ()
    seeds: int = 0  # connected peers that have everything
    dht_nodes: int | None = None
    error: str | None = None
    stalled_reason: str | None = None
    eta: float | None = None  # seconds, None when unknown
    started_at: float = 0.0
    # session counters for --metrics (swarm.metrics), kept by the engine's parts
    hash_failures: int = 0  # pieces that failed their hash check
    hash_fail_bans: int = 0  # peers banned for sending data that failed it
    disk_writes: int = 0  # verified pieces written to disk
    disk_write_seconds: float = 0.0  # the time those writes took, summed
    #: Payload bytes by ``(kind, source, down, up)``: kind "peer" (web seeds to come),
    #: source as ``PeerStatus.source``; every peer's this session, connected now or not.
    bytes_by_source: tuple[tuple[str, str, int, int], ...] = ()
    extra: dict[str, object] = field(default_factory=dict)
    web_seeds: tuple[WebSeedStatus, ...] = ()

    @property
    def progress(self) -> float:
        return 1.0 if self.total_size == 0 else self.verified / self.total_size

    @property
    def ratio(self) -> float:
        return 0.0 if self.downloaded == 0 else self.uploaded / self.downloaded
