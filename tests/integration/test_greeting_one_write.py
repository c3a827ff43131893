"""A seed answers a handshake with its own, its extension handshake, its have-all and
its allowed-fast set in one write: the leecher can ask only once it has them all.
They went out as two writes, the handshake alone first; under load the greeting
followed 7-25 ms later (issue 17, first data on the 100 ms link)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from swarm import Session
from swarm.core import wire
from swarm.core.metainfo import parse_metainfo
from swarm.peer import PeerConnection
from tests.helpers_qa.peers import RESERVED, RawPeer
from tests.helpers_qa.torrents import craft


class _Recorded:
    """The transport, with each write kept."""

    def __init__(self, transport: Any, writes: list[bytes]) -> None:
        self._transport, self._writes = transport, writes

    def write(self, data: Any) -> None:
        self._writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


async def test_the_answer_to_a_handshake_is_one_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torrent, payload = craft("greet.bin", length=40 * 16384, piece_length=16384)
    meta = parse_metainfo(torrent)
    (tmp_path / "greet.bin").write_bytes(payload)
    writes: list[bytes] = []
    made = PeerConnection.connection_made

    def recording(self: PeerConnection, transport: Any) -> None:
        made(self, transport)
        self.transport = _Recorded(transport, writes)  # type: ignore[assignment]

    monkeypatch.setattr(PeerConnection, "connection_made", recording)
    async with Session("127.0.0.1", 0) as s:
        await s.add_torrent(meta, tmp_path, seed_only=True)
        assert s.port is not None
        p = await RawPeer.connect(s.port)
        try:
            hs = await p.handshake(meta.info_hash, reserved=RESERVED)
            assert hs is not None
            await p.expect(meta, lambda m: isinstance(m, wire.HaveAll), 5)
        finally:
            p.close()
    first = writes[0]
    assert first[:20] == b"\x13BitTorrent protocol", [len(w) for w in writes]
    dec = wire.MessageDecoder(meta.num_pieces, meta.piece_length, meta.total_length)
    greeting = dec.feed(first[68:])
    kinds = {type(m) for m in greeting}
    assert {wire.Extended, wire.HaveAll, wire.AllowedFast} <= kinds, [len(w) for w in writes]
