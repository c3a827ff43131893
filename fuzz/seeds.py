"""Write the seed corpora in ``fuzz/corpus/<target>/``.

    python -m fuzz.seeds [--torrents DIR] [--capture]

Seeds are valid (and a few nearly valid) inputs of each decoder, built with
our own encoders, plus, with ``--torrents``, the small .torrent files of a
directory (libtorrent's parser test corpus, see fuzz/corpus/README.md), and
with ``--capture``, bytes captured from real peers on 127.0.0.1: a libtorrent
seed's side of a peer connection and opentracker's HTTP and UDP answers.
The result is committed, so fuzzing needs nothing outside the repository.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Iterable
from pathlib import Path

from swarm.core import announce as ann
from swarm.core import bencode, extensions, lsd, magnet, metainfo, wire
from swarm.core.dht import krpc

CORPUS = Path(__file__).resolve().parent / "corpus"

IH = bytes(range(20))
PID = b"-SW0100-" + b"0123456789ab"


def _wire_stream() -> bytes:
    """A leecher's view of a session with a seed: every message type once or more."""
    ext = extensions.encode_ext_handshake(
        extensions.ExtHandshake(
            m={"ut_metadata": 3, "ut_pex": 1}, v="swarm 0.1", p=6881, reqq=250, metadata_size=300
        )
    )
    return b"".join(
        [
            wire.encode_extended(0, ext),
            wire.encode_bitfield(b"\xff\x80"[:1]),
            wire.encode_have_all(),
            wire.encode_unchoke(),
            wire.encode_allowed_fast(3),
            wire.encode_have(5),
            wire.encode_suggest(2),
            wire.encode_piece(0, 0, b"a" * 300),
            wire.encode_piece(0, 16384, b"b" * 200),
            wire.encode_piece(7, 0, b"c" * 100),
            wire.encode_request(1, 0, 16384),
            wire.encode_cancel(1, 0, 16384),
            wire.encode_reject(1, 16384, 16384),
            wire.encode_port(6881),
            wire.encode_keepalive(),
            wire.encode_choke(),
            wire.encode_interested(),
            wire.encode_not_interested(),
            wire.encode_have_none(),
            b"\x00\x00\x00\x03\x42\x00\x00",  # an unknown message id
            wire.encode_extended(3, extensions.encode_metadata_request(0)),
            wire.encode_hash_request(bytes(32), 2, 512, 512, 9),
            wire.encode_hashes(bytes(32), 0, 0, 2, 1, [bytes(32)] * 3),
            wire.encode_hash_reject(bytes(32), 2, 512, 512, 9),
        ]
    )


def hash_seeds() -> Iterable[bytes]:
    """Per file of fuzz.targets.HASH_FILES: requests and their answers, a bad request, a reject."""
    from fuzz.targets import HASH_FILES, hash_servers

    for file, (_, tree) in enumerate(HASH_FILES):
        _, servers = hash_servers(file)
        root, layers = tree[-1][0], len(tree) - 1
        stream = [wire.encode_hash_request(root, 0, 0, 2, 0)]
        for server in servers:
            base = server.base_layer
            count = min(512, 1 << (layers - base))
            for req in (
                wire.HashRequest(root, base, 0, count, layers - base - 1),
                wire.HashRequest(root, base, 0, 2, layers - base - 1),
            ):
                stream += [wire.encode(req), wire.encode(server.answer(req))]
        stream.append(wire.encode_hash_reject(root, 0, 0, 3, 1))
        yield bytes([file]) + b"".join(stream)


def wire_seeds() -> Iterable[bytes]:
    stream = _wire_stream()
    handshake = wire.Handshake(IH, PID).encode()
    for flags in (0, 1, 3, 7, 11, 16, 19, 27):
        body = handshake + stream if flags & 16 else stream
        yield bytes([flags, 0, flags]) + body
    yield bytes([1, 0, 9]) + wire.encode_bitfield(b"\xff")
    yield bytes([0, 0, 1]) + wire.encode_piece(3, 5, b"x" * 40)


