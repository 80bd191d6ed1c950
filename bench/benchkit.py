"""What the benchmarks in bench/ share: building the services, starting and probing servers,
reading a process's CPU and memory, and running wrk and reading what it printed.

Everything here talks to 127.0.0.1 only.
"""

import datetime
import json
import math
import os
import platform
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
DEADLINE = 20  # seconds for a process to come up

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
    before = set(pids_of("nginx")) | set(pids_of("redis-server"))
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    # A package's postinst may start the distribution's own servers; this script starts only its own.
    for pid in (set(pids_of("nginx")) | set(pids_of("redis-server"))) - before:
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


def request(url, method="GET", body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data else {})

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=5) as response:
            return response.status, lower(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, lower(error.headers), error.read()


def lower(headers):
    return {name.lower(): value for name, value in headers.items()}


def wait_ready(url, process, log=None):
    """Polls `url` until it answers 200; `log`, the process's output file, is shown if it exits."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if process.poll() is not None:
            said = Path(log).read_text(errors="replace")[-2000:] if log else ""
            raise SystemExit(f"{url}: the process exited with {process.returncode}\n{said}")
        try:
            if request(url)[0] == 200:
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
