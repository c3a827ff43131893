"""Extension messages (BEP 10): our extended handshake, theirs, and serving our metadata (BEP 9).

Owns: the size of the info dictionary we advertise (``metadata_size``) and
the ut_metadata serving policy (issue 16 #2: a per-peer rate cap from
``swarm.core.admission``, one reply held while the peer does not read; the
budget and the held reply are kept on the ``PeerConnection``). What a peer told us in its extended
handshake (ids, client, ``reqq``, listen port) is recorded on its
``PeerConnection``; a listen port becomes a known address in the pool;
ut_pex goes to discovery's ``PexManager``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from swarm.core import admission, wire
from swarm.core import extensions as ext

if TYPE_CHECKING:
    from swarm.peer import PeerConnection
    from swarm.torrent import Torrent

CLIENT_VERSION = "swarm 0.1.0"
OUR_REQQ = 500


class MetadataExchange:
    """BEP 10 handshakes both ways, and ut_metadata requests answered."""

    def __init__(self, torrent: Torrent) -> None:
        self.torrent = torrent
        self.metadata_size = len(torrent.meta.info_bytes)

    def send_ext_handshake(self, peer: PeerConnection) -> None:
        t = self.torrent
        m = {"ut_metadata": ext.UT_METADATA_ID}
        if not t.meta.private:
            m["ut_pex"] = ext.UT_PEX_ID
        hs = ext.ExtHandshake(
            m=m, v=CLIENT_VERSION, p=t.session.port or None, reqq=OUR_REQQ,
            metadata_size=self.metadata_size,
        )
        peer.send(wire.encode_extended(ext.EXT_HANDSHAKE_ID, ext.encode_ext_handshake(hs)))

    def on_extended(self, peer: PeerConnection, m: wire.Extended) -> None:
        t = self.torrent
        if m.ext_id == ext.EXT_HANDSHAKE_ID:
            hs = ext.decode_ext_handshake(m.payload)
            peer.ext_ids = dict(hs.m)
            if hs.v:
                peer.ext_client = hs.v
            if hs.reqq:
                peer.reqq = min(hs.reqq, 100000)
            if hs.p:
                peer.listen_port = hs.p
                if not peer.outgoing:
                    t.pool.learn((peer.address[0], hs.p))
            t.pex.greet(peer)  # discovery hook: a new ut_pex peer hears of the others at once
            return
        if m.ext_id == ext.UT_METADATA_ID:
            self._on_ut_metadata(peer, m.payload)
        elif m.ext_id == ext.UT_PEX_ID:  # discovery hook: peers from ut_pex, capped and filtered
            t.pex.on_message(peer, m.payload)

    def _on_ut_metadata(self, peer: PeerConnection, payload: bytes) -> None:
        """Serve our info dictionary to magnet downloaders (BEP 9), bounded: a rate
        cap (a peer over it is dropped) and at most one reply waiting while the
        peer does not read (transport paused)."""
        info = self.torrent.meta.info_bytes
        msg = ext.decode_metadata_message(payload, len(info))
        their = peer.ext_ids.get("ut_metadata")
        if their is None or not isinstance(msg, ext.MetadataRequest):
            return
        now = time.monotonic()
        if peer.metadata_budget is None:
            peer.metadata_budget = admission.TokenBucket(admission.METADATA_BURST, admission.METADATA_RATE, now)
        if not peer.metadata_budget.take(now):
            peer.close("ut_metadata requests over the rate cap", warn=True)
            return
        if peer.write_paused:
            peer.metadata_waiting = msg.piece  # one reply at most, sent on resume
            return
        self.serve_metadata(peer, msg.piece)

    def serve_metadata(self, peer: PeerConnection, piece: int) -> None:
        """Send one ut_metadata reply (data, or a reject for a private torrent)."""
        meta = self.torrent.meta
        info = meta.info_bytes
        their = peer.ext_ids.get("ut_metadata")
        if their is None or peer.closed:
            return
        if meta.private:
            peer.send(wire.encode_extended(their, ext.encode_metadata_reject(piece)))
            return
        start = piece * ext.METADATA_PIECE_SIZE
        chunk = info[start : start + ext.METADATA_PIECE_SIZE]
        peer.send(wire.encode_extended(their, ext.encode_metadata_data(piece, len(info), chunk)))
