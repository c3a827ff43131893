"""Capture real traffic on 127.0.0.1 as fuzz seeds (``python -m fuzz.seeds --capture``).

* a libtorrent seed's side of a peer connection (handshake, extended handshake,
  bitfield, blocks, a ut_metadata answer), for the wire and extension targets;
* libtorrent's own tracker announces (HTTP query, UDP connect) and its first
  DHT queries, received by sockets standing in for a tracker and a DHT node;
* opentracker's HTTP and UDP answers, announce and scrape, and its refusals.

Needs libtorrent's Python bindings and opentracker (both in the test set-up).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from swarm.core import announce as ann
from swarm.core import extensions, wire

Seed = tuple[str, bytes]
LOCAL = "127.0.0.1"
#: Same dimensions as the wire target's known torrent: 7 pieces of 32 KiB and 1000 bytes.
PIECE_LENGTH = 32768
SIZE = 7 * PIECE_LENGTH + 1000


def _free_port() -> int:
    """A port free for TCP and UDP alike (opentracker takes both)."""
    while True:
        with socket.socket() as t:
            t.bind((LOCAL, 0))
            port = int(t.getsockname()[1])
            with (
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u,
                contextlib.suppress(OSError),
            ):
                u.bind((LOCAL, port))
                return port


def _lt_session(lt: Any, **extra: Any) -> Any:
    return lt.session(
        {
            "listen_interfaces": f"{LOCAL}:0",
            "enable_dht": False,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            "enable_outgoing_utp": False,
            "enable_incoming_utp": False,
            "out_enc_policy": 2,
            **extra,
        }
    )


def _lt_torrent(lt: Any, folder: Path, trackers: list[str]) -> Any:
    path = folder / "data.bin"
    path.write_bytes(os.urandom(SIZE))
    fs = lt.file_storage()
    lt.add_files(fs, str(path))
    ct = lt.create_torrent(fs, PIECE_LENGTH, flags=lt.create_torrent.v1_only)
    for url in trackers:
        ct.add_tracker(url)
    lt.set_piece_hashes(ct, str(folder))
    return lt.torrent_info(lt.bdecode(lt.bencode(ct.generate())))


def _recv_until(sock: socket.socket, done: Any, timeout: float) -> bytes:
    data = bytearray()
    deadline = time.monotonic() + timeout
    while not done(bytes(data)) and time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
    return bytes(data)


def capture_peer(lt: Any, folder: Path) -> Iterator[Seed]:
    """Leech everything from a libtorrent seed over one connection; yield its bytes."""
    ti = _lt_torrent(lt, folder, [])
    ses = _lt_session(lt)
    handle = ses.add_torrent({"ti": ti, "save_path": str(folder)})
    deadline = time.monotonic() + 20
    while not handle.status().is_seeding:
        if time.monotonic() > deadline:
            raise RuntimeError("libtorrent did not start seeding")
        time.sleep(0.05)
    info_hash = bytes.fromhex(str(ti.info_hash()))
    with socket.create_connection((LOCAL, ses.listen_port()), timeout=10) as sock:
        sock.sendall(wire.Handshake(info_hash, b"-SW0100-fuzzcapture1").encode())
        raw = _recv_until(sock, lambda d: len(d) >= wire.HANDSHAKE_LEN, 10)
        yield "wire", bytes([16, 0, 1]) + raw[: wire.HANDSHAKE_LEN]
        ours = extensions.ExtHandshake(m=dict(extensions.OUR_EXTENSIONS), v="swarm fuzz")
        requests = [
            wire.encode_request(i, begin, min(16384, ti.piece_size(i) - begin))
            for i in range(ti.num_pieces())
            for begin in range(0, ti.piece_size(i), 16384)
        ]
        sock.sendall(
            wire.encode_extended(0, extensions.encode_ext_handshake(ours))
            + wire.encode_interested()
        )
        stream = raw[wire.HANDSHAKE_LEN :]
        stream += _recv_until(sock, lambda d: b"\x00\x00\x00\x01\x01" in d, 10)  # unchoke
        sock.sendall(b"".join(requests))
        metadata_id = 0
        for msg in wire.MessageDecoder().feed(stream):
            if isinstance(msg, wire.Extended) and msg.ext_id == 0:
                yield "extensions", b"\x00" + msg.payload
                metadata_id = extensions.decode_ext_handshake(msg.payload).m.get("ut_metadata", 0)
        if metadata_id:
            sock.sendall(wire.encode_extended(metadata_id, extensions.encode_metadata_request(0)))
        stream += _recv_until(sock, lambda d: len(d) >= SIZE + 13 * len(requests), 15)
    ses.remove_torrent(handle)
    for flags in (0, 1, 3, 7):  # the first 24 KiB: every message kind, one block and a half
        yield "wire", bytes([flags, 0, 7]) + stream[:24576]
    for msg in wire.MessageDecoder().feed(stream):
        if isinstance(msg, wire.Extended) and msg.ext_id == extensions.UT_METADATA_ID:
            yield "extensions", b"\x01" + msg.payload


def capture_client(lt: Any, folder: Path) -> Iterator[Seed]:
    """libtorrent's announces (HTTP and UDP) and DHT queries, to sockets that only listen."""
    http = socket.socket()
    http.bind((LOCAL, 0))
    http.listen(4)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((LOCAL, 0))
    dht = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dht.bind((LOCAL, 0))
    hport, uport, dport = (s.getsockname()[1] for s in (http, udp, dht))
    trackers = [f"http://{LOCAL}:{hport}/announce", f"udp://{LOCAL}:{uport}/announce"]
    ti = _lt_torrent(lt, folder, trackers)
    ses = _lt_session(
        lt,
        enable_dht=True,
        dht_bootstrap_nodes=f"{LOCAL}:{dport}",
        dht_restrict_routing_ips=False,
        dht_restrict_search_ips=False,
        announce_to_all_trackers=True,
        announce_to_all_tiers=True,
    )
    handle = ses.add_torrent({"ti": ti, "save_path": str(folder)})
    try:
        http.settimeout(15)
        conn, _ = http.accept()
        with conn:
            head = _recv_until(conn, lambda d: b"\r\n\r\n" in d, 10)
            conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n" + ann.encode_failure("capture only"))
        yield "fastlane_head", head
        target = head.split(b" ")[1]
        yield "tracker_query", target.partition(b"?")[2]
        for sock, name in ((udp, "udp_tracker"), (dht, "krpc")):
            sock.settimeout(15)
            with contextlib.suppress(TimeoutError):
                yield name, sock.recv(4096)
    finally:
        ses.remove_torrent(handle)
        for s in (http, udp, dht):
            s.close()


