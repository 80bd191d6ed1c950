#!/usr/bin/env python3
"""How cost grows: the work (links stored, durable writes) and the load (connections, a backend
that holds every call), measured on 127.0.0.1 only.

    python3 bench/scale.py                  # build, seed, measure, write bench/results/scale.*
    python3 bench/scale.py --links 1000,100000   # fewer sizes, for a quick look
    python3 bench/scale.py --chart-only     # redraw scale.svg from scale.json
    python3 bench/scale.py --baseline 85cca2a    # and the consumer of that commit beside this
                                                 # one, on the same backends in the same runs

Placement as hop.py's gating one: every server pinned to core 1 with one worker, wrk on core 0.
The upstream runs without a token and with its data in a temporary directory; it is seeded
through its own API (PUT /v1/kv/links/{code}, link documents as the consumer writes them) by wrk,
up to each size in turn. Sections:

  links        at each size: direct GETs (D, /v1/kv/links/{code}) and redirects (C, /{code})
               with codes drawn uniformly and skewed (Zipf, s = 1: code k with weight 1/k),
               req/s and p99, the upstream's RSS and database size (file, WAL and shared memory),
               and the idempotency keys the redirects' click batches left in the upstream
  other kinds  the same redirects at each size from the same consumer binary on Redis (R) and on
               PostgreSQL (P), each run as compose runs it (every acknowledged write on disk)
               and seeded directly (redis-cli --pipe; INSERT … SELECT generate_series) with the
               documents the consumer writes: req/s and p99, the backend's memory (Redis) or
               database size (PostgreSQL), and the consumer's /api/status at -c1
  before       with --baseline REV, in both sections above: the same redirects from the consumer
               built from REV, attached beside this one to the same backend, right after it
  probes       at each size: /v1/info, the consumer's /readyz and /api/status at -c1
  connections  at the first size: 32, 256 and 1024 connections against D and C: req/s, p99,
               errors, and each server's RSS after
  writes       a fresh upstream: PUT req/s with 1, 32 and 256 writers and values of 100 B,
               4 KiB and 64 KiB, p99, and the writes per commit group commit reached
  held         a consumer attached to a backend that accepts and never answers, with
               CIRCUIT_FAILURES at its largest (1000): 2000 connections for 8 s. Each redirect
               waits its deadline (UPSTREAM_TIMEOUT, 2 s) and ends 504; its lookup waits in one
               of the few calls in flight, each a single failure for the breaker; the statuses,
               latencies, the connections the backend was sent, and the consumer's peak RSS

Each wrk run is bounded (--seconds, default 4); every process started is stopped. Results go
to bench/results/scale.json and scale.svg. wrk, redis-server and PostgreSQL 15 come from Debian
and are installed when missing.
"""

import argparse
import json
import math
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchkit import (POSTGRES_BIN, RESULTS, WRK_UNEXPECTED, Postgres, Redis, build, build_baseline,
                      ensure_debian_tools, free_port, machine, memory_kib, nice_step, parse_wrk,
                      request, say, stop_cleanly_on_sigterm, wait_ready)

SIZES = [1_000, 100_000, 1_000_000]
CONNECTIONS = [32, 256, 1024]
WRITERS = [1, 32, 256]
VALUE_BYTES = [100, 4096, 65536]
HELD_CONNECTIONS = 2000
HELD_SECONDS = 8
SEED_LIMIT = 1800  # seconds that seeding the largest size may take at most

# Reads: a code drawn per request, uniformly or by Zipf's law; answers not `expected` counted.
READ_SCRIPT = WRK_UNEXPECTED + """
function init(args)
  prefix, n, zipf, expected = args[1], tonumber(args[2]), args[3] == "zipf", tonumber(args[4])
  unexpected = 0
  math.randomseed(20261201)
end
function request()
  -- floor(n^u) for uniform u has density 1/k: Zipf with s = 1.
  local k = zipf and math.floor(n ^ math.random()) or math.random(n)
  return wrk.format("GET", prefix .. "s" .. (k - 1))
end
function response(status) if status ~= expected then unexpected = unexpected + 1 end end
"""

