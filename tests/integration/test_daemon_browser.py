"""The daemon's web page in a real browser (issue 23): Debian's headless Chromium driven by
playwright. The page lists the torrents, adds one by .torrent upload (its data already in
DIR: verified, seeding) and one by magnet (downloaded from a `swarm seed`), shows both
complete, pauses one; a screenshot of it goes to docs/daemon-page.png."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import IN_CI, require_tool

from swarm.core.metainfo import parse_metainfo
from swarm.create import create_torrent
from tests.helpers.daemon import daemon
from tests.helpers.procs import spawn_swarm

QUIET = ("--host", "127.0.0.1", "--port", "0", "--no-dht", "--no-lsd")
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "daemon-page.png"


def require_playwright() -> Any:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        if IN_CI:
            pytest.fail("playwright is not installed (the test extra has it)")
        pytest.skip("playwright is not installed")
    return async_playwright


async def test_page_in_chromium(tmp_path: Path) -> None:
    async_playwright = require_playwright()
    chromium = require_tool("chromium")
    root = tmp_path / "d"
    root.mkdir()
    (root / "photos.tar").write_bytes(os.urandom(300_000))
    (tmp_path / "photos.tar.torrent").write_bytes(create_torrent(root / "photos.tar", piece_length=32768))
    for name in ("debian-13.iso", "notes.txt"):
        (root / name).write_bytes(os.urandom(200_000))
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "movie.mkv").write_bytes(os.urandom(900_000))
    seed = await spawn_swarm("seed", str(tmp_path / "src" / "movie.mkv"), "--json", *QUIET, cwd=tmp_path)
    try:
        assert seed.stdout is not None
        port = None
        while port is None:
            ev = json.loads(await seed.stdout.readline())
            port = ev.get("port") if ev["event"] == "listening" else None
        magnet = parse_metainfo((tmp_path / "movie.mkv.torrent").read_bytes()).magnet_uri(
            peers=[("127.0.0.1", int(port))]
        )
        async with daemon(root) as d, async_playwright() as pw:
            import aiohttp

            async with aiohttp.ClientSession() as http:
                for name in ("debian-13.iso", "notes.txt"):
                    async with http.post(f"{d.url}/api/torrents", json={"seed": name}) as r:
                        assert r.status == 201
            browser = await pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            try:
                page = await browser.new_page(viewport={"width": 900, "height": 700})
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                await page.goto(d.url + "/")
                await page.locator(".t.seeding", has_text="debian-13.iso").wait_for(timeout=15_000)
                # add by upload: its data is in DIR already, so it is verified and seeds
                await page.set_input_files("#file", str(tmp_path / "photos.tar.torrent"))
                await page.click("button[type=submit]")
                await page.locator(".t.seeding", has_text="photos.tar").wait_for(timeout=20_000)
                # add by magnet: downloaded from the swarm seed, then complete
                await page.fill("#magnet", magnet)
                await page.click("button[type=submit]")
                done = page.locator(".t.seeding", has_text="movie.mkv")
                await done.wait_for(timeout=60_000)
                assert "100.0% of" in await done.inner_text()
                # pause one from its button
                notes = page.locator(".t", has_text="notes.txt")
                await notes.get_by_role("button", name="Pause").click()
                await page.locator(".t.paused", has_text="notes.txt").wait_for(timeout=15_000)
                assert "4 torrents" in await page.inner_text("#totals")
                if os.environ.get("SWARM_SCREENSHOT"):  # refreshes the README's picture on demand
                    await page.screenshot(path=str(SCREENSHOT), full_page=True)
                small = await browser.new_page(viewport={"width": 390, "height": 800})  # a phone
                await small.goto(d.url + "/")
                await small.locator(".t", has_text="movie.mkv").wait_for(timeout=15_000)
                width = await small.evaluate("document.documentElement.scrollWidth")
                assert width <= 390, f"the page scrolls sideways on a phone: {width}px"
                assert not errors, errors
            finally:
                await browser.close()
        assert (root / "movie.mkv").read_bytes() == (tmp_path / "src" / "movie.mkv").read_bytes()
    finally:
        seed.terminate()
        await seed.wait()
