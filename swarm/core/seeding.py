"""What we have sent of each piece, and whom that lets us serve while choked. Pure.

Why: BEP 6 derives a peer's allowed-fast set from its /24 address, so on a
LAN every peer is offered the *same* pieces, and a seed that served each
choked newcomer those pieces sent them once per leecher: in a swarm of 24
that was about 0.9 copies of the file on top of the one the swarm needs,
while the seed's uplink is the swarm's scarcest. Once a whole copy of a piece
has left us, the peers can trade it among themselves: a choked peer's request
for it is rejected (BEP 6 lets us), and it asks someone else.
"""

from __future__ import annotations

from array import array

from swarm.core.wire import BLOCK_SIZE

#: The counters saturate here (16-bit, in blocks): far beyond any decision made on them.
_CAP = 0xFFFF


class FirstCopies:
    """Blocks sent (or queued to be sent) per piece, two bytes a piece."""

    def __init__(self, num_pieces: int, piece_length: int, total_length: int) -> None:
        self.piece_length = piece_length
        self._last = num_pieces - 1
        self._last_size = total_length - self._last * piece_length if num_pieces else 0
        self._blocks = array("H", bytes(2 * num_pieces))

    def _blocks_in(self, index: int) -> int:
        size = self._last_size if index == self._last else self.piece_length
        return -(-size // BLOCK_SIZE)

    def note(self, index: int, length: int) -> None:
        """A block of ``index`` is on its way to some peer."""
        n = self._blocks[index] + -(-length // BLOCK_SIZE)
        self._blocks[index] = n if n < _CAP else _CAP

    def copies(self, index: int) -> float:
        return self._blocks[index] / self._blocks_in(index)

    def serve_choked(self, index: int) -> bool:
        """May a peer we choke have this piece (BEP 6 allowed fast)? Only while its
        first copy has not left us in full."""
        return self._blocks[index] < self._blocks_in(index)
