"""curl as the HTTP client for every DICOMweb scenario (same client for every system).

Times are curl's own `time_total` (connection to last byte), so process start-up is
not counted; the body goes to a file or to /dev/null.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.procs import CommandFailed, run

DICOM_MULTIPART = 'multipart/related; type="application/dicom"'


@dataclass
class Response:
    status: int
    size: int
    seconds: float
    content_type: str


def curl(
    url: str,
    accept: str | None = None,
    output: Path | None = None,
    upload: Path | None = None,
    content_type: str | None = None,
    timeout: float = 300.0,
) -> Response:
    """GET `url` (or POST the file `upload`); raise CommandFailed on transport errors."""
    cmd = [
        "curl",
        "-sS",
        "--max-time",
        str(timeout),
        "-o",
        str(output or "/dev/null"),
        "-w",
        "%{http_code} %{size_download} %{time_total} %{content_type}",
    ]
    if accept:
        cmd += ["-H", f"Accept: {accept}"]
    if upload is not None:
        cmd += ["-X", "POST", "-T", str(upload), "-H", "Expect:"]
        if content_type:
            cmd += ["-H", f"Content-Type: {content_type}"]
    cmd.append(url)
    _, out = run(cmd, timeout + 10, capture=True)
    parts = out.strip().split(" ", 3)
    return Response(
        int(parts[0]), int(parts[1]), float(parts[2]), parts[3] if len(parts) > 3 else ""
    )


def get_ok(
    url: str, accept: str | None = None, output: Path | None = None, timeout: float = 300.0
) -> Response:
    """GET that must answer 200; returns the timing."""
    rsp = curl(url, accept, output, timeout=timeout)
    if rsp.status != 200:
        raise CommandFailed(f"GET {url} answered {rsp.status}")
    return rsp


def serves_dicomweb(root: str) -> bool:
    """Does `root` answer a QIDO-RS /studies request (200 or 204)?"""
    try:
        return curl(f"{root}/studies?limit=1", "application/dicom+json", timeout=30).status in (
            200,
            204,
        )
    except CommandFailed:
        return False


def multipart_body(files: list[Path], target: Path, boundary: str) -> Path:
    """A STOW-RS request body (PS3.18 10.5): one application/dicom part per file."""
    if target.exists():
        return target
    tmp = target.with_suffix(".tmp")
    with open(tmp, "wb") as out:
        for path in files:
            out.write(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
            out.write(path.read_bytes())
            out.write(b"\r\n")
        out.write(f"--{boundary}--\r\n".encode())
    tmp.rename(target)
    return target
