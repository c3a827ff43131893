"""BEP 52 transfers through the public API, swarm to swarm on 127.0.0.1:
v2-only torrents end to end, hybrids reached by either info-hash."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from swarm import Session
from swarm.core.metainfo import Metainfo, parse_metainfo
from swarm.create import build_torrent
from tests.helpers.trees import same_tree, seed_then_get
from tests.helpers.wait import until

PL = 32768


def make_tree(root: Path) -> Path:
    """Files that end inside pieces (v2 pads them to piece boundaries), a
    file smaller than a piece and an empty one."""
    d = root / "tree"
    (d / "sub").mkdir(parents=True)
    (d / "a.bin").write_bytes(os.urandom(3 * PL + 1234))
    (d / "empty.txt").write_bytes(b"")
    (d / "sub" / "b.bin").write_bytes(os.urandom(5 * PL))
    (d / "sub" / "c.txt").write_bytes(b"hello\n" * 1000)
    return d


def tree_torrent(tmp_path: Path, version: int | str) -> tuple[Path, bytes, Metainfo]:
    """``make_tree``'s files, their torrent of ``version`` (2 or "hybrid") and its metainfo."""
    src = make_tree(tmp_path)
    data = build_torrent(src, piece_length=PL, version=version).data
    return src, data, parse_metainfo(data)


@pytest.mark.parametrize("version", [2, "hybrid"])
async def test_seed_to_get_v2(tmp_path: Path, version: int | str) -> None:
    src, data, meta = tree_torrent(tmp_path, version)
    assert meta.version == version
    out = tmp_path / "out"
    _, st = await seed_then_get(data, meta, tmp_path, out)
    assert st.state == "seeding" and st.verified == st.total_size
    assert same_tree(src, out / "tree")
    assert not (out / "tree" / ".pad").exists()


@pytest.mark.parametrize("encryption", ["off", "require"])
async def test_hybrid_seed_answers_its_v2_hash(tmp_path: Path, encryption: str) -> None:
    """A v2 peer of a hybrid handshakes with the truncated SHA-256 (plain, or
    as the MSE key): the session routes it to the same torrent, which answers
    with that hash."""
    from swarm.peer import MetadataConnection

    src, data, meta = tree_torrent(tmp_path, "hybrid")
    assert meta.info_hash_v2 is not None
    async with (
        Session("127.0.0.1", 0, encryption=encryption) as seed_s,
        Session("127.0.0.1", 0, encryption=encryption) as get_s,
    ):
        await seed_s.add_torrent(data, tmp_path, seed_only=True)
        short = meta.info_hash_v2[:20]
        conn = await get_s.open_connection(
            "127.0.0.1", seed_s.port or 0, short, lambda: MetadataConnection(short, get_s.peer_id)
        )
        try:
            first = await asyncio.wait_for(conn.queue.get(), 10)
            assert getattr(first, "info_hash", first) == short
        finally:
            conn.close()


