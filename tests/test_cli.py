"""The `isthmus` command, run as users run it (a subprocess): serve, import, echo, send,
query, retrieve - against a node on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import node_with
from isthmus.archive import Archive
from isthmus.config import Peer, Settings
from isthmus.server import Node
from isthmus.testing import catalogue
from isthmus.testing.catalogue import study_uid
from isthmus.testing.generate import StudySpec, write_study
from isthmus.testing.net import free_port, wait_for_port
from isthmus.testing.seaweedfs import TemporarySeaweedFS


def isthmus(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISTHMUS_")}
    return subprocess.run(
        [sys.executable, "-m", "isthmus", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
    )


def address(node: Node) -> str:
    return f"{node.settings.aet}@127.0.0.1:{node.dicom_port}"


def count(index_url: str, data: Path) -> int:
    archive = Archive(index_url, f"file://{data / 'blobs'}")
    try:
        return archive.counts()["image"]
    finally:
        archive.close()


def test_version() -> None:
    done = isthmus("--version")
    assert done.returncode == 0 and done.stdout.startswith("isthmus ")


def test_echo_a_node(node: Node) -> None:
    done = isthmus("echo", address(node))
    assert done.returncode == 0, done.stderr
    assert "status 0x0000 (success)" in done.stdout


def test_echo_an_unreachable_peer_fails_with_a_message_not_a_traceback() -> None:
    done = isthmus("echo", f"NOBODY@127.0.0.1:{free_port()}")
    assert done.returncode == 1
    assert "isthmus: cannot reach NOBODY@127.0.0.1:" in done.stderr
    assert "Traceback" not in done.stderr


def test_malformed_peer_is_a_configuration_error() -> None:
    done = isthmus("echo", "NOT-A-PEER")
    assert done.returncode == 2 and "AET@HOST:PORT" in done.stderr


def test_send_a_folder_reports_what_it_could_not_send(node: Node, tmp_path: Path) -> None:
    files = write_study(StudySpec(series_count=2, instances_per_series=3), tmp_path / "in")
    (tmp_path / "in" / "readme.txt").write_text("not DICOM")
    done = isthmus("send", address(node), str(tmp_path / "in"))
    assert done.returncode == 1
    assert f"sent {len(files)} of {len(files) + 1} file(s)" in done.stdout
    assert f"failed {tmp_path / 'in' / 'readme.txt'}" in done.stderr
    assert node.archive.counts()["image"] == len(files)


@pytest.fixture
def catalogue_node(node: Node, tmp_path: Path) -> Node:
    catalogue.load(node.archive, tmp_path / "catalogue")
    return node


def test_query_prints_a_table(catalogue_node: Node) -> None:
    done = isthmus(
        "query",
        address(catalogue_node),
        "--level",
        "study",
        "PatientName=smith*",
        "AccessionNumber",
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "PatientName" in lines[0] and "AccessionNumber" in lines[0]
    assert sum("ACC" in line for line in lines[1:]) == 3
    assert lines[-1] == "3 match(es)"


def test_query_json_at_each_level(catalogue_node: Node) -> None:
    def query(*args: str) -> list[dict]:
        done = isthmus("query", address(catalogue_node), "--json", *args)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    patients = query("--level", "patient", "--model", "patient", "PatientID=PID000?")
    assert len(patients) == 5
    studies = query("--level", "study", "StudyDate=20200101-20201231", "StudyDescription")
    assert sorted(m["0020000D"]["Value"][0] for m in studies) == sorted(study_uid(k) for k in "BCE")
    assert all(m["00081030"]["Value"] for m in studies)
    series = query(
        "--level", "series", f"StudyInstanceUID={study_uid('D')}", "Modality=SR", "InstitutionName"
    )
    assert [m["00080060"]["Value"] for m in series] == [["SR"]]
    assert series[0]["00080080"]["Value"] == ["OTHER HOSPITAL"]
    images = query(
        "--level",
        "image",
        f"StudyInstanceUID={study_uid('A')}",
        f"SeriesInstanceUID={catalogue.series_uid('A', 1)}",
    )
    assert len(images) == 2


def test_query_refused_by_the_peer_fails_with_its_status(catalogue_node: Node) -> None:
    done = isthmus("query", address(catalogue_node), "--level", "series", "Modality=CT")
    assert done.returncode == 1
    assert "0xA900" in done.stderr and "Traceback" not in done.stderr


def test_query_with_an_unknown_keyword_is_refused(catalogue_node: Node) -> None:
    done = isthmus("query", address(catalogue_node), "--level", "study", "NoSuchThing=1")
    assert done.returncode == 2 and "NoSuchThing" in done.stderr


def test_retrieve_by_get_into_the_local_archive(catalogue_node: Node, tmp_path: Path) -> None:
    local = tmp_path / "local"
    done = isthmus(
        "retrieve",
        address(catalogue_node),
        "--study",
        study_uid("A"),
        "--via",
        "get",
        "--data",
        str(local),
    )
    assert done.returncode == 0, done.stderr
    assert "retrieved 4 instance(s), 0 failed" in done.stdout
    assert count(f"sqlite:///{local / 'index.sqlite'}", local) == 4


def test_retrieve_by_move_to_ourselves(settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    node = node_with(settings, peers=(Peer("LOCAL", "127.0.0.1", port),))
    with node:
        catalogue.load(node.archive, tmp_path / "catalogue")
        local = tmp_path / "local"
        done = isthmus(
            "retrieve",
            address(node),
            "--study",
            study_uid("D"),
            "--series",
            catalogue.series_uid("D", 2),
            "--via",
            "move",
            "--aet",
            "LOCAL",
            "--port",
            str(port),
            "--data",
            str(local),
        )
        assert done.returncode == 0, done.stderr
        assert "retrieved 1 instance(s), 0 failed" in done.stdout
    assert count(f"sqlite:///{local / 'index.sqlite'}", local) == 1


def test_import_reports_unreadable_files_by_name_and_never_stores_twice(
    index_url: str, tmp_path: Path
) -> None:
    good = write_study(StudySpec(instances_per_series=3), tmp_path / "in" / "a")
    good += write_study(
        StudySpec(patient_id="P2", instances_per_series=2), tmp_path / "in" / "b" / "c"
    )
    broken = tmp_path / "in" / "b" / "broken.dcm"
    broken.write_bytes(good[0].read_bytes()[:300])  # a cut-off file
    text = tmp_path / "in" / "notes.txt"
    text.write_text("not DICOM")
    data = tmp_path / "data"
    args = ("import", str(tmp_path / "in"), "--data", str(data), "--index-url", index_url)

    first = isthmus(*args)
    assert first.returncode == 1
    assert f"skipped {broken}" in first.stderr and f"skipped {text}" in first.stderr
    assert "imported 5 instance(s), 0 already stored, 2 unreadable" in first.stdout
    assert count(index_url, data) == 5

    again = isthmus(*args)
    assert "imported 0 instance(s), 5 already stored, 2 unreadable" in again.stdout
    assert count(index_url, data) == 5
    assert (
        isthmus("import", str(good[0]), "--data", str(data), "--index-url", index_url).returncode
        == 0
    )


def test_import_into_an_s3_blob_store(seaweedfs: TemporarySeaweedFS, tmp_path: Path) -> None:
    paths = write_study(StudySpec(instances_per_series=3), tmp_path / "in")
    url, data = seaweedfs.url(), tmp_path / "data"
    done = isthmus("import", str(tmp_path / "in"), "--data", str(data), "--blob-url", url)
    assert done.returncode == 0, done.stderr
    archive = Archive(f"sqlite:///{data / 'index.sqlite'}", url)
    try:
        assert len(list(archive.blobs.keys())) == len(paths) == archive.counts()["image"]
        assert archive.check() == {"partial": 0, "orphans": 0, "missing": 0, "instances": 3}
        assert not (data / "blobs").exists()
    finally:
        archive.close()


def test_import_of_a_missing_path_says_so(tmp_path: Path) -> None:
    done = isthmus("import", str(tmp_path / "nothing-here"), "--data", str(tmp_path / "d"))
    assert f"{tmp_path / 'nothing-here'}: no such file or folder" in done.stderr


def serve(data: Path, index_url: str, dicom_port: int, http_port: int) -> subprocess.Popen[str]:
    """`isthmus serve` as a user starts it, AE title CLI_NODE, printing to a pipe."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISTHMUS_")}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "isthmus",
            "serve",
            "--data",
            str(data),
            "--dicom-port",
            str(dicom_port),
            "--http-port",
            str(http_port),
            "--aet",
            "CLI_NODE",
            "--index-url",
            index_url,
            "--peer",
            "PACS@127.0.0.1:104",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def printed_until_ready(proc: subprocess.Popen[str]) -> str:
    """What `isthmus serve` printed up to its "Press Ctrl+C" line."""
    lines = []
    for line in proc.stdout:  # type: ignore[union-attr]
        lines.append(line)
        if "Press Ctrl+C" in line:
            break
    return "".join(lines)


