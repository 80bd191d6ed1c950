#!/usr/bin/env python3
"""What does the composition hop cost? The consumer's redirect side by side with nginx's
proxy_pass and the direct call, and on Redis and PostgreSQL, in one run, on 127.0.0.1 only.

    python3 bench/hop.py                 # build, start, check, measure, write bench/results/
    python3 bench/hop.py --rounds 7      # more rounds
    python3 bench/hop.py --baseline d97dd41   # and the consumer of that commit beside this one,
                                              # which the goals compare the consumer with

Five targets, the first three reading the same link document from the same upstream:
  D  upstream  GET /v1/kv/links/{code}          the direct call
  N  nginx     GET /v1/kv/links/{code}          the same through nginx (proxy_pass, keepalive pool)
  C  consumer  GET /{code}  (302)               the hop this project is about
  R  consumer  GET /{code}  (302)               the same binary attached to Redis instead
                                                (UPSTREAM_URL=redis://…, the same links seeded)
  P  consumer  GET /{code}  (302)               the same binary attached to PostgreSQL
                                                (UPSTREAM_URL=postgres://…, the same links)
  S  consumer  GET /{code}  (302)               the same binary attached over HTTPS to an
                                                upstream serving TLS (UPSTREAM_CA_FILE, a CA
                                                the upstream's `certs` subcommand makes),
                                                connections reused as on C
  B  baseline  GET /{code}  (302)               with --baseline REV: the consumer built from
                                                that commit, to see what a change costs C

Each target is checked once, warmed up for 1 s, then measured in rounds of
`wrk -t1 -c32 -d4s --latency` whose target order rotates every round, and again with `-c1` for
the latency one hop adds. Two placements: "gating", every server pinned to core 1 with one
worker each and wrk on core 0 (stable on a 2-core machine), and "informational", unpinned with
default workers (Redis is single-threaded either way). Each run records req/s, p50, p99, error
and unexpected-status counts, and every server process's CPU microseconds per request (from
/proc/PID/stat), so Redis's and PostgreSQL's own CPU per redirect too (PostgreSQL's: the
postmaster and every backend). Then what a TLS handshake costs the upstream: `GET /livez` over
HTTPS with connections kept, and with `Connection: close` (a new connection, so a handshake,
for every request), the difference in the upstream's CPU per request. The summary gives medians
of the per-round paired ratios C/N, C/D and N/D and of what each hop adds at -c1 (C-D, N-D),
with their min-max; checks the goals (met, missed, or mixed when the rounds disagree); and is
written as bench/results/hop.json and bench/results/hop.svg.

Every run is bounded in time, every process it starts is stopped, and all traffic stays on
127.0.0.1. wrk, nginx, redis-server and PostgreSQL 15 come from Debian's packages and are
installed when missing. Redis and PostgreSQL run as compose runs them: every acknowledged write
on disk.
"""

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import ssl
import tempfile
from pathlib import Path

from benchkit import (CLOCK_TICKS, POSTGRES_BIN, RESULTS, WRK_UNEXPECTED, Postgres, Redis, build,
                      build_baseline, cpu_ticks, ensure_debian_tools, free_port, machine, nice_step,
                      parse_wrk, request, say, stop_cleanly_on_sigterm, wait_ready)

SEED_LINKS = 1000

# The goals of the single-core ("gating") placement, all ratios within this one run: the figure,
# and the test it must pass. The consumer is compared with nginx on the same upstream, and with
# the consumer of --baseline REV (target B) built from the commit before a change; a goal that
# needs B is not judged without it. A figure paired per round is judged by its median, and
# called "mixed" when some rounds pass and others do not, because then this run does not decide
# it.
def _over(a, b):
    return None if a is None or b in (None, 0) else round(a / b, 3)


def _cpu(s, target, server):
    return s["cpu_us"].get(target, {}).get(server)


def _hop_p50(s, target):
    hop = s["c1"].get("hop_us", {}).get(target)
    return hop["p50_us"]["median"] if hop else None


