"""The fast lane's request-head parser: the plain shapes it answers, everything it leaves to aiohttp."""

from __future__ import annotations

import asyncio
import gc
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracker.app import Counters, Tracker, TrackerConfig
from tracker.fastlane import MAX_HEAD, ConnectionGate, FastLane, parse_head, render

QUERY = b"info_hash=%00%01%02&peer_id=-SW0001-abcdefghijkl&port=6881&left=0&compact=1"
GOOD = b"GET /announce?" + QUERY + b" HTTP/1.1\r\nHost: 127.0.0.1:6969\r\nUser-Agent: t/1\r\n\r\n"


def head(
    target: bytes = b"/announce?" + QUERY,
    version: bytes = b"HTTP/1.1",
    headers: tuple[bytes, ...] = (b"Host: 127.0.0.1:6969",),
    method: bytes = b"GET",
) -> bytes:
    return b"\r\n".join((method + b" " + target + b" " + version, *headers)) + b"\r\n\r\n"


# -- accepted shapes ------------------------------------------------------------------


def test_plain_announce_http11_keeps_alive() -> None:
    assert parse_head(GOOD) == (b"/announce", QUERY, b"HTTP/1.1", True)


def test_plain_announce_http10_closes() -> None:
    assert parse_head(head(version=b"HTTP/1.0")) == (b"/announce", QUERY, b"HTTP/1.0", False)


def test_scrape_and_empty_query() -> None:
    assert parse_head(head(b"/scrape?info_hash=%aa")) == (
        b"/scrape",
        b"info_hash=%aa",
        b"HTTP/1.1",
        True,
    )
    assert parse_head(head(b"/scrape")) == (b"/scrape", b"", b"HTTP/1.1", True)
    assert parse_head(head(b"/announce?")) == (b"/announce", b"", b"HTTP/1.1", True)


def test_no_headers_at_all() -> None:
    assert parse_head(b"GET /announce?a=1 HTTP/1.0\r\n\r\n") == (
        b"/announce",
        b"a=1",
        b"HTTP/1.0",
        False,
    )


def test_query_keeps_everything_after_the_first_question_mark() -> None:
    assert parse_head(head(b"/announce?a=1?b=2&c"))[1] == b"a=1?b=2&c"  # type: ignore[index]


def test_bytes_after_the_head_are_not_its_business() -> None:
    # a pipelined second request (or anything) after the head: the head alone is parsed
    got = parse_head(GOOD + b"GET /scrape HTTP/1.1\r\n\r\npartial")
    assert got == (b"/announce", QUERY, b"HTTP/1.1", True)


@pytest.mark.parametrize(
    ("version", "value", "keep_alive"),
    [
        (b"HTTP/1.1", b"close", False),
        (b"HTTP/1.1", b"Close", False),
        (b"HTTP/1.1", b"CLOSE", False),
        (b"HTTP/1.1", b" close ", False),
        (b"HTTP/1.1", b"keep-alive", True),
        (b"HTTP/1.1", b"Keep-Alive", True),
        (b"HTTP/1.1", b"TE, close", False),
        (b"HTTP/1.1", b"close,TE", False),
        (b"HTTP/1.1", b"upgrade-ish", True),  # unknown tokens change nothing
        (b"HTTP/1.1", b"closed", True),  # a token, not a substring
        (b"HTTP/1.0", b"keep-alive", True),
        (b"HTTP/1.0", b"Keep-Alive", True),
        (b"HTTP/1.0", b"KEEP-ALIVE", True),
        (b"HTTP/1.0", b"foo, keep-alive", True),
        (b"HTTP/1.0", b"close", False),
        (b"HTTP/1.0", b"", False),
    ],
)
def test_connection_tokens(version: bytes, value: bytes, keep_alive: bool) -> None:
    for name in (b"Connection", b"connection", b"CONNECTION"):
        got = parse_head(head(version=version, headers=(b"Host: x", name + b":" + value)))
        assert got is not None and got[3] is keep_alive, (name, value)


def test_header_value_without_space_after_colon() -> None:
    assert parse_head(head(headers=(b"Host:x", b"Connection:close"))) == (
        b"/announce",
        QUERY,
        b"HTTP/1.1",
        False,
    )


def test_head_up_to_max_head_is_accepted() -> None:
    base = head(headers=(b"Host: x", b"X-Pad: "))
    pad = b"a" * (MAX_HEAD - len(base) + 4)
    data = head(headers=(b"Host: x", b"X-Pad: " + pad))
    assert data.index(b"\r\n\r\n") == MAX_HEAD
    assert parse_head(data) is not None


