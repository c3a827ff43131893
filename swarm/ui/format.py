"""Pure text helpers shared by every viewer (live, plain, tracker line).

No I/O and no clock: callers pass ``now`` so tests pin the output exactly.
Everything here tolerates odd values from a snapshot (negative, NaN, huge)
because a display must never be the thing that crashes a transfer.
"""

from __future__ import annotations

import math
import time

from swarm.status import PeerStatus, TorrentStatus, TrackerStatus

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


#: Control characters, line separators and bidi overrides: from a hostile name or
#: error message they could move the cursor, clear the screen, forge log lines
#: or reverse text. Replaced by "?" wherever outside text is shown to a person.
_UNSAFE = {
    **{c: "?" for c in range(0x20)},
    **{c: "?" for c in range(0x7F, 0xA0)},
    **{c: "?" for c in (0x061C, 0x200E, 0x200F, 0x2028, 0x2029)},
    **{c: "?" for c in range(0x202A, 0x202F)},
    **{c: "?" for c in range(0x2066, 0x206A)},
}


def safe(text: object) -> str:
    """Outside text made harmless for a terminal or a line-oriented log."""
    return str(text).translate(_UNSAFE)


def _finite(x: float) -> float:
    return x if isinstance(x, int | float) and math.isfinite(x) else 0.0


def human_size(n: float) -> str:
    """Binary units, one decimal above bytes: ``0 B``, ``512 B``, ``120.3 MiB``."""
    n = _finite(n)
    sign = "-" if n < 0 else ""
    n = abs(n)
    if n < 1024:
        return f"{sign}{int(n)} B"
    for unit in _UNITS[1:]:
        n /= 1024.0
        # 1023.96 KiB would print as "1024.0 KiB"; roll over to the next unit.
        if n < 1023.95 or unit == _UNITS[-1]:
            return f"{sign}{n:.1f} {unit}"
    return f"{sign}{n:.1f} {_UNITS[-1]}"  # pragma: no cover - loop always returns


def human_rate(bps: float) -> str:
    return human_size(bps) + "/s"


def human_duration(seconds: float | None) -> str:
    """Two most significant units: ``3s``, ``1m05s``, ``2h03m``, ``3d04h``; ``-`` if unknown."""
    if seconds is None or not isinstance(seconds, int | float) or not math.isfinite(seconds):
        return "-"
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h}h{m:02d}m"
    d, h = divmod(h, 24)
    if d > 999:
        return ">999d"
    return f"{d}d{h:02d}h"


def human_eta(status: TorrentStatus) -> str:
    if status.state == "seeding" or (status.total_size and status.verified >= status.total_size):
        return "done"
    return human_duration(status.eta)


def percent(fraction: float) -> str:
    """``45.2%``; never shows 100.0% before the last byte is in."""
    f = _finite(fraction)
    f = min(1.0, max(0.0, f))
    p = f * 100.0
    if f < 1.0 and p >= 99.95:
        return "99.9%"
    return f"{p:.1f}%"


def fraction_done(status: TorrentStatus) -> float:
    """Verified share of the wanted bytes; 0 while the size is still unknown (magnet, no metadata).

    ``TorrentStatus.progress`` says 1.0 for a zero total, which is right for
    an empty selection but would show a full bar before metadata arrives.
    """
    if status.state == "metadata":
        return 0.0
    return min(1.0, max(0.0, _finite(status.progress)))


def share_ratio(status: TorrentStatus) -> float:
    """Transmission's rule: uploaded over downloaded, or over the size when nothing was downloaded (a seed)."""
    if status.downloaded > 0:
        return status.uploaded / status.downloaded
    if status.total_size > 0:
        return status.uploaded / status.total_size
    return 0.0


def ago(t: float | None, now: float) -> str:
    if t is None:
        return "never"
    return human_duration(now - t) + " ago"


def until(t: float | None, now: float) -> str:
    if t is None:
        return "-"
    return "in " + human_duration(t - now)


# --- piece map -------------------------------------------------------------

#: Cell alphabet of a rescaled map: the snapshot's "#+. " plus "~" (partly have).
HAVE, FLIGHT, MISSING, UNWANTED, PARTIAL = "#", "+", ".", " ", "~"


