"""The status page's live chart: announces/s and peers over the last minutes.

A ring buffer sampled by the tracker every few seconds, drawn server-side as
an inline SVG (two polylines, each scaled to its own maximum): no JavaScript
and no framework, and the page reloads itself with a meta refresh. Pure:
``History.sample`` takes the time and the counts, ``svg`` returns text.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

#: Seconds between samples, and samples kept (10 minutes).
SAMPLE_EVERY = 5.0
SAMPLES = 120


@dataclass(frozen=True, slots=True)
class Sample:
    at: float  # unix seconds
    announces_per_s: float  # this process's announces (HTTP and UDP) since the last sample
    peers: int  # the whole tracker's, from the store (0 while it is unavailable)


class History:
    """The last ``size`` samples; the rate is counted from the previous sample."""

    def __init__(self, now: float, announces: int = 0, size: int = SAMPLES) -> None:
        self.samples: deque[Sample] = deque(maxlen=size)
        self._last = (now, announces)

    def sample(self, now: float, announces: int, peers: int) -> Sample:
        last_at, last_n = self._last
        rate = max(0, announces - last_n) / max(now - last_at, 1e-6)
        self._last = (now, announces)
        point = Sample(now, rate, peers)
        self.samples.append(point)
        return point


def _polyline(values: list[float], width: int, height: int, colour: str) -> str:
    top = max(values) or 1.0
    step = width / max(len(values) - 1, 1)
    points = " ".join(
        f"{i * step:.1f},{height - v / top * (height - 4) - 2:.1f}" for i, v in enumerate(values)
    )
    return f"<polyline fill='none' stroke='{colour}' stroke-width='1.5' points='{points}'/>"


def svg(samples: list[Sample], width: int = 600, height: int = 120) -> str:
    """Both series in one inline SVG; an empty chart (no polyline) before the first sample."""
    rates = [s.announces_per_s for s in samples]
    peers = [float(s.peers) for s in samples]
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height + 20}' "
        f"viewBox='0 0 {width} {height + 20}' role='img' "
        "aria-label='announces per second and peers'>",
        f"<rect width='{width}' height='{height}' fill='#f6f6f6' stroke='#ccc'/>",
    ]
    if samples:
        span = samples[-1].at - samples[0].at
        parts += [
            "<g class='announces'>" + _polyline(rates, width, height, "#1f77b4") + "</g>",
            "<g class='peers'>" + _polyline(peers, width, height, "#d62728") + "</g>",
        ]
        legend = (
            f"announces/s (this process): now {rates[-1]:.1f}, max {max(rates):.1f} &#183; "
            f"peers: now {int(peers[-1])}, max {int(max(peers))} &#183; last {span:.0f} s"
        )
    else:
        legend = "no sample yet"
    parts.append(
        f"<text x='0' y='{height + 15}' font-size='12' font-family='sans-serif'>"
        f"<tspan fill='#1f77b4'>&#9632;</tspan> <tspan fill='#d62728'>&#9632;</tspan> "
        f"{legend}</text></svg>"
    )
    return "".join(parts)
