"""The service binaries, built and started for the project's Python tools.

Used by tests/contract/fuzz.py and deploy/kubernetes/check.py: `build()` compiles both binaries
once, `Service` starts one on 127.0.0.1 with any free port (its address read from the log line
the binary writes) and waits until it answers /readyz, over HTTPS verified by `cafile` when it
serves HTTPS.
"""

import os
import re
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 20  # seconds for a service to come up
LISTENING = re.compile(r"listening on (https?)://([0-9.]+:[0-9]+)")


def build(say=print):
    """Builds both binaries (debug) and returns the directory they are in."""
    say("building the services (cargo build)")
    subprocess.run(["cargo", "build", "--quiet", "--locked", "-p", "upstream", "-p", "consumer"],
                   cwd=ROOT, check=True)
    return ROOT / "target" / "debug"


class Service:
    """A service binary started on port 0 with `env` alone (plus PATH); `log` is an open file."""

    def __init__(self, binary, env, log, cafile=None):
        self.log = log
        self.context = ssl.create_default_context(cafile=cafile) if cafile else None
        self.process = subprocess.Popen(
            [str(binary)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={"PATH": os.environ.get("PATH", ""),
                 "RUST_LOG": "warn,portbound=info,upstream=info,consumer=info,shared=info",
                 **env, "HOST": "127.0.0.1", "PORT": "0"})
        self.url = self.wait_ready()

    def wait_ready(self):
        deadline = time.monotonic() + DEADLINE
        address = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.log.name}: exited with {self.process.returncode}: "
                                 f"{Path(self.log.name).read_text().strip()}")
            if address is None:
                found = LISTENING.search(Path(self.log.name).read_text())
                # Over HTTPS, by the name its certificate gives.
                address = found and (f"http://{found.group(2)}" if found.group(1) == "http" else
                                     f"https://{found.group(2).replace('127.0.0.1', 'localhost')}")
            if address:
                try:
                    with self.open(f"{address}/readyz") as answer:
                        if answer.status == 200:
                            return address
                except OSError:
                    pass
            time.sleep(0.05)
        raise SystemExit(f"{self.log.name}: not ready within {DEADLINE}s")

    def open(self, url):
        """GET `url`, verified by the service's CA when it serves HTTPS."""
        return urllib.request.urlopen(url, timeout=2, context=self.context)

    def stop(self, graceful=True):
        """SIGTERM and wait for the drain (SIGKILL after 10 s), or SIGKILL at once."""
        if self.process.poll() is None:
            if graceful:
                self.process.terminate()
            else:
                self.process.kill()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
