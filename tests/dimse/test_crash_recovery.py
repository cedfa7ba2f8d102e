"""kill -9 of `isthmus serve` during a bulk C-STORE: after a restart, every instance the
sender saw acknowledged is there and readable, and nothing is half-stored."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from io import BytesIO
from pathlib import Path
from typing import IO

from pydicom import dcmread

from isthmus.archive import Archive
from isthmus.testing import dcmtk, processes
from isthmus.testing.generate import StudySpec, write_study
from isthmus.testing.net import free_port, wait_for_port

from .support import dataset_bytes, sop_uid_of

INSTANCES = 60


class Server:
    """`python -m isthmus serve` as a child process."""

    def __init__(self, data: Path, index_url: str, blob_url: str, log: Path) -> None:
        self.port = free_port()
        self.command = [
            sys.executable,
            "-m",
            "isthmus",
            "serve",
            "--data",
            str(data),
            "--index-url",
            index_url,
            *(["--blob-url", blob_url] if blob_url else []),
            "--dicom-port",
            str(self.port),
            "--http-port",
            str(free_port()),
            "--log-level",
            "warning",
        ]
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ISTHMUS_")}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.command, stdout=out, stderr=subprocess.STDOUT, env=env
            )
        wait_for_port(self.port, timeout=60)
        return self

    def kill(self) -> None:
        processes.kill(self.proc)

    def stop(self) -> None:
        processes.stop(self.proc)


def acknowledged(stream: IO[str], after: int, reached: threading.Event) -> list[str]:
    """Files storescu reports as stored with success, in order, from its -v log; sets
    `reached` once `after` of them are acknowledged."""
    done: list[str] = []
    current = None
    for line in stream:
        sending = re.search(r"Sending file: (.+)$", line)
        if sending:
            current = sending[1].strip()
        elif "Received Store Response (Success)" in line and current:
            done.append(current)
            current = None
            if len(done) >= after:
                reached.set()
    reached.set()
    return done


def test_kill_9_during_bulk_ingest_loses_nothing_acknowledged(
    index_url: str, blob_url: str, tmp_path: Path
) -> None:
    files = write_study(
        StudySpec(patient_id="PID-KILL", instances_per_series=INSTANCES, rows=256, columns=256),
        tmp_path / "in",
    )
    data = tmp_path / "data"
    server = Server(data, index_url, blob_url, tmp_path / "server.log").start()
    sender = subprocess.Popen(
        [
            dcmtk.tool("storescu"),
            "-v",
            "-aec",
            "ISTHMUS",
            "127.0.0.1",
            str(server.port),
            *map(str, files),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    reached = threading.Event()
    result: list[list[str]] = []
    reader = threading.Thread(
        target=lambda: result.append(acknowledged(sender.stdout, INSTANCES // 3, reached))
    )  # type: ignore[arg-type]
    reader.start()
    try:
        assert reached.wait(120), "storescu made no progress"
        server.kill()  # mid-transfer, no warning
        sender.wait(timeout=60)
        reader.join(60)
        stored_ok = result[0]
        assert INSTANCES // 3 <= len(stored_ok) < INSTANCES, "the kill came too late to test"

        server.start()  # restart: repairs on start
        archive = Archive(index_url, blob_url or f"file://{data.resolve() / 'blobs'}")
        try:
            report = archive.check(repair=False)
            assert (report["partial"], report["orphans"], report["missing"]) == (0, 0, 0)
            for path in map(Path, stored_ok):
                rows = archive.instances(sop_uid=sop_uid_of(path))
                assert rows, f"acknowledged {path.name} is missing after the restart"
                blob = archive.read_instance(rows[0])
                assert dataset_bytes(blob) == dataset_bytes(path.read_bytes())
            for row in archive.instances():  # every row has a readable file
                back = dcmread(BytesIO(archive.read_instance(row)))
                assert back.SOPInstanceUID == row.sop_instance_uid

            again = dcmtk.run(
                "storescu", "-aec", "ISTHMUS", "127.0.0.1", str(server.port), *map(str, files)
            )  # the sender retries everything
            assert again.returncode == 0, again.stdout + again.stderr
            assert len(archive.instances()) == INSTANCES
            assert archive.check(repair=False)["instances"] == INSTANCES
        finally:
            archive.close()
    finally:
        if sender.poll() is None:
            sender.kill()
        server.stop()
        reader.join(10)