async def test_a_peer_sending_corrupt_v2_blocks_is_caught(tmp_path: Path) -> None:
    """Blocks whose bytes are wrong fail the Merkle check: the piece is not
    written, the sender is struck and banned, an honest seed completes it."""
    from test_engine_fakepeer import FakeSeed



    src, data, meta = tree_torrent(tmp_path, 2)
    stream = bytearray(meta.total_length)  # pads are zeros
    for f in meta.files:
        if not f.pad and f.length:
            stream[f.offset : f.end] = src.joinpath(*f.path[1:]).read_bytes()

    def lie(index: int, begin: int, length: int) -> bytes:
        off = index * PL + begin
        block = bytearray(stream[off : off + length])
        block[length // 2] ^= 0x01  # one bit per block: only a hash can tell
        return bytes(block)

    liar = FakeSeed(meta, lie)
    liar_port = await liar.start()
    out = tmp_path / "out"
    out.mkdir()
    try:
        async with Session("127.0.0.1", 0) as seed_s, Session("127.0.0.1", 0) as get_s:
            await seed_s.add_torrent(data, tmp_path, seed_only=True)
            leech = await get_s.add_torrent(meta, out, peers=[("127.0.0.1", liar_port)])
            await until(lambda: leech.status().extra["banned"] >= 1, 20, "the liar banned")
            leech.add_peer("127.0.0.1", seed_s.port or 0)
            await leech.wait_complete(timeout=30)
            st = leech.status()
            assert st.extra["hash_failures"] >= 1 and st.hash_fail_bans == 1
    finally:
        await liar.close()
    assert same_tree(src, out / "tree")


async def test_a_hybrid_is_announced_on_the_dht_under_both_hashes(tmp_path: Path) -> None:
    src, data, meta = tree_torrent(tmp_path, "hybrid")
    assert meta.info_hash_v2 is not None
    async with Session("127.0.0.1", 0, enable_dht=True, dht_bootstrap=()) as get_s, Session(
        "127.0.0.1", 0, enable_dht=True, dht_bootstrap=[("127.0.0.1", get_s.port or 0)]
    ) as seed_s:
        await seed_s.add_torrent(data, tmp_path, seed_only=True)
        assert get_s.dht is not None
        for info_hash in (meta.info_hash, meta.info_hash_v2[:20]):
            deadline = asyncio.get_running_loop().time() + 20
            while ("127.0.0.1", seed_s.port) not in await get_s.dht.get_peers(info_hash, timeout=2):
                assert asyncio.get_running_loop().time() < deadline, f"{info_hash.hex()} not announced"
                await asyncio.sleep(0.1)


def without_layers(data: bytes) -> bytes:
    from swarm.core.bencode import decode, encode

    top = decode(data)
    assert top.pop(b"piece layers")
    return encode(top)


@pytest.mark.parametrize("source", ["magnet", "torrent without layers"])
async def test_piece_layers_come_from_peers(tmp_path: Path, source: str) -> None:
    """A `urn:btmh:` magnet (info dict by ut_metadata) or a v2 .torrent
    without `piece layers`: the layers come by BEP 52 hash requests, checked
    against each file's pieces root, then the pieces against them."""
    from swarm.core.magnet import Magnet

    src, data, meta = tree_torrent(tmp_path, 2)
    assert meta.info_hash_v2 is not None and len(meta.piece_layers) == 2  # a.bin, sub/b.bin
    out = tmp_path / "out"
    out.mkdir()
    async with Session("127.0.0.1", 0) as seed_s, Session("127.0.0.1", 0) as get_s:
        await seed_s.add_torrent(data, tmp_path, seed_only=True)
        peer = ("127.0.0.1", seed_s.port or 0)
        if source == "magnet":
            magnet = Magnet(meta.info_hash, info_hash_v2=meta.info_hash_v2, peers=[peer])
            leech = await get_s.add_torrent(magnet, out)
        else:
            leech = await get_s.add_torrent(without_layers(data), out, peers=[peer])
        assert leech.metainfo.piece_layers == {}
        await leech.wait_complete(timeout=30)
        assert leech.metainfo.piece_layers == meta.piece_layers
        assert leech.status().extra["hash_failures"] == 0
    assert same_tree(src, out / "tree")


async def test_hash_requests_are_answered_from_our_piece_layers(tmp_path: Path) -> None:
    """A v2 peer asks a seed for a file's piece layer: the answer's proof
    reaches the pieces root; a root we hold no layer for is rejected."""
    from swarm.core import hashes, wire

    src, data, meta = tree_torrent(tmp_path, 2)
    big = next(f for f in meta.files if f.path[-1] == "b.bin")
    small = next(f for f in meta.files if f.path[-1] == "c.txt")
    assert big.pieces_root is not None and small.pieces_root is not None
    async with Session("127.0.0.1", 0) as seed_s:
        await seed_s.add_torrent(data, tmp_path, seed_only=True)
        reader, writer = await asyncio.open_connection("127.0.0.1", seed_s.port or 0)
        try:
            writer.write(wire.Handshake(meta.info_hash, b"-XX0001-" + bytes(12), wire.make_reserved()).encode())
            theirs = wire.parse_handshake(await asyncio.wait_for(reader.readexactly(68), 10))
            assert theirs.info_hash == meta.info_hash_v2[:20]
            fetcher = hashes.PieceLayerFetcher([(big.pieces_root, big.length)], PL)
            ask = fetcher.next_request("me", 0.0)
            assert ask is not None
            writer.write(wire.encode(ask))
            bogus = wire.HashRequest(small.pieces_root, 1, 0, 2, 0)  # a one-piece file: no layer
            writer.write(wire.encode(bogus))
            dec = wire.MessageDecoder(meta.num_pieces, meta.piece_length, meta.total_length)
            got: list[object] = []
            while not any(isinstance(m, wire.HashReject) for m in got):
                chunk = await asyncio.wait_for(reader.read(65536), 10)
                assert chunk, "the seed closed the connection"
                got += dec.feed(chunk)
            answer = next(m for m in got if isinstance(m, wire.Hashes))
            assert fetcher.on_hashes(answer) and fetcher.done
            assert fetcher.piece_layers() == {big.pieces_root: meta.piece_layers[big.pieces_root]}
            reject = next(m for m in got if isinstance(m, wire.HashReject))
            assert reject.pieces_root == small.pieces_root
        finally:
            writer.close()


async def test_block_hash_requests_are_answered_from_our_data(tmp_path: Path) -> None:
    """libtorrent asks for a piece's block hashes (base layer 0) after a hash failure:
    a seed hashes that piece's blocks from its data and answers with a proof that climbs
    to the pieces root, for a whole piece, part of one and a file's partial last piece;
    a run longer than a piece is rejected, and one request per peer is served at a time."""
    from swarm.core import hashes, merkle, wire

    src, data, meta = tree_torrent(tmp_path, 2)
    files = {f.path[-1]: f for f in meta.files}
    big, tail = files["b.bin"], files["a.bin"]  # 5 whole pieces; 3 pieces and 1234 bytes
    assert big.pieces_root is not None and tail.pieces_root is not None
    per_piece = PL // merkle.BLOCK_SIZE

    def ask(f: object, index: int, length: int) -> wire.HashRequest:
        assert isinstance(f, type(big)) and f.pieces_root is not None
        # as libtorrent does: the proof reaches just below the root
        return wire.HashRequest(f.pieces_root, 0, index, length, hashes.tree_layers(f.length) - 1)

    def leaves(f: object, piece: int) -> list[bytes]:
        assert isinstance(f, type(big))
        body = (src.joinpath(*f.path[1:])).read_bytes()[piece * PL : (piece + 1) * PL]
        return merkle.leaf_hashes(body)

    asks = [ask(big, 1 * per_piece, per_piece), ask(big, 4 * per_piece + 1, 1), ask(tail, 3 * per_piece, per_piece)]
    too_long = ask(big, 0, 2 * per_piece)
    async with Session("127.0.0.1", 0) as seed_s:
        await seed_s.add_torrent(data, tmp_path, seed_only=True)
        reader, writer = await asyncio.open_connection("127.0.0.1", seed_s.port or 0)
        try:
            writer.write(wire.Handshake(meta.info_hash, b"-XX0001-" + bytes(12), wire.make_reserved()).encode())
            await asyncio.wait_for(reader.readexactly(68), 10)
            dec = wire.MessageDecoder(meta.num_pieces, meta.piece_length, meta.total_length)

            async def answer() -> wire.Hashes | wire.HashReject:
                while True:
                    for m in dec.feed(await asyncio.wait_for(reader.read(65536), 10) or b""):
                        if isinstance(m, wire.Hashes | wire.HashReject):
                            return m

            for req in asks:
                writer.write(wire.encode(req))
                got = await answer()
                assert isinstance(got, wire.Hashes), got
                assert got.request == req
                f = big if req.pieces_root == big.pieces_root else tail
                run = hashes.verify_hashes(got, req.pieces_root, f.length)
                piece, first = divmod(req.index, per_piece)
                assert run == leaves(f, piece)[first : first + req.length]
            writer.write(wire.encode(too_long))
            assert isinstance(await answer(), wire.HashReject)
            # two at once: the second waits for no thread, it is rejected
            writer.write(wire.encode(asks[0]) + wire.encode(asks[2]))
            both = [await answer(), await answer()]
            assert sorted(type(m).__name__ for m in both) == ["HashReject", "Hashes"]
        finally:
            writer.close()


async def test_libtorrent_takes_our_block_hashes_after_a_hash_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """libtorrent leeches a v2 torrent from our seed and a peer that corrupts every
    block: after a hash failure it asks our seed for a piece's block hashes (base
    layer 0), takes the answer without dropping our seed, and completes."""
    from conftest import require_libtorrent
    from test_engine_fakepeer import FakeSeed

    from swarm.core import wire
    from swarm.parts.hashes import HashExchange
    from tests.helpers.lt import PLAIN_TCP, lt_session

    lt = require_libtorrent()
    pl = 4 * 16384
    body = os.urandom(40 * pl)
    (tmp_path / "f.bin").write_bytes(body)
    data = build_torrent(tmp_path / "f.bin", piece_length=pl, version=2).data
    meta = parse_metainfo(data)
    asked: list[wire.HashRequest] = []
    answer = HashExchange.on_hash_request

    def spy(self: HashExchange, peer: object, m: wire.HashRequest) -> None:
        asked.append(m)
        answer(self, peer, m)  # type: ignore[arg-type]

    monkeypatch.setattr(HashExchange, "on_hash_request", spy)

    def lie(index: int, begin: int, length: int) -> bytes:
        block = bytearray(body[index * pl + begin :][:length])
        block[5] ^= 1
        return bytes(block)

    liar = FakeSeed(meta, lie)
    liar_port = await liar.start()
    ses = lt_session(lt, alert_mask=lt.alert.category_t.all_categories, **PLAIN_TCP)
    dropped: list[str] = []
    try:
        async with Session("127.0.0.1", 0) as seed_s:
            await seed_s.add_torrent(data, tmp_path, seed_only=True)
            out = tmp_path / "lt"
            out.mkdir()
            atp = lt.add_torrent_params()
            atp.ti = lt.torrent_info(lt.bdecode(data))
            atp.save_path = str(out)
            h = ses.add_torrent(atp)
            h.connect_peer(("127.0.0.1", liar_port))
            h.connect_peer(("127.0.0.1", seed_s.port or 0))

            def done() -> bool:
                for a in ses.pop_alerts():
                    ours = isinstance(a, lt.peer_disconnected_alert) and a.endpoint[1] == seed_s.port
                    if ours and "torrent finished" not in a.message():  # seeds part when both are done
                        dropped.append(a.message())
                return bool(h.status().is_seeding)

            await until(done, 60, "libtorrent to complete")
        assert any(m.base_layer == 0 for m in asked), asked
        assert dropped == []
        assert (out / "f.bin").read_bytes() == body
    finally:
        await liar.close()


async def test_a_shared_failed_piece_is_blamed_by_block_hashes(tmp_path: Path) -> None:
    """A v2 piece built from two peers' blocks fails: the block hashes asked of a peer
    name the sender of the bad blocks, which is banned at once, the honest one not,
    although no good copy of the piece ever passes (the v1 way to find the liar)."""
    from swarm.core import hashes, merkle, wire
    from tests.helpers.peer_server import LocalPeerServer

    pl = 4 * merkle.BLOCK_SIZE
    (tmp_path / "f.bin").write_bytes(os.urandom(2 * pl))
    data = build_torrent(tmp_path / "f.bin", piece_length=pl, version=2).data
    meta = parse_metainfo(data)
    body = (tmp_path / "f.bin").read_bytes()
    root = meta.files[0].pieces_root
    assert root is not None
    server = hashes.PieceLayerServer(meta.piece_layers, [(root, len(body))], pl)

    class HalfSeed(LocalPeerServer):
        """Claims every piece; serves the blocks of its parity (``lie``: with a bit flipped),
        rejects the others; the honest one answers block hash requests."""

        def __init__(self, parity: int, lie: bool) -> None:
            super().__init__()
            self.parity, self.lie = parity, lie

        async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                hs = wire.parse_handshake(await reader.readexactly(68))
                writer.write(wire.Handshake(hs.info_hash, os.urandom(20), wire.make_reserved()).encode())
                writer.write(wire.encode_have_all() + wire.encode_unchoke())
                dec = wire.MessageDecoder(meta.num_pieces, meta.piece_length, meta.total_length)
                while chunk := await reader.read(65536):
                    for m in dec.feed(chunk):
                        if isinstance(m, wire.Request):
                            if (m.begin // merkle.BLOCK_SIZE) % 2 != self.parity:
                                writer.write(wire.encode_reject(m.index, m.begin, m.length))
                                continue
                            block = bytearray(body[m.index * pl + m.begin :][: m.length])
                            block[0] ^= self.lie
                            writer.write(wire.encode_piece(m.index, m.begin, bytes(block)))
                        elif isinstance(m, wire.HashRequest):
                            piece = server.block_piece(m)
                            leaves = [] if piece is None else merkle.leaf_hashes(body[piece * pl :][:pl])
                            reply: wire.Hashes | wire.HashReject = wire.HashReject(m.pieces_root, 0, m.index, m.length, m.proof_layers)
                            if not self.lie and piece is not None:
                                reply = server.answer_blocks(m, leaves)
                            writer.write(wire.encode(reply))
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                return

    honest, liar = HalfSeed(0, False), HalfSeed(1, True)
    ports = [await honest.start(), await liar.start()]
    try:
        async with Session("127.0.0.1", 0) as get_s:
            out = tmp_path / "out"
            out.mkdir()
            leech = await get_s.add_torrent(meta, out, peers=[("127.0.0.1", p) for p in ports])
            await until(lambda: leech.status().hash_fail_bans >= 1, 20, "the liar banned")
            st = leech.status()
            assert st.extra["hash_failures"] >= 1 and st.hash_fail_bans == 1
            assert [p.address for p in st.peers] == [f"127.0.0.1:{ports[0]}"]  # the honest one stays
            assert st.verified == 0  # no copy ever passed: the block hashes found the liar
    finally:
        await honest.close()
        await liar.close()


async def test_a_peer_answering_wrong_hashes_is_banned(tmp_path: Path) -> None:
    """Hashes that do not climb to the pieces root are refused (the peer is
    banned, nothing is trusted); an honest seed then supplies the layers."""
    from swarm.core import wire
    from tests.helpers.peer_server import LocalPeerServer

    src, data, meta = tree_torrent(tmp_path, 2)

    class WrongHashes(LocalPeerServer):
        """Claims every piece and answers each hash request with garbage hashes."""

        asked = 0

        async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                hs = wire.parse_handshake(await reader.readexactly(68))
                writer.write(wire.Handshake(hs.info_hash, b"-XX0001-" + bytes(12), wire.make_reserved()).encode())
                writer.write(wire.encode_have_all())
                dec = wire.MessageDecoder(meta.num_pieces, meta.piece_length, meta.total_length)
                while data := await reader.read(65536):
                    for m in dec.feed(data):
                        if isinstance(m, wire.HashRequest):
                            WrongHashes.asked += 1
                            n = m.length + wire.hash_proof_count(m.length, m.proof_layers)
                            bogus = tuple(bytes([7]) * 32 for _ in range(n))
                            writer.write(wire.encode(wire.Hashes(m.pieces_root, m.base_layer, m.index, m.length, m.proof_layers, bogus)))
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                return

    liar = WrongHashes()
    liar_port = await liar.start()
    out = tmp_path / "out"
    out.mkdir()
    try:
        async with Session("127.0.0.1", 0) as seed_s, Session("127.0.0.1", 0) as get_s:
            await seed_s.add_torrent(data, tmp_path, seed_only=True)
            leech = await get_s.add_torrent(without_layers(data), out, peers=[("127.0.0.1", liar_port)])
            await until(lambda: leech.status().extra["banned"] >= 1, 10, "the liar banned")
            assert WrongHashes.asked and leech.metainfo.piece_layers == {}
            leech.add_peer("127.0.0.1", seed_s.port or 0)
            await leech.wait_complete(timeout=30)
            assert leech.metainfo.piece_layers == meta.piece_layers
    finally:
        await liar.close()
    assert same_tree(src, out / "tree")


@pytest.mark.parametrize("resumed", [False, True])
async def test_a_seed_without_piece_layers_rebuilds_them_from_its_data(tmp_path: Path, resumed: bool) -> None:
    """A v2 seed whose .torrent lacks piece layers (as `get` saves a btmh
    magnet's) computes them from the verified data, so magnet leechers can
    get them from it; with resume data too (then the data is rechecked)."""
    from swarm.core.magnet import Magnet

    src, data, meta = tree_torrent(tmp_path, 2)
    bare = without_layers(data)
    out = tmp_path / "out"
    out.mkdir()
    state = tmp_path / "state"
    state.mkdir()
    if resumed:  # a first run leaves resume data behind
        async with Session("127.0.0.1", 0, state_dir=state) as s:
            await s.add_torrent(bare, tmp_path, seed_only=True)
    async with Session("127.0.0.1", 0, state_dir=state) as seed_s, Session("127.0.0.1", 0) as get_s:
        seed = await seed_s.add_torrent(bare, tmp_path, seed_only=True)
        assert seed.status().state == "seeding"
        assert seed.metainfo.piece_layers == meta.piece_layers
        magnet = Magnet(meta.info_hash, info_hash_v2=meta.info_hash_v2, peers=[("127.0.0.1", seed_s.port or 0)])
        leech = await get_s.add_torrent(magnet, out)
        await leech.wait_complete(timeout=30)
    assert same_tree(src, out / "tree")


async def test_lsd_finds_a_hybrid_by_its_v2_hash(tmp_path: Path) -> None:
    """A BEP 14 announce naming a hybrid's truncated v2 hash is a peer of that torrent."""
    src, data, meta = tree_torrent(tmp_path, "hybrid")
    assert meta.info_hash_v2 is not None
    async with Session("127.0.0.1", 0, enable_dht=True, dht_bootstrap=()) as s:
        assert s.discovery is not None
        h = await s.add_torrent(data, tmp_path, seed_only=True)
        s.discovery._on_lsd_peer(meta.info_hash_v2[:20], "127.0.0.1", 40001)
        assert ("127.0.0.1", 40001) in h._t.pool.known
