"""The archive stores an instance once and finds it, on SQLite and PostgreSQL."""

from pathlib import Path

from isthmus.archive import Archive, query_from_keywords
from isthmus.testing.generate import StudySpec, write_study


def test_store_then_find_by_patient_name_wildcard(archive: Archive, tmp_path: Path) -> None:
    paths = write_study(StudySpec(patient_name="SMITH^JOHN", instances_per_series=3), tmp_path / "in")
    results = [archive.store(p.read_bytes()) for p in paths]
    assert [r.status for r in results] == ["stored"] * 3
    found = archive.find(query_from_keywords("STUDY", {"PatientName": "smi*",
                                                       "NumberOfStudyRelatedInstances": ""}))
    assert len(found.matches) == 1
    assert found.matches[0]["00201208"]["Value"] == [3]


def test_second_copy_of_an_instance_is_not_stored_twice(archive: Archive, tmp_path: Path) -> None:
    path = write_study(StudySpec(instances_per_series=1), tmp_path / "in")[0]
    assert archive.store(path.read_bytes()).status == "stored"
    assert archive.store(path.read_bytes()).status == "duplicate"
    assert archive.counts()["image"] == 1
    assert archive.check()["orphans"] == 0
