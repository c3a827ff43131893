"""swarm: a BitTorrent client and LAN tracker.

Public API::

    async with Session("127.0.0.1", 0) as s:
        h = await s.add_torrent("file.torrent", "downloads", peers=[("127.0.0.1", 6881)])
        await h.wait_complete()
"""

from typing import TYPE_CHECKING

from swarm.errors import (
    BadInput,
    BencodeError,
    MagnetError,
    MetainfoError,
    ProtocolError,
    StorageError,
    SwarmError,
    TrackerError,
)

__version__ = "0.1.0"

if TYPE_CHECKING:
    from swarm.session import Session, TorrentHandle
    from swarm.status import TorrentStatus

__all__ = [
    "BadInput",
    "BencodeError",
    "MagnetError",
    "MetainfoError",
    "ProtocolError",
    "Session",
    "StorageError",
    "SwarmError",
    "TorrentHandle",
    "TorrentStatus",
    "TrackerError",
    "__version__",
]


def __getattr__(name: str) -> object:
    # Lazy: `import swarm` (the CLI, `swarm --version`) must not pay for the engine.
    if name in ("Session", "TorrentHandle"):
        from swarm import session

        return getattr(session, name)
    if name == "TorrentStatus":
        from swarm.status import TorrentStatus

        return TorrentStatus
    raise AttributeError(f"module 'swarm' has no attribute {name!r}")