GOALS = {
    "C/N throughput ratio >= 1.0": (lambda s: s["ratios"]["C/N"], lambda v: v >= 1.0),
    "consumer CPU per redirect / nginx CPU per proxied request <= 1.2": (
        lambda s: _over(_cpu(s, "C", "consumer"), _cpu(s, "N", "nginx")), lambda v: v <= 1.2),
    "upstream CPU per lookup, C / B <= 0.5": (
        lambda s: _over(_cpu(s, "C", "upstream"), _cpu(s, "B", "upstream")), lambda v: v <= 0.5),
    "-c1 hop p50, C / B <= 1.05": (
        lambda s: _over(_hop_p50(s, "C"), _hop_p50(s, "B")), lambda v: v <= 1.05),
    "-c32 p99, C / B <= 1.0": (
        lambda s: _over(s["median"]["C"]["p99_us"], s["median"].get("B", {}).get("p99_us")),
        lambda v: v <= 1.0),
    "no errors, no unexpected statuses": (lambda s: s["errors"], lambda v: v == 0),
}


def verdict(figure, passes):
    """Met, missed, not judged (a figure this run lacks) or, for a paired figure whose rounds
    disagree, mixed."""
    if figure is None:
        return "not judged"
    if isinstance(figure, dict):
        if passes(figure["min"]) != passes(figure["max"]):
            return "mixed"
        figure = figure["median"]
    return "met" if passes(figure) else "missed"


WRK_SCRIPT = WRK_UNEXPECTED + """
-- Counts responses whose status is not the one expected (the first script argument).
function init(args) expected = tonumber(args[1]); unexpected = 0 end
function response(status, headers, body)
  if status ~= expected then unexpected = unexpected + 1 end
end
"""

