"""What a durable small blob costs this machine's kernel: a file each, or a place in a segment.

    .venv/bin/python -m bench.durable_writes [--instances N] [--size BYTES] [--work DIR]

Four threads (as four C-STORE associations) write N blobs of BYTES (default 12 KiB, a
64×64 instance of the ingest row) in `--work` (default bench/out/durable-writes, on the
disk the benchmarks' archives use), cumulatively, one layout after the other:

- the file store's steps (`archive/storage.py`), one more each row: create the file
  (`O_DIRECT`), write it, fsync it, rename it into its folder, fsync the folder;
- one preallocated segment (written with zeros first, so that no write allocates):
  each blob a direct `pwrite` at its own offset, then an `fdatasync` of the segment.

Printed: wall time and CPU time (user + system, all threads) per blob, in microseconds.
No Isthmus in it: what the layout costs before any of the archive's own work
(docs/performance.md, "A file per instance").  The folders are removed at the end, after
the figures; a second run right after pays for the inodes freed (ext4 without a journal
skips recently freed inodes one by one), so run it on a quiet disk, once.
"""

from __future__ import annotations

import argparse
import mmap
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

WORK = Path(__file__).resolve().parent / "out" / "durable-writes"
THREADS = 4
FILE_STEPS = ("create", "write", "fsync", "rename", "folder fsync")


def file_per_blob(root: str, steps: int, count: int, block: mmap.mmap) -> Callable[[int], None]:
    """A thread's work: `count` blobs as files, doing the first `steps` of FILE_STEPS."""

    def run(thread: int) -> None:
        spare, folder = f"{root}/spare{thread}", f"{root}/folder{thread}"
        os.makedirs(spare)
        os.makedirs(folder)
        for i in range(count):
            tmp, final = f"{spare}/{i}", f"{folder}/{i}"
            fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_DIRECT, 0o644)
            if steps > 1:
                os.write(fd, block)
            if steps > 2:
                os.fsync(fd)
            os.close(fd)
            if steps > 3:
                os.replace(tmp, final)
            if steps > 4:
                dfd = os.open(folder, os.O_RDONLY)
                os.fsync(dfd)
                os.close(dfd)

    return run


def segment(root: str, count: int, block: mmap.mmap) -> Callable[[int], None]:
    """A thread's work: `count` blobs at their offsets in one zero-filled segment."""
    path = f"{root}/segment"
    with open(path, "wb") as f:
        f.truncate(0)
        zeros = bytes(1 << 20)
        for _ in range(-(-THREADS * count * len(block) // len(zeros))):
            f.write(zeros)
        f.flush()
        os.fsync(f.fileno())
    fd = os.open(path, os.O_RDWR | os.O_DIRECT)

    def run(thread: int) -> None:
        for i in range(count):
            os.pwrite(fd, block, (thread * count + i) * len(block))
            os.fdatasync(fd)

    return run


def timed(work: Callable[[int], None]) -> tuple[float, float]:
    """(wall, CPU) seconds of THREADS threads running `work`."""
    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    started, cpu = time.perf_counter(), os.times()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    end = os.times()
    return time.perf_counter() - started, end.user - cpu.user + end.system - cpu.system


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--instances", type=int, default=4000)
    p.add_argument("--size", type=int, default=12288, help="a multiple of 4096 (direct I/O)")
    p.add_argument("--work", type=Path, default=WORK)
    args = p.parse_args(argv)
    block = mmap.mmap(-1, args.size)  # page-aligned, as direct I/O needs
    block.write(os.urandom(args.size))
    count = args.instances // THREADS
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for steps in range(1, len(FILE_STEPS) + 1):
            root = f"{args.work}/file-{steps}"
            rows.append(
                (" + ".join(FILE_STEPS[:steps]), timed(file_per_blob(root, steps, count, block)))
            )
        rows.append(("segment: pwrite + fdatasync", timed(segment(str(args.work), count, block))))
    finally:
        shutil.rmtree(args.work, ignore_errors=True)
    n = count * THREADS
    print(f"{n} blobs of {args.size} bytes, {THREADS} threads; µs per blob")
    print("| layout | wall | CPU |\n|---|---|---|")
    for name, (wall, cpu) in rows:
        print(f"| {name} | {wall / n * 1e6:.0f} | {cpu / n * 1e6:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
