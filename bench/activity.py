"""`python -m bench.activity`: what the audit trail and the metrics cost a door.

Times `Transfer.add` (per stored or sent instance: a dictionary update and one
``metrics.instance`` event counted by `isthmus.metrics`) and `Activity.request` (per
HTTP request) with the node's subscribers in place.  Not a scenario of `python -m
bench`: it compares nothing, it measures the one thing issue 14 added to the hot path.
"""

from __future__ import annotations

import tempfile
import time

from isthmus.archive import Archive
from isthmus.audit import AuditTrail
from isthmus.metrics import Metrics

N = 200_000


def main() -> None:
    folder = tempfile.mkdtemp()
    archive = Archive(f"sqlite:///{folder}/index.sqlite", f"file://{folder}/blobs")
    metrics = Metrics(archive)
    trail = AuditTrail(archive, f"{folder}/audit.log", "BENCH")
    tally = archive.activity.transfer("stored", "dimse", user="U", local="BENCH")
    start = time.perf_counter()
    for i in range(N):
        tally.add(f"1.2.3.{i % 10}", "1.2.840.10008.5.1.4.1.1.2", 5000)
    per_instance = (time.perf_counter() - start) / N
    start = time.perf_counter()
    for _ in range(N):
        archive.activity.request("wado", "GET", 200, 0.001)
    per_request = (time.perf_counter() - start) / N
    tally.close()
    trail.close()
    metrics.close()
    archive.close()
    print(f"Transfer.add (per instance): {per_instance * 1e6:.1f} µs")
    print(f"Activity.request (per HTTP request): {per_request * 1e6:.1f} µs")


if __name__ == "__main__":
    main()
