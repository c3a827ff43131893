"""`swarm get --http` against hostile requests (issue 16, item 13): a Range value with
thousands of digits is a 416 or the whole file, never a 500; a Host that is not the bound
address or localhost (DNS rebinding) is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from stream_peers import make_torrent

from swarm.core.metainfo import Metainfo
from swarm.httpstream import BadRange, StreamServer, host_allowed, parse_range

SIZE = 100_000
HUGE = "9" * 5000  # past Python's 4300-digit int() limit


class FinishedDownload:
    """The part of a TorrentHandle the HTTP server uses, for a download already complete."""

    def __init__(self, meta: Metainfo, payload: bytes) -> None:
        self.metainfo, self.payload, self.name = meta, payload, meta.name

    def wanted_files(self) -> list[int]:
        return list(range(len(self.metainfo.files)))

    def have_piece(self, index: int) -> bool:
        return True

    def raise_priority(self, pieces: object, prio: int) -> None:
        pass

    async def read(self, pos: int, n: int, prio: int = 0) -> bytes:
        return self.payload[pos : pos + n]


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[StreamServer, bytes]]:
    payload, _tfile, meta = make_torrent(tmp_path, SIZE, 16384)
    srv = StreamServer(FinishedDownload(meta, payload), "127.0.0.1", 0)  # type: ignore[arg-type]
    await srv.start()
    try:
        yield srv, payload
    finally:
        await srv.close()


def test_parse_range_with_thousands_of_digits() -> None:
    with pytest.raises(BadRange):
        parse_range(f"bytes={HUGE}-", SIZE)  # starts past the end: unsatisfiable
    with pytest.raises(BadRange):
        parse_range(f"bytes={HUGE}-{HUGE}", SIZE)
    assert parse_range(f"bytes=10-{HUGE}", SIZE) == (10, SIZE - 1)  # an end past the file is cut
    assert parse_range(f"bytes=-{HUGE}", SIZE) == (0, SIZE - 1)  # a suffix longer than the file


async def _get(srv: StreamServer, headers: dict[str, str]) -> tuple[int, bytes]:
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as c, c.get(srv.url + "f.bin", headers=headers) as r:
        return r.status, await r.read()


async def test_huge_range_is_not_a_server_error(server: tuple[StreamServer, bytes]) -> None:
    srv, payload = server
    assert (await _get(srv, {"Range": f"bytes={HUGE}-"}))[0] == 416
    assert await _get(srv, {"Range": f"bytes=5-{HUGE}"}) == (206, payload[5:])


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.0.0.1:{port}", "localhost", "LOCALHOST:{port}", "localhost.:{port}"]
)
async def test_bound_address_or_localhost_is_served(server: tuple[StreamServer, bytes], host: str) -> None:
    srv, payload = server
    assert await _get(srv, {"Host": host.format(port=srv.port)}) == (200, payload)


@pytest.mark.parametrize(
    "host", ["evil.example:{port}", "evil.example", "127.0.0.2:{port}", "localhost.evil.example", "[::1]:{port}", "localhost:1"]
)
async def test_other_hosts_are_refused(server: tuple[StreamServer, bytes], host: str) -> None:
    """A page on evil.example whose name re-resolves to 127.0.0.1 must not read the files."""
    srv, _payload = server
    status, body = await _get(srv, {"Host": host.format(port=srv.port)})
    assert status == 421
    assert b"f.bin" not in body and len(body) < 200


def test_host_rules_for_other_bindings() -> None:
    assert host_allowed("[::1]:8080", "::1", 8080) and not host_allowed("127.0.0.1:8080", "::1", 8080)
    # bound to every interface: any address literal (a LAN peer's URL), still no DNS names
    assert host_allowed("192.168.1.5:8080", "0.0.0.0", 8080)
    assert host_allowed("[fe80::1]:8080", "::", 8080)
    assert not host_allowed("nas.example:8080", "0.0.0.0", 8080)
    assert host_allowed(None, "127.0.0.1", 8080)  # HTTP/1.0 without Host
