"""Archive.verify: is an instance durably stored and intact (for Storage Commitment)?"""

from __future__ import annotations

from io import BytesIO

from pydicom.uid import CTImageStorage, MRImageStorage, generate_uid

from isthmus.archive import Archive, Integrity
from isthmus.testing import generate


def _store(archive: Archive, count: int) -> list[tuple[str, str]]:
    refs = []
    for ds in generate.study(generate.StudySpec(instances_per_series=count, rows=8, columns=8)):
        buffer = BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        assert archive.store(buffer.getvalue()).ok
        refs.append((str(ds.SOPClassUID), str(ds.SOPInstanceUID)))
    return refs


def test_each_instance_gets_its_integrity_and_failure_reason(archive: Archive) -> None:
    intact, truncated, deleted, other_class = _store(archive, 4)
    # Behind the archive's back, through the blob store (files or S3): one blob cut
    # short, one gone.
    archive.blobs.put(archive.instances(sop_uid=truncated[1])[0].blob_key, [b"cut"])
    archive.blobs.delete(archive.instances(sop_uid=deleted[1])[0].blob_key)
    never = (CTImageStorage, str(generate_uid()))
    result = archive.verify([intact, truncated, deleted, (MRImageStorage, other_class[1]), never])
    assert result == {
        intact[1]: Integrity.INTACT,
        truncated[1]: Integrity.DAMAGED,
        deleted[1]: Integrity.DAMAGED,
        other_class[1]: Integrity.CLASS_INSTANCE_CONFLICT,
        never[1]: Integrity.NO_SUCH_INSTANCE,
    }
    reasons = [i.failure_reason for i in result.values()]
    assert reasons == [None, 0x0110, 0x0110, 0x0119, 0x0112]


def test_a_deleted_instance_is_no_longer_committed(archive: Archive) -> None:
    (ref,) = _store(archive, 1)
    assert archive.verify([ref])[ref[1]] is Integrity.INTACT
    study = archive.instances(sop_uid=ref[1])[0].study_instance_uid
    assert archive.delete(study, sop_uid=ref[1]) == 1
    assert archive.verify([ref])[ref[1]] is Integrity.NO_SUCH_INSTANCE
