"""What the benchmarks in bench/ share: building the services, starting and probing servers
(the backing services among them: Redis and PostgreSQL as compose runs them), reading a
process's CPU and memory, and running wrk and reading what it printed.

Everything here talks to 127.0.0.1 only.
"""

import datetime
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
DEADLINE = 20  # seconds for a process to come up
POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")  # Debian's PostgreSQL 15

# The part of a wrk script that counts answers it did not expect: each thread's script counts
# them in `unexpected`; this adds them up and prints the line parse_wrk reads.
WRK_UNEXPECTED = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function done()
  local n = 0
  for _, thread in ipairs(threads) do n = n + thread:get("unexpected") end
  io.write(string.format("unexpected statuses: %d\\n", n))
end
"""


def stop_cleanly_on_sigterm():
    """A SIGTERM (`timeout`, `kill`) ends the script as Ctrl-C does, through its `finally`
    blocks, so that the servers it started are stopped rather than left running."""
    def interrupted(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, interrupted)


def say(text):
    print(text, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_debian_tools(tools=(("wrk", "wrk"), ("nginx", "nginx-light"), ("redis-server", "redis-server"))):
    """Installs the (command, Debian package) pairs whose command is missing."""
    missing = [pkg for tool, pkg in tools if not shutil.which(tool)]
    if not missing:
        return
    say(f"installing {' '.join(missing)} from Debian")
    servers = ("nginx", "redis-server", "postgres")
    before = {pid for server in servers for pid in pids_of(server)}
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    # A package's postinst may start the distribution's own servers; this script starts only its own.
    for pid in {pid for server in servers for pid in pids_of(server)} - before:
        try:
            os.kill(pid, 15)
        except ProcessLookupError:
            pass


def pids_of(name):
    found = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True).stdout.split()
    return [int(pid) for pid in found]


def build(profile):
    say(f"building the services (cargo build --profile {profile})")
    subprocess.run(["cargo", "build", "--quiet", "--locked", "--profile", profile,
                    "-p", "upstream", "-p", "consumer"], cwd=ROOT, check=True)
    return ROOT / "target" / profile


def build_baseline(rev, profile):
    """The consumer as commit `rev` built it, from a temporary worktree, into target/baseline/."""
    commit = subprocess.run(["git", "rev-parse", "--short", f"{rev}^{{commit}}"], cwd=ROOT,
                            check=True, capture_output=True, text=True).stdout.strip()
    say(f"building the baseline consumer of {commit} (cargo build --profile {profile})")
    tree = Path(tempfile.mkdtemp(prefix="portbound-baseline-"))
    subprocess.run(["git", "worktree", "add", "--quiet", "--detach", str(tree), commit], cwd=ROOT,
                   check=True)
    try:
        subprocess.run(["cargo", "build", "--quiet", "--locked", "--profile", profile, "-p", "consumer"],
                       cwd=tree, check=True,
                       env={**os.environ, "CARGO_TARGET_DIR": str(ROOT / "target" / "baseline")})
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=True)
    return ROOT / "target" / "baseline" / profile / "consumer", commit


def request(url, method="GET", body=None, context=None):
    """One request, redirects not followed; over HTTPS verified by `context` (an ssl context)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data else {})

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect, urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(req, timeout=5) as response:
            return response.status, lower(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, lower(error.headers), error.read()


def lower(headers):
    return {name.lower(): value for name, value in headers.items()}


def wait_ready(url, process, log=None, context=None):
    """Polls `url` until it answers 200; `log`, the process's output file, is shown if it exits;
    over HTTPS verified by `context`."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if process.poll() is not None:
            said = Path(log).read_text(errors="replace")[-2000:] if log else ""
            raise SystemExit(f"{url}: the process exited with {process.returncode}\n{said}")
        try:
            if request(url, context=context)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"{url}: not ready within {DEADLINE}s")


def cpu_ticks(pids):
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (FileNotFoundError, IndexError):
            pass
    return total


def duration_us(text):
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not match:
        raise ValueError(text)
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 1, "ms": 1e3, "s": 1e6}[unit]



def memory_kib(pid, field="VmRSS"):
    """A /proc/PID/status memory line (VmRSS now, VmHWM the peak), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise ValueError(f"no {field} for {pid}")


def parse_wrk(output):
    """req/s, p50 and p99 (with --latency), socket errors and non-2xx/3xx answers from wrk's
    report, and the count of a script's "unexpected statuses: N" line where it prints one."""
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", output, re.M))
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non_2xx_3xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    unexpected = re.search(r"unexpected statuses: (\d+)", output)
    return {
        "requests": requests,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50_us": duration_us(latency["50"]) if latency else None,
        "p99_us": duration_us(latency["99"]) if latency else None,
        "socket_errors": errors,
        "non_2xx_3xx": int(non_2xx_3xx.group(1)) if non_2xx_3xx else 0,
        "unexpected_statuses": int(unexpected.group(1)) if unexpected else 0,
    }


def machine():
    """When and where a benchmark ran, for its results."""
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}",
    }


