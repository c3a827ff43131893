"""`swarm seed|get --encryption` against libtorrent (issue 21), both directions.

libtorrent with encryption forced (``pe_forced`` both ways, ``allowed_enc_level``
RC4 only) against ``--encryption require`` and ``prefer``; a plain-only
libtorrent (``pe_disabled``) gets nothing from a ``require`` seed; and the
defaults on both sides meet in an MSE handshake with a plaintext payload
(``obfuscated``: libtorrent's ``plaintext_encrypted``).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import require_libtorrent

from tests.helpers.lt import lt_session, make_lt_torrent, wait_seeding
from tests.helpers.procs import ENV, LOCAL_NET, start_json_seed, stop_process, swarm_get
from tests.helpers.wait import wait_for

pytestmark = pytest.mark.interop

SIZE = 2 * 1024 * 1024 + 4321
PIECE = 65536
TIMEOUT = 60.0


def _lt(lt: Any, policy: str) -> Any:
    """A TCP-only libtorrent session: "forced" (RC4 only, both ways), "disabled" or "default"."""
    settings: dict[str, Any] = {
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "alert_mask": int(lt.alert.category_t.peer_notification | lt.alert.category_t.error_notification
            | lt.alert.category_t.connect_notification),
    }
    if policy == "forced":
        settings.update(
            out_enc_policy=int(lt.enc_policy.pe_forced),
            in_enc_policy=int(lt.enc_policy.pe_forced),
            allowed_enc_level=int(lt.enc_level.rc4),
        )
    elif policy == "disabled":
        settings.update(out_enc_policy=int(lt.enc_policy.pe_disabled), in_enc_policy=int(lt.enc_policy.pe_disabled))
    return lt_session(lt, **settings)


def _add(lt: Any, ses: Any, torrent: bytes, save: Path) -> Any:
    p = lt.add_torrent_params()
    p.ti = lt.torrent_info(lt.bdecode(torrent))
    p.save_path = str(save)
    return ses.add_torrent(p)


def _data(tmp_path: Path) -> tuple[Path, bytes]:
    src = tmp_path / "src"
    src.mkdir()
    payload = os.urandom(SIZE)
    (src / "data.bin").write_bytes(payload)
    return src / "data.bin", payload


def _connected_encryption(stdout: str) -> list[str]:
    events = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return [e["encryption"] for e in events if e["event"] == "peer" and e.get("action") == "connected"]


def _lt_peer_flags(lt: Any, h: Any) -> set[str]:
    """How libtorrent's connected peers (handshake done) are encrypted."""
    flags = set()
    for p in h.get_peer_info():
        if p.flags & (lt.peer_info.connecting | lt.peer_info.handshake):
            continue
        if p.flags & lt.peer_info.rc4_encrypted:
            flags.add("rc4")
        elif p.flags & lt.peer_info.plaintext_encrypted:
            flags.add("obfuscated")
        else:
            flags.add("plain")
    return flags


@pytest.mark.parametrize(("lt_policy", "swarm_policy", "expected"), [
    ("forced", "require", "encrypted"),
    ("forced", "prefer", "encrypted"),
    ("default", "prefer", "obfuscated"),
    ("default", "require", "encrypted"),
])  # fmt: skip
def test_swarm_gets_from_libtorrent(tmp_path: Path, lt_policy: str, swarm_policy: str, expected: str) -> None:
    lt = require_libtorrent()
    path, payload = _data(tmp_path)
    torrent = make_lt_torrent(lt, path, PIECE)
    (tmp_path / "t.torrent").write_bytes(torrent)
    ses = _lt(lt, lt_policy)
    h = _add(lt, ses, torrent, path.parent)
    wait_seeding(h, 20)
    out = tmp_path / "out"
    out.mkdir()
    r = subprocess.run(
        [*swarm_get(tmp_path / "t.torrent", out), "--peer", f"127.0.0.1:{ses.listen_port()}",
         "--encryption", swarm_policy, "--json"],
        capture_output=True, text=True, timeout=TIMEOUT, env=ENV,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / "data.bin").read_bytes() == payload
    assert set(_connected_encryption(r.stdout)) == {expected}


@pytest.mark.parametrize(("lt_policy", "swarm_policy", "expected"), [
    ("forced", "require", "encrypted"),
    ("forced", "prefer", "encrypted"),
    ("default", "prefer", "obfuscated"),
    ("default", "require", "encrypted"),
])  # fmt: skip
def test_libtorrent_gets_from_swarm(tmp_path: Path, lt_policy: str, swarm_policy: str, expected: str) -> None:
    lt = require_libtorrent()
    path, payload = _data(tmp_path)
    seed, port, torrent = start_json_seed(path, tmp_path, *LOCAL_NET, "--encryption", swarm_policy)
    try:
        ses = _lt(lt, lt_policy)
        out = tmp_path / "lt_out"
        out.mkdir()
        h = _add(lt, ses, (tmp_path / torrent).read_bytes(), out)
        h.connect_peer(("127.0.0.1", port))
        seen: set[str] = set()  # libtorrent's view, while the connection lasts (a seed is dropped at the end)

        def finished() -> bool:
            seen.update(_lt_peer_flags(lt, h))
            return bool(h.status().is_seeding)

        wait_for(finished, TIMEOUT, "libtorrent to finish")
        assert (out / "data.bin").read_bytes() == payload
        assert seen <= {{"encrypted": "rc4"}.get(expected, expected)}, seen
    finally:
        seed.send_signal(signal.SIGTERM)
        stdout, _ = seed.communicate(timeout=15)
    assert set(_connected_encryption(stdout.decode())) == {expected}


def _wait_stderr(proc: subprocess.Popen[bytes], text: bytes, timeout: float) -> bytes:
    """Read the process's stderr until ``text`` shows up (select: never blocks past timeout)."""
    assert proc.stderr is not None
    seen = b""
    deadline = time.monotonic() + timeout
    while text not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"{text!r} not logged within {timeout}s: {seen[-2000:]!r}"
        ready, _, _ = select.select([proc.stderr], [], [], min(left, 0.2))
        if ready:
            chunk = os.read(proc.stderr.fileno(), 65536)
            assert chunk, f"the seed exited: {seen[-2000:]!r}"
            seen += chunk
    return seen


def test_plain_only_libtorrent_gets_nothing_from_a_require_seed(tmp_path: Path) -> None:
    lt = require_libtorrent()
    path, _ = _data(tmp_path)
    seed, port, torrent = start_json_seed(
        path, tmp_path, *LOCAL_NET, "--encryption", "require", "--log-level", "INFO"
    )
    try:
        ses = _lt(lt, "disabled")
        out = tmp_path / "lt_out"
        out.mkdir()
        h = _add(lt, ses, (tmp_path / torrent).read_bytes(), out)
        h.connect_peer(("127.0.0.1", port))
        _wait_stderr(seed, b"plain connection refused: encryption required", TIMEOUT)
        st = h.status()
        assert st.total_payload_download == 0 and st.num_pieces == 0
        assert not (out / "data.bin").exists() or not any((out / "data.bin").read_bytes())
    finally:
        stop_process(seed)