@contextlib.contextmanager
def _opentracker(folder: Path, info_hash: bytes) -> Iterator[int]:
    port = _free_port()
    folder.chmod(0o755)  # it drops root after chroot
    (folder / "access.whitelist").write_text(info_hash.hex() + "\n")
    (folder / "opentracker.conf").write_text(
        "tracker.rootdir .\naccess.whitelist access.whitelist\n"
        f"listen.tcp {LOCAL}:{port}\nlisten.udp {LOCAL}:{port}\n"
    )
    proc = subprocess.Popen(["opentracker", "-f", "opentracker.conf"], cwd=folder)
    try:
        deadline = time.monotonic() + 10
        while socket.socket().connect_ex((LOCAL, port)) != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("opentracker did not start")
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _get(url: str) -> bytes:
    """The body of an answer, refusals (4xx) included: a client reads those too."""
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return bytes(exc.read())


def capture_opentracker(folder: Path) -> Iterator[Seed]:
    """opentracker's answers: two peers announce, then scrape; over HTTP and UDP."""
    info_hash, unknown = bytes(range(20)), bytes(20)
    with _opentracker(folder, info_hash) as port:
        base = f"http://{LOCAL}:{port}/announce"
        for n, compact in enumerate((True, False, True)):
            pid = b"-SW0100-capture%05d" % n
            url = ann.build_announce_url(base, info_hash, pid, 6881 + n, 0, 0, n, "started",
                                         compact=compact)  # fmt: skip
            yield "tracker_answer", _get(url)
        url = ann.build_announce_url(base, unknown, b"-SW0100-capture99999", 1, 0, 0, 0)
        yield "tracker_answer", _get(url)
        scrape = ann.build_scrape_url(f"http://{LOCAL}:{port}/scrape", [info_hash])
        yield "tracker_answer", _get(scrape)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(10)
            sock.connect((LOCAL, port))
            sock.send(ann.udp_connect_request(1))
            answer = sock.recv(4096)
            yield "udp_tracker", answer
            cid = ann.udp_parse_connect(answer, 1)
            for tid, ih in ((2, info_hash), (3, unknown)):
                sock.send(ann.udp_announce_request(cid, tid, ih, b"-SW0100-capture00009",
                                                   0, 5, 0, "started", 7, 50, 7000))  # fmt: skip
                yield "udp_tracker", sock.recv(4096)
            sock.send(ann.udp_scrape_request(cid, 4, [info_hash, unknown]))
            yield "udp_tracker", sock.recv(4096)


def capture_all() -> Iterator[Seed]:
    import libtorrent as lt

    with tempfile.TemporaryDirectory(prefix="fuzz-capture-") as tmp:
        root = Path(tmp)
        for name, step in (
            ("peer", lambda d: capture_peer(lt, d)),
            ("client", lambda d: capture_client(lt, d)),
            ("opentracker", capture_opentracker),
        ):
            folder = root / name
            folder.mkdir()
            yield from step(folder)
