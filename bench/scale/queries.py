"""The queries measured at every archive size: what a worklist or a viewer asks.

Each kind of query runs RUNS times with a different value each time (a patient, a
month, an accession number drawn from the studies the archive holds), so that no
single cached answer is measured; the first WARMUP runs are not counted.  When two
servers hold the same instances (Isthmus and Orthanc at the comparison size) they are
asked in turn, request by request: on a shared machine the load then weighs on both.
Every server is asked through the same client (bench/keepalive.py), one keep-alive
connection each.
"""

from __future__ import annotations

import calendar
import json
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench.keepalive import Client, KeepAlive
from bench.scale.population import Study

RUNS = 30
WARMUP = 3


@dataclass
class Timing:
    """Latencies of one kind of query, in milliseconds."""

    samples: list[float]
    matches: list[int]

    @property
    def p50(self) -> float:
        return statistics.median(self.samples)

    @property
    def p95(self) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]

    def summary(self) -> dict[str, float]:
        return {
            "p50_ms": round(self.p50, 2),
            "p95_ms": round(self.p95, 2),
            "median_matches": statistics.median(self.matches),
        }


def _month(study: Study) -> str:
    """A range over the study's month (PS3.4 C.2.2.2.5 range matching)."""
    year, month = int(study.date[:4]), int(study.date[4:6])
    last = calendar.monthrange(year, month)[1]
    return f"StudyDate={study.date[:6]}01-{study.date[:6]}{last:02d}"


# name → (what it shows, a function from a study to the request path, must match)
QIDO: dict[str, tuple[str, Callable[[Study], str], bool]] = {
    "PatientName prefix": (
        "/studies?PatientName=FAMILY^G*",
        lambda s: (
            f"/studies?PatientName={s.patient_name.split('^')[0]}^{s.patient_name.split('^')[1][0]}*"
        ),
        True,
    ),
    "PatientID": ("/studies?PatientID=…", lambda s: f"/studies?PatientID={s.patient_id}", True),
    "AccessionNumber": (
        "/studies?AccessionNumber=…",
        lambda s: f"/studies?AccessionNumber={s.accession}",
        True,
    ),
    "StudyDate range": ("/studies?StudyDate=one month", lambda s: "/studies?" + _month(s), True),
    "ModalitiesInStudy": (
        "/studies?ModalitiesInStudy=…&limit=100",
        lambda s: f"/studies?ModalitiesInStudy={s.modality}&limit=100",
        True,
    ),
    "combination, limit/offset": (
        "/studies?PatientName=F*&StudyDate=2010-2020&ModalitiesInStudy=…&limit=25&offset=25",
        lambda s: (
            f"/studies?PatientName={s.patient_name[0]}*&StudyDate=20100101-20201231"
            f"&ModalitiesInStudy={s.modality}&limit=25&offset=25"
        ),
        False,
    ),
    "series of a study": ("/studies/{uid}/series", lambda s: f"/studies/{s.uid}/series", True),
    "instances of a study": (
        "/studies/{uid}/instances",
        lambda s: f"/studies/{s.uid}/instances",
        True,
    ),
    "study metadata (WADO-RS)": (
        "/studies/{uid}/metadata",
        lambda s: f"/studies/{s.uid}/metadata",
        True,
    ),
}


def sample_studies(studies: Sequence[Study], seed: int = 9) -> list[Study]:
    """RUNS + WARMUP studies drawn from those the archive holds (whole studies only)."""
    rng = random.Random(seed)
    return [rng.choice(studies[:-1] or studies) for _ in range(RUNS + WARMUP)]


def qido(roots: Sequence[str], studies: Sequence[Study]) -> list[dict[str, Timing]]:
    """Every query kind against each DICOMweb root, the roots taking turns request by
    request (and going first in turn), so that the machine's load falls on all alike;
    checks each answer is well formed.  One dict of timings per root."""
    picks = sample_studies(studies)
    out: list[dict[str, Timing]] = [{} for _ in roots]
    clients: list[Client] = [KeepAlive(timeout=120) for _ in roots]
    try:
        for name, (_, path_of, must_match) in QIDO.items():
            timings = [Timing([], []) for _ in roots]
            for n, study in enumerate(picks):
                order = list(range(len(roots)))
                if n % 2:
                    order.reverse()
                for k in order:
                    elapsed, count = _get(clients[k], roots[k] + path_of(study), must_match)
                    if n >= WARMUP:
                        timings[k].samples.append(elapsed)
                        timings[k].matches.append(count)
            for k, timing in enumerate(timings):
                out[k][name] = timing
    finally:
        for client in clients:
            client.close()
    return out


def _get(client: Client, url: str, must_match: bool) -> tuple[float, int]:
    """(milliseconds, number of results) of one QIDO-RS / WADO-RS metadata request."""
    started = time.perf_counter()
    status, body = client.get(url, "application/dicom+json")
    elapsed = (time.perf_counter() - started) * 1000
    if status not in (200, 204):
        raise RuntimeError(f"{url}: HTTP {status} {body[:200]!r}")
    count = len(json.loads(body)) if status == 200 else 0
    if must_match and count == 0:
        raise RuntimeError(f"{url}: no match, expected some")
    return elapsed, count


def find(runners: Sequence[Callable[[str], float]], studies: Sequence[Study]) -> list[Timing]:
    """Study-level C-FIND by PatientID through DCMTK findscu (process wall time), each
    runner (one per server) in turn."""
    timings = [Timing([], []) for _ in runners]
    for n, study in enumerate(sample_studies(studies, seed=11)[: 10 + WARMUP]):
        for k, run in enumerate(runners):
            seconds = run(study.patient_id)
            if n >= WARMUP:
                timings[k].samples.append(seconds * 1000)
                timings[k].matches.append(1)
    return timings
