"""`python -m bench.workitems [sqlite|postgresql] [N]`: the work item store alone.

Not one of `python -m bench`'s comparisons (no other system has a UPS store to compare
with); a measurement of what a worklist costs: creating N scheduled items (one durable
commit each), the Modality Worklist's typical search (station and day), a search by
Patient ID, and 50 items each claimed by 8 threads at once (exactly one may win).
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time

from isthmus.archive import IN_PROGRESS, Archive, WorkItemError, scheduled_workitem


def run(index_url: str, blobs: str, n: int) -> str:
    archive = Archive(index_url, blobs)
    wi = archive.workitems
    try:
        t = time.perf_counter()
        uids = [
            wi.create(
                scheduled_workitem(
                    {
                        "patient_id": f"P{i}",
                        "modality": "CT" if i % 2 else "MR",
                        "station_aet": f"ST{i % 10}",
                        "start": f"202601{1 + i % 28:02d}0930",
                        "label": "bench",
                    }
                )
            ).uid
            for i in range(n)
        ]
        create = time.perf_counter() - t
        t = time.perf_counter()
        hits = wi.search(
            {
                "ScheduledStationNameCodeSequence.CodeValue": "ST4",
                "ScheduledProcedureStepStartDateTime": "20260105",
            }
        )
        day = time.perf_counter() - t
        t = time.perf_counter()
        wi.search({"PatientID": "P77"})
        patient = time.perf_counter() - t
        outcomes: list[str] = []
        lock = threading.Lock()

        def claim(uid: str, k: int) -> None:
            try:
                wi.change_state(uid, IN_PROGRESS, f"1.2.3.{k}")
                result = "won"
            except WorkItemError as exc:
                result = f"0x{int(exc.status):04X}"
            with lock:
                outcomes.append(result)

        t = time.perf_counter()
        for uid in uids[:50]:
            threads = [threading.Thread(target=claim, args=(uid, k)) for k in range(8)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
        race = time.perf_counter() - t
    finally:
        archive.close()
    won = outcomes.count("won")
    return (
        f"create {n}: {create:.2f} s ({n / create:.0f}/s); station+day search: "
        f"{day * 1000:.0f} ms ({len(hits)} hits); by PatientID: {patient * 1000:.1f} ms; "
        f"50 items x 8 concurrent claims: {won} won, {len(outcomes) - won} refused "
        f"({sorted(set(outcomes) - {'won'})}) in {race:.2f} s"
    )


def main(argv: list[str]) -> int:
    kind = argv[0] if argv else "sqlite"
    n = int(argv[1]) if len(argv) > 1 else 2000
    folder = tempfile.mkdtemp(prefix="bench-workitems-")
    if kind == "postgresql":
        from isthmus.testing.postgres import TemporaryPostgres

        server = TemporaryPostgres().start()
        try:
            print(kind, run(server.create_database("bench"), f"file://{folder}/b", n))
        finally:
            server.stop()
    else:
        print(kind, run(f"sqlite:///{folder}/index.sqlite", f"file://{folder}/b", n))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