def extension_seeds() -> Iterable[bytes]:
    yield b"\x00" + extensions.encode_ext_handshake(
        extensions.ExtHandshake(
            m={"ut_metadata": 2, "ut_pex": 1, "lt_donthave": 7},
            v="libtorrent/2.0.8",
            p=51413,
            reqq=500,
            yourip=bytes([127, 0, 0, 1]),
            metadata_size=40000,
            upload_only=True,
        )
    )
    yield b"\x01" + extensions.encode_metadata_request(1)
    yield b"\x02" + extensions.encode_metadata_reject(0)
    yield b"\x02" + extensions.encode_metadata_data(2, 40000, b"z" * (40000 - 2 * 16384))
    yield b"\x01" + extensions.encode_metadata_data(0, 300, b"d" * 300)
    pex = extensions.PexMessage(
        added=[extensions.PexPeer("10.0.0.1", 6881, 0x12), extensions.PexPeer("::1", 51413, 2)],
        dropped=[("10.0.0.2", 6882), ("fe80::1", 1)],
    )
    yield b"\x03" + extensions.encode_pex(pex)


def krpc_seeds() -> Iterable[bytes]:
    nid = bytes(range(1, 21))
    nodes = (krpc.NodeInfo(bytes(20), "10.1.2.3", 6881), krpc.NodeInfo(nid, "1.2.3.4", 1))
    nodes6 = (krpc.NodeInfo(nid, "2001:db8::1", 6881),)
    messages: list[krpc.Message] = [
        krpc.Ping(b"aa", nid),
        krpc.Ping(b"ab", nid, read_only=True),
        krpc.FindNode(b"ac", nid, IH),
        krpc.GetPeers(b"ad", nid, IH),
        krpc.AnnouncePeer(b"ae", nid, IH, 6881, b"tok", implied_port=True),
        krpc.Response(b"af", nid, nodes=nodes, nodes6=nodes6, token=b"tok"),
        krpc.Response(b"ag", nid, values=(("10.0.0.1", 1), ("::1", 2)), token=b"x"),
        krpc.Error(b"ah", krpc.PROTOCOL_ERROR, "bad token"),
    ]
    for msg in messages:
        yield krpc.encode_message(msg, version=b"SW01")


def tracker_query_seeds() -> Iterable[bytes]:
    url = ann.build_announce_url(
        "http://t/announce", IH, PID, 6881, 1, 2, 3, "started", numwant=80, key="k1",
        tracker_id=b"tid",
    )  # fmt: skip
    yield url.partition("?")[2].encode() + b"&ip=10.0.0.1"
    yield ann.build_scrape_url("http://t/scrape", [IH, bytes(20)]).partition("?")[2].encode()
    yield b"info_hash=%14%00%01&peer_id=-qB4500-abcdefghijkl&port=1&left=0&event=empty"


def fastlane_seeds() -> Iterable[bytes]:
    for query in tracker_query_seeds():
        yield b"GET /announce?%s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % query
        yield b"GET /scrape?%s HTTP/1.0\r\nUser-Agent: x\r\n\r\n" % query


def tracker_answer_seeds() -> Iterable[bytes]:
    peers = [(PID, ann.pack_peer("10.0.0.1", 6881)), (PID, ann.pack_peer("::1", 6882))]
    yield ann.encode_announce_response(peers, interval=1800, min_interval=60, complete=3)
    yield ann.encode_announce_response(peers, interval=900, compact=False, warning="hi")
    yield ann.encode_failure("torrent not registered")
    yield ann.encode_scrape_response({IH: ann.ScrapeStats(1, 2, 3)})


def udp_seeds() -> Iterable[bytes]:
    yield ann.udp_encode_connect(7, 0x1122334455667788)
    yield ann.udp_encode_announce(7, 1800, 1, 2, [ann.pack_peer("10.0.0.1", 6881)])
    yield ann.udp_encode_announce(7, 1800, 1, 2, [ann.pack_peer("::2", 6881)])
    yield ann.udp_encode_scrape(7, [ann.ScrapeStats(1, 2, 3)])
    yield ann.udp_encode_error(7, "unknown torrent")
    yield ann.udp_connect_request(9)
    yield ann.udp_announce_request(5, 9, IH, PID, 1, 2, 3, "started", 4, -1, 6881)
    yield ann.udp_scrape_request(5, 9, [IH, IH])


