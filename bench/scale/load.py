"""Filling an archive's index with the population, in-process (issue 9 allows it).

Each instance goes through the archive's own header parser, its `build_record` and its
`_index` (the code a C-STORE runs), many instances per transaction; what is skipped is
the blob write and the group-commit writer's one transaction per batch of callers.  The
index therefore holds exactly the rows a C-STORE of the instance would have made, but no
blobs: the servers measured on it run with `check_on_start=false` (the start-up check
would otherwise remove rows whose blob is missing), and only what reads the index is
measured on the loaded instances (QIDO-RS, C-FIND, WADO-RS metadata).  Ingest is measured
with new instances sent by storescu, which are stored for real.
"""

from __future__ import annotations

import itertools
import time

from bench.scale import population
from isthmus.archive import Archive
from isthmus.archive.archive import _parse
from isthmus.archive.ingest import build_record

EXPLICIT_LE = "1.2.840.10008.1.2.1"
BATCH = 5000


def load(archive: Archive, start: int, stop: int) -> float:
    """Index instances [start, stop) of the population; seconds taken."""
    started = time.perf_counter()
    items = itertools.islice(population.instances(stop), start, None)
    done = start
    while chunk := list(itertools.islice(items, BATCH)):
        records = []
        for item in chunk:
            data = population.encode(item)
            header = _parse(data, EXPLICIT_LE)
            key = f"scale/{item.sop_uid}"
            records.append(build_record(header, key, len(data), "MODALITY", None))
        with archive.engine.begin() as conn:
            for record in records:
                archive._index(conn, record)
        done += len(chunk)
        if done % 100_000 < BATCH:
            rate = (done - start) / (time.perf_counter() - started)
            print(f"   indexed {done:,} instances ({rate:,.0f}/s)", flush=True)
    return time.perf_counter() - started
