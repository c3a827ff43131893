"""The daemon's web page (issue 23): served with a CSP that allows only its own script,
nothing from elsewhere; its script, run in node against a live daemon with a minimal DOM,
asks for the token once, lists the torrents, adds a magnet and pauses a torrent."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
from pathlib import Path

import aiohttp
from conftest import require_tool

from swarm.daemon.page import SCRIPT
from tests.helpers.daemon import daemon, poll_torrent

DRIVER = Path(__file__).with_name("page_driver.js")


async def test_page_is_self_contained(tmp_path: Path) -> None:
    async with daemon(tmp_path) as d, aiohttp.ClientSession() as http, http.get(d.url + "/") as r:
        assert r.status == 200 and r.content_type == "text/html"
        html = await r.text()
        csp = r.headers["Content-Security-Policy"]
        assert r.headers["X-Frame-Options"] == "DENY"
    (script,) = re.findall(r"<script>(.*?)</script>", html, flags=re.S)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
    assert not re.search(r"(src|href)=|https?://|innerHTML", html)  # no outside resources, no HTML from data
    assert 'name="viewport"' in html  # reads on a phone


async def test_page_script_drives_the_api(tmp_path: Path) -> None:
    node = require_tool("node")
    (tmp_path / "a.bin").write_bytes(os.urandom(30_000))
    (tmp_path / "page.js").write_text(SCRIPT)
    magnet = "magnet:?xt=urn:btih:" + "ab" * 20 + "&dn=from-the-page"
    async with daemon(tmp_path, "--token", "tok") as d, aiohttp.ClientSession() as http:
        auth = {"Authorization": "Bearer tok"}
        async with http.post(f"{d.url}/api/torrents", json={"seed": "a.bin"}, headers=auth) as r:
            ih = (await r.json())["info_hash"]
        await poll_torrent(http, d.url, ih, "seeding", **auth)
        proc = await asyncio.create_subprocess_exec(
            node, str(DRIVER), str(tmp_path / "page.js"), d.url, "tok", magnet,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        steps = {s["step"]: s for s in map(json.loads, out.decode().splitlines())}
        rendered = steps["rendered"]
        assert rendered["prompted"] == 1 and rendered["rows"][0]["ih"] == ih
        assert "a.bin" in rendered["rows"][0]["text"] and "seeding" in rendered["rows"][0]["text"]
        assert "1 torrents" in rendered["totals"]
        assert any("from-the-page" in r["text"] for r in steps["added"]["rows"])
        await poll_torrent(http, d.url, ih, "paused", **auth)
        async with http.get(f"{d.url}/api/torrents", headers=auth) as r:
            assert {t["info_hash"] for t in await r.json()} == {ih, "ab" * 20}
