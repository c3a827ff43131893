"""The status page's live chart: an inline SVG of announces/s and peers, one point per
sample of the ring buffer, drawn server-side (no script)."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from swarm.core.announce import build_announce_url
from tracker.app import CONFIG_KEY, HISTORY_KEY, STORE_KEY, TrackerConfig, make_app, sample_chart
from tracker.chart import History, svg
from tracker.server import RunningTracker, start_tracker
from tracker.store import MemoryStore

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
async def tracker() -> AsyncIterator[RunningTracker]:
    t = await start_tracker("127.0.0.1", 0, interval=60, udp=False)
    yield t
    await t.close()


def chart_of(page: str) -> ET.Element:
    start, end = page.index("<svg"), page.index("</svg>") + len("</svg>")
    return ET.fromstring(page[start:end])


def points(chart: ET.Element, series: str) -> list[tuple[float, float]]:
    group = chart.find(f"{SVG}g[@class='{series}']")
    assert group is not None, series
    line = group.find(f"{SVG}polyline")
    assert line is not None
    pairs = [p.split(",") for p in line.attrib["points"].split()]
    return [(float(x), float(y)) for x, y in pairs]


async def announce(http: aiohttp.ClientSession, t: RunningTracker, n: int, first: int) -> None:
    for i in range(first, first + n):
        url = build_announce_url(t.url, bytes(20), b"-SW0001-" + i.to_bytes(12, "big"),
                                 6000 + i, 0, 0, 100, "started")  # fmt: skip
        async with http.get(url) as resp:
            assert resp.status == 200


async def test_status_page_draws_one_point_per_sample(tracker: RunningTracker) -> None:
    app = tracker.app
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        async with http.get(f"{tracker.base_url}/") as resp:
            page = await resp.text()
        assert "http-equiv='refresh'" in page and "<script" not in page
        assert chart_of(page).find(f"{SVG}g") is None  # no sample yet: no line
        for k in range(4):
            await announce(http, tracker, 5, first=5 * k)
            await sample_chart(app)
        async with http.get(f"{tracker.base_url}/") as resp:
            page = await resp.text()
    chart = chart_of(page)
    rates, peers = points(chart, "announces"), points(chart, "peers")
    assert len(rates) == len(peers) == 4
    samples = list(app[HISTORY_KEY].samples)
    assert [s.peers for s in samples] == [5, 10, 15, 20]
    assert all(s.announces_per_s > 0 for s in samples)
    assert peers[-1][1] < peers[0][1]  # more peers: higher on the chart (smaller y)
    assert rates[0][0] == 0.0 and rates[-1][0] == 600.0  # spread over the chart's width


async def test_the_tracker_samples_on_its_own() -> None:
    app = make_app(MemoryStore(), TrackerConfig(chart_every=0.01))
    async with TestServer(app) as server:
        async with asyncio.timeout(10):
            while len(app[HISTORY_KEY].samples) < 3:
                await asyncio.sleep(0.01)
        assert app[CONFIG_KEY].chart_every == 0.01
        assert (await app[STORE_KEY].stats())["peers"] == 0
        assert server.port is not None


def test_ring_buffer_keeps_the_last_samples() -> None:
    history = History(now=0.0, size=3)
    for t in range(1, 6):
        history.sample(float(t), announces=10 * t, peers=t)
    assert [s.peers for s in history.samples] == [3, 4, 5]
    assert [s.announces_per_s for s in history.samples] == [10.0, 10.0, 10.0]
    chart = ET.fromstring(svg(list(history.samples)))
    assert len(points(chart, "peers")) == 3