# Writes: PUTs of link documents for codes s{from}..s{to-1}, in order, then GET /livez until
# wrk is stopped (it cannot tell from here when the last PUT is answered); or (with a size)
# values of that many bytes under keys cycling through w0..w99999.
WRITE_SCRIPT = WRK_UNEXPECTED + """
function init(args)
  from, to, size = tonumber(args[1]), tonumber(args[2]), tonumber(args[3])
  -- wrk calls request() once to check it before sending anything: that first call makes the
  -- last code, which is then made again in its turn.
  i, unexpected = from - 1, 0
  wrk.headers["Content-Type"] = "application/json"
  if size > 0 then value = '{"v":"' .. string.rep("x", size - 8) .. '"}' end
end
function request()
  if size > 0 then
    i = i + 1
    return wrk.format("PUT", "/v1/kv/w" .. (i % 100000), nil, value)
  end
  if i >= to then return wrk.format("GET", "/livez") end
  local code = "s" .. (i < from and to - 1 or i)
  i = i + 1
  return wrk.format("PUT", "/v1/kv/links/" .. code, nil,
    '{"url":"https://example.com/' .. code .. '","created_at":"2026-12-01T00:00:00Z"}')
end
function response(status)
  if status ~= 200 and status ~= 201 then unexpected = unexpected + 1 end
end
"""

# Any request: answers counted by status.
STATUS_SCRIPT = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) counts = {} end
function response(status) counts[status] = (counts[status] or 0) + 1 end
function done()
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("counts")) do io.write(string.format("status %d: %d\\n", status, n)) end
  end
