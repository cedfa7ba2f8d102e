"""What waking up costs on this machine: a request's floor after a pause, without Isthmus.

    .venv/bin/python -m bench.wakeup [--requests N]

An echo server on uvloop (the event loop `isthmus serve` runs), in a process of its own
on 127.0.0.1, answers 100-byte messages over one TCP connection: at once ("direct"), or
after one trip to a thread pool and back ("thread hop"), as an Isthmus handler's search
goes to a worker thread.  The client waits 0, 5 or 30 ms before each message, and prints
the median round trip in microseconds.  Back to back, both processes are running; after
a pause, the server's thread (and the pool's) wait in the kernel and must be woken,
on a virtual CPU that may have gone idle: what every request pays after a pause, before
any of its own work (docs/performance.md, "The floor of a request").
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import time

from isthmus.testing.net import free_port

SERVER = """
import asyncio, concurrent.futures, sys
import uvloop

pool = concurrent.futures.ThreadPoolExecutor(4)
hop = sys.argv[2] == "hop"


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        if hop:
            asyncio.ensure_future(self.later(data))
        else:
            self.transport.write(data)

    async def later(self, data):
        await asyncio.get_running_loop().run_in_executor(pool, len, data)
        self.transport.write(data)


async def main():
    server = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", int(sys.argv[1]))
    print("ready", flush=True)
    await server.serve_forever()


uvloop.run(main())
"""
PAUSES_MS = (0, 5, 30)


def round_trips(port: int, pause_ms: float, requests: int) -> list[float]:
    """Microseconds per echo of 100 bytes, `pause_ms` before each (10 warm-ups dropped)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        message, out = b"x" * 100, []
        for _ in range(requests + 10):
            if pause_ms:
                time.sleep(pause_ms / 1000)
            started = time.perf_counter()
            sock.sendall(message)
            got = 0
            while got < len(message):
                got += len(sock.recv(4096))
            out.append((time.perf_counter() - started) * 1e6)
        return out[10:]


def measure(mode: str, requests: int) -> dict[float, float]:
    """Median round trip per pause, against a fresh server in `mode` ("direct" or "hop")."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port), mode], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        return {p: statistics.median(round_trips(port, p, requests)) for p in PAUSES_MS}
    finally:
        server.kill()
        server.wait(timeout=10)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=300)
    args = p.parse_args(argv)
    print("| server | " + " | ".join(f"{p} ms pause" for p in PAUSES_MS) + " |")
    print("|---" * (len(PAUSES_MS) + 1) + "|")
    for mode, name in (("direct", "echo, direct"), ("hop", "echo, one thread hop")):
        medians = measure(mode, args.requests)
        print(f"| {name} | " + " | ".join(f"{medians[p]:.0f} µs" for p in PAUSES_MS) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
