"""One fuzz target per decoder of hostile bytes, and the contract each must keep.

A target takes arbitrary bytes. The decoder may refuse them only with the
error type it documents (``swarm.errors`` or the module's own subclass of it);
any other exception escaping (IndexError, UnicodeDecodeError, RecursionError,
ValueError...) or a broken invariant (AssertionError) is a finding. Where a
decoder has an encoder, a decoded value must also survive a round trip.

Targets use no atheris API, so the regression tests and the seed writer can
call them directly; ``fuzz/run.py`` drives them under atheris.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass

from swarm.core import bencode, extensions, hashes, magnet, merkle, metainfo, wire
from swarm.core import lsd as core_lsd
from swarm.core.announce import (
    BadAnnounce,
    parse_announce_query,
    parse_announce_response,
    parse_scrape_query,
    parse_scrape_response,
    udp_parse_announce,
    udp_parse_connect,
    udp_parse_request,
    udp_parse_scrape,
    udp_transaction_id,
)
from swarm.core.bitfield import Bitfield
from swarm.core.dht import krpc
from swarm.core.peerid import client_name
from swarm.errors import (
    BencodeError,
    MagnetError,
    MetainfoError,
    ProtocolError,
    TrackerError,
)
from swarm.httpstream import BadRange, parse_range
from tracker.fastlane import parse_head


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    run: Callable[[bytes], None]
    #: The only exceptions the decoder may raise on hostile input.
    allowed: tuple[type[BaseException], ...]
    doc: str

    def __call__(self, data: bytes) -> None:
        """Feed ``data``; a refusal with an allowed error is fine, anything else escapes."""
        try:
            self.run(data)
        except self.allowed:
            pass


TARGETS: dict[str, Target] = {}


def target(
    name: str, *allowed: type[BaseException]
) -> Callable[[Callable[[bytes], None]], Callable[[bytes], None]]:
    def register(fn: Callable[[bytes], None]) -> Callable[[bytes], None]:
        TARGETS[name] = Target(name, fn, allowed, (fn.__doc__ or "").strip().split("\n")[0])
        return fn

    return register


# --------------------------------------------------------------------------- bencode


@target("bencode", BencodeError)
def fuzz_bencode(data: bytes) -> None:
    """swarm.core.bencode: decode, decode_prefix, decode_with_spans; canonical round trip."""
    try:
        value = bencode.decode(data)
    except BencodeError:
        pass
    else:  # strict mode accepts only canonical bencoding: it must re-encode byte for byte
        assert bencode.encode(value) == data, "strict decode accepted non-canonical input"
    value, end = bencode.decode_prefix(data, strict_order=False, max_depth=20)
    assert 0 < end <= len(data)
    value, spans, end = bencode.decode_with_spans(data)
    for start, stop in spans.values():
        assert 0 < start < stop <= end
        bencode.decode(data[start:stop], strict_order=False)  # each span is one whole value


# --------------------------------------------------------------------------- metainfo


def _check_safe_path(path: tuple[str, ...]) -> None:
    for part in path:
        assert part not in ("", ".", ".."), f"unsafe path component {part!r}"
        assert "/" not in part and "\\" not in part and "\x00" not in part, part
        assert len(part.encode("utf-8")) <= metainfo.MAX_COMPONENT_BYTES, part


@target("metainfo", MetainfoError)
def fuzz_metainfo(data: bytes) -> None:
    """swarm.core.metainfo: a .torrent file (parse_metainfo) and a bare info dict (parse_info)."""
    try:
        meta = metainfo.parse_metainfo(data)
    except MetainfoError:
        meta = metainfo.parse_info(data)
    for f in meta.files:
        _check_safe_path(f.path)
        if f.symlink is not None:
            _check_safe_path(f.symlink)
    assert meta.piece_size(meta.num_pieces - 1) > 0
    again = metainfo.parse_metainfo(meta.to_bytes())
    assert again.info_hash == meta.info_hash and again.files == meta.files


# --------------------------------------------------------------------------- magnet


@target("magnet", MagnetError)
def fuzz_magnet(data: bytes) -> None:
    """swarm.core.magnet.parse_magnet (text decoded as UTF-8); to_uri round trip."""
    m = magnet.parse_magnet(data.decode("utf-8", "surrogateescape"))
    again = magnet.parse_magnet(m.to_uri())
    assert (again.info_hash, again.trackers, again.peers, again.web_seeds) == (
        m.info_hash, m.trackers, m.peers, m.web_seeds,
    )  # fmt: skip
    assert (again.name or None) == (m.name or None)  # "dn=" (empty) is no name
    assert (again.select_only or None) == (m.select_only or None)


# --------------------------------------------------------------------------- peer wire


_PIECE_LENGTH = 32768


def _sink_store() -> tuple[wire.BlockSink, dict[tuple[int, int], bytearray]]:
    """A block sink that takes every other block (by offset), as the engine's slots do."""
    taken: dict[tuple[int, int], bytearray] = {}

    def sink(index: int, begin: int, length: int) -> memoryview | None:
        if (begin // 16384) % 2 or (index, begin) in taken:
            return None
        slot = taken[(index, begin)] = bytearray(length)
        return memoryview(slot)

    return sink, taken


def _decode_wire(
    stream: bytes, flags: int, chunks: list[int] | None
) -> tuple[list[wire.Message], dict[tuple[int, int], bytes]]:
    """All messages of ``stream``, fed whole (``chunks`` None) or in the given chunk sizes."""
    sink, taken = _sink_store()
    dec = wire.MessageDecoder(
        block_sink=sink if flags & 2 else None, direct=bool(flags & 4), max_block=16384 * 2
    )
    if flags & 1:  # a known torrent: 7 pieces of 32 KiB and a short last one
        dec.set_torrent(8, _PIECE_LENGTH, 7 * _PIECE_LENGTH + 1000)
    out: list[wire.Message] = []
    if chunks is None:
        out = dec.feed(stream)
    else:
        pos = 0
        for size in chunks:
            part = stream[pos : pos + size]
            pos += size
            if flags & 8:  # the BufferedProtocol path
                while part:
                    buf = dec.get_buffer(len(part))
                    n = min(len(buf), len(part))
                    buf[:n] = part[:n]
                    part = part[n:]
                    out += dec.buffer_updated(n)
            else:
                out += dec.feed(part)
    return out, {k: bytes(v) for k, v in taken.items()}


@target("wire", ProtocolError)
def fuzz_wire(data: bytes) -> None:
    """swarm.core.wire: handshake and message decoders; any chunking gives the same messages.

    Byte 0 picks the set-up (torrent known, block sink, direct, BufferedProtocol path,
    a handshake first), bytes 1-2 seed the chunking, the rest is the stream.
    """
    if len(data) < 3:
        return
    flags, seed, stream = data[0], int.from_bytes(data[1:3], "big"), data[3:]
    if flags & 16:
        hs = wire.HandshakeDecoder()
        stream = hs.feed(stream)
        if not hs.done:
            return
        peer_id = hs.handshake.peer_id
        assert client_name(peer_id)  # shown in the UI: any 20 bytes must name something
    try:
        whole = _decode_wire(stream, flags, None)
    except ProtocolError:
        whole = None
    rng = random.Random(seed)
    chunks = []
    left = len(stream)
    while left > 0:
        chunks.append(min(left, rng.choice((1, 2, 3, 4, 5, 7, 13, 17, 100, 16397))))
        left -= chunks[-1]
    try:
        chunked = _decode_wire(stream, flags, chunks)
    except ProtocolError:
        assert whole is None, "a chunking raised where the whole stream decoded"
        raise
    assert whole is not None, "a chunking decoded a stream that fails whole"
    assert chunked == whole, "chunked decoding differs from whole decoding"
    for msg in whole[0]:
        if isinstance(msg, wire.BitfieldMsg):  # a magnet's engine checks it once it knows more
            try:
                Bitfield.from_bytes(msg.data, 8)
            except ProtocolError:
                pass


# --------------------------------------------------------------------------- extensions


@target("extensions", ProtocolError)
def fuzz_extensions(data: bytes) -> None:
    """swarm.core.extensions: extended handshake, ut_metadata, ut_pex payloads.

    Byte 0 picks the decoder (and, for ut_metadata, whether the size is known).
    """
    if not data:
        return
    kind, payload = data[0] % 4, data[1:]
    if kind == 0:
        extensions.decode_ext_handshake(payload)
    elif kind in (1, 2):
        size = None if kind == 1 else 40000
        msg = extensions.decode_metadata_message(payload, size)
        if isinstance(msg, extensions.MetadataData):
            assembler = extensions.MetadataAssembler(b"\0" * 20, msg.total_size)
            try:
                assembler.add(msg.piece, msg.data)
            except ProtocolError:  # the hash cannot match: fine, it must only not crash
                pass
    else:
        pex = extensions.decode_pex(payload)
        again = extensions.decode_pex(extensions.encode_pex(pex))
        assert {(p.ip, p.port) for p in again.added} == {(p.ip, p.port) for p in pex.added}


# --------------------------------------------------------------------------- DHT


@target("krpc", krpc.KRPCError)
def fuzz_krpc(data: bytes) -> None:
    """swarm.core.dht.krpc.decode_message; a decoded query or response re-encodes to itself."""
    msg = krpc.decode_message(data)
    if not isinstance(msg, krpc.Error):
        assert krpc.decode_message(krpc.encode_message(msg)) == msg


# --------------------------------------------------------------------------- trackers


@target("tracker_query", BadAnnounce)
def fuzz_tracker_query(data: bytes) -> None:
    """swarm.core.announce: the tracker's announce and scrape query parsers."""
    with contextlib.suppress(BadAnnounce):  # not try/finally: that would mask a finding
        parse_announce_query(data)
    parse_scrape_query(data)


@target("fastlane_head")
def fuzz_fastlane_head(data: bytes) -> None:
    """tracker.fastlane.parse_head: None for anything odd, never an exception."""
    head = parse_head(data)
    if head is None:
        return
    path, query, version, _ = head
    assert path in (b"/announce", b"/scrape") and version in (b"HTTP/1.0", b"HTTP/1.1")
    try:
        parse_announce_query(query) if path == b"/announce" else parse_scrape_query(query)
    except BadAnnounce:
        pass


@target("tracker_answer", ProtocolError, TrackerError)
def fuzz_tracker_answer(data: bytes) -> None:
    """swarm.core.announce: an HTTP tracker's announce and scrape answers (client side)."""
    with contextlib.suppress(ProtocolError, TrackerError):
        resp = parse_announce_response(data)
        assert all(0 < port < 65536 for _, port in resp.peers)
    parse_scrape_response(data)


@target("udp_tracker", ProtocolError, TrackerError)
def fuzz_udp_tracker(data: bytes) -> None:
    """swarm.core.announce: BEP 15 packets, client side (answers) and server side (requests)."""
    try:
        udp_parse_request(data)
    except BadAnnounce:
        pass
    tid = udp_transaction_id(data)
    if tid is None:
        tid = 0
    for parse in (
        udp_parse_connect,
        udp_parse_announce,
        lambda d, t: udp_parse_announce(d, t, ipv6=True),
        lambda d, t: udp_parse_scrape(d, t, [bytes(20)] * (1 + len(d) % 3)),
    ):
        try:
            parse(data, tid)
        except (ProtocolError, TrackerError):
            pass


# --------------------------------------------------------------------------- HTTP streaming


@target("http_range", BadRange)
def fuzz_http_range(data: bytes) -> None:
    """swarm.httpstream.parse_range; bytes 0-7 are the file size, the rest the header."""
    if len(data) < 8:
        return
    size = int.from_bytes(data[:8], "big") >> (data[0] % 64)
    header = data[8:].decode("utf-8", "surrogateescape")
    rng = parse_range(header, size)
    if rng is not None:
        start, end = rng
        assert 0 <= start <= end < size, (start, end, size)


# --------------------------------------------------------------------------- LSD


@target("lsd", ProtocolError)
def fuzz_lsd(data: bytes) -> None:
    """swarm.core.lsd.parse_announce: a BEP 14 BT-SEARCH datagram."""
    ann = core_lsd.parse_announce(data)
    assert 0 < ann.port < 65536 and ann.info_hashes
    assert all(len(h) == 20 for h in ann.info_hashes)


# --------------------------------------------------------------------------- BEP 52 hashes


def _hash_file(blocks: int, short: int) -> tuple[int, list[list[bytes]]]:
    """(length, layers) of a file of ``blocks`` blocks with made-up block hashes."""
    leaves = [hashlib.sha256(b"%d" % i).digest() for i in range(blocks)]
    return blocks * 16384 - short, merkle.layers(leaves)


#: Files the hash messages are about: two blocks, a few pieces, over 512 pieces.
HASH_FILES = [_hash_file(2, 1), _hash_file(40, 100), _hash_file(1100, 0)]
HASH_PIECE_LAYER = 2  # 64 KiB pieces


def hash_servers(file: int) -> tuple[int, list[hashes.HashServer]]:
    """A file's length and servers for its block layer and its piece layer."""
    length, tree = HASH_FILES[file]
    return length, [
        hashes.HashServer(tree[layer], layer, length)
        for layer in (0, HASH_PIECE_LAYER)
        if layer < hashes.tree_layers(length)
    ]


@target("hashes", ProtocolError)
def fuzz_hashes(data: bytes) -> None:
    """swarm.core.hashes: hash requests answered, hashes answers verified (never forged).

    Byte 0 picks the file (of HASH_FILES), the rest is a wire stream of BEP 52 messages.
    """
    if not data:
        return
    file = data[0] % len(HASH_FILES)
    length, tree = HASH_FILES[file]
    _, servers = hash_servers(file)
    fetcher = hashes.PieceLayerFetcher([(tree[-1][0], length)], 16384 << HASH_PIECE_LAYER)
    for msg in wire.MessageDecoder().feed(data[1:]):
        if isinstance(msg, wire.HashRequest):
            for server in servers:
                answer = server.answer(msg)
                fits = msg.pieces_root == tree[-1][0] and msg.base_layer == server.base_layer
                assert isinstance(answer, wire.Hashes) == (
                    fits and hashes.check_request(msg, length) is None
                )
                assert wire.MessageDecoder().feed(wire.encode(answer)) == [answer]
        elif isinstance(msg, wire.Hashes):
            try:
                got = hashes.verify_hashes(msg, tree[-1][0], length)
            except ProtocolError:
                continue
            width = hashes.layer_width(length, msg.base_layer)
            assert got == tree[msg.base_layer][msg.index : min(width, msg.index + msg.length)]
            fetcher.on_hashes(msg)
        elif isinstance(msg, wire.HashReject):
            fetcher.on_reject(0, msg)