def rescale_piece_map(piece_map: str, width: int) -> str:
    """Shrink or stretch a snapshot's piece map to ``width`` cells.

    A cell covering several source cells shows in-flight if any is in flight
    (activity must stay visible), have if all are had, partial if some are,
    unwanted if all are unwanted, missing otherwise. Unknown characters count
    as missing.
    """
    n = len(piece_map)
    if width <= 0:
        return ""
    if n == 0:
        return ""
    if n == width:
        return "".join(c if c in "#+. " else MISSING for c in piece_map)
    out: list[str] = []
    for i in range(width):
        lo = i * n // width
        hi = max(lo + 1, (i + 1) * n // width)
        chunk = piece_map[lo:hi]
        if FLIGHT in chunk:
            out.append(FLIGHT)
            continue
        have = chunk.count(HAVE)
        unwanted = chunk.count(UNWANTED)
        if have == len(chunk):
            out.append(HAVE)
        elif unwanted == len(chunk):
            out.append(UNWANTED)
        elif have and have + unwanted == len(chunk):
            out.append(HAVE)  # everything wanted here is had
        elif have:
            out.append(PARTIAL)
        else:
            out.append(MISSING)
    return "".join(out)


def rescale_availability(avail: tuple[int, ...], width: int) -> tuple[int, ...]:
    """Shrink or stretch availability counts; a merged cell shows its minimum (the rarest part)."""
    n = len(avail)
    if width <= 0 or n == 0:
        return ()
    out: list[int] = []
    for i in range(width):
        lo = i * n // width
        hi = max(lo + 1, (i + 1) * n // width)
        out.append(min(avail[lo:hi]))
    return tuple(out)


def availability_text(avail: tuple[int, ...]) -> str:
    """One digit per cell, ``+`` for ten or more."""
    return "".join("+" if a > 9 else str(max(0, a)) for a in avail)


# --- peers -----------------------------------------------------------------

_SOURCE_FLAG = {"dht": "H", "pex": "X", "lsd": "L"}


def peer_flags(p: PeerStatus) -> str:
    """qBittorrent/uTorrent-style flags, so the letters are familiar.

    D downloading (we are interested, they unchoke us), d we want but they
    choke us, U uploading (they are interested, we unchoke them), u they want
    but we choke them, K they unchoke us and we don't want anything, ? we
    unchoke them and they don't want anything, S snubbed, I incoming, then the
    source: H dht, X pex, L lsd.
    """
    f = []
    if p.am_interested:
        f.append("d" if p.peer_choking else "D")
    elif not p.peer_choking:
        f.append("K")
    if p.peer_interested:
        f.append("u" if p.am_choking else "U")
    elif not p.am_choking:
        f.append("?")
    if p.snubbed:
        f.append("S")
    if not p.outgoing or p.source == "incoming":
        f.append("I")
    src = _SOURCE_FLAG.get(p.source)
    if src:
        f.append(src)
    return "".join(f)


def sort_peers(peers: tuple[PeerStatus, ...]) -> list[PeerStatus]:
    """Busiest first (down + up), then by address so the order is stable between frames."""
    return sorted(peers, key=lambda p: (-(_finite(p.down_rate) + _finite(p.up_rate)), p.address))


def clip(s: str, width: int) -> str:
    """Cut to ``width`` characters with an ellipsis, for fixed-width columns."""
    if width <= 0:
        return ""
    if len(s) <= width:
        return s
    return s[: width - 1] + "…"


# --- one-line summaries ----------------------------------------------------


def progress_line(status: TorrentStatus) -> str:
    """The body of a plain-mode progress line (without the timestamp)."""
    parts = [
        f"{percent(fraction_done(status))} {human_size(status.verified)}/{human_size(status.total_size)}",
        f"down {human_rate(status.down_rate)} up {human_rate(status.up_rate)}",
        f"peers {len(status.peers)} ({status.seeds} seed{'' if status.seeds == 1 else 's'})",
        f"eta {human_eta(status)}",
    ]
    if status.state not in ("downloading", "seeding"):
        parts.insert(0, safe(status.state))
    if status.stalled_reason:
        parts.append(f"stalled: {safe(status.stalled_reason)}")
    return " ".join(parts)


def summary_line(status: TorrentStatus, now: float) -> str:
    """What is left on screen when a command ends."""
    elapsed = max(0.0, now - status.started_at) if status.started_at else 0.0
    avg = status.downloaded / elapsed if elapsed > 0 else 0.0
    complete = status.total_size > 0 and status.verified >= status.total_size
    head = "complete" if complete else f"stopped at {percent(fraction_done(status))}"
    return (
        f"{safe(status.name)}: {head}, {human_size(status.verified)}/{human_size(status.total_size)}; "
        f"downloaded {human_size(status.downloaded)} in {human_duration(elapsed)} "
        f"(avg {human_rate(avg)}), uploaded {human_size(status.uploaded)}, ratio {share_ratio(status):.2f}"
    )


def tracker_state(t: TrackerStatus, now: float) -> str:
    """``ok 12 peers (3 seeds), last 5s ago, next in 29m55s`` or the error."""
    if t.state == "error":
        head = f"error: {safe(t.last_error or 'unknown')}"
    elif t.state == "ok":
        head = f"ok {t.peers} peer{'' if t.peers == 1 else 's'}"
        if t.seeders is not None:
            head += f" ({t.seeders} seed{'' if t.seeders == 1 else 's'})"
    else:
        head = safe(t.state)
    return f"{head}, last {ago(t.last_announce, now)}, next {until(t.next_announce, now)}"


def tracker_line(announces_per_s: float, swarms: int, peers: int) -> str:
    """The tracker's periodic status line; prefix ``[clock_text(now)]`` for a log."""
    rate = max(0.0, _finite(announces_per_s))
    return (
        f"{rate:,.1f} announces/s, "
        f"{swarms:,} swarm{'' if swarms == 1 else 's'}, {peers:,} peer{'' if peers == 1 else 's'}"
    )


def clock_text(t: float) -> str:
    """Local wall-clock ``HH:MM:SS`` for log lines."""
    try:
        return time.strftime("%H:%M:%S", time.localtime(t))
    except (OverflowError, OSError, ValueError):
        return "??:??:??"


def _opt(fields: dict[str, object], key: str) -> str:
    v = fields.get(key)
    return "" if v is None else safe(v)


def event_text(kind: str, fields: dict[str, object]) -> str:
    """One human line for a discrete event (plain mode and the live display's log)."""
    f = fields
    if kind == "peer":
        action = _opt(f, "action") or "event"
        text = f"peer {_opt(f, 'address')} {action}"
        extra = ", ".join(x for x in (_opt(f, "client"), _opt(f, "source"), _opt(f, "encryption")) if x)
        if extra:
            text += f" ({extra})"
        if f.get("reason"):
            text += f": {_opt(f, 'reason')}"
        return text
    if kind == "tracker":
        url = _opt(f, "url")
        if f.get("action") == "error":
            return f"tracker {url}: error: {_opt(f, 'error') or 'unknown'}"
        text = f"tracker {url}: ok"
        if f.get("peers") is not None:
            text += f", {_opt(f, 'peers')} peers"
        if f.get("seeders") is not None:
            text += f" ({_opt(f, 'seeders')} seeds)"
        return text
    if kind == "web_seed":
        text = f"web seed {_opt(f, 'url')} {_opt(f, 'action') or 'event'}"
        if f.get("reason"):
            text += f": {_opt(f, 'reason')}"
        if f.get("retry_in") is not None:
            text += f" (retry in {_num(f.get('retry_in')):.0f} s)"
        return text
    if kind == "piece":
        action = _opt(f, "action") or "event"
        text = (
            f"piece {_opt(f, 'index')} failed the hash check"
            if action == "failed"
            else f"piece {_opt(f, 'index')} {action}"
        )
        if f.get("peer"):
            text += f" (data from {_opt(f, 'peer')})"
        return text
    if kind == "metadata":
        return (
            f"metadata received: {_opt(f, 'name')}, {human_size(_num(f.get('total_size')))} "
            f"in {_opt(f, 'num_pieces')} pieces"
            + (f" (from {_opt(f, 'peer')})" if f.get("peer") else "")
        )
    if kind == "added":
        text = f"added {_opt(f, 'name')}"
        if f.get("total_size"):
            text += (
                f", {human_size(_num(f.get('total_size')))} in {_opt(f, 'num_pieces')} pieces "
                f"of {human_size(_num(f.get('piece_length')))}"
            )
        if f.get("info_hash"):
            text += f", info-hash {_opt(f, 'info_hash')}"
        for key in ("torrent", "magnet", "path"):
            if f.get(key):
                text += f"\n  {key}: {_opt(f, key)}"
        return text
    if kind == "listening":
        taken = f" ({f['requested_port']} was taken)" if f.get("requested_port") else ""
        return f"listening on {_opt(f, 'host')}:{_opt(f, 'port')}{taken}"
    if kind == "done":
        return (
            f"done: {_opt(f, 'name')}, {human_size(_num(f.get('total_size')))} "
            f"in {human_duration(_num(f.get('elapsed')))}"
            + (f", saved in {_opt(f, 'path')}" if f.get("path") else "")
        )
    if kind == "stalled":
        return f"stalled: {_opt(f, 'reason')}"
    if kind == "error":
        return f"error: {_opt(f, 'message')}"
    rest = " ".join(f"{safe(k)}={safe(v)}" for k, v in f.items())
    return f"{safe(kind)} {rest}".rstrip()


def _num(v: object) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0.0
