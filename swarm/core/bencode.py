"""Bencoding (BEP 3): a strict decoder for hostile input, and an encoder.

Why our own decoder rather than bencode.py's: we need the byte offset of every
error, a nesting-depth and size limit (real torrents nest 900 levels deep to
crash recursive parsers), canonical-integer checks, the raw span of a value
(the info-hash is the SHA-1 of the ``info`` bytes *as they stand in the file*),
and decoding a prefix followed by raw bytes (ut_metadata). bencode.py stays a
dependency and serves as the independent oracle in the property tests.

Decoded values: ``int``, ``bytes``, ``list`` and ``dict[bytes, value]``.
Strings are never decoded to ``str`` here; that is the caller's decision.
"""

from __future__ import annotations

from typing import Any

from swarm.errors import BencodeError

#: libtorrent's bdecode uses 100; nothing legitimate comes close.
DEFAULT_MAX_DEPTH = 100
#: Largest input decoded in one call; a .torrent of 10^6 pieces is 20 MB.
DEFAULT_MAX_SIZE = 64 * 1024 * 1024
#: Longest decimal literal we parse (int or length prefix). 2**64 has 20 digits.
_MAX_DIGITS = 32

_DIGITS = frozenset(b"0123456789")


class _Decoder:
    __slots__ = ("data", "end", "max_depth", "strict_order", "spans")

    def __init__(
        self,
        data: bytes,
        end: int,
        max_depth: int,
        strict_order: bool,
        spans: dict[bytes, tuple[int, int]] | None,
    ) -> None:
        self.data = data
        self.end = end
        self.max_depth = max_depth
        self.strict_order = strict_order
        self.spans = spans  # filled with the spans of the top-level dict's values

    def _number(self, pos: int, terminator: int, what: str) -> tuple[int, int]:
        """Parse a canonical decimal (optionally negative) ending at ``terminator``."""
        data = self.data
        stop = data.find(terminator, pos, min(self.end, pos + _MAX_DIGITS + 2))
        if stop < 0:
            if self.end - pos <= _MAX_DIGITS + 1:
                raise BencodeError(f"unterminated {what}", pos)
            raise BencodeError(f"{what} too long", pos)
        text = data[pos:stop]
        neg = text[:1] == b"-"
        digits = text[1:] if neg else text
        if not digits or not _DIGITS.issuperset(digits):
            raise BencodeError(f"invalid {what}", pos)
        if len(digits) > 1 and digits[0] == 0x30:
            raise BencodeError(f"{what} has a leading zero", pos)
        if neg and (digits == b"0" or terminator == 0x3A):
            raise BencodeError(f"invalid negative {what}", pos)
        value = int(digits)
        return (-value if neg else value), stop + 1

    def _string(self, pos: int) -> tuple[bytes, int]:
        data = self.data
        colon = data.find(b":", pos, pos + 22)
        if colon > pos:  # fast path: canonical length that fits; errors take the slow path
            text = data[pos:colon]
            if text.isdigit() and (text[0] != 0x30 or colon == pos + 1):
                stop = colon + 1 + int(text)
                if stop <= self.end:
                    return data[colon + 1 : stop], stop
        length, start = self._number(pos, 0x3A, "string length")  # b":"
        stop = start + length
        if stop > self.end:
            raise BencodeError(f"string of length {length} runs past the end", pos)
        return self.data[start:stop], stop

    def value(self, pos: int, depth: int) -> tuple[Any, int]:
        if pos >= self.end:
            raise BencodeError("unexpected end of data", pos)
        c = self.data[pos]
        if 0x30 <= c <= 0x39:
            return self._string(pos)
        if c == 0x69:  # i
            stop = self.data.find(b"e", pos + 1, pos + 23)
            if stop > pos + 1:  # fast path: a canonical non-negative integer
                text = self.data[pos + 1 : stop]
                if text.isdigit() and (text[0] != 0x30 or stop == pos + 2):
                    return int(text), stop + 1
            return self._number(pos + 1, 0x65, "integer")
        if depth >= self.max_depth:
            raise BencodeError("nesting depth exceeded", pos)
        if c == 0x6C:  # l
            items: list[Any] = []
            pos += 1
            while True:
                if pos >= self.end:
                    raise BencodeError("unterminated list", pos)
                if self.data[pos] == 0x65:
                    return items, pos + 1
                item, pos = self.value(pos, depth + 1)
                items.append(item)
        if c == 0x64:  # d
            return self._dict(pos, depth)
        raise BencodeError(f"unexpected byte {bytes([c])!r}", pos)

    def _dict(self, pos: int, depth: int) -> tuple[dict[bytes, Any], int]:
        result: dict[bytes, Any] = {}
        spans = self.spans if depth == 0 else None
        previous: bytes | None = None
        pos += 1
        data = self.data
        while True:
            if pos >= self.end:
                raise BencodeError("unterminated dictionary", pos)
            c = data[pos]
            if c == 0x65:
                return result, pos + 1
            if not 0x30 <= c <= 0x39:
                raise BencodeError("dictionary key is not a string", pos)
            key_pos = pos
            key, pos = self._string(pos)
            if previous is not None:
                if key == previous or key in result:
                    raise BencodeError(f"duplicate dictionary key {key[:40]!r}", key_pos)
                if self.strict_order and key < previous:
                    raise BencodeError(f"dictionary key {key[:40]!r} out of order", key_pos)
            previous = key
            start = pos
            result[key], pos = self.value(pos, depth + 1)
            if spans is not None:
                spans[key] = (start, pos)