end
"""


class Servers:
    """The processes of one section, pinned to core 1, stopped together."""

    def __init__(self, binaries, workdir):
        self.binaries, self.workdir, self.processes = binaries, workdir, []

    def start(self, name, env, binary=None):
        """The binary the name begins with (or `binary`), started and ready."""
        port = free_port()
        log = open(self.workdir / f"{name}.log", "w")
        process = subprocess.Popen(
            ["taskset", "-c", "1", str(binary or self.binaries / name.split("-")[0])],
            env={"PATH": os.environ.get("PATH", ""), "HOST": "127.0.0.1", "PORT": str(port),
                 "WORKERS": "1", "RUST_LOG": "info,actix_web::middleware::logger=warn", **env},
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.processes.append(process)
        url = f"http://127.0.0.1:{port}"
        wait_ready(f"{url}/readyz", process)
        return url, process

    def stop(self):
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wrk(url, connections, seconds, script, args=(), latency=True, timeout="10s"):
    argv = ["taskset", "-c", "0", "wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
            f"--timeout={timeout}", "-s", str(script), url]
    if latency:
        argv.insert(5, "--latency")
    if args:
        argv += ["--", *map(str, args)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    if result.returncode != 0:
        raise SystemExit(f"wrk failed: {result.stderr.strip()}")
    return result.stdout


def statuses(output):
    """The answers STATUS_SCRIPT counted, by status."""
    return {int(line.split()[1].rstrip(":")): int(line.split()[2])
            for line in output.splitlines() if line.startswith("status ")}


def metric(url, series):
    status, _, body = request(f"{url}/metrics")
    for line in body.decode().splitlines():
        if line.startswith(series + " "):
            return float(line.split()[1])
    return 0.0


def database_bytes(workdir):
    return sum(path.stat().st_size for path in workdir.glob("upstream.sqlite3*"))


def idempotency_keys(workdir):
    """Rows of the upstream's idempotency tables (single increments' keys and batches' keys),
    read beside the running upstream (WAL mode lets a reader in)."""
    with sqlite3.connect(f"file:{workdir / 'upstream.sqlite3'}?mode=ro", uri=True) as db:
        return db.execute("SELECT (SELECT count(*) FROM idempotency)"
                          " + (SELECT count(*) FROM batch_idempotency)").fetchone()[0]


def clicks_flushed(consumer):
    """Waits until the consumer has sent every click it counted (at most 30 s)."""
    deadline = time.monotonic() + 30
    while metric(consumer, "consumer_clicks_pending") > 0:
        if time.monotonic() > deadline:
            raise SystemExit("the consumer did not send its clicks within 30 s")
        time.sleep(0.2)


def keys(upstream):
    return json.loads(request(f"{upstream}/v1/info")[2])["keys"]


def seed(upstream, have, want, scripts):
    """Stores links s{have}..s{want-1} through the upstream's API. wrk runs until the upstream
    counts them all, and is then told to report with SIGINT."""
    say(f"seeding links {have} to {want - 1} through PUT /v1/kv/links/{{code}}")
    started = time.monotonic()
    loader = subprocess.Popen(
        ["taskset", "-c", "0", "wrk", "-t1", "-c64", f"-d{SEED_LIMIT}s", "-s", str(scripts["write"]),
         upstream, "--", str(have), str(want), "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    counted, progressed = have, time.monotonic()
    while counted < want and loader.poll() is None:
        time.sleep(0.5)
        now, previous, counted = time.monotonic(), counted, keys(upstream)
        progressed = now if counted > previous else progressed
        if now - started > SEED_LIMIT or now - progressed > 30:
            loader.kill()
            raise SystemExit(f"seeding stopped at {counted} of {want} links after {now - started:.0f} s")
    loader.send_signal(signal.SIGINT)
    run = parse_wrk(loader.communicate(timeout=30)[0])
    took = time.monotonic() - started
    if run["unexpected_statuses"] or run["socket_errors"] or keys(upstream) != want:
        raise SystemExit(f"seeding failed: {run}, the upstream counts {keys(upstream)} keys")
    say(f"  {want - have} links in {took:.0f} s ({(want - have) / took:.0f} writes/s)")


def run_line(run):
    return (f"{run['rps']:>9.0f} req/s  p99 {run['p99_us'] / 1000:>7.2f} ms"
            f"  errors {run['socket_errors'] + run['unexpected_statuses']}")


def redirects(url, size, seconds, scripts, **labels):
    """Redirects from the consumer at `url` with codes drawn uniformly, then by Zipf's law; each
    run labelled and said, and the seconds of redirects (warm-up included)."""
    runs, took = [], 0.0
    for draw in ("uniform", "zipf"):
        warm_up = parse_wrk(wrk(url, 32, 1, scripts["read"], ("/", size, draw, 302)))
        run = parse_wrk(wrk(url, 32, seconds, scripts["read"], ("/", size, draw, 302)))
        took += sum(r["requests"] / r["rps"] for r in (warm_up, run))
        run.update(links=size, draw=draw, **labels)
        runs.append(run)
        before = " before" if run.get("before") else ""
        say(f"  {size:>8} links  {run['target']}{before} {draw:<7} {run_line(run)}")
    return runs, took


def links_section(servers, upstream, consumers, workdir, sizes, have, seconds, scripts):
    """At each size (links up to `have` are stored already); `consumers` are this consumer and,
    with --baseline, the one before it."""
    results, probes, clicks = [], [], []
    upstream_process = servers.processes[0]
    consumer = consumers[0]
    for size in sizes:
        if size > have:
            seed(upstream, have, size, scripts)
            have = size
        for url in consumers:
            clicks_flushed(url)
        keys_before = idempotency_keys(workdir)
        sent_before = sum(metric(url, "consumer_clicks_sent_total") for url in consumers)
        seconds_of_redirects = 0.0
        for draw in ("uniform", "zipf"):
            wrk(upstream, 32, 1, scripts["read"], ("/v1/kv/links/", size, draw, 200))  # warm-up
            run = parse_wrk(wrk(upstream, 32, seconds, scripts["read"], ("/v1/kv/links/", size, draw, 200)))
            run.update(links=size, target="D", draw=draw)
            results.append(run)
            say(f"  {size:>8} links  D {draw:<7} {run_line(run)}")
        for url, labels in zip(consumers, ({"target": "C"}, {"target": "C", "before": True})):
            runs, took = redirects(url, size, seconds, scripts, **labels)
            results += runs
            seconds_of_redirects += took
        for url in consumers:
            clicks_flushed(url)
        sent = sum(metric(url, "consumer_clicks_sent_total") for url in consumers) - sent_before
        added = idempotency_keys(workdir) - keys_before
        clicks.append({"links": size, "redirect_seconds": round(seconds_of_redirects, 1),
                       "clicks_sent": int(sent),
                       "idempotency_keys_added": added,
                       "keys_per_redirect_second": round(added / seconds_of_redirects, 1)})
        say(f"  {size:>8} links: {added} idempotency keys kept for {clicks[-1]['clicks_sent']} clicks "
            f"over {seconds_of_redirects:.1f} s of redirects, "
            f"{added / seconds_of_redirects * 86400 / 1e6:.1f} million a day at that rate")
        rss = memory_kib(upstream_process.pid) / 1024
        size_mib = database_bytes(workdir) / 2**20
        for run in results:
            if run["links"] == size:
                run.update(upstream_rss_mib=round(rss, 1), database_mib=round(size_mib, 1))
        say(f"  {size:>8} links: upstream RSS {rss:.1f} MiB, database {size_mib:.1f} MiB")
        for name, url in (("/v1/info", f"{upstream}/v1/info"), ("consumer /readyz", f"{consumer}/readyz"),
                          ("consumer /api/status", f"{consumer}/api/status")):
            output = wrk(url, 1, 2, scripts["status"])
            run = parse_wrk(output)
            answered = statuses(output)
            run.update(links=size, probe=name, statuses=answered,
                       unexpected_statuses=sum(n for status, n in answered.items() if status != 200))
            probes.append(run)
            say(f"  {size:>8} links  {name:<20} p50 {run['p50_us']:>6.0f} us  p99 {run['p99_us']:>6.0f} us")
    return results, probes, clicks


def link_document(code):
    """The document the consumer writes for a link, as every kind of backend stores it."""
    return f'{{"url":"https://example.com/{code}","created_at":"2026-12-01T00:00:00Z"}}'


def seed_redis(redis, have, want):
    """Links s{have}..s{want-1}, written with SET … NX in one redis-cli --pipe."""
    def command(*words):
        return f"*{len(words)}\r\n" + "".join(f"${len(w.encode())}\r\n{w}\r\n" for w in words)
    commands = "".join(command("SET", f"portbound:links:s{i}", link_document(f"s{i}"), "NX")
                       for i in range(have, want))
    said = redis.cli("--pipe", stdin=commands)
    if f"errors: 0, replies: {want - have}" not in said:
        raise SystemExit(f"seeding Redis failed: {said}")


def seed_postgres(postgres, have, want):
    """Links s{have}..s{want-1}, inserted by one statement into the consumer's table."""
    postgres.psql("INSERT INTO portbound_links (code, url, created_at) "
                  "SELECT 's' || i, 'https://example.com/s' || i, '2026-12-01T00:00:00Z' "
                  f"FROM generate_series({have}, {want - 1}) AS i")