def test_serve_prints_where_everything_is_and_stops_on_ctrl_c(
    index_url: str, tmp_path: Path
) -> None:
    dicom_port, http_port = free_port(), free_port()
    proc = serve(tmp_path / "data", index_url, dicom_port, http_port)
    try:
        text = printed_until_ready(proc)
        assert f"AE title CLI_NODE on 127.0.0.1:{dicom_port}" in text
        assert f"http://127.0.0.1:{http_port}/" in text
        wait_for_port(dicom_port)
        echo = isthmus("echo", f"CLI_NODE@127.0.0.1:{dicom_port}")
        assert echo.returncode == 0, echo.stderr
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        proc.stdout.close()  # type: ignore[union-attr]


def test_serve_stops_in_order_on_sigterm_and_ends_by_it(index_url: str, tmp_path: Path) -> None:
    """A service manager stops with SIGTERM: the node still closes (the Application Stop
    audit message, PS3.15 A.5.3.1; no spare files left for the next start to "repair"),
    and the process ends by the signal.  uvicorn re-raised it to the default handler,
    which ended the process first."""
    data, dicom_port, http_port = tmp_path / "data", free_port(), free_port()
    proc = serve(data, index_url, dicom_port, http_port)
    try:
        printed_until_ready(proc)
        wait_for_port(dicom_port)
        files = write_study(StudySpec(instances_per_series=2), tmp_path / "in")
        sent = isthmus("send", f"CLI_NODE@127.0.0.1:{dicom_port}", str(tmp_path / "in"))
        assert sent.returncode == 0, sent.stderr
        assert list((data / "blobs" / ".spare").iterdir())  # made ahead while storing
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == -signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        proc.stdout.close()  # type: ignore[union-attr]
    assert not list((data / "blobs" / ".spare").iterdir())
    events = [json.loads(line) for line in (data / "audit.log").read_text().splitlines()]
    assert any('csd-code="110121"' in e["xml"] for e in events)  # Application Stop
    assert count(index_url, data) == len(files)
