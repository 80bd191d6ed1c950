#!/usr/bin/env python3
"""Runs the README's shell commands as written, against the compose stack that is up.

Every line of a ```sh block in README.md is run in order with bash, from the project root, and
must exit 0. A line that cannot run here ends with `# ci: skip (reason)`, and is counted and
named instead. After a line that (re)starts the consumer, /api/status must name the backend that
line attached: its `UPSTREAM_URL`, or the compose file's default when it sets none.

Usage: python3 .ci/readme_commands.py [README]   (CI's compose stage runs it)
"""

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
CONSUMER = "http://127.0.0.1:8080"
# What docker-compose.yml attaches when UPSTREAM_URL is unset.
DEFAULT_HOST = "upstream"
SKIP = re.compile(r"#\s*ci:\s*skip\s*\((?P<reason>[^)]+)\)\s*$")


def commands(readme: Path):
    """(line number, command) for every line of every ```sh block."""
    inside = False
    for number, line in enumerate(readme.read_text().splitlines(), 1):
        if line.startswith("```"):
            inside = not inside and line.strip() == "```sh"
            continue
        if inside and line.strip():
            yield number, line


def attached_host() -> str:
    with urllib.request.urlopen(f"{CONSUMER}/api/status", timeout=5) as answer:
        return urlsplit(json.load(answer)["upstream"]["url"]).hostname


def main() -> int:
    readme = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "README.md"
    ran, skipped = 0, []
    for number, line in commands(readme):
        skip = SKIP.search(line)
        if skip:
            skipped.append((number, line[: skip.start()].strip(), skip["reason"]))
            continue
        print(f"$ {line}", flush=True)
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", line], cwd=ROOT)
        if done.returncode != 0:
            print(f"FAILED: {readme.name}:{number} exited {done.returncode}", file=sys.stderr)
            return 1
        ran += 1
        print(flush=True)
        if re.search(r"docker compose up\b.*\bconsumer\b", line):
            wanted = re.match(r"UPSTREAM_URL=(\S+)", line)
            host = urlsplit(wanted[1]).hostname if wanted else DEFAULT_HOST
            found = attached_host()
            if found != host:
                print(f"FAILED: {readme.name}:{number} attached {found}, not {host}", file=sys.stderr)
                return 1
            print(f"  /api/status names {found}")
    print(f"\n{readme.name}: {ran} commands ran, {len(skipped)} marked not run in CI:")
    for number, command, reason in skipped:
        print(f"  line {number}: {command}  ({reason})")
    if ran == 0:
        print("FAILED: no command ran", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