NGINX_CONF = """
worker_processes {workers};
daemon off;
pid {dir}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream kv {{
        server 127.0.0.1:{upstream};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://kv;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


class Stack:
    """The upstream, nginx, Redis, PostgreSQL and a consumer on each backend, started for one
    placement and stopped after it."""

    def __init__(self, binaries, pinned, workdir, baseline=None):
        self.processes = []
        self.pinned = pinned
        self.workdir = workdir
        # Each port is picked just before its server starts: one picked earlier can meanwhile be
        # taken as the local port of a connection another server makes.
        self.ports = {}
        self.binaries = binaries
        self.baseline = baseline
        self.backends = {}  # Redis and PostgreSQL, which stop themselves

    def port(self, name):
        """A free port for server `name`, picked now."""
        self.ports[name] = free_port()
        return self.ports[name]

    def spawn(self, name, argv, env=None):
        if self.pinned:
            argv = ["taskset", "-c", "1", *argv]
        log = open(self.workdir / f"{name}.log", "w")
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
        self.processes.append((name, process))
        return process

    def wait_ready(self, name, path="/readyz"):
        """Waits for server `name` (the last of that name spawned) to answer `path`."""
        process = next(p for n, p in reversed(self.processes) if n == name)
        wait_ready(f"http://127.0.0.1:{self.ports[name]}{path}", process, self.workdir / f"{name}.log")

    def start(self):
        base = {"PATH": os.environ.get("PATH", ""), "HOST": "127.0.0.1",
                # The access log goes off, as nginx's does below; startup lines stay.
                "RUST_LOG": "info,actix_web::middleware::logger=warn"}
        if self.pinned:
            base["WORKERS"] = "1"
        up = self.port("upstream")
        self.spawn("upstream", [str(self.binaries / "upstream")], {
            **base, "PORT": str(up), "DATABASE_PATH": str(self.workdir / "upstream.sqlite3"),
            "INSTANCE_NAME": "bench"})
        self.wait_ready("upstream")
        # The same upstream serving HTTPS, with a CA and certificate of its own making.
        certs = self.workdir / "certs"
        subprocess.run([str(self.binaries / "upstream"), "certs", str(certs), "localhost"],
                       check=True, capture_output=True)
        self.ca = str(certs / "ca.pem")
        self.tls = ssl.create_default_context(cafile=self.ca)
        up_tls = self.port("upstream-tls")
        self.spawn("upstream-tls", [str(self.binaries / "upstream")], {
            **base, "PORT": str(up_tls), "DATABASE_PATH": str(self.workdir / "upstream-tls.sqlite3"),
            "INSTANCE_NAME": "bench-tls", "TLS_CERT_FILE": str(certs / "localhost.pem"),
            "TLS_KEY_FILE": str(certs / "localhost-key.pem")})
        process = self.processes[-1][1]
        wait_ready(f"https://localhost:{up_tls}/readyz", process, self.workdir / "upstream-tls.log",
                   context=self.tls)
        self.spawn("consumer-tls", [str(self.binaries / "consumer")], {
            **base, "PORT": str(self.port("consumer-tls")),
            "UPSTREAM_URL": f"https://localhost:{up_tls}/", "UPSTREAM_CA_FILE": self.ca})
        self.wait_ready("consumer-tls")
        self.spawn("consumer", [str(self.binaries / "consumer")], {
            **base, "PORT": str(self.port("consumer")), "UPSTREAM_URL": f"http://127.0.0.1:{up}/"})
        self.wait_ready("consumer")
        for kind, backend in (("redis", lambda: Redis(self.workdir, self.pinned)),
                              ("postgres", lambda: Postgres(self.pinned))):
            self.backends[kind] = backend()
            self.spawn(f"consumer-{kind}", [str(self.binaries / "consumer")], {
                **base, "PORT": str(self.port(f"consumer-{kind}")), "UPSTREAM_URL": self.backends[kind].url()})
            self.wait_ready(f"consumer-{kind}")
        if self.baseline:
            self.spawn("baseline", [str(self.baseline)], {
                **base, "PORT": str(self.port("baseline")), "UPSTREAM_URL": f"http://127.0.0.1:{up}/"})
            self.wait_ready("baseline")
        nginx_dir = self.workdir / "nginx"
        nginx_dir.mkdir(exist_ok=True)
        conf = nginx_dir / "nginx.conf"
        conf.write_text(NGINX_CONF.format(workers=1 if self.pinned else "auto", dir=nginx_dir,
                                          upstream=up, port=self.port("nginx")))
        self.spawn("nginx", ["nginx", "-c", str(conf), "-p", str(nginx_dir), "-e", "stderr"])
        self.wait_ready("nginx")

    def server_pids(self):
        """Every process of each server (nginx: master and workers)."""
        pids = {}
        processes = self.processes + [(kind, backend.process) for kind, backend in self.backends.items()]
        for name, process in processes:
            group = [process.pid]
            children = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True,
                                      text=True).stdout.split()
            group += [int(pid) for pid in children]
            pids[name] = group
        return pids

    def stop(self):
        for _, process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for name, process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                say(f"{name} did not stop in 10 s; killing it")
                process.kill()
                process.wait()
        for backend in self.backends.values():
            backend.stop()


def seed(stack):
    say(f"seeding {SEED_LINKS} links through each consumer, into the upstream, Redis and PostgreSQL")
    for name in ("consumer", "consumer-redis", "consumer-postgres", "consumer-tls"):
        consumer = f"http://127.0.0.1:{stack.ports[name]}"
        for n in range(SEED_LINKS):
            status, _, body = request(f"{consumer}/api/links", "POST",
                                      {"url": f"https://example.com/bench/{n}", "code": f"bench{n}"})
            if status not in (201, 409):
                raise SystemExit(f"seeding through {name} failed: {status} {body[:200]!r}")
    return "bench500", "https://example.com/bench/500"


def targets(stack, code):
    up, ng, co = (stack.ports[k] for k in ("upstream", "nginx", "consumer"))
    found = {
        "D": {"url": f"http://127.0.0.1:{up}/v1/kv/links/{code}", "status": 200},
        "N": {"url": f"http://127.0.0.1:{ng}/v1/kv/links/{code}", "status": 200},
        "C": {"url": f"http://127.0.0.1:{co}/{code}", "status": 302},
        "R": {"url": f"http://127.0.0.1:{stack.ports['consumer-redis']}/{code}", "status": 302},
        "P": {"url": f"http://127.0.0.1:{stack.ports['consumer-postgres']}/{code}", "status": 302},
        "S": {"url": f"http://127.0.0.1:{stack.ports['consumer-tls']}/{code}", "status": 302},
    }
    if "baseline" in stack.ports:
        found["B"] = {"url": f"http://127.0.0.1:{stack.ports['baseline']}/{code}", "status": 302}
    return found


def check(targets_, target_url):
    for name, target in targets_.items():
        status, headers, body = request(target["url"])
        if status != target["status"]:
            raise SystemExit(f"{name}: {target['url']} answered {status}, expected {target['status']}")
        redirects = target["status"] == 302
        if redirects and headers.get("location") != target_url:
            raise SystemExit(f"{name}: Location is {headers.get('location')!r}, expected {target_url!r}")
        if not redirects and json.loads(body).get("url") != target_url:
            raise SystemExit(f"{name}: the body is {body[:200]!r}")
    say("each target checked once: D and N answer the link document, C, R, P, S (and B) redirect to "
        "its target")


def wrk(url, expected, connections, seconds, pinned, script):
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script),
            url, "--", str(expected)]
    if pinned:
        argv = ["taskset", "-c", "0", *argv]
    return parse_wrk(subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout)


def measure(stack, targets_, name, connections, seconds, script):
    pids = stack.server_pids()
    before = {server: cpu_ticks(group) for server, group in pids.items()}
    run = wrk(targets_[name]["url"], targets_[name]["status"], connections, seconds, stack.pinned, script)
    after = {server: cpu_ticks(group) for server, group in pids.items()}
    run["cpu_us_per_request"] = {
        server: round((after[server] - before[server]) / CLOCK_TICKS * 1e6 / max(run["requests"], 1), 2)
        for server in pids
    }
    run.update(target=name, connections=connections)
    return run


def lookups_per_call(stack):
    """Each consumer's `consumer_backend_lookups_per_call` histogram now: {le: count} by server
    (the baseline's consumer, older than the histogram, has none)."""
    found = {}
    for name in ("consumer", "consumer-redis", "consumer-postgres", "consumer-tls", "baseline"):
        if name not in stack.ports:
            continue
        _, _, body = request(f"http://127.0.0.1:{stack.ports[name]}/metrics")
        buckets = {}
        for line in body.decode().splitlines():
            if line.startswith("consumer_backend_lookups_per_call_bucket{"):
                le = line.split('le="', 1)[1].split('"', 1)[0]
                buckets[le] = int(float(line.rsplit(" ", 1)[1]))
        if buckets:
            found[name] = buckets
    return found


def histogram_between(before, after):
    """The calls of each bucket between two readings, no longer cumulative: {le: calls}."""
    result = {}
    for name, buckets in after.items():
        previous, counts = 0, {}
        for le, total in buckets.items():
            calls = total - before.get(name, {}).get(le, 0)
            counts[le] = calls - previous
            previous = calls
        result[name] = counts
    return result


HANDSHAKE_SCRIPT = WRK_SCRIPT + """
-- A new connection for every request.
wrk.headers["Connection"] = "close"
"""


def handshakes(stack, seconds, script, pinned):
    """The upstream's CPU per `GET /livez` over HTTPS with connections kept, and with a new
    connection (a TLS handshake) each time; the difference is what a handshake costs it."""
    url = f"https://localhost:{stack.ports['upstream-tls']}/livez"
    pids = stack.server_pids()["upstream-tls"]
    handshake_script = Path(str(script) + ".close.lua")
    handshake_script.write_text(HANDSHAKE_SCRIPT)
    found = {}
    try:
        for label, used, connections in (("kept", script, 32), ("new", handshake_script, 8)):
            wrk(url, 200, connections, 1, pinned, used)  # warm-up
            before = cpu_ticks(pids)
            run = wrk(url, 200, connections, seconds, pinned, used)
            cpu = (cpu_ticks(pids) - before) / CLOCK_TICKS * 1e6 / max(run["requests"], 1)
            found[label] = {"rps": run["rps"], "p50_us": run["p50_us"], "cpu_us": round(cpu, 2),
                            "connections": connections,
                            "errors": run["socket_errors"] + run["unexpected_statuses"]}
    finally:
        handshake_script.unlink()
    found["handshake_cpu_us"] = round(found["new"]["cpu_us"] - found["kept"]["cpu_us"], 2)
    say(f"  TLS to the upstream, GET /livez: connections kept {found['kept']['rps']:.0f} req/s, "
        f"{found['kept']['cpu_us']} us CPU each; a new connection each {found['new']['rps']:.0f} "
        f"req/s, {found['new']['cpu_us']} us CPU each: a handshake costs the upstream "
        f"{found['handshake_cpu_us']} us")
    return found


def rotate(names, r):
    return names[r % len(names):] + names[:r % len(names)]


def median_min_max(values):
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3)}


