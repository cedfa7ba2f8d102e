"""Issue 2: DCMTK storescu sends the 271-instance CT series in one association.

Receivers: DCMTK storescp writing files, `isthmus serve`, Orthanc.  Each repetition
starts every receiver fresh on an empty folder; the order of systems is the same in
each round, so slow drift of the shared machine hits all of them alike.
"""

from __future__ import annotations

from bench import dimse, profile
from bench.lab import Lab
from bench.procs import CommandFailed
from bench.results import Scenario

NAME = "store"
TITLE = "C-STORE 271 CT images (142 MB), one association"
SYSTEMS = ("storescp", "isthmus", "orthanc")
# Extra rows that locate the time, not compared against targets.
VARIANTS = {
    "storescp-pdu128k": (
        "storescp",
        {"extra": ["-pdu", "131072"]},
        "storescp --max-pdu 131072 (DCMTK's largest; Isthmus offers 262144)",
    ),
    "isthmus-nosync": (
        "isthmus",
        {"durable": False},
        "Isthmus with durable=false: no fsync, SQLite synchronous=NORMAL",
    ),
}


def run(lab: Lab) -> Scenario:
    s = Scenario(
        NAME,
        TITLE,
        target="Isthmus ≤ 1.5× storescp, ≤ 0.5× Orthanc",
        ratios={
            "Isthmus/storescp": ("isthmus", "storescp", 1.5),
            "Isthmus/Orthanc": ("isthmus", "orthanc", 0.5),
        },
    )
    ct = lab.data("ct")
    files = ct.files()
    for system in SYSTEMS:
        s.measure(system, size_bytes=ct.size_bytes)
    for variant, (_, _, note) in VARIANTS.items():
        s.measure(variant, size_bytes=ct.size_bytes, note=note)
    for _ in range(lab.repeat):
        for system in SYSTEMS + tuple(VARIANTS):
            if system in VARIANTS:
                base, options, _ = VARIANTS[system]
                server = lab.fresh(base, system, **options)
            else:
                server = lab.fresh(system)
            with server:
                cpu = server.cpu()
                seconds = dimse.storescu(server, files)
                cpu = server.cpu() - cpu
                stored = server.count()  # type: ignore[attr-defined]
            lab.discard(server)
            if stored != ct.count:
                raise CommandFailed(f"{system}: {stored} of {ct.count} instances stored")
            s.measurements[system].seconds.append(seconds)
            s.measurements[system].server_cpu.append(cpu)
    if lab.profile:
        s.details["profile"] = profile_isthmus(lab, files)
    return s


def profile_isthmus(lab: Lab, files: list) -> dict:
    """One extra, uncounted run of Isthmus under py-spy; returns the top frames."""
    out: dict = {}
    server = lab.fresh("isthmus", "profile")
    with server, profile.maybe_record(True, server, lab.out_dir / "profile-store", out):
        dimse.storescu(server, files)
    lab.discard(server)
    return out.get("profile", {})