# -- everything else is aiohttp's -------------------------------------------------------


@pytest.mark.parametrize(
    "method", [b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"get", b"Get", b"GETX", b"CONNECT"]
)
def test_other_methods_step_aside(method: bytes) -> None:
    assert parse_head(head(method=method)) is None


@pytest.mark.parametrize(
    "target",
    [
        b"/",
        b"/stats",
        b"/announce/",
        b"/announce/?a=1",
        b"/Announce",
        b"/ANNOUNCE?a=1",
        b"/announcex",
        b"/announcex?a=1",
        b"/scrapex",
        b"/scrape/",
        b"//announce",
        b"/./announce",
        b"/%61nnounce",
        b"announce",
        b"*",
        b"/announce;x=1",
        b"http://127.0.0.1/announce?a=1",
        b"",
    ],
)
def test_other_paths_step_aside(target: bytes) -> None:
    assert parse_head(head(target=target)) is None


@pytest.mark.parametrize(
    "line",
    [
        b"GET  /announce HTTP/1.1",
        b"GET /announce  HTTP/1.1",
        b" GET /announce HTTP/1.1",
        b"GET /announce HTTP/1.1 ",
        b"GET /announce",
        b"GET /announce HTTP/1.1 extra",
        b"GET\t/announce HTTP/1.1",
        b"GET /announce\tHTTP/1.1",
        b"GET/announce HTTP/1.1",
        b"",
    ],
)
def test_odd_request_lines_step_aside(line: bytes) -> None:
    assert parse_head(line + b"\r\nHost: x\r\n\r\n") is None


@pytest.mark.parametrize(
    "version",
    [b"HTTP/2.0", b"HTTP/0.9", b"HTTP/1.2", b"http/1.1", b"HTTP/1", b"HTTP/1.10", b"HTTP/11", b""],
)
def test_other_versions_step_aside(version: bytes) -> None:
    assert parse_head(head(version=version)) is None


@pytest.mark.parametrize("cut", [0, 1, 10, len(GOOD) - 4, len(GOOD) - 2, len(GOOD) - 1])
def test_incomplete_head_steps_aside(cut: int) -> None:
    assert parse_head(GOOD[:cut]) is None


def test_bare_lf_line_ends_step_aside() -> None:
    assert parse_head(GOOD.replace(b"\r\n", b"\n")) is None


