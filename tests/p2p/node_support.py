"""Two real `isthmus serve` processes on 127.0.0.1 for the p2p system tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from isthmus.testing import processes
from isthmus.testing.generate import StudySpec, write_study
from isthmus.testing.net import free_port, wait_for_port


class Node:
    """One node: its data folder survives `kill` + `start` (a restarted node)."""

    def __init__(self, folder: Path, name: str) -> None:
        self.folder = folder
        self.name = name
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.log = folder / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def isthmus(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "isthmus", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)

    def load(self, spec: StudySpec) -> None:
        """Import a generated study (before `start`)."""
        files = self.folder / f"{self.name}-input"
        write_study(spec, files)
        done = self.isthmus("import", "--data", str(self.folder / self.name), str(files))
        assert done.returncode == 0, done.stderr

    def start(self, *extra: str) -> None:
        """`isthmus serve`, with `extra` arguments (e.g. --config FILE)."""
        command = [sys.executable, "-m", "isthmus", "serve", "--data", str(self.folder / self.name)]
        command += [
            "--aet",
            self.name,
            "--http-port",
            str(self.http_port),
            "--dicom-port",
            str(self.dicom_port),
            *extra,
        ]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for_port(self.http_port, timeout=60)
        except TimeoutError:
            raise AssertionError(
                f"{self.name} did not start:\n{self.log.read_text()[-3000:]}"
            ) from None

    def kill(self) -> None:
        processes.kill(self.proc)

    def stop(self) -> None:
        processes.stop(self.proc)