def backend_stored(kind, backend):
    """What the backend holds now: Redis's memory, PostgreSQL's database on disk, in MiB."""
    if kind == "R":
        info = dict(line.split(":", 1) for line in backend.cli("INFO", "memory").splitlines() if ":" in line)
        return {"redis_used_memory_mib": round(int(info["used_memory"]) / 2**20, 1)}
    size = int(backend.psql("SELECT pg_database_size(current_database())"))
    return {"postgres_database_mib": round(size / 2**20, 1)}


def kinds_section(binaries, baseline, sizes, seconds, scripts):
    """Redirects at each size from a consumer on Redis (R) and on PostgreSQL (P); with a
    `baseline` binary, from that consumer too, attached beside it."""
    results, probes = [], []
    for kind, name in (("R", "redis"), ("P", "postgres")):
        workdir = Path(tempfile.mkdtemp(prefix=f"portbound-scale-{name}-"))
        servers = Servers(binaries, workdir)
        backend = None
        try:
            backend = Redis(workdir, pinned=True) if kind == "R" else Postgres(pinned=True)
            # The consumer first: on PostgreSQL it creates the tables it is then seeded into.
            consumer, _ = servers.start(f"consumer-{name}", {"UPSTREAM_URL": backend.url()})
            before = (servers.start(f"consumer-{name}-before", {"UPSTREAM_URL": backend.url()},
                                    binary=baseline)[0] if baseline else None)
            have = 0
            for size in sizes:
                started = time.monotonic()
                (seed_redis if kind == "R" else seed_postgres)(backend, have, size)
                say(f"  {kind}: seeded links {have} to {size - 1} in {time.monotonic() - started:.1f} s")
                have = size
                stored = backend_stored(kind, backend)
                results += redirects(consumer, size, seconds, scripts, target=kind, **stored)[0]
                if before:
                    results += redirects(before, size, seconds, scripts, target=kind, before=True,
                                         **stored)[0]
                say(f"  {size:>8} links: {backend_stored(kind, backend)}")
                output = wrk(f"{consumer}/api/status", 1, 2, scripts["status"])
                run = parse_wrk(output)
                answered = statuses(output)
                run.update(links=size, probe=f"consumer on {name} /api/status", statuses=answered,
                           unexpected_statuses=sum(n for status, n in answered.items() if status != 200))
                probes.append(run)
                say(f"  {size:>8} links  {run['probe']:<34} p50 {run['p50_us']:>6.0f} us"
                    f"  p99 {run['p99_us']:>6.0f} us")
        finally:
            servers.stop()
            if backend:
                backend.stop()
            shutil.rmtree(workdir, ignore_errors=True)
    return results, probes


