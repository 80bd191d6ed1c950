#!/usr/bin/env python3
"""Fuzz both services against the OpenAPI documents they serve, with schemathesis.

    python3 tests/contract/fuzz.py                    # build, start both, fuzz, stop
    python3 tests/contract/fuzz.py --seed 7 --max-examples 200

Starts the real binaries on 127.0.0.1 (any free port): an upstream with an access token and a
throwaway database, and a consumer attached to it by UPSTREAM_URL. Then runs schemathesis
against each one's /openapi.json with every check (`--checks all`) and all four phases
(examples, coverage, fuzzing, stateful), the upstream with its token. Each run is seeded,
bounded in examples per operation and in time, and prints the seed, so a failure replays with
the same command. tests/contract/schemathesis.toml says where a check expects more statuses,
and why; no check is turned off.

schemathesis (pinned below) is installed from PyPI into target/contract/venv when missing.
Exit status: 0 when both runs report no failure, 1 otherwise.
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "support"))
from services import Service, build  # noqa: E402

CONFIG = ROOT / "tests" / "contract" / "schemathesis.toml"
VENV = ROOT / "target" / "contract" / "venv"
SCHEMATHESIS = "schemathesis==4.32.5"
TOKEN = "contract-t0ken"


def say(text):
    print(f"fuzz: {text}", flush=True)


def schemathesis():
    """The `st` command of the pinned schemathesis, installed into the venv when missing."""
    st = VENV / "bin" / "st"
    installed = subprocess.run([str(VENV / "bin" / "pip"), "show", "schemathesis"],
                               capture_output=True, text=True) if st.exists() else None
    if installed is None or f"Version: {SCHEMATHESIS.split('==')[1]}" not in installed.stdout:
        say(f"installing {SCHEMATHESIS} into {VENV.relative_to(ROOT)}")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "--quiet", SCHEMATHESIS], check=True)
    return st


def fuzz(st, name, url, args, extra, work):
    """One schemathesis run against `url`; True when it reports no failure."""
    # One worker: schemathesis's workers are threads, and on Python 3.11 two threads parsing
    # source at once (hypothesis describing a filter's lambda) can break CPython's AST state
    # ("SystemError: AST constructor recursion depth mismatch", CPython gh-106905), an error
    # of the tool, not of the service, that failed a run here.
    command = [str(st), "--config-file", str(CONFIG), "run", f"{url}/openapi.json",
               "--checks", "all", "--phases", "examples,coverage,fuzzing,stateful",
               "--seed", str(args.seed), "--max-examples", str(args.max_examples),
               "--max-time", str(args.max_time), "--workers", "1",
               "--generation-database", "none", *extra]
    shown = [part if TOKEN not in part else part.replace(TOKEN, "***") for part in command]
    say(f"{name}: {' '.join(shown)}")
    started = time.monotonic()
    # --max-time bounds fuzzing and stateful testing; the timeout bounds the rest.
    # Run in the work directory, so that schemathesis's cache stays out of the checkout.
    result = subprocess.run(command, cwd=work, timeout=args.max_time + 120)
    say(f"{name}: exit {result.returncode} in {time.monotonic() - started:.0f}s")
    return result.returncode == 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=20261125, help="hypothesis seed (default %(default)s)")
    parser.add_argument("--max-examples", type=int, default=100,
                        help="test cases per operation and phase (default %(default)s)")
    parser.add_argument("--max-time", type=int, default=60,
                        help="seconds of fuzzing and stateful testing per service (default %(default)s)")
    args = parser.parse_args()

    st = schemathesis()
    binaries = build(say)
    passed = True
    with tempfile.TemporaryDirectory(prefix="portbound-contract-") as work:
        work = Path(work)
        services = []
        try:
            upstream = Service(binaries / "upstream", {
                "DATABASE_PATH": str(work / "upstream.sqlite3"), "ACCESS_TOKEN": TOKEN,
                "INSTANCE_NAME": "contract"}, open(work / "upstream.log", "w"))
            services.append(upstream)
            consumer = Service(binaries / "consumer", {
                "UPSTREAM_URL": upstream.url.replace("http://", f"http://fuzz:{TOKEN}@") + "/"},
                open(work / "consumer.log", "w"))
            services.append(consumer)
            passed &= fuzz(st, "upstream", upstream.url, args,
                           ["--header", f"Authorization: Bearer {TOKEN}"], work)
            passed &= fuzz(st, "consumer", consumer.url, args, [], work)
        finally:
            for service in reversed(services):
                service.stop()
            for log in work.glob("*.log"):
                errors = [line for line in log.read_text().splitlines() if " ERROR " in line]
                if errors:
                    say(f"{log.name}: {len(errors)} error lines, the first: {errors[0]}")
    say("no failures" if passed else f"failures found; replay with --seed {args.seed}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