def placement(binaries, pinned, rounds, c1_rounds, seconds, script, baseline=None):
    label = "gating" if pinned else "informational"
    say(f"\n== placement {label}: " + ("servers on core 1 with one worker each, wrk on core 0"
                                      if pinned else "unpinned, default workers"))
    workdir = Path(tempfile.mkdtemp(prefix=f"portbound-hop-{label}-"))
    stack = Stack(binaries, pinned, workdir, baseline)
    try:
        stack.start()
        code, target_url = seed(stack)
        targets_ = targets(stack, code)
        check(targets_, target_url)
        names = list(targets_)
        for name in names:
            wrk(targets_[name]["url"], targets_[name]["status"], 32, 1, pinned, script)  # warm-up
        runs, c1_runs = [], []
        histogram_before = lookups_per_call(stack)
        for r in range(rounds):
            for name in rotate(names, r):
                run = measure(stack, targets_, name, 32, seconds, script)
                run["round"] = r
                runs.append(run)
                say(f"  round {r + 1} {name}: {run['rps']:>9.0f} req/s  p50 {run['p50_us']:>7.0f} us"
                    f"  p99 {run['p99_us']:>7.0f} us  cpu us/req {run['cpu_us_per_request']}")
        batching = histogram_between(histogram_before, lookups_per_call(stack))
        for name, counts in batching.items():
            say(f"  lookups per call of {name} over the -c32 rounds (bucket le: calls): "
                + ", ".join(f"{le}: {n}" for le, n in counts.items() if n))
        for r in range(c1_rounds):
            for name in rotate(names, r):
                run = measure(stack, targets_, name, 1, seconds, script)
                run["round"] = r
                c1_runs.append(run)
                say(f"  -c1 round {r + 1} {name}: p50 {run['p50_us']:.0f} us  p99 {run['p99_us']:.0f} us")
        handshake = handshakes(stack, seconds, script, pinned)
    finally:
        stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return {"placement": label, "runs": runs, "c1_runs": c1_runs, "summary": summarize(runs, c1_runs),
            "lookups_per_call_c32": batching, "tls_handshake": handshake}