def range_seeds() -> Iterable[bytes]:
    size = (10**6).to_bytes(8, "big")
    for header in (b"bytes=0-99", b"bytes=500-", b"bytes=-300", b"bytes = 1 - 2", b"bytes=0-0,5-9"):
        yield size + header


def lsd_seeds() -> Iterable[bytes]:
    yield from lsd.build_announces(6881, [IH, bytes(20)], cookie="swarm-1")
    yield from lsd.build_announces(51413, [IH], ipv6=True)


def magnet_seeds() -> Iterable[bytes]:
    m = magnet.Magnet(
        IH, "a name+with spaces", ["udp://t:6969/announce", "http://t/announce"],
        [("10.0.0.1", 6881), ("::1", 1)], ["http://ws/"], [0, 2, 3, 4],
    )  # fmt: skip
    yield m.to_uri().encode()
    yield b"magnet:?xt=urn:btih:AAECAwQFBgcICQoLDA0ODxAREhMU&dn=x&tr.1=a&xt.2=urn:btmh:1220aa&so=1-3,7"


def bencode_seeds() -> Iterable[bytes]:
    yield bencode.encode({b"a": [1, -2, b"xyz", {b"k": []}], b"b": 0, b"c": b""})
    yield b"d1:bi0e1:ai1ee"  # unsorted: refused in strict mode only
    yield b"l" * 30 + b"e" * 30


def metainfo_seeds() -> Iterable[bytes]:
    pieces = hashlib.sha1(b"x").digest() * 2
    single = metainfo.build_info(name="file.bin", piece_length=16384, pieces=pieces, length=20000)
    multi = metainfo.build_info(
        name="dir", piece_length=16384, pieces=pieces,
        files=[(["a", "b.txt"], 10000), ([".pad", "6384"], 6384), (["c"], 3616)],
    )  # fmt: skip
    for info in (single, multi):
        yield metainfo.build_metainfo(info, trackers=[["http://t/announce"]], comment="c")
        yield info


GENERATORS = {
    "bencode": bencode_seeds,
    "metainfo": metainfo_seeds,
    "magnet": magnet_seeds,
    "wire": wire_seeds,
    "hashes": hash_seeds,
    "extensions": extension_seeds,
    "krpc": krpc_seeds,
    "tracker_query": tracker_query_seeds,
    "fastlane_head": fastlane_seeds,
    "tracker_answer": tracker_answer_seeds,
    "udp_tracker": udp_seeds,
    "http_range": range_seeds,
    "lsd": lsd_seeds,
}


def write(target: str, data: bytes, tag: str = "seed") -> None:
    """One seed file, named by its content so rewriting is idempotent."""
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{tag}-{hashlib.sha1(data).hexdigest()[:16]}").write_bytes(data)


def copy_torrents(source: Path, limit: int = 16384) -> None:
    """The small .torrent files of ``source`` as metainfo and bencode seeds."""
    for path in sorted(source.glob("*.torrent")):
        if path.stat().st_size <= limit:
            data = path.read_bytes()
            write("metainfo", data, "torrent")
            write("bencode", data, "torrent")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fuzz.seeds", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--torrents", type=Path, help="copy the small .torrent files of DIR")
    parser.add_argument("--capture", action="store_true", help="also capture real traffic")
    args = parser.parse_args(argv)
    for target, generate in GENERATORS.items():
        for data in generate():
            write(target, data)
    if args.torrents is not None:
        copy_torrents(args.torrents)
    if args.capture:
        from fuzz import capture

        for target, data in capture.capture_all():
            write(target, data, "captured")
    for folder in sorted(CORPUS.iterdir()):
        if folder.is_dir():
            print(f"{folder.name}: {len(list(folder.iterdir()))} seeds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