def _check_input(data: bytes, max_size: int) -> None:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BencodeError(f"expected bytes, got {type(data).__name__}", 0)
    if len(data) > max_size:
        raise BencodeError(f"input of {len(data)} bytes exceeds the {max_size}-byte limit", 0)


def decode(
    data: bytes,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_size: int = DEFAULT_MAX_SIZE,
    strict_order: bool = True,
    allow_trailing: bool = False,
) -> Any:
    """Decode one complete bencoded value.

    ``strict_order`` rejects dictionaries whose keys are not sorted; real
    .torrent files sometimes have unsorted keys, so the metainfo parser turns
    it off (and hashes raw bytes, so nothing is lost). Duplicate keys are
    always rejected.
    """
    value, end = decode_prefix(
        data, max_depth=max_depth, max_size=max_size, strict_order=strict_order
    )
    if end != len(data) and not allow_trailing:
        raise BencodeError("trailing data after the value", end)
    return value


def decode_prefix(
    data: bytes,
    start: int = 0,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_size: int = DEFAULT_MAX_SIZE,
    strict_order: bool = True,
) -> tuple[Any, int]:
    """Decode the value starting at ``start``; return it and the offset after it.

    For messages that are a bencoded dict followed by raw bytes (BEP 9 data).
    """
    _check_input(data, max_size)
    data = bytes(data) if not isinstance(data, bytes) else data
    if not 0 <= start <= len(data):
        raise BencodeError("start outside the data", max(0, min(start, len(data))))
    return _Decoder(data, len(data), max_depth, strict_order, None).value(start, 0)


def decode_with_spans(
    data: bytes,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_size: int = DEFAULT_MAX_SIZE,
    strict_order: bool = False,
) -> tuple[Any, dict[bytes, tuple[int, int]], int]:
    """Decode a value and, if it is a dict, the ``(start, end)`` span of each
    top-level value in ``data``; also return the offset after the value.

    ``data[start:end]`` of ``b"info"`` are the exact bytes whose SHA-1 is the
    info-hash.
    """
    _check_input(data, max_size)
    data = bytes(data) if not isinstance(data, bytes) else data
    spans: dict[bytes, tuple[int, int]] = {}
    value, end = _Decoder(data, len(data), max_depth, strict_order, spans).value(0, 0)
    return value, spans, end


class Raw:
    """Already-encoded bytes that ``encode`` copies as they are (an info dict
    inside a .torrent must keep its exact bytes to keep its info-hash)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)


def encode(value: Any) -> bytes:
    """Encode ``value`` canonically (dict keys sorted as raw bytes).

    ``str`` is encoded as UTF-8, ``bool`` is refused (it is almost always a
    bug), and dict keys may be ``bytes`` or ``str``.
    """
    out: list[bytes] = []
    _encode(value, out)
    return b"".join(out)


def _encode(value: Any, out: list[bytes]) -> None:
    if isinstance(value, Raw):
        out.append(value.data)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        out.append(b"%d:" % len(raw))
        out.append(raw)
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        out.append(b"%d:" % len(raw))
        out.append(raw)
    elif isinstance(value, bool):
        raise TypeError("cannot bencode a bool")
    elif isinstance(value, int):
        out.append(b"i%de" % value)
    elif isinstance(value, (list, tuple)):
        out.append(b"l")
        for item in value:
            _encode(item, out)
        out.append(b"e")
    elif isinstance(value, dict):
        out.append(b"d")
        items = []
        for k, v in value.items():
            key = k.encode("utf-8") if isinstance(k, str) else bytes(k)
            items.append((key, v))
        items.sort(key=lambda kv: kv[0])
        for i in range(1, len(items)):
            if items[i][0] == items[i - 1][0]:
                raise ValueError(f"duplicate key {items[i][0]!r}")
        for key, v in items:
            out.append(b"%d:" % len(key))
            out.append(key)
            _encode(v, out)
        out.append(b"e")
    else:
        raise TypeError(f"cannot bencode {type(value).__name__}")
