"""`python -m bench [--only store,find] [--repeat N] [--profile]`: run, print, save.

Outside the private network namespace this re-executes itself inside one (see
bench/netns.py); inside, it runs the scenarios in order, prints the table and writes
bench/out/results.json and bench/out/results.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import platform
import re
import shlex
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench import netns, results
from bench.lab import Lab
from bench.procs import dcmtk

# Issue 2 (DIMSE) first, then issue 3 (DICOMweb); module name = scenario name.
SCENARIOS = [
    *("store", "ingest", "find", "move", "metadata", "wado", "stow", "qido", "render"),
    "browser",  # issue 10's last row
    "relay",  # issue 11
    "p2p",  # issue 12
]
OUT = Path(__file__).resolve().parent / "out"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    if not netns.inside():
        return netns.reexec(argv, timeout=args.time_limit)
    signal.signal(signal.SIGTERM, _terminate)
    names = _selected(args.only)
    lab = Lab(OUT, repeat=args.repeat, profile=args.profile, keep=args.keep)
    done: list[results.Scenario] = []
    command = "python -m bench" + (" " + shlex.join(argv) if argv else "")
    started = time.perf_counter()
    load_before = _loadavg()
    source = _source_state()  # the servers run this tree: record it before they start
    try:
        for name in names:
            done.extend(_run_one(name, lab))
    finally:
        lab.close()
        machine = machine_info()
        machine.update(source)
        machine["bench_seconds"] = round(time.perf_counter() - started, 1)
        machine["load_average_start_end"] = [load_before, _loadavg()]
        results.save(done, OUT, machine, command, lab.setup_seconds)
        print()
        print(results.text_table(done))
        print(
            f"{machine['cpu']} × {machine['nproc']}; {machine['bench_seconds']} s; "
            f"written to {OUT / 'results.json'} and results.md"
        )
    return 0 if all(s.status != "failed" for s in done) else 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--only", default="", help=f"comma-separated scenarios: {','.join(SCENARIOS)}")
    p.add_argument("--repeat", type=int, default=3, help="repetitions of timed runs (median)")
    p.add_argument(
        "--profile",
        action="store_true",
        help="also record Isthmus with py-spy during an extra store run",
    )
    p.add_argument(
        "--keep", action="store_true", help="keep the servers' folders in bench/out/work"
    )
    p.add_argument("--time-limit", type=float, default=2400, help="stop everything after N s")
    return p


def _selected(only: str) -> list[str]:
    if not only:
        return list(SCENARIOS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenario(s) {unknown}; choose from {SCENARIOS}")
    return [n for n in SCENARIOS if n in names]


def _run_one(name: str, lab: Lab) -> list[results.Scenario]:
    module = importlib.import_module(f"bench.{name}")
    print(f"== {name}: {getattr(module, 'TITLE', name)}", flush=True)
    started = time.perf_counter()
    try:
        out = module.run(lab)
    except Exception as exc:  # one failed scenario must not lose the others' figures
        traceback.print_exc()
        out = results.Scenario(
            name, getattr(module, "TITLE", name), status="failed", note=str(exc)[:300]
        )
    scenarios = out if isinstance(out, list) else [out]
    for s in scenarios:
        print(results.text_table([s]).splitlines()[-1], flush=True)
    print(f"   ({time.perf_counter() - started:.1f} s)", flush=True)
    return scenarios


def _source_state() -> dict[str, Any]:
    """The commit Isthmus runs from, and how many files under src/ differ from it."""
    changed = _output(["git", "status", "--porcelain", "--", "src"])
    return {
        "isthmus_commit": _output(["git", "rev-parse", "--short", "HEAD"]),
        "isthmus_src_files_changed": len(changed.splitlines()) if changed != "unknown" else None,
    }


def _loadavg() -> float:
    """1-minute load average: how busy the shared machine was (2 cores: above 2 is queueing)."""
    import os

    return round(os.getloadavg()[0], 2)


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(f"bench: stopped by signal {signum}")


def machine_info() -> dict[str, Any]:
    """The machine and the versions of everything measured."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    import isthmus

    return {
        "cpu": cpu,
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "isthmus": isthmus.__version__,
        "dcmtk": _version([dcmtk("storescu"), "--version"], r"v(\d+\.\d+\.\d+)"),
        "orthanc": _version(["/usr/sbin/Orthanc", "--version"], r"Orthanc (\S+)"),
        "orthanc_dicomweb": _output(["dpkg-query", "-W", "-f=${Version}", "orthanc-dicomweb"]),
        "date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "fsync_512k_ms": fsync_latency(OUT),
    }


def fsync_latency(folder: Path, runs: int = 20) -> float:
    """Median milliseconds to write and fsync a 512 KiB file where the servers store.

    Isthmus and Orthanc (SyncStorageArea) make each instance durable before
    answering; storescp does not.  This is the floor that durability costs here.
    """
    import os
    import statistics

    block = os.urandom(512 * 1024)
    path = folder / "fsync-probe"
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        with open(path, "wb") as fh:
            fh.write(block)
            fh.flush()
            os.fsync(fh.fileno())
        times.append(time.perf_counter() - started)
    path.unlink()
    return round(statistics.median(times) * 1000, 2)


def _output(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def _version(cmd: list[str], pattern: str) -> str:
    match = re.search(pattern, _output(cmd))
    return match.group(1) if match else "unknown"


if __name__ == "__main__":
    raise SystemExit(main())
