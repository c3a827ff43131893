// Runs the daemon page's script (argv[2]) in node against a live daemon (argv[3]) with a
// minimal DOM: enough for the script to render rows, add a magnet and press Pause.
// Prints one JSON line per step for tests/integration/test_daemon_page.py.
"use strict";
const fs = require("fs");
const vm = require("vm");
const [script, base, token, magnet] = process.argv.slice(2);

class Element {
  constructor(tag) { this.tag = tag; this.children = []; this.dataset = {}; this.style = {};
    this.className = ""; this._text = ""; this.hidden = false; this.value = ""; this.files = []; }
  set textContent(t) { this._text = String(t); this.children = []; }
  get textContent() { return this._text + this.children.map((c) => c.textContent).join(" "); }
  append(...els) { this.children.push(...els); }
  replaceChildren(...els) { this.children = els; }
  reset() { this.value = ""; }
  find(pred) { if (pred(this)) return this; for (const c of this.children) { const f = c.find(pred); if (f) return f; } return null; }
}
const ids = {};
for (const id of ["totals", "add", "file", "magnet", "msg", "empty", "rows"]) ids[id] = new Element("div");
let prompted = 0;
const realFetch = fetch;
const context = {
  document: { querySelector: (s) => ids[s.slice(1)], createElement: (t) => new Element(t) },
  sessionStorage: { getItem: () => null, setItem: () => {} },
  prompt: () => { prompted++; return token; },
  confirm: () => true,
  fetch: (path, opts) => realFetch(base + path, opts),
  setInterval: () => 0,
  console, String, Math, JSON, Error,
};
vm.createContext(context);
vm.runInContext(fs.readFileSync(script, "utf8"), context);

const rows = () => ids.rows.children.map((r) => ({ ih: r.dataset.ih, text: r.textContent }));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(cond, what) {
  for (let i = 0; i < 200; i++) { if (cond()) return; await sleep(50); }
  throw new Error("timed out: " + what + " " + JSON.stringify(rows()) + " msg=" + ids.msg.textContent);
}
(async () => {
  await until(() => ids.rows.children.length === 1, "first row");
  console.log(JSON.stringify({ step: "rendered", prompted, rows: rows(), totals: ids.totals.textContent }));
  ids.magnet.value = magnet;
  await ids.add.onsubmit({ preventDefault() {} });
  await until(() => ids.rows.children.length === 2, "magnet row");
  console.log(JSON.stringify({ step: "added", rows: rows(), msg: ids.msg.textContent }));
  const first = ids.rows.children[0];
  const pause = first.find((e) => e.tag === "button" && e._text === "Pause");
  pause.onclick();
  await until(() => ids.rows.children.some((r) => r.textContent.includes("paused")), "paused row");
  console.log(JSON.stringify({ step: "paused", rows: rows() }));
})().catch((e) => { console.error(e.message); process.exit(1); });
