"""Where a relay C-MOVE's time goes: CPU seconds per process, and the pace of each side.

    PYTHONPATH=src:. .venv/bin/python -m bench.relay_profile [--repeat 3] [--wan 0.0125]

Starts the loopback federation of `bench/relay.py` (sites A and B, NATS, SeaweedFS, the
bridge, DCMTK's dcmqrscp and storescp), loads the 271-CT study into B's PACS and moves it
to A's store with movescu, as the benchmark does.  For each C-MOVE it prints the wall time,
the CPU seconds every process of the federation used (from /proc, children included),
and every half second how many instances the source had announced on JetStream and how
many the store at A held: which side sets the pace.  `--wan S` puts S seconds each way
between each site and the cloud services, as the benchmark's WAN rows do.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import threading
import time
from pathlib import Path

import nats
from pydicom import dcmread

from bench.data import load
from bench.procs import dcmtk_env
from bench.relay import move_command
from isthmus.testing.dcmtk import StoreSCP
from isthmus.testing.federation import Federation
from isthmus.testing.seaweedfs import TemporarySeaweedFS

TICKS = os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("bench/out/relay-profile"))
    parser.add_argument(
        "--wan", type=float, default=0.0, help="seconds each way between each site and the cloud"
    )
    args = parser.parse_args()
    ct = load("ct", Path("bench/out/data"))
    files, size = ct.files(), ct.size_bytes
    study = str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    subprocess.run(["rm", "-rf", str(args.work)], check=True)
    s3 = TemporarySeaweedFS().start()
    federation = Federation(args.work, s3, ("A", "B"), wan=args.wan).start()
    try:
        federation.sites["B"].pacs.load(files)
        for n in range(args.repeat):
            _one_move(federation, study, size, n)
    finally:
        federation.close()
        s3.close()


def _one_move(federation: Federation, study: str, size: int, n: int) -> None:
    store = federation.sites["A"].store
    for path in store.received():
        path.unlink()
    before = _cpu_by_process()
    pace: list[tuple[float, int, int]] = []
    stop = threading.Event()
    started = time.perf_counter()
    watcher = threading.Thread(target=_watch, args=(federation, store, started, pace, stop))
    watcher.start()
    command = move_command(federation, study, "STOREA")
    done = subprocess.run(command, capture_output=True, text=True, env=dcmtk_env())
    seconds = time.perf_counter() - started
    stop.set()
    watcher.join()
    arrived = len(store.received())
    print(
        f"move {n}: {seconds:.2f} s, {size / 1e6 / seconds:.1f} MB/s, {arrived} arrived, "
        f"movescu status {done.returncode}"
    )
    after = _cpu_by_process()
    used = {name: cpu - before.get(pid, (name, 0.0))[1] for pid, (name, cpu) in after.items()}
    for name, cpu in sorted(used.items(), key=lambda kv: -kv[1]):
        if cpu >= 0.05:
            print(f"   {cpu:5.2f} s CPU  {name}")
    base = pace[0][1] if pace else 0
    print(
        "   seconds: announced/delivered  "
        + "  ".join(f"{t:.1f}: {a - base}/{d}" for t, a, d in pace[::2])
    )


def _watch(
    federation: Federation,
    store: StoreSCP,
    started: float,
    pace: list[tuple[float, int, int]],
    stop: threading.Event,
) -> None:
    async def watch() -> None:
        nc = await nats.connect(federation.nats.url)
        js = nc.jetstream()
        while not stop.is_set():
            try:
                announced = (await js.stream_info("RELAY_TRANSFERS")).state.last_seq
            except Exception:  # the stream not made yet
                announced = 0
            pace.append((time.perf_counter() - started, announced, len(store.received())))
            await asyncio.sleep(0.25)
        await nc.close()

    asyncio.run(watch())


def _cpu_by_process() -> dict[int, tuple[str, float]]:
    """pid → (command line, user + system CPU seconds, waited-for children included) of
    this process's descendants."""
    parents: dict[int, int] = {}
    found: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:100]
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
        cpu = sum(int(f) for f in fields[11:15]) / TICKS  # utime stime cutime cstime
        found[int(entry.name)] = (cmdline, cpu)
    me = os.getpid()

    def descends(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == me:
                return True
        return False

    return {pid: v for pid, v in found.items() if descends(pid)}


if __name__ == "__main__":
    main()
