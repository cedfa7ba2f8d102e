"""`python -m bench.forward [N]`: forwarding a study as one job against a C-MOVE of it.

storescu sends N CT instances (256x256, default 200) from AE CT01 into a node, once
without and once with a forwarding rule to DCMTK's storescp; prints the ingest times,
how long the forward job took (its 1 s settle included) and, for comparison, a C-MOVE
of the same study to the same storescp.  Not part of `make bench` (docs/operations.md,
"Forwarding and jobs").
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelMove as MOVE,
)

from isthmus.config import Peer, Settings
from isthmus.server import Node
from isthmus.testing.dcmtk import StoreSCP, run
from isthmus.testing.generate import StudySpec, write_study
from isthmus.testing.net import free_port


def move(node: Node, study: str) -> float:
    ae = AE(ae_title="MOVESCU")
    ae.add_requested_context(MOVE)
    assoc = ae.associate("127.0.0.1", node.dicom_port, ae_title="ISTHMUS")
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study
    start = time.monotonic()
    for _status, _identifier in assoc.send_c_move(query, "PACS2", MOVE):
        pass
    assoc.release()
    return time.monotonic() - start


def main(count: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-forward-"))
    spec = StudySpec(patient_id="BENCH", instances_per_series=count, rows=256, columns=256)
    files = write_study(spec, tmp / "in")
    study = str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    with StoreSCP(tmp / "out", aet="PACS2") as scp:
        for rules in ([], [{"from": "CT01", "to": "PACS2", "settle": 1.0}]):
            settings = Settings(
                data=tmp / f"data{len(rules)}",
                dicom_port=free_port(),
                http_port=free_port(),
                peers=(Peer("PACS2", "127.0.0.1", scp.port),),
                forward=tuple(rules),
                check_on_start=False,
            )
            with Node(settings) as node:
                start = time.monotonic()
                args = ["-aet", "CT01", "-aec", "ISTHMUS", "127.0.0.1", str(node.dicom_port)]
                done = run("storescu", *args, *map(str, files))
                sent = time.monotonic()
                assert done.returncode == 0, done.stderr
                print(f"rules={len(rules)}: ingest of {count} instances {sent - start:.2f} s")
                if rules:
                    while not (jobs := node.archive.jobs.search(kind="forward")) or any(
                        j.status != "completed" for j in jobs
                    ):
                        time.sleep(0.05)
                    print(
                        f"  forwarded as {len(jobs)} job(s) {jobs[0].counts}: "
                        f"{time.monotonic() - sent:.2f} s after storescu ended (1 s settle)"
                    )
                print(f"  C-MOVE of the study to storescp: {move(node, study):.2f} s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
