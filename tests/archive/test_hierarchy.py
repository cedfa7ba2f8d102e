"""A series belongs to one study: an instance that says otherwise is refused."""

from __future__ import annotations

from isthmus.archive import Archive, query_from_keywords
from isthmus.dicom.part10 import file_meta
from isthmus.testing.generate import StudySpec, study


def _part10(ds) -> bytes:
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, False
    write_dataset(buf, ds)
    return file_meta(ds.SOPClassUID, ds.SOPInstanceUID, "1.2.840.10008.1.2.1") + buf.getvalue()


def test_instance_of_a_known_series_under_another_study_is_refused(archive: Archive) -> None:
    first, second = list(study(StudySpec(instances_per_series=2)))
    assert archive.store(_part10(first)).status == "stored"
    second.StudyInstanceUID = "1.2.826.0.1.3680043.10.1386.9.777"
    result = archive.store(_part10(second))
    assert (result.status, result.failure) == ("failed", "conflict")
    assert "belongs to another study" in result.reason
    assert archive.counts() == {"patient": 1, "study": 1, "series": 1, "image": 1}
    other = archive.find(
        query_from_keywords("STUDY", {"StudyInstanceUID": second.StudyInstanceUID})
    )
    assert other.matches == []
    assert archive.check(repair=False)["orphans"] == 0


def test_a_kept_duplicate_that_names_another_study_is_a_duplicate_not_a_conflict(
    archive: Archive,
) -> None:
    first, second = list(study(StudySpec(instances_per_series=2)))
    assert archive.store(_part10(first)).status == "stored"
    assert archive.store(_part10(second)).status == "stored"  # every parent key cached
    second.StudyInstanceUID = "1.2.826.0.1.3680043.10.1386.9.778"
    assert archive.store(_part10(second)).status == "duplicate"
    assert archive.counts() == {"patient": 1, "study": 1, "series": 1, "image": 2}


def test_a_kept_duplicate_of_another_patient_adds_no_parent_rows(archive: Archive) -> None:
    first, second = list(study(StudySpec(instances_per_series=2)))
    assert archive.store(_part10(first)).status == "stored"
    assert archive.store(_part10(second)).status == "stored"
    second.PatientID = "SOMEONE-ELSE"
    assert archive.store(_part10(second)).status == "duplicate"
    assert archive.counts() == {"patient": 1, "study": 1, "series": 1, "image": 2}


def test_an_instance_of_another_patient_in_a_known_study_leaves_no_empty_patient(
    archive: Archive,
) -> None:
    """Filed under the study's patient (its first instance represents it), the instance
    adds no patient of its own: a PATIENT level query never sees a patient without
    studies (PS3.4 C.6.1.1.2)."""
    first, second, third = list(study(StudySpec(instances_per_series=3)))
    assert archive.store(_part10(first)).status == "stored"
    second.PatientID = third.PatientID = "SOMEONE-ELSE"
    assert archive.store(_part10(second)).status == "stored"
    assert archive.store(_part10(third)).status == "stored"  # now with cached parents
    assert archive.counts() == {"patient": 1, "study": 1, "series": 1, "image": 3}
    assert archive.find(query_from_keywords("PATIENT", {"PatientID": "SOMEONE-ELSE"})).matches == []


def test_a_parent_key_another_process_freed_and_sqlite_reused_files_nothing_under_it(
    tmp_path,
) -> None:
    """Two workers of `isthmus serve --workers 2` on one SQLite index, before (or
    without: a full control socket drops it) the event that says parents were deleted:
    one caches the keys of a study's patient, study and series; the other deletes the
    study and stores another, whose rows SQLite gives the freed keys (it reuses the
    largest rowid).  An instance of the first study stored again by the first worker
    is filed under its own study, not under the other one's series."""
    url, blobs = f"sqlite:///{tmp_path / 'index.sqlite'}", f"file://{tmp_path / 'blobs'}"
    first = list(study(StudySpec(patient_id="FREED", instances_per_series=2)))
    other = next(iter(study(StudySpec(patient_id="REUSER", instances_per_series=1))))
    one, two = Archive(url, blobs), Archive(url, blobs)  # each its own event bus
    try:
        assert one.store(_part10(first[0])).status == "stored"  # its parents cached
        assert two.delete(first[0].StudyInstanceUID) == 1
        assert two.store(_part10(other)).status == "stored"  # the freed keys, reused
        assert one.store(_part10(first[1])).status == "stored"
        [row] = one.instances(sop_uid=first[1].SOPInstanceUID)
        assert row.study_instance_uid == first[1].StudyInstanceUID
        assert row.series_instance_uid == first[1].SeriesInstanceUID
        assert [r.sop_instance_uid for r in two.instances(other.StudyInstanceUID)] == [
            other.SOPInstanceUID
        ]
    finally:
        one.close()
        two.close()
