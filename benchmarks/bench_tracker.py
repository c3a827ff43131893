#!/usr/bin/env python3
"""Announce throughput: `swarm tracker` against opentracker, under wrk.

Each request is a fresh connection (``Connection: close``, as real clients
announce) carrying a random peer of one of N fixed random swarms (opentracker
is whitelist-only, so the same N hashes go in its whitelist). Prints
requests/s, p50 and p99 latency for each tracker and the ratio.

    .venv/bin/python benchmarks/bench_tracker.py [--duration 10] [--connections 50]
        [--swarms 1000] [--workers N --store redis://127.0.0.1:PORT/0]
        [--run memory:1 --run memory:1:aiohttp --run redis:1 --run redis:2 --run redis:4]
        [--udp | --udp-only] [--udp-procs 2]

``--run STORE:WORKERS[:aiohttp]`` (repeatable) measures several set-ups in
one run; ``redis`` as STORE starts a private redis-server on 127.0.0.1
(flushed between runs); ``:aiohttp`` runs the tracker with ``--no-fast-lane``
(every request through aiohttp). Each timed run also reports the cores used by the server's
processes, redis-server and wrk (from /proc and getrusage): where a 2-core
machine's CPU went.

``--udp`` also measures BEP 15 announces on the same server (and on
opentracker's ``listen.udp``, same port) with ``udp_load.py``: several Python
processes, each a few sockets with announces in flight; ``--udp-only`` skips
the HTTP runs.

Everything listens on 127.0.0.1 only. wrk shares the CPUs with the tracker
under test, so absolute figures are low on a 2-core machine; the ratio is
the comparable number.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Only in the short check run: reading every body in Lua costs wrk (which shares
#: the CPUs) enough CPU to distort the timed run.
CHECK = r"""
response = function(status, headers, body)
  if body:find("failure reason", 1, true) then failures = failures + 1 end
