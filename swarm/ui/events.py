"""The ``--json`` event names and their fields: one table, kept in sync with docs/json-events.md.

Scripts depend on this schema, so it only grows (new kinds, new optional
fields); nothing listed here is renamed or removed. ``validate`` exists for
tests and for anyone who wants to check a stream; the reporters themselves
never refuse to emit, because a schema slip must not stop a download.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from swarm.status import STATES

#: Bumped only if a breaking change is ever unavoidable (it should not be).
SCHEMA_VERSION = 1

# Event kinds, as constants so the engine cannot misspell them silently.
ADDED = "added"
LISTENING = "listening"
METADATA = "metadata"
PEER = "peer"
TRACKER = "tracker"
WEB_SEED = "web_seed"
PIECE = "piece"
PROGRESS = "progress"
STALLED = "stalled"
DONE = "done"
ERROR = "error"
SUMMARY = "summary"
INFO = "info"

# JSON types as named in the doc.
STRING, INTEGER, NUMBER, BOOLEAN, NULL = "string", "integer", "number", "boolean", "null"
ARRAY, OBJECT = "array", "object"


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    types: tuple[str, ...]
    required: bool
    doc: str
    choices: tuple[str, ...] = ()


def _f(name: str, types: str, doc: str, *, required: bool = True, choices: tuple[str, ...] = ()) -> FieldSpec:
    return FieldSpec(name, tuple(types.split("|")), required, doc, choices)


#: Fields every object carries.
COMMON: tuple[FieldSpec, ...] = (
    _f("event", STRING, "the event kind (a heading below)"),
    _f("time", NUMBER, "unix time in seconds (float) when the event was written"),
    _f(
        "info_hash", "string|null",
        "40 lowercase hex digits (v2-only torrents: the SHA-256 info-hash truncated to 20 bytes); "
        "null before the torrent is known and on events about no single torrent (`listening` of "
        "`seed A B C`, the daemon's `listening` and `api`)",
    ),
)

EVENTS: dict[str, tuple[FieldSpec, ...]] = {
    ADDED: (
        _f("name", STRING, "torrent name (may be the info-hash until metadata arrives)"),
        _f("state", STRING, "engine state", choices=STATES),
        _f("total_size", INTEGER, "bytes wanted (0 until metadata is known)"),
        _f("num_pieces", INTEGER, "pieces in the torrent (0 until metadata is known)"),
        _f("piece_length", INTEGER, "bytes per piece (0 until metadata is known)"),
        _f("magnet", STRING, "magnet URI", required=False),
        _f("torrent", STRING, "path of the .torrent file written or read", required=False),
        _f("path", STRING, "where the data is (or will be) on disk", required=False),
        _f("info_hash_v2", STRING, "BEP 52 SHA-256 info-hash, 64 hex digits (v2 and hybrid torrents)",
           required=False),
    ),
    LISTENING: (
        _f("host", STRING, "address the peer listener is bound to"),
        _f("port", INTEGER, "port actually bound (meaningful with --port 0)"),
        _f("requested_port", INTEGER, "the default port asked for, when it was taken and another was bound",
           required=False),
    ),
    METADATA: (
        _f("name", STRING, "torrent name from the info dictionary"),
        _f("total_size", INTEGER, "bytes in the torrent"),
        _f("num_pieces", INTEGER, "pieces in the torrent"),
        _f("piece_length", INTEGER, "bytes per piece"),
        _f("peer", STRING, "host:port of the peer that supplied it", required=False),
    ),
    PEER: (
        _f("action", STRING, "what happened", choices=("connected", "disconnected", "banned")),
        _f("address", STRING, "host:port of the peer"),
        _f("client", STRING, "client name parsed from its peer id", required=False),
        _f("source", STRING, "how we learned of it", required=False,
           choices=("manual", "tracker", "dht", "lsd", "pex", "incoming")),
        _f("reason", STRING, "why it was disconnected or banned", required=False),
        _f("encryption", STRING, "action connected: RC4 stream, MSE handshake only, or plain",
           required=False, choices=("encrypted", "obfuscated", "plain")),
    ),
    TRACKER: (
        _f("action", STRING, "outcome of an announce", choices=("ok", "error")),
        _f("url", STRING, "tracker URL"),
        _f("peers", INTEGER, "peers in the answer", required=False),
        _f("seeders", "integer|null", "seeders the tracker reports", required=False),
        _f("leechers", "integer|null", "leechers the tracker reports", required=False),
        _f("interval", "number|null", "seconds until the next announce", required=False),
        _f("error", STRING, "failure reason (action error)", required=False),
    ),
    WEB_SEED: (
        _f("action", STRING, "what happened", choices=("added", "failed", "dropped")),
        _f("url", STRING, "the web seed's URL"),
        _f("reason", STRING, "why it failed or was dropped (HTTP status, stall, wrong bytes)", required=False),
        _f("retry_in", NUMBER, "seconds until it is tried again (action failed)", required=False),
    ),
    PIECE: (
        _f("action", STRING, "outcome of the hash check", choices=("failed", "verified")),
        _f("index", INTEGER, "piece index"),
        _f("peer", STRING, "host:port of a peer that sent data for it", required=False),
    ),
    PROGRESS: (
        _f("state", STRING, "engine state", choices=STATES),
        _f("progress", NUMBER, "verified / total_size, 0.0 to 1.0 (0.0 while fetching metadata)"),
        _f("verified", INTEGER, "bytes verified on disk"),
        _f("total_size", INTEGER, "bytes wanted"),
        _f("down_rate", NUMBER, "payload bytes/s received, smoothed"),
        _f("up_rate", NUMBER, "payload bytes/s sent, smoothed"),
        _f("downloaded", INTEGER, "payload bytes received this session"),
        _f("uploaded", INTEGER, "payload bytes sent this session"),
        _f("peers", INTEGER, "connected peers"),
        _f("seeds", INTEGER, "connected peers that have everything"),
        _f("eta", "number|null", "seconds to completion, null when unknown"),
        _f(
            "wasted", INTEGER, "payload bytes received that were not requested or came twice (endgame)",
            required=False,
        ),
        _f("stalled_reason", "string|null", "why nothing is moving, when known", required=False),
        _f("checked_pieces", INTEGER, "`swarm check`: pieces checked so far", required=False),
        _f("num_pieces", INTEGER, "`swarm check`: pieces to check", required=False),
        _f("tasks", INTEGER, "asyncio tasks alive in the process (leak watch in soak tests)", required=False),
    ),
    STALLED: (
        _f("reason", STRING, "why the download is not progressing"),
    ),
    DONE: (
        _f("name", STRING, "torrent name"),
        _f("total_size", INTEGER, "bytes wanted, all verified"),
        _f("downloaded", INTEGER, "payload bytes received this session"),
        _f("uploaded", INTEGER, "payload bytes sent this session"),
        _f("elapsed", NUMBER, "seconds since the torrent started"),
        _f("path", STRING, "where the data is on disk", required=False),
    ),
    ERROR: (
        _f("message", STRING, "what went wrong, one line"),
        _f("fatal", BOOLEAN, "true when the command is about to stop because of it"),
    ),
    SUMMARY: (
        _f("state", STRING, "engine state at the end"),
        _f("complete", BOOLEAN, "every wanted byte is verified"),
        _f("verified", INTEGER, "bytes verified on disk"),
        _f("total_size", INTEGER, "bytes wanted"),
        _f("downloaded", INTEGER, "payload bytes received this session"),
        _f("uploaded", INTEGER, "payload bytes sent this session"),
        _f("elapsed", NUMBER, "seconds since the torrent started"),
        _f("ratio", NUMBER, "uploaded / downloaded (0 when nothing was downloaded)"),
        _f("path", STRING, "`swarm check`: the directory checked", required=False),
        _f("num_pieces", INTEGER, "`swarm check`: pieces in the torrent", required=False),
        _f("good_pieces", INTEGER, "`swarm check`: pieces whose SHA-1 matched", required=False),
        _f("bad_pieces", ARRAY, "`swarm check`: failing pieces as [first, last] ranges", required=False),
        _f("files", ARRAY, "`swarm check`: per file {path, length, status (ok, missing, short, bad), bad_pieces}",
           required=False),
    ),
    INFO: (
        _f("name", STRING, "torrent name"),
        _f("size", INTEGER, "bytes in the torrent"),
        _f("piece_length", INTEGER, "bytes per piece"),
        _f("pieces", INTEGER, "number of pieces"),
        _f("private", BOOLEAN, "BEP 27 private flag"),
        _f("multi_file", BOOLEAN, "a directory torrent"),
        _f("files", ARRAY, "{path, length, offset} per file, padding files left out"),
        _f("trackers", ARRAY, "BEP 12 tiers: arrays of announce URLs"),
        _f("web_seeds", ARRAY, "BEP 19 URLs"),
        _f("comment", "string|null", "free text"),
        _f("created_by", "string|null", "creating program"),
        _f("creation_date", "integer|null", "unix time"),
        _f("magnet", STRING, "magnet URI"),
        _f("warnings", ARRAY, "oddities found while parsing (strings)"),
        _f("info_hash_v2", STRING, "BEP 52 SHA-256 info-hash, 64 hex digits (v2 and hybrid torrents)",
           required=False),
        _f("version", STRING, "BitTorrent version: v1, v2 or hybrid", required=False,
           choices=("v1", "v2", "hybrid")),
    ),
}

#: Optional fields that may not be null: a reporter leaves them out instead of writing null.
OMIT_IF_NONE: dict[str, frozenset[str]] = {
    kind: frozenset(f.name for f in specs if not f.required and NULL not in f.types)
    for kind, specs in EVENTS.items()
}

#: Every documented kind, in the doc's order.
EVENT_KINDS: tuple[str, ...] = tuple(EVENTS)


def _type_ok(value: object, types: tuple[str, ...]) -> bool:
    for t in types:
        if t == NULL and value is None:
            return True
        if t == STRING and isinstance(value, str):
            return True
        if t == BOOLEAN and isinstance(value, bool):
            return True
        if t == INTEGER and isinstance(value, int) and not isinstance(value, bool):
            return True
        if t == NUMBER and isinstance(value, int | float) and not isinstance(value, bool):
            return True
        if t == ARRAY and isinstance(value, list):
            return True
        if t == OBJECT and isinstance(value, dict):
            return True
    return False


def validate(obj: Mapping[str, object]) -> list[str]:
    """Problems with one decoded event object against the schema; empty when it conforms.

    Extra fields are allowed (the schema is additive).
    """
    problems: list[str] = []
    kind = obj.get("event")
    if not isinstance(kind, str) or kind not in EVENTS:
        return [f"unknown event kind {kind!r}"]
    for spec in COMMON + EVENTS[kind]:
        if spec.name not in obj:
            if spec.required:
                problems.append(f"{kind}: missing field {spec.name!r}")
            continue
        value = obj[spec.name]
        if not _type_ok(value, spec.types):
            problems.append(f"{kind}: field {spec.name!r} is {type(value).__name__}, want {'|'.join(spec.types)}")
        elif spec.choices and value not in spec.choices:
            problems.append(f"{kind}: field {spec.name!r} = {value!r} is not one of {spec.choices}")
    return problems
