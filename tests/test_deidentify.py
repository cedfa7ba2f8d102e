"""`isthmus deidentify` over files (into a folder) and over stored studies."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom

from isthmus.archive import Archive
from isthmus.testing.generate import StudySpec, write_study
from test_cli import isthmus


def test_files_go_into_a_folder_named_by_new_uids_and_agree_with_stored_studies(
    tmp_path: Path,
) -> None:
    spec = StudySpec(patient_name="SMITH^ALICE", patient_id="MRN-1", instances_per_series=3)
    files = write_study(spec, tmp_path / "in" / "SMITH_ALICE")
    (tmp_path / "in" / "broken.dcm").write_bytes(files[0].read_bytes()[:200])
    data, out = tmp_path / "data", tmp_path / "out"
    common = ("--project", "trial", "--data", str(data))

    done = isthmus("deidentify", str(tmp_path / "in"), "--out", str(out), *common)
    assert done.returncode == 1, done.stderr
    assert "de-identified 3 file(s)" in done.stdout and "skipped" in done.stderr
    written = sorted(out.rglob("*.dcm"))
    assert len(written) == 3 and len({p.parent for p in written}) == 1
    for path in written:
        ds = pydicom.dcmread(path)
        assert path.stem == ds.SOPInstanceUID and path.parent.name == ds.StudyInstanceUID
        assert b"SMITH" not in path.read_bytes() and ds.PatientIdentityRemoved == "YES"
        assert ds.pixel_array.shape == (64, 64)

    assert (
        isthmus("import", str(tmp_path / "in" / "SMITH_ALICE"), "--data", str(data)).returncode == 0
    )
    source = pydicom.dcmread(files[0]).StudyInstanceUID
    stored = isthmus("deidentify", "--study", source, *common)
    assert stored.returncode == 0, stored.stderr
    assert f"{source} -> {written[0].parent.name}" in stored.stdout  # same project, same UIDs
    archive = Archive(f"sqlite:///{data / 'index.sqlite'}", f"file://{data / 'blobs'}")
    try:
        assert len(archive.instances(written[0].parent.name)) == 3
    finally:
        archive.close()


def test_a_command_without_input_or_with_bad_options_is_refused(tmp_path: Path) -> None:
    data = ("--project", "p", "--data", str(tmp_path / "data"))
    assert isthmus("deidentify", *data).returncode == 2
    assert isthmus("deidentify", str(tmp_path), *data).returncode == 2  # no --out
    rules = tmp_path / "rules.json"
    rules.write_text('[{"rectangles": "everywhere"}]')
    bad = isthmus("deidentify", "--study", "1.2.3", "--pixel-rules", str(rules), *data)
    assert bad.returncode == 2 and "rectangles" in bad.stderr
    wrong = isthmus("deidentify", "--study", "1.2.3", "--retain-uids", *data)
    assert wrong.returncode == 2 and "retain_uids" in wrong.stderr


def test_studies_deidentified_into_the_archive_are_audited_as_stored(tmp_path: Path) -> None:
    """docs/security.md: instances stored are audited, as `isthmus import` does it."""
    files = write_study(StudySpec(patient_id="MRN-2", instances_per_series=2), tmp_path / "in")
    data = tmp_path / "data"
    assert isthmus("import", str(tmp_path / "in"), "--data", str(data)).returncode == 0
    source = str(pydicom.dcmread(files[0]).StudyInstanceUID)
    done = isthmus("deidentify", "--study", source, "--project", "p", "--data", str(data))
    assert done.returncode == 0, done.stderr
    new = done.stdout.split(f"{source} -> ")[1].split()[0]
    entries = [json.loads(line) for line in (data / "audit.log").open(encoding="utf-8")]
    (entry,) = [e for e in entries if e["event"] == "stored" and e["studies"] == [new]]
    assert entry["outcome"] == 0 and entry["patients"][0]["id"] != "MRN-2"
