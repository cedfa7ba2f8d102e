"""The `dicomweb_client` command line against a running Isthmus: store, search, retrieve."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pydicom
from tests.web.conftest import root_of

from isthmus.testing.generate import StudySpec, write_study

CLI = str(Path(sys.executable).with_name("dicomweb_client"))


def run(node, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [CLI, "--url", root_of(node), *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_store_search_and_retrieve_from_the_command_line(web_node, tmp_path):
    files = write_study(
        StudySpec(patient_name="CLI^PATIENT", instances_per_series=2), tmp_path / "in"
    )
    run(web_node, "store", "instances", *map(str, files))
    found = json.loads(run(web_node, "search", "studies", "--filter", "PatientName=CLI^*").stdout)
    assert [s["00100010"]["Value"][0]["Alphabetic"] for s in found] == ["CLI^PATIENT"]
    ds = pydicom.dcmread(files[1])
    out = tmp_path / "out"
    out.mkdir()
    run(
        web_node,
        "retrieve",
        "instances",
        "--study",
        ds.StudyInstanceUID,
        "--series",
        ds.SeriesInstanceUID,
        "--instance",
        ds.SOPInstanceUID,
        "full",
        "--save",
        "--output-dir",
        str(out),
    )
    [saved] = list(out.iterdir())
    assert pydicom.dcmread(saved).PixelData == ds.PixelData
    frames = tmp_path / "frames"
    frames.mkdir()
    run(
        web_node,
        "retrieve",
        "instances",
        "--study",
        ds.StudyInstanceUID,
        "--series",
        ds.SeriesInstanceUID,
        "--instance",
        ds.SOPInstanceUID,
        "frames",
        "--numbers",
        "1",
        "--save",
        "--output-dir",
        str(frames),
    )
    [frame] = list(frames.iterdir())
    assert frame.read_bytes() == ds.PixelData