def summarize(runs, c1_runs):
    by = lambda runs_, name: [r for r in runs_ if r["target"] == name]
    names = [name for name in "DNCRPSB" if by(runs, name)]
    rounds = sorted({r["round"] for r in runs})
    rps = {(r["round"], r["target"]): r["rps"] for r in runs}
    ratios = {}
    for a, b in (("C", "N"), ("C", "D"), ("N", "D"), ("R", "C"), ("P", "C"), ("S", "C"), ("C", "B")):
        if a in names and b in names:
            ratios[f"{a}/{b}"] = median_min_max([rps[(n, a)] / rps[(n, b)] for n in rounds])
    absolute = {name: {key: round(statistics.median(r[key] for r in by(runs, name)), 1)
                       for key in ("rps", "p50_us", "p99_us")} for name in names}
    cpu = {name: {server: round(statistics.median(r["cpu_us_per_request"][server] for r in by(runs, name)), 2)
                  for server in by(runs, name)[0]["cpu_us_per_request"]} for name in names}
    c1 = {name: {key: round(statistics.median(r[key] for r in by(c1_runs, name)), 1)
                 for key in ("p50_us", "p99_us")} for name in names} if c1_runs else {}
    if c1:
        # What a hop adds, paired within each round like the ratios, so the spread shows.
        latency = {(r["round"], r["target"]): r for r in c1_runs}
        c1_rounds = sorted({r["round"] for r in c1_runs})
        c1["hop_us"] = {hop: {key: median_min_max([latency[(n, hop)][key] - latency[(n, "D")][key]
                                                   for n in c1_rounds])
                              for key in ("p50_us", "p99_us")} for hop in names if hop != "D"}
    errors = sum(r["socket_errors"] + r["non_2xx_3xx"] + r["unexpected_statuses"] for r in runs + c1_runs)
    return {"ratios": ratios, "median": absolute, "cpu_us": cpu, "c1": c1, "errors": errors}