def connections_section(servers, upstream, consumers, size, seconds, scripts):
    results = []
    pids = {"upstream": servers.processes[0].pid, "consumer": servers.processes[1].pid}
    if len(consumers) > 1:
        pids["consumer before"] = servers.processes[2].pid
    targets = [("D", upstream, "/v1/kv/links/", 200, {}), ("C", consumers[0], "/", 302, {})]
    targets += [("C", url, "/", 302, {"before": True}) for url in consumers[1:]]
    for connections in CONNECTIONS:
        for target, url, prefix, expected, labels in targets:
            run = parse_wrk(wrk(url, connections, seconds, scripts["read"], (prefix, size, "uniform", expected)))
            run.update(connections=connections, target=target, **labels,
                       rss_mib={name: round(memory_kib(pid) / 1024, 1) for name, pid in pids.items()})
            results.append(run)
            before = " before" if labels else ""
            say(f"  -c{connections:<5} {target}{before} {run_line(run)}  RSS {run['rss_mib']}")
    return results


def writes_section(binaries, seconds, scripts):
    results = []
    for writers in WRITERS:
        for size in VALUE_BYTES:
            workdir = Path(tempfile.mkdtemp(prefix="portbound-scale-writes-"))
            servers = Servers(binaries, workdir)
            try:
                upstream, _ = servers.start("upstream", {"DATABASE_PATH": str(workdir / "upstream.sqlite3")})
                before = (metric(upstream, "upstream_storage_batch_writes_sum"),
                          metric(upstream, "upstream_storage_batch_writes_count"))
                run = parse_wrk(wrk(upstream, writers, seconds, scripts["write"], (0, 0, size)))
                writes = metric(upstream, "upstream_storage_batch_writes_sum") - before[0]
                commits = metric(upstream, "upstream_storage_batch_writes_count") - before[1]
                run.update(writers=writers, value_bytes=size,
                           writes_per_commit=round(writes / commits, 1) if commits else None)
                results.append(run)
                say(f"  {writers:>3} writers  {size:>6} B  {run_line(run)}"
                    f"  {run['writes_per_commit']} writes/commit")
            finally:
                servers.stop()
                shutil.rmtree(workdir, ignore_errors=True)
    return results


