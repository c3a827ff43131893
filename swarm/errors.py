"""One exception hierarchy for swarm.

Callers (the CLI above all) map the two branches to exit codes: ``BadInput``
means the user gave us something unusable (exit 2); every other ``SwarmError``
is a runtime failure (exit 1). Nothing from the network or a file should ever
surface as a bare ``KeyError``/``ValueError``: decoders raise these instead.
"""

from __future__ import annotations


class SwarmError(Exception):
    """Base of every error swarm raises on purpose."""


class BadInput(SwarmError):
    """Input from the user is unusable: a bad .torrent, magnet, path or option."""


class BencodeError(BadInput):
    """Malformed bencoded data; ``offset`` is where decoding stopped."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} at offset {offset}")
        self.offset = offset
        self.reason = message


class MetainfoError(BadInput):
    """A .torrent (or info dictionary) that is not valid metainfo."""


class MagnetError(BadInput):
    """A magnet URI that cannot be used."""


class ProtocolError(SwarmError):
    """A peer, tracker or DHT node broke its protocol; drop it, carry on."""


class EncryptionError(ProtocolError):
    """A peer's MSE/PE (encryption) handshake failed: bad keys, padding or methods."""


class StorageError(SwarmError):
    """The disk could not do what was needed (missing dir, ENOSPC, changed file)."""


class TrackerError(SwarmError):
    """A tracker was unreachable or answered with a failure."""