def report(result):
    s = result["summary"]
    say(f"\n== {result['placement']}: medians of {len({r['round'] for r in result['runs']})} rounds")
    say("  target            req/s     p50 us    p99 us   CPU us/request")
    for name, label in LABELS.items():
        if name not in s["median"]:
            continue
        m = s["median"][name]
        cpu = ", ".join(f"{k} {v}" for k, v in s["cpu_us"][name].items() if v > 0)
        say(f"  {label:<14} {m['rps']:>9.0f} {m['p50_us']:>10.0f} {m['p99_us']:>9.0f}   {cpu}")
    for ratio, v in s["ratios"].items():
        say(f"  {ratio}: {v['median']:.3f} (min {v['min']:.3f}, max {v['max']:.3f})")
    if s["c1"]:
        c1 = s["c1"]
        say("  -c1 p50/p99 us: " + ", ".join(f"{name} {c1[name]['p50_us']:.0f}/{c1[name]['p99_us']:.0f}"
                                             for name in s["median"]))
        for hop, label in (("C", "the consumer's hop"), ("N", "nginx's hop"), ("R", "the hop to Redis"),
                           ("P", "the hop to PostgreSQL"), ("S", "the hop over HTTPS"),
                           ("B", "the baseline's hop")):
            if hop not in c1["hop_us"]:
                continue
            p50, p99 = c1["hop_us"][hop]["p50_us"], c1["hop_us"][hop]["p99_us"]
            say(f"  -c1 {label} adds: p50 {p50['median']:.0f} us (min {p50['min']:.0f}, max {p50['max']:.0f}),"
                f" p99 {p99['median']:.0f} us (min {p99['min']:.0f}, max {p99['max']:.0f})")
    say(f"  errors and unexpected statuses: {s['errors']}")


LABELS = {"D": "D upstream", "N": "N nginx", "C": "C consumer", "R": "R on Redis", "P": "P on PostgreSQL",
          "S": "S over HTTPS", "B": "B baseline"}


