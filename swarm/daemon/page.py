"""The web page at ``/``: one HTML file with its CSS and a little plain JavaScript, no external
resources, no build step. It reads and drives the same API as ``swarm remote``.

The page itself holds no data (so it needs no token); its script fetches
``/api/torrents`` every two seconds and builds the rows with ``textContent``
only (a torrent's name is never parsed as HTML). With ``--token`` the API
answers 401, and the page asks for the token once and keeps it for the tab
(``sessionStorage``). The script is allowed by its hash in the CSP, nothing else
inline or from elsewhere is.
"""

from __future__ import annotations

import base64
import hashlib

STYLE = """
:root { color-scheme: light dark; --ok: #2a9d4b; --run: #1f78c1; --bad: #c0392b; --dim: #888; }
* { box-sizing: border-box; }
body { font: 15px/1.4 system-ui, sans-serif; margin: 0 auto; max-width: 60rem; padding: .8rem; }
h1 { font-size: 1.3rem; margin: .2rem 0 .8rem; }
h1 small { color: var(--dim); font-weight: normal; font-size: .85rem; }
form { display: flex; flex-wrap: wrap; gap: .5rem; margin-bottom: 1rem; }
form input[type=text] { flex: 1 1 16rem; min-width: 0; padding: .45rem; }
button, input { font: inherit; }
button { padding: .4rem .8rem; cursor: pointer; }
#msg { min-height: 1.4em; color: var(--bad); }
.t { border: 1px solid #8884; border-radius: .5rem; padding: .6rem .8rem; margin-bottom: .6rem; }
.top { display: flex; gap: .5rem; align-items: baseline; }
.name { font-weight: 600; flex: 1; overflow-wrap: anywhere; }
.state { font-size: .8rem; padding: .05rem .45rem; border-radius: 1rem; color: #fff; background: var(--dim); }
.state.seeding { background: var(--ok); } .state.downloading { background: var(--run); }
.state.error { background: var(--bad); }
.bar { height: .5rem; background: #8883; border-radius: .25rem; margin: .45rem 0; overflow: hidden; }
.bar div { height: 100%; background: var(--run); }
.seeding .bar div, .bar div.full { background: var(--ok); }
.stats { display: flex; flex-wrap: wrap; gap: .2rem 1rem; color: var(--dim); font-size: .9rem; }
.err { color: var(--bad); font-size: .9rem; }
.acts { display: flex; gap: .4rem; margin-top: .4rem; }
.acts button { padding: .25rem .7rem; font-size: .9rem; }
#empty { color: var(--dim); }
"""

SCRIPT = """
"use strict";
const $ = (s) => document.querySelector(s);
let token = sessionStorage.getItem("swarm-token") || "";

async function api(method, path, body, type) {
  const headers = {};
  if (token) headers["Authorization"] = "Bearer " + token;
  if (type) headers["Content-Type"] = type;
  const r = await fetch(path, { method, headers, body });
  if (r.status === 401) {
    const t = prompt("This swarm daemon needs its token (--token):");
    if (t === null) throw new Error("no token given");
    token = t.trim();
    sessionStorage.setItem("swarm-token", token);
    return api(method, path, body, type);
  }
  if (!r.ok) {
    let why = r.status + " " + r.statusText;
    try { why = (await r.json()).error || why; } catch (e) {}
    throw new Error(why);
  }
  return r.status === 204 ? null : r.json();
}

function size(n) {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}
function eta(s) {
  if (s === null || s === undefined) return "-";
  s = Math.round(s);
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
  if (s < 86400) return Math.floor(s / 3600) + "h" + String(Math.floor(s / 60) % 60).padStart(2, "0") + "m";
  return Math.floor(s / 86400) + "d";
}
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}
function say(text) { $("#msg").textContent = text || ""; }

async function act(method, path) {
  try { await api(method, path); say(""); } catch (e) { say(e.message); }
  refresh();
}

function row(t) {
  const box = el("div", "t " + t.state);
  box.dataset.ih = t.info_hash;
  const top = el("div", "top");
  top.append(el("span", "name", t.name), el("span", "state " + t.state, t.state));
  const bar = el("div", "bar"), fill = el("div", t.progress >= 1 ? "full" : "");
  fill.style.width = (t.progress * 100).toFixed(1) + "%";
  bar.append(fill);
  const stats = el("div", "stats");
  stats.append(
    el("span", "", (t.progress * 100).toFixed(1) + "% of " + size(t.size)),
    el("span", "", "\\u2193 " + size(t.down_rate) + "/s"),
    el("span", "", "\\u2191 " + size(t.up_rate) + "/s"),
    el("span", "", t.peers + (t.peers === 1 ? " peer" : " peers")),
    el("span", "", "ETA " + (t.progress >= 1 ? "done" : eta(t.eta))),
  );
  box.append(top, bar, stats);
  if (t.error) box.append(el("div", "err", t.error));
  const acts = el("div", "acts");
  const base = "/api/torrents/" + t.info_hash;
  const paused = t.state === "paused" || t.state === "error";
  const toggle = el("button", "", paused ? "Resume" : "Pause");
  toggle.onclick = () => act("POST", base + (paused ? "/resume" : "/pause"));
  const remove = el("button", "", "Remove");
  remove.onclick = () => {
    if (!confirm("Remove " + t.name + "? (its files stay on disk)")) return;
    act("DELETE", base);
  };
  acts.append(toggle, remove);
  box.append(acts);
  return box;
}

async function refresh() {
  let list;
  try { list = await api("GET", "/api/torrents"); } catch (e) { say(e.message); return; }
  const rows = $("#rows");
  rows.replaceChildren(...list.map(row));
  $("#empty").hidden = list.length > 0;
  const up = list.reduce((a, t) => a + t.up_rate, 0), down = list.reduce((a, t) => a + t.down_rate, 0);
  $("#totals").textContent = list.length + " torrents \\u00b7 \\u2193 " + size(down) + "/s \\u00b7 \\u2191 " + size(up) + "/s";
}

$("#add").onsubmit = async (ev) => {
  ev.preventDefault();
  const file = $("#file").files[0], magnet = $("#magnet").value.trim();
  try {
    if (file) await api("POST", "/api/torrents", await file.arrayBuffer(), "application/x-bittorrent");
    else if (magnet) await api("POST", "/api/torrents", JSON.stringify({ magnet }), "application/json");
    else { say("choose a .torrent file or paste a magnet link"); return; }
    $("#add").reset();
    say("");
  } catch (e) { say(e.message); }
  refresh();
};
refresh();
setInterval(refresh, 2000);
"""

SCRIPT_HASH = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()

#: Served with the page: its own script and style only; no frames, no other origin.
CSP = (
    f"default-src 'self'; script-src 'sha256-{SCRIPT_HASH}'; style-src 'unsafe-inline'; "
    "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)

PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>swarm</title>
<style>{STYLE}</style>
</head>
<body>
<h1>swarm <small id="totals"></small></h1>
<form id="add">
  <input type="file" id="file" accept=".torrent,application/x-bittorrent" aria-label=".torrent file">
  <input type="text" id="magnet" placeholder="or paste a magnet: link" aria-label="magnet link">
  <button type="submit">Add</button>
</form>
<div id="msg" role="status"></div>
<p id="empty" hidden>No torrents yet: add a .torrent or a magnet link above.</p>
<div id="rows"></div>
<script>{SCRIPT}</script>
</body>
</html>
"""