def nice_step(rough):
    """The smallest of 1, 2 or 5 times a power of ten that is at least `rough`."""
    power = 10 ** math.floor(math.log10(rough))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= rough)


def spawn_logged(argv, log, env=None, pinned=False, **kwargs):
    """Starts `argv` with its output in the file `log`; on core 1 when `pinned`."""
    if pinned:
        argv = ["taskset", "-c", "1", *argv]
    with open(log, "w") as output:
        return subprocess.Popen(argv, env=env, stdout=output, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, **kwargs)


class Redis:
    """Redis as compose runs it: every write on disk before it answers (append-only,
    `appendfsync always`), on 127.0.0.1 and a port picked now, its data in `workdir`."""

    def __init__(self, workdir, pinned=False):
        self.port = free_port()
        self.process = spawn_logged(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(workdir),
             "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            Path(workdir) / "redis.log", pinned=pinned)
        deadline = time.monotonic() + DEADLINE
        while self.cli("PING") != "PONG":
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"redis-server on {self.port}: no PONG within {DEADLINE}s")
            time.sleep(0.05)

    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def cli(self, *command, stdin=None):
        """What redis-cli prints for `command` ('' when it cannot connect)."""
        result = subprocess.run(["redis-cli", "-p", str(self.port), *command], input=stdin,
                                capture_output=True, text=True, timeout=600)
        return result.stdout.strip() if result.returncode == 0 else ""

    def stop(self):
        stop(self.process)


class Postgres:
    """PostgreSQL as compose runs it (the postgres:15-bookworm image): Debian's PostgreSQL 15
    with its default settings (every commit flushed to disk), the user and database
    `portbound` with a password checked by scram-sha-256 on TCP, on 127.0.0.1 and a port picked
    now, its data in a temporary directory of its own. Run by root, the server runs as the
    `postgres` user, since it refuses root."""

    USER = DATABASE = "portbound"
    PASSWORD = "bench-password"

    def __init__(self, pinned=False):
        if not (POSTGRES_BIN / "postgres").is_file():
            raise SystemExit(f"no {POSTGRES_BIN / 'postgres'} (Debian: apt-get install postgresql-15)")
        self.dir = Path(tempfile.mkdtemp(prefix="portbound-bench-postgres-"))
        self.as_user = ["setpriv", "--reuid=postgres", "--regid=postgres", "--clear-groups"] \
            if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.dir, "postgres", "postgres")
        password = self.dir / "password"
        password.write_text(self.PASSWORD)
        if self.as_user:
            shutil.chown(password, "postgres", "postgres")
        subprocess.run([*self.as_user, str(POSTGRES_BIN / "initdb"), "--pgdata", str(self.dir / "data"),
                        "--username", self.USER, "--auth-local=trust", "--auth-host=scram-sha-256",
                        "--encoding=UTF8", f"--pwfile={password}"],
                       check=True, capture_output=True, env={**os.environ, "LC_ALL": "C.UTF-8"})
        self.port = free_port()
        # Its own process group, so that stop() reaches the backends too if it must kill.
        self.process = spawn_logged(
            [*self.as_user, str(POSTGRES_BIN / "postgres"), "-D", str(self.dir / "data"),
             "-p", str(self.port), "-c", "listen_addresses=127.0.0.1",
             "-c", f"unix_socket_directories={self.dir}"],
            self.dir / "log", pinned=pinned, process_group=0)
        deadline = time.monotonic() + DEADLINE
        while subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port)]).returncode:
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.dir / "log").read_text(errors="replace")[-2000:]
                self.stop()
                raise SystemExit(f"PostgreSQL on {self.port} not ready within {DEADLINE}s\n{log}")
            time.sleep(0.05)
        self.psql(f"CREATE DATABASE {self.DATABASE}", database="postgres")

    def url(self):
        return f"postgres://{self.USER}:{self.PASSWORD}@127.0.0.1:{self.port}/{self.DATABASE}"

    def psql(self, sql, database=DATABASE):
        """What psql prints for `sql`, unaligned and without headers."""
        return subprocess.run(
            ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
             "-p", str(self.port), "-U", self.USER, "-d", database, "-c", sql],
            env={**os.environ, "PGPASSWORD": self.PASSWORD}, check=True, capture_output=True,
            text=True, timeout=600).stdout.strip()

    def stop(self):
        # SIGINT is PostgreSQL's fast shutdown: clients are disconnected, the data is kept.
        stop(self.process, signal.SIGINT, group=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def stop(process, sig=signal.SIGTERM, group=False):
    """Sends `sig` to `process` (and its process group with `group`), then kills what is left
    after 15 s."""
    if process.poll() is None:
        os.killpg(process.pid, sig) if group else process.send_signal(sig)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL) if group else process.kill()
        process.wait()