def svg(results, meta):
    """A bar chart of median req/s per target and placement, with the ratios."""
    colors = {"D": "#4e79a7", "N": "#f28e2b", "C": "#59a14f", "R": "#e15759", "P": "#76b7b2",
              "S": "#edc948", "B": "#bab0ac"}
    names = {"D": "D direct", "N": "N nginx", "C": "C consumer", "R": "R on Redis", "P": "P on PostgreSQL",
             "S": "S over HTTPS", "B": "B baseline"}
    present = [name for name in "DNCRPSB" if all(name in r["summary"]["median"] for r in results)]
    width, height, left, top, bottom = max(780, 160 + 118 * len(present)), 360, 70, 50, 60
    highest = max(r["summary"]["median"][n]["rps"] for r in results for n in present) * 1.1
    step = nice_step(highest / 5)
    peak = step * math.ceil(highest / step)
    plot_h = height - top - bottom
    group_w = (width - left - 20) / len(results)
    bar_w = group_w / (len(present) + 2)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="12">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="{left}" y="22" font-size="15">portbound: what the hop costs (median req/s, '
             f'wrk -t1 -c32 -d4s)</text>',
             f'<text x="{left}" y="40" fill="#555">{meta["date"]}, {meta["machine"]}</text>']
    ticks = round(peak / step)
    for i in range(ticks + 1):
        value = step * i
        y = top + plot_h - plot_h * i / ticks
        parts.append(f'<line x1="{left}" x2="{width - 20}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{value / 1000:.0f}k</text>')
    for g, result in enumerate(results):
        x0 = left + g * group_w + bar_w
        for b, name in enumerate(present):
            rps = result["summary"]["median"][name]["rps"]
            h = plot_h * rps / peak
            x = x0 + b * bar_w
            parts.append(f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w * 0.9:.1f}" '
                         f'height="{h:.1f}" fill="{colors[name]}"/>')
            parts.append(f'<text x="{x + bar_w * 0.45:.1f}" y="{top + plot_h - h - 4:.1f}" '
                         f'text-anchor="middle">{rps / 1000:.1f}k</text>')
        ratios = "  ".join(f"{name} {v['median']:.2f}" for name, v in result["summary"]["ratios"].items())
        middle = x0 + len(present) / 2 * bar_w
        parts.append(f'<text x="{middle:.1f}" y="{height - bottom + 18}" text-anchor="middle">'
                     f'{result["placement"]}</text>')
        parts.append(f'<text x="{middle:.1f}" y="{height - bottom + 34}" text-anchor="middle" '
                     f'fill="#555">{ratios}</text>')
    for i, name in enumerate(present):
        x = width - 20 - 118 * (len(present) - i)
        parts.append(f'<rect x="{x}" y="{height - 16}" width="10" height="10" fill="{colors[name]}"/>')
        parts.append(f'<text x="{x + 14}" y="{height - 7}">{names[name]}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main():
    stop_cleanly_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds of -c32 runs (default 5)")
    parser.add_argument("--c1-rounds", type=int, default=5, help="rounds of -c1 runs (default 5)")
    parser.add_argument("--seconds", type=int, default=4, help="length of each run (default 4)")
    parser.add_argument("--profile", default="perf", help="cargo profile to build (default perf)")
    parser.add_argument("--only", choices=["gating", "informational"], help="run one placement")
    parser.add_argument("--baseline", metavar="REV",
                        help="also measure the consumer built from this commit, as target B")
    parser.add_argument("--chart-only", action="store_true",
                        help="redraw bench/results/hop.svg from hop.json without measuring")
    args = parser.parse_args()
    if args.chart_only:
        saved = json.loads((RESULTS / "hop.json").read_text())
        (RESULTS / "hop.svg").write_text(svg(saved["results"], saved["meta"]))
        return 0
    if os.cpu_count() < 2:
        raise SystemExit("the gating placement needs two cores (servers on core 1, wrk on core 0)")

    ensure_debian_tools((("wrk", "wrk"), ("nginx", "nginx-light"), ("redis-server", "redis-server"),
                         (str(POSTGRES_BIN / "postgres"), "postgresql-15")))
    binaries = build(args.profile)
    baseline, baseline_commit = build_baseline(args.baseline, args.profile) if args.baseline else (None, None)
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(WRK_SCRIPT)
    placements = [p for p in (True, False) if args.only in (None, "gating" if p else "informational")]
    try:
        results = [placement(binaries, pinned, args.rounds, args.c1_rounds, args.seconds, script, baseline)
                   for pinned in placements]
    finally:
        script.unlink()

    meta = {
        **machine(),
        "command": "python3 bench/hop.py " + " ".join(sys.argv[1:]),
        "profile": args.profile,
        "baseline": baseline_commit,
        "nginx": subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip(),
        "wrk": f"wrk -t1 -c32 -d{args.seconds}s --latency, {args.rounds} rounds; -c1, {args.c1_rounds} rounds",
    }
    for result in results:
        report(result)
    failed = 0
    gating = next((r for r in results if r["placement"] == "gating"), None)
    if gating:
        say("\n== goals (gating placement)")
        goals = {}
        for goal, (figure, passes) in GOALS.items():
            value = figure(gating["summary"])
            goals[goal] = {"verdict": verdict(value, passes), "figure": value}
            shown = value["median"] if isinstance(value, dict) else value
            say(f"  {goals[goal]['verdict']:<10}  {goal}: {shown}")
        gating["goals"] = goals
        failed = gating["summary"]["errors"]

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "hop.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    (RESULTS / "hop.svg").write_text(svg(results, meta))
    say(f"\nwrote {RESULTS / 'hop.json'} and {RESULTS / 'hop.svg'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
