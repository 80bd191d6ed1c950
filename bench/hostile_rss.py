#!/usr/bin/env python3
"""What a hostile upstream costs the consumer's memory: its peak RSS while every reply it gets
is an endless chunked body.

    python3 bench/hostile_rss.py                          # target/debug/consumer, 300 requests
    python3 bench/hostile_rss.py target/release/consumer 300

Starts a stand-in upstream on 127.0.0.1 that answers every request with a chunked body that
never ends, and the consumer binary attached to it (CIRCUIT_FAILURES=1000, so every request
reaches it; UPSTREAM_TIMEOUT=5s), sends the requests all at once, and prints their statuses,
how long they took and the consumer's peak RSS (VmHWM). A consumer that grows beyond 6 GiB is
killed and reported as such. Everything it starts is stopped; nothing leaves 127.0.0.1.
"""

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

CAP_KIB = 6 * 1024 * 1024
CHUNK = (format(8192, "x") + "\r\n" + "[" * 8192 + "\r\n").encode()


def endless_upstream():
    """Listens on 127.0.0.1 and answers each request with a body that never ends."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(1024)

    def answer(conn):
        try:
            head = b""
            while b"\r\n\r\n" not in head:
                data = conn.recv(4096)
                if not data:
                    return
                head += data
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
            while True:
                conn.sendall(CHUNK)
        except OSError:
            pass
        finally:
            conn.close()

    def accept():
        while True:
            conn, _ = server.accept()
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return server.getsockname()[1]


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def start_consumer(binary, upstream_port):
    env = {"PATH": os.environ.get("PATH", ""), "PORT": "0",
           "RUST_LOG": "info,actix_web::middleware::logger=warn",
           "UPSTREAM_URL": f"http://127.0.0.1:{upstream_port}/",
           "CIRCUIT_FAILURES": "1000", "UPSTREAM_TIMEOUT": "5s"}
    process = subprocess.Popen([binary], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:
        bound = re.search(r"listening on http://[0-9.]+:(\d+)", line)
        if bound:
            # Keep reading its output, so that it never blocks on a full pipe.
            threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()
            return process, int(bound.group(1))
    raise SystemExit(f"{binary} exited with {process.wait()}")


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/debug/consumer"
    requests = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    process, port = start_consumer(binary, endless_upstream())
    idle = status_kib(process.pid, "VmHWM:")
    statuses, lock = {}, threading.Lock()
    killed = threading.Event()

    def get(i):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", f"/code{i}")
            status = conn.getresponse().status
        except OSError as error:
            status = type(error).__name__
        with lock:
            statuses[status] = statuses.get(status, 0) + 1

    def watch():
        while process.poll() is None:
            if status_kib(process.pid, "VmRSS:") > CAP_KIB:
                killed.set()
                process.kill()
                return
            time.sleep(0.05)

    threading.Thread(target=watch, daemon=True).start()
    started = time.monotonic()
    clients = [threading.Thread(target=get, args=(i,)) for i in range(requests)]
    for client in clients:
        client.start()
    for client in clients:
        client.join()
    took = time.monotonic() - started
    peak = "killed above 6 GiB" if killed.is_set() else \
        f"{status_kib(process.pid, 'VmHWM:') / 1024:.1f} MiB"
    print(f"{binary}: {requests} requests in {took:.1f}s, statuses {statuses}, "
          f"idle peak {idle / 1024:.1f} MiB, peak RSS {peak}")
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(10)


if __name__ == "__main__":
    main()