def test_head_over_max_head_steps_aside() -> None:
    data = head(headers=(b"Host: x", b"X-Pad: " + b"a" * MAX_HEAD))
    assert data.index(b"\r\n\r\n") > MAX_HEAD
    assert parse_head(data) is None
    assert parse_head(head(headers=tuple(b"X-%d: 1" % i for i in range(MAX_HEAD // 6)))) is None


@pytest.mark.parametrize(
    "header",
    [
        b"Content-Length: 0",
        b"Content-Length: 5",
        b"content-length: 0",
        b"CONTENT-LENGTH: 0",
        b"Transfer-Encoding: chunked",
        b"transfer-encoding: identity",
        b"Upgrade: websocket",
        b"upgrade: h2c",
        b"Expect: 100-continue",
        b"EXPECT: 100-continue",
    ],
)
def test_body_upgrade_and_expect_headers_step_aside(header: bytes) -> None:
    assert parse_head(head(headers=(b"Host: x", header))) is None
    assert parse_head(head(headers=(header, b"Host: x"))) is None


@pytest.mark.parametrize(
    "header",
    [
        b"Host : x",  # space before the colon
        b"Ho st: x",  # space inside the name
        b"Host\t: x",
        b"Content-Length : 5",  # a hidden body must not slip through
        b"NoColonHere",
        b": no name",
        b" folded: value",  # obs-fold / leading whitespace
        b"\tfolded: value",
        b"X-\xff: 1",
        b"X-\x00: 1",
        b"X(1): 1",  # not a token
        b"X/1: 1",
        b"X@: 1",
        b'X"1": 1',
    ],
)
def test_odd_header_lines_step_aside(header: bytes) -> None:
    assert parse_head(head(headers=(b"Host: x", header))) is None


def test_obs_fold_continuation_steps_aside() -> None:
    assert parse_head(head(headers=(b"Host: x", b"X-Long: a", b" b"))) is None
    assert parse_head(head(headers=(b"Host: x", b"X-Long: a", b"\tb"))) is None


@pytest.mark.parametrize(
    "target",
    [
        b"/announce?a=\xff",
        b"/announce?a=\xc3\xa9",
        b"/announce?a=\x00",
        b"/announce?a=\x7f",
        b"/announce?a=\x1b[31m",
        b"/announce?a=1#frag",
        b"/announce#frag",
        b"/scrape?info_hash=\x80",
    ],
)
def test_odd_bytes_in_target_step_aside(target: bytes) -> None:
    assert parse_head(head(target=target)) is None


def test_token_characters_in_header_names_are_fine() -> None:
    assert parse_head(head(headers=(b"Host: x", b"X-#!$%&'*+.^_`|~: 1"))) is not None


def test_connection_tokens_from_several_headers_add_up() -> None:
    got = parse_head(head(headers=(b"Host: x", b"Connection: TE", b"Connection: close")))
    assert got is not None and got[3] is False
    got = parse_head(
        head(version=b"HTTP/1.0", headers=(b"Connection: TE", b"connection: keep-alive"))
    )
    assert got is not None and got[3] is True


@pytest.mark.parametrize("version", [b"HTTP/1.0", b"HTTP/1.1"])
@pytest.mark.parametrize(
    "headers",
    [
        (b"Connection: keep-alive, close",),
        (b"Connection: close, Keep-Alive",),
        (b"Connection: keep-alive", b"Connection: close"),
        (b"Connection: close", b"Connection: keep-alive"),
    ],
)
def test_both_close_and_keep_alive_step_aside(version: bytes, headers: tuple[bytes, ...]) -> None:
    # aiohttp's C parser (llhttp) keeps an HTTP/1.0 connection alive here, its Python
    # parser closes it: the lane cannot answer "as aiohttp would", so it does not answer
    assert parse_head(head(version=version, headers=(b"Host: x", *headers))) is None


def test_http11_needs_a_host_http10_does_not() -> None:
    assert parse_head(head(headers=())) is None
    assert parse_head(head(headers=(b"User-Agent: t",))) is None
    assert parse_head(head(headers=(b"host: x",))) is not None
    assert parse_head(head(version=b"HTTP/1.0", headers=())) is not None


@pytest.mark.parametrize(
    "name",
    [b"Host", b"host", b"User-Agent", b"Content-Type", b"ETag", b"Server", b"Max-Forwards"],
)
def test_duplicate_singleton_headers_step_aside(name: bytes) -> None:
    # aiohttp answers 400 "Duplicate ... header"; the lane must not answer 200
    for version in (b"HTTP/1.0", b"HTTP/1.1"):
        assert (
            parse_head(
                head(version=version, headers=(b"Host: x", name + b": a", name.upper() + b": b"))
            )
            is None
        )
        if name.lower() != b"host":
            assert (
                parse_head(head(version=version, headers=(b"Host: x", name + b": a"))) is not None
            )


def test_repeated_ordinary_headers_are_fine() -> None:
    assert parse_head(head(headers=(b"Host: x", b"Accept: a", b"Accept: b"))) is not None


@pytest.mark.parametrize("byte", [*(bytes([c]) for c in range(0x20) if c != 0x09), b"\x7f"])
def test_control_bytes_in_a_header_value_step_aside(byte: bytes) -> None:
    # aiohttp answers 400; a lone LF is worse: aiohttp would read a header the lane did not see
    assert parse_head(head(headers=(b"Host: x", b"X-A: a" + byte + b"b"))) is None


def test_smuggled_header_after_a_lone_lf_steps_aside() -> None:
    assert parse_head(head(headers=(b"Host: x", b"X-A: a\nContent-Length: 3")) + b"abc") is None
    assert parse_head(head(headers=(b"Host: x", b"X-A: a\rContent-Length: 3")) + b"abc") is None
    assert parse_head(head(headers=(b"Host: x\n",))) is None


def test_tabs_and_high_bytes_in_header_values_are_fine() -> None:
    # as for aiohttp: HTAB and obs-text are allowed in a value
    assert parse_head(head(headers=(b"Host: x", b"X-A: a\tb", b"X-B: caf\xc3\xa9\xff"))) is not None


# -- render ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "keep_alive", "connection"),
    [
        (b"HTTP/1.1", True, None),
        (b"HTTP/1.1", False, b"close"),
        (b"HTTP/1.0", True, b"keep-alive"),
        (b"HTTP/1.0", False, None),
    ],
)
def test_render_shape(version: bytes, keep_alive: bool, connection: bytes | None) -> None:
    body = b"d8:intervali1800ee"
    out = render(version, body, keep_alive)
    top, _, rest = out.partition(b"\r\n\r\n")
    assert rest == body
    lines = top.split(b"\r\n")
    assert lines[0] == version + b" 200 OK"
    headers = dict(line.split(b": ", 1) for line in lines[1:])
    assert headers[b"Content-Type"] == b"text/plain"
    assert headers[b"Content-Length"] == str(len(body)).encode()
    assert headers[b"Date"].endswith(b" GMT") and headers[b"Server"].startswith(b"Python/")
    assert headers.get(b"Connection") == connection


# -- properties ---------------------------------------------------------------------------


def check(data: bytes) -> None:
    got = parse_head(data)
    if got is not None:
        path, query, version, keep_alive = got
        assert path in (b"/announce", b"/scrape")
        assert version in (b"HTTP/1.0", b"HTTP/1.1")
        assert isinstance(keep_alive, bool)
        assert data.startswith(b"GET " + path)
        end = data.index(b"\r\n\r\n")
        assert end <= MAX_HEAD
        lines = data[:end].split(b"\r\n")
        assert all(c == 9 or 0x20 <= c != 0x7F for line in lines for c in line)
        names = [line.partition(b":")[0].lower() for line in lines[1:]]
        assert version == b"HTTP/1.0" or names.count(b"host") == 1
        assert not {b"content-length", b"transfer-encoding", b"upgrade", b"expect"} & set(names)
        assert all(0x21 <= c < 0x7F and c != 0x23 for c in query)


@settings(max_examples=500)
@given(st.binary(max_size=MAX_HEAD + 200))
def test_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    check(data)


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_never_raises_on_arbitrary_bytes_after_a_get_line(tail: bytes) -> None:
    check(b"GET /announce?" + tail)
    check(b"GET /announce?a=1 HTTP/1.1\r\n" + tail + b"\r\n\r\n")


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid head with a few bytes replaced, inserted or deleted."""
    data = bytearray(draw(st.sampled_from([GOOD, head(version=b"HTTP/1.0"), head(b"/scrape")])))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["replace", "insert", "delete"]))
        byte = draw(st.sampled_from([b" ", b"\r", b"\n", b":", b"\x00", b"\xff", b"#", b"?", b"a"]))
        if op == "insert" or at == len(data):
            data[at:at] = byte
        elif op == "replace":
            data[at : at + 1] = byte
        else:
            del data[at]
    return bytes(data)


@settings(max_examples=500)
@given(mutated())
def test_never_raises_on_mutated_heads(data: bytes) -> None:
    check(data)


@settings(max_examples=200)
@given(
    st.sampled_from([b"/announce", b"/scrape"]),
    st.text(
        alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#"),
        max_size=200,
    ),
    st.sampled_from([b"HTTP/1.0", b"HTTP/1.1"]),
)
def test_valid_heads_round_trip(path: bytes, query: str, version: bytes) -> None:
    got = parse_head(head(path + b"?" + query.encode(), version))
    assert got == (path, query.encode(), version, version == b"HTTP/1.1")


# -- a task cancelled before its first step ----------------------------------------------


class _Transport:
    def __init__(self) -> None:
        self.closed = False
        self.written: list[bytes] = []

    def get_extra_info(self, name: str) -> object:
        return ("127.0.0.1", 40000) if name == "peername" else None

    def is_closing(self) -> bool:
        return self.closed

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closed = True


class _SlowStore:
    """No ``announce_sync``: the lane answers from a task."""

    async def announce(self, *args: object) -> object:
        raise AssertionError("never reached: the task is cancelled first")

    async def scrape(self, *args: object) -> object:
        raise AssertionError("never reached: the task is cancelled first")


@pytest.mark.parametrize("target", [b"/announce?" + QUERY, b"/scrape"])
async def test_a_cancelled_pending_answer_closes_the_connection(target: bytes) -> None:
    """LaneSite.stop cancels pending answers, maybe before they ever ran: the client
    must not be left waiting, and no coroutine may be left un-awaited."""
    tasks: set[asyncio.Task[None]] = set()
    tracker = Tracker(_SlowStore(), TrackerConfig(), Counters())  # type: ignore[arg-type]
    lane = FastLane(tracker, object, tasks, ConnectionGate())  # type: ignore[arg-type]
    transport = _Transport()
    lane.connection_made(transport)  # type: ignore[arg-type]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lane.data_received(head(target))
        (task,) = tasks
        task.cancel()  # before its first step
        with pytest.raises(asyncio.CancelledError):
            await task
        gc.collect()
    assert transport.closed and transport.written == [] and not tasks
    assert [w for w in caught if "never awaited" in str(w.message)] == []