def held_section(binaries, scripts):
    """A consumer whose backend accepts every connection and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    held = []

    def accept():
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    workdir = Path(tempfile.mkdtemp(prefix="portbound-scale-held-"))
    servers = Servers(binaries, workdir)
    try:
        consumer, process = servers.start("consumer", {
            "UPSTREAM_URL": f"http://127.0.0.1:{listener.getsockname()[1]}/",
            "CIRCUIT_FAILURES": "1000"})
        idle = memory_kib(process.pid, "VmHWM") / 1024
        output = wrk(f"{consumer}/s1", HELD_CONNECTIONS, HELD_SECONDS, scripts["status"])
        run = parse_wrk(output)
        run["statuses"] = statuses(output)
        run.update(connections=HELD_CONNECTIONS, seconds=HELD_SECONDS, deadline_s=2,
                   consumer_idle_peak_rss_mib=round(idle, 1),
                   consumer_peak_rss_mib=round(memory_kib(process.pid, "VmHWM") / 1024, 1),
                   backend_connections=len(held))
        say(f"  {HELD_CONNECTIONS} connections, {HELD_SECONDS} s: statuses {run['statuses']}, "
            f"p50 {run['p50_us'] / 1000:.0f} ms, p99 {run['p99_us'] / 1000:.0f} ms, socket errors "
            f"{run['socket_errors']}, consumer peak RSS {run['consumer_peak_rss_mib']} MiB "
            f"({idle:.1f} idle), {len(held)} connections to the backend")
        return run
    finally:
        servers.stop()
        listener.close()
        for connection in held:
            connection.close()
        shutil.rmtree(workdir, ignore_errors=True)


def svg(results, meta):
    """req/s of D and C against the number of links, uniform and Zipf."""
    runs = results["links"]
    sizes = sorted({r["links"] for r in runs})
    width, height, left, top, bottom, right = 760, 360, 70, 50, 50, 200
    step = nice_step(max(r["rps"] for r in runs) * 1.1 / 5)
    ticks = math.ceil(max(r["rps"] for r in runs) * 1.1 / step)
    peak = step * ticks
    plot_w, plot_h = width - left - right, height - top - bottom
    x = {size: left + plot_w * (i / max(len(sizes) - 1, 1)) for i, size in enumerate(sizes)}
    y = lambda rps: top + plot_h - plot_h * rps / peak  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="12">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="{left}" y="22" font-size="15">portbound: req/s as the links grow '
             f'(wrk -t1 -c32, pinned)</text>',
             f'<text x="{left}" y="40" fill="#555">{meta["date"]}, {meta["machine"]}</text>']
    for i in range(ticks + 1):
        value = step * i
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(value):.1f}" y2="{y(value):.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 8}" y="{y(value) + 4:.1f}" text-anchor="end">{value / 1000:.0f}k</text>')
    for size in sizes:
        parts.append(f'<text x="{x[size]:.1f}" y="{height - bottom + 18}" text-anchor="middle">{size:,} links</text>')
    colors = {("D", "uniform"): "#4e79a7", ("D", "zipf"): "#a0cbe8",
              ("C", "uniform"): "#59a14f", ("C", "zipf"): "#8cd17d",
              ("R", "uniform"): "#e15759", ("R", "zipf"): "#ff9d9a",
              ("P", "uniform"): "#76b7b2", ("P", "zipf"): "#b3e0dc"}
    for n, ((target, draw), color) in enumerate(colors.items()):
        for before, dashes in ((False, ""), (True, ' stroke-dasharray="6 4"')):
            points = [(x[r["links"]], y(r["rps"])) for r in runs
                      if r["target"] == target and r["draw"] == draw and bool(r.get("before")) == before]
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2.5"{dashes}/>')
            parts.extend(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3.5" fill="{color}"/>' for px, py in points)
        name = {"D": "D direct GET", "C": "C redirect", "R": "R on Redis", "P": "P on PostgreSQL"}[target]
        ly = top + 20 * n
        parts.append(f'<rect x="{width - right + 20}" y="{ly}" width="10" height="10" fill="{color}"/>')
        parts.append(f'<text x="{width - right + 34}" y="{ly + 9}">{name}, {draw}</text>')
    if any(r.get("before") for r in runs):
        ly = top + 20 * len(colors) + 8
        parts.append(f'<line x1="{width - right + 18}" x2="{width - right + 32}" y1="{ly + 5}" y2="{ly + 5}" '
                     f'stroke="#555" stroke-width="2.5" stroke-dasharray="6 4"/>')
        parts.append(f'<text x="{width - right + 34}" y="{ly + 9}">dashed: before ({meta["baseline"]})</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main():
    stop_cleanly_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--links", default=",".join(map(str, SIZES)),
                        help="the sizes to grow to, comma-separated (default %(default)s)")
    parser.add_argument("--seconds", type=int, default=4, help="length of each run (default 4)")
    parser.add_argument("--profile", default="perf", help="cargo profile to build (default perf)")
    parser.add_argument("--chart-only", action="store_true",
                        help="redraw bench/results/scale.svg from scale.json without measuring")
    parser.add_argument("--baseline", metavar="REV",
                        help="also measure the redirects of the consumer built from this commit")
    args = parser.parse_args()
    if args.chart_only:
        saved = json.loads((RESULTS / "scale.json").read_text())
        (RESULTS / "scale.svg").write_text(svg(saved["results"], saved["meta"]))
        return 0
    sizes = sorted(int(size) for size in args.links.split(","))
    if os.cpu_count() < 2:
        raise SystemExit("the placement needs two cores (servers on core 1, wrk on core 0)")
    ensure_debian_tools((("wrk", "wrk"), ("redis-server", "redis-server"),
                         (str(POSTGRES_BIN / "postgres"), "postgresql-15")))
    binaries = build(args.profile)
    baseline, baseline_commit = build_baseline(args.baseline, args.profile) if args.baseline else (None, None)
    scratch = Path(tempfile.mkdtemp(prefix="portbound-scale-"))
    scripts = {name: scratch / f"{name}.lua" for name in ("read", "write", "status")}
    for name, text in (("read", READ_SCRIPT), ("write", WRITE_SCRIPT), ("status", STATUS_SCRIPT)):
        scripts[name].write_text(text)
    results = {}
    try:
        workdir = scratch / "links"
        workdir.mkdir()
        servers = Servers(binaries, workdir)
        try:
            upstream, _ = servers.start("upstream", {"DATABASE_PATH": str(workdir / "upstream.sqlite3")})
            consumer, _ = servers.start("consumer", {"UPSTREAM_URL": f"{upstream}/"})
            consumers = [consumer]
            if baseline:
                consumers.append(servers.start("consumer-before", {"UPSTREAM_URL": f"{upstream}/"},
                                               binary=baseline)[0])
            say(f"\n== connections, at {sizes[0]} links")
            seed(upstream, 0, sizes[0], scripts)
            results["connections"] = connections_section(servers, upstream, consumers, sizes[0],
                                                         args.seconds, scripts)
            say("\n== links and probes")
            results["links"], results["probes"], results["clicks"] = links_section(
                servers, upstream, consumers, workdir, sizes, sizes[0], args.seconds, scripts)
        finally:
            servers.stop()
        say("\n== the same redirects on Redis (R) and PostgreSQL (P)")
        kinds, kind_probes = kinds_section(binaries, baseline, sizes, args.seconds, scripts)
        results["links"] += kinds
        results["probes"] += kind_probes
        say("\n== durable writes (a fresh upstream for each run)")
        results["writes"] = writes_section(binaries, args.seconds, scripts)
        say(f"\n== a backend that holds every call ({HELD_CONNECTIONS} connections)")
        results["held"] = held_section(binaries, scripts)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    meta = {**machine(), "command": " ".join(["python3 bench/scale.py", *sys.argv[1:]]),
            "profile": args.profile, "baseline": baseline_commit,
            "placement": "servers on core 1 with one worker each, wrk -t1 on core 0",
            "wrk": f"-d{args.seconds}s per run, -c32 unless said; probes -c1 -d2s"}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scale.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    (RESULTS / "scale.svg").write_text(svg(results, meta))
    say(f"\nwrote {RESULTS / 'scale.json'} and {RESULTS / 'scale.svg'}")
    errors = sum(r["socket_errors"] + r["unexpected_statuses"]
                 for section in ("links", "probes", "connections", "writes") for r in results[section])
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