end
"""

LUA = r"""
local hashes = { %(hashes)s }
local hex = "0123456789ABCDEF"
local function pct(bytes)
  local out = {}
  for i = 1, #bytes do
    local b = bytes:byte(i)
    local hi, lo = math.floor(b / 16), b %% 16
    out[#out + 1] = "%%" .. hex:sub(hi + 1, hi + 1) .. hex:sub(lo + 1, lo + 1)
  end
  return table.concat(out)
end
local function rand_bytes(n)
  local t = {}
  for i = 1, n do t[i] = string.char(math.random(0, 255)) end
  return table.concat(t)
end
local encoded = {}
for i, h in ipairs(hashes) do encoded[i] = pct(h) end
local counter = 0
local threads = {}
function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
  threads[#threads + 1] = thread
end
function init(args)
  math.randomseed(os.time() + (seed or 0) * 7919)
  failures = 0
end
%(check)s
request = function()
  local ih = encoded[math.random(1, #encoded)]
  local pid = pct("-WR0001-" .. rand_bytes(12))
  local left = (math.random(0, 3) == 0) and "0" or "1000"
  local path = "/announce?info_hash=" .. ih .. "&peer_id=" .. pid ..
    "&port=" .. math.random(1024, 65535) .. "&uploaded=0&downloaded=0&left=" .. left ..
    "&compact=1&numwant=50"
  return wrk.format("GET", path, {["Connection"] = "close"})
end
done = function(summary, latency, requests)
  local failed = 0
  for _, t in ipairs(threads) do failed = failed + (t:get("failures") or 0) end
  io.write(string.format("JSON {\"requests\": %%d, \"duration_us\": %%d, \"errors\": %%d, " ..
    "\"non2xx\": %%d, \"p50_us\": %%d, \"p99_us\": %%d, \"failures\": %%d}\n",
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, latency:percentile(50), latency:percentile(99), failed))
end
"""


#: The floor for any aiohttp tracker: a handler that answers a constant body.
BARE_AIOHTTP = """
import asyncio, sys
from aiohttp import web
BODY = b"d8:completei0e10:incompletei0e8:intervali1800e5:peers0:e"
async def h(request):
    return web.Response(body=BODY, content_type="text/plain")
async def main(port):
    app = web.Application()
    app.router.add_get("/announce", h)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    await asyncio.Event().wait()
try:
    import uvloop
    uvloop.run(main(int(sys.argv[1])))
except ImportError:
    asyncio.run(main(int(sys.argv[1])))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"server exited early with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if time.monotonic() > deadline:
            raise SystemExit(f"nothing listening on {port}")
        time.sleep(0.05)


def process_tree(pid: int) -> list[int]:
    """``pid`` and its children (the ``--workers`` processes)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return [pid, *map(int, children)]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (0 for a gone one)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def run_wrk(
    port: int, script: Path, args: argparse.Namespace, server: int, redis: int | None = None
) -> dict[str, float]:
    """A short run that counts failure answers, then the timed run, with the CPU time
    the server (all its processes), redis-server and wrk used during it."""
    check = _wrk(port, script.with_suffix(".check.lua"), args, 2)
    pids = process_tree(server)
    before = cpu_seconds(pids), cpu_seconds([redis] if redis else []), children_cpu()
    r = _wrk(port, script, args, args.duration)
    after = cpu_seconds(pids), cpu_seconds([redis] if redis else []), children_cpu()
    seconds = r["duration_us"] / 1e6
    r["cpu_server"], r["cpu_redis"], r["cpu_wrk"] = (
        (a - b) / seconds for a, b in zip(after, before, strict=True)
    )
    r["failures"] = check["failures"]
    r["checked"] = check["requests"]
    return r


def run_udp(
    port: int, hashes: list[bytes], args: argparse.Namespace, server: int, redis: int | None = None
) -> dict[str, float]:
    """The UDP (BEP 15) figure: ``udp_load`` processes in a closed loop, with the cores
    the server, redis-server and the generator used."""
    import udp_load

    pids = process_tree(server)
    before = cpu_seconds(pids), cpu_seconds([redis] if redis else []), children_cpu()
    r = udp_load.run(port, hashes, args.duration, procs=args.udp_procs)
    after = cpu_seconds(pids), cpu_seconds([redis] if redis else []), children_cpu()
    r["cpu_server"], r["cpu_redis"], r["cpu_wrk"] = (
        (a - b) / r["wall"] for a, b in zip(after, before, strict=True)
    )
    r["failures"] = int(r["errors"])  # error answers (a failure reason)
    r["errors"] = int(r["lost"])  # unanswered within a second
    r["non2xx"] = 0
    return r


def children_cpu() -> float:
    """CPU time of reaped children: only wrk is reaped during a timed run."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _wrk(port: int, script: Path, args: argparse.Namespace, duration: int) -> dict[str, float]:
    out = subprocess.run(
        [
            "wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{duration}s",
            "-s", str(script), f"http://127.0.0.1:{port}/announce",
        ],
        capture_output=True, text=True, timeout=duration + 60,
    )  # fmt: skip
    line = next((x for x in out.stdout.splitlines() if x.startswith("JSON ")), None)
    if line is None:
        raise SystemExit(f"wrk failed:\n{out.stdout}\n{out.stderr}")
    if os.environ.get("BENCH_VERBOSE"):
        print(out.stdout, file=sys.stderr)
    r = json.loads(line[5:])
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    return r


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_swarm(
    store: str,
    workers: int,
    script: Path,
    args: argparse.Namespace,
    redis: int | None,
    fast_lane: bool = True,
    hashes: list[bytes] | None = None,
) -> dict[str, dict[str, float]]:
    """``{"http": ...}``, and ``"udp"`` with ``--udp`` (the same server, after)."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "swarm", "tracker", "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(workers), "--store", store, "-q",
        # every announce comes from 127.0.0.1: the per-IP caps stay on (their cost is
        # measured) but sized for one host holding the whole load
        "--max-conns-per-ip", str(max(256, 2 * args.connections)),
        "--max-swarms-per-ip", "100000", "--max-peers-per-ip", "1000000",
    ]  # fmt: skip
    if not fast_lane:
        cmd.append("--no-fast-lane")
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        wait_port(port, proc)
        out = {} if args.udp_only else {"http": run_wrk(port, script, args, proc.pid, redis)}
        if (args.udp or args.udp_only) and hashes is not None:
            out["udp"] = run_udp(port, hashes, args, proc.pid, redis)
        return out
    finally:
        stop(proc)


def start_redis(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    wait_port(port, proc)
    return proc, f"redis://127.0.0.1:{port}/0"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--swarms", type=int, default=1000)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--store", default="memory:")
    p.add_argument(
        "--run",
        action="append",
        metavar="STORE:WORKERS",
        help="a set-up to measure (repeatable), e.g. memory:1, redis:2 (a private redis-server)",
    )
    p.add_argument("--skip-opentracker", action="store_true")
    p.add_argument(
        "--udp", action="store_true", help="also measure UDP (BEP 15) announces (udp_load.py)"
    )
    p.add_argument("--udp-only", action="store_true", help="UDP announces only")
    p.add_argument("--udp-procs", type=int, default=2, help="UDP load processes (default 2)")
    p.add_argument(
        "--baseline", action="store_true", help="also a bare aiohttp handler (constant answer)"
    )
    args = p.parse_args()
    for tool in ("wrk", "opentracker"):
        if shutil.which(tool) is None and not (tool == "opentracker" and args.skip_opentracker):
            raise SystemExit(f"{tool} is not installed")

    rng = random.Random(42)
    hashes = [rng.randbytes(20) for _ in range(args.swarms)]
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        tmp.chmod(0o755)
        lua_hashes = ", ".join('"' + "".join(f"\\{b}" for b in h) + '"' for h in hashes)
        script = tmp / "announce.lua"
        script.write_text(LUA % {"hashes": lua_hashes, "check": ""})
        script.with_suffix(".check.lua").write_text(LUA % {"hashes": lua_hashes, "check": CHECK})
        results: dict[str, dict[str, float]] = {}

        runs = args.run or [f"{args.store}:{args.workers}"]
        redis: subprocess.Popen[bytes] | None = None
        redis_url = ""
        try:
            for spec in runs:
                fast_lane = not spec.endswith(":aiohttp")
                store, _, workers = spec.removesuffix(":aiohttp").rpartition(":")
                store = "memory:" if store in ("memory", "memory:") else store
                if store == "redis":
                    if redis is None:
                        redis, redis_url = start_redis(tmp)
                    subprocess.run(
                        ["redis-cli", "-u", redis_url, "flushall"],
                        check=True, capture_output=True, timeout=10,
                    )  # fmt: skip
                    store = redis_url
                name = f"swarm tracker ({'redis' if store == redis_url else store}, {workers} w)"
                if not fast_lane:
                    name = name[:-1] + ", aiohttp only)"
                pid = redis.pid if redis is not None and store == redis_url else None
                got = run_swarm(store, int(workers), script, args, pid, fast_lane, hashes)
                for proto, r in got.items():
                    results[name + (" UDP" if proto == "udp" else "")] = r
        finally:
            if redis is not None:
                stop(redis)

        if args.baseline and not args.udp_only:
            port = free_port()
            proc = subprocess.Popen([sys.executable, "-c", BARE_AIOHTTP, str(port)], cwd=ROOT)
            try:
                wait_port(port, proc)
                results["bare aiohttp handler (floor)"] = run_wrk(port, script, args, proc.pid)
            finally:
                stop(proc)

        if not args.skip_opentracker:
            port = free_port()
            (tmp / "access.whitelist").write_text("".join(h.hex() + "\n" for h in hashes))
            (tmp / "ot.conf").write_text(
                "tracker.rootdir .\naccess.whitelist access.whitelist\n"
                f"listen.tcp 127.0.0.1:{port}\nlisten.udp 127.0.0.1:{port}\n"
            )
            proc = subprocess.Popen(
                ["opentracker", "-f", "ot.conf"], cwd=tmp, stdout=subprocess.DEVNULL
            )
            try:
                wait_port(port, proc)
                time.sleep(1.0)  # opentracker loads its whitelist in a thread after binding
                if not args.udp_only:
                    results["opentracker"] = run_wrk(port, script, args, proc.pid)
                if args.udp or args.udp_only:
                    results["opentracker UDP"] = run_udp(port, hashes, args, proc.pid)
            finally:
                stop(proc)

    print(
        f"\nwrk -t{args.threads} -c{args.connections} -d{args.duration}s, new connection per "
        f"request, {args.swarms} swarms, {os.cpu_count()} CPUs\n"
    )
    print(
        f"{'tracker':45} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'sock err':>8} {'non-2xx':>8}"
        f" {'failure':>8}  cores: server/redis/wrk"
    )
    for name, r in results.items():
        print(
            f"{name:45} {r['rps']:9.0f} {r['p50_us'] / 1000:8.2f} {r['p99_us'] / 1000:8.2f} "
            f"{r['errors']:8d} {r['non2xx']:8d} {r['failures']:8d}"
            f"  {r['cpu_server']:.2f}/{r['cpu_redis']:.2f}/{r['cpu_wrk']:.2f}"
        )
    if args.udp or args.udp_only:
        print(
            f"UDP rows: {args.udp_procs} udp_load.py processes x 8 sockets x 4 announces in"
            " flight; 'sock err' = datagrams unanswered within 1 s, 'failure' = error"
            " answers; the 'wrk' core column is the load generator's."
        )
    print(
        "\nsock err: opentracker closes each connection right after its answer, which wrk"
        " counts as a read error; the answers themselves arrive and are counted.\n"
        "failure: bencoded 'failure reason' answers in a 2 s check run before the timed one"
        " (must be 0 for a fair figure).\n"
        f"cores: CPU-seconds per second of the timed run used by the server's processes,"
        f" redis-server and wrk ({os.cpu_count()} = every core; the rest is other load)."
    )
    for proto, suffix, p99_goal in (("HTTP", "", 10_000), ("UDP", " UDP", 5_000)):
        if "opentracker" + suffix not in results:
            continue
        ot = results["opentracker" + suffix]["rps"]
        print(f"\n{proto} against opentracker (goal: >= 0.50 with p99 < {p99_goal // 1000} ms):")
        for name, r in results.items():
            if name.startswith("swarm") and name.endswith(" UDP") == bool(suffix):
                met = r["rps"] >= 0.5 * ot and r["p99_us"] < p99_goal and not r["failures"]
                print(f"  {name:45} {r['rps'] / ot:5.2f}  {'goal met' if met else 'not met'}")
    if "bare aiohttp handler (floor)" in results:  # not measured with --udp-only
        floor = results["bare aiohttp handler (floor)"]["rps"]
        first = next(iter(results.values()))
        print(f"swarm / bare aiohttp throughput: {first['rps'] / floor:.2f}")


if __name__ == "__main__":
    main()
