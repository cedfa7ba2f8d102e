"""`python -m bench.scale` (`make bench-scale`): Isthmus at 10k, 100k and 1M instances.

For each index (SQLite, PostgreSQL) the archive grows through the sizes; at each size a
fresh `isthmus serve` on it answers the queries of bench/scale/queries.py (QIDO-RS,
WADO-RS metadata) and findscu's study-level C-FIND, and four storescu associations
send new instances to measure ingest.  Orthanc (Debian's package, with the same kind of
index: its SQLite one, or the PostgreSQL index plugin) is loaded over C-STORE with the
same instances first and, when Isthmus holds as many, asked the same queries in turn
with it, request by request.  Results: bench/out/scale.json, bench/out/scale.md and the
chart docs/scale-latency.png.  Runs inside a private network namespace like `python -m
bench`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench import netns
from bench.__main__ import machine_info
from bench.scale import report, runs

OUT = Path(__file__).resolve().parents[1] / "out"
DEFAULT_SIZES = "10000,100000,1000000"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    if not netns.inside():
        return netns.reexec(argv, timeout=args.time_limit, module="bench.scale")
    signal.signal(signal.SIGTERM, _terminate)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if args.orthanc_size and args.orthanc_size not in sizes:
        raise SystemExit(f"--orthanc-size {args.orthanc_size} must be one of --sizes {sizes}")
    work = OUT / "scale-work"
    results: dict[str, Any] = {
        "command": "python -m bench.scale " + " ".join(argv),
        "sizes": sizes,
        "isthmus": {},
        "orthanc": {},
    }
    started = time.perf_counter()
    load_start = round(os.getloadavg()[0], 2)
    try:
        for backend in args.backends.split(","):
            results["isthmus"][backend] = {"sizes": {}}
            with ExitStack() as stack:
                rival = None
                if args.orthanc_size and backend in args.orthanc_index.split(","):
                    rival = stack.enter_context(runs.orthanc(backend, args.orthanc_size, work))
                    results["orthanc"][backend] = rival.out
                runs.isthmus(backend, sizes, work, args.ingest, results["isthmus"][backend], rival)
    finally:
        results["machine"] = machine_info()
        results["machine"]["bench_seconds"] = round(time.perf_counter() - started, 1)
        results["machine"]["load_average_start_end"] = [load_start, round(os.getloadavg()[0], 2)]
        OUT.mkdir(exist_ok=True)
        (OUT / "scale.json").write_text(json.dumps(results, indent=1))
        text = report.markdown(results)
        (OUT / "scale.md").write_text(text)
        print(text)
        report.chart(results, Path(args.chart))
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    p.add_argument("--sizes", default=DEFAULT_SIZES, help="archive sizes, in instances")
    p.add_argument("--backends", default="sqlite,postgresql", help="Isthmus index kinds")
    p.add_argument("--ingest", type=int, default=2000, help="instances sent to time ingest")
    p.add_argument(
        "--orthanc-size", type=int, default=100_000, help="one of --sizes (0: no Orthanc)"
    )
    p.add_argument("--orthanc-index", default="sqlite,postgresql")
    p.add_argument("--chart", default=str(OUT.parent.parent / "docs" / "scale-latency.png"))
    p.add_argument("--time-limit", type=float, default=4 * 3600)
    return p


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(f"bench.scale: stopped by signal {signum}")


if __name__ == "__main__":
    raise SystemExit(main())
