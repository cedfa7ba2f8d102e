"""The Archive API: store, duplicates, delete, check, metadata, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import random
import threading
import zlib
from io import BytesIO
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from isthmus.archive import Archive, Staged, StoreOutcome, StoreWarning, query_from_keywords
from isthmus.archive.storage import FileBlobStore
from isthmus.dicom import part10, uids
from isthmus.dicom.part10 import split_part10
from isthmus.testing import samples
from isthmus.testing.generate import StudySpec, ct_instance, study, write_study

ITEM_TAG_LE = b"\xfe\xff\x00\xe0"


def dataset_bytes(part10: bytes) -> bytes:
    return bytes(split_part10(part10)[1])


def blob_count(archive: Archive) -> int:
    return len(list(archive.blobs.keys()))


def bare(ds, implicit: bool = False) -> bytes:
    """A dataset encoded without file meta, as a C-STORE carries it."""
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, implicit
    write_dataset(buf, ds)
    return buf.getvalue()


# ------------------------------------------------------------------------- store
@pytest.mark.parametrize("syntax", list(samples.BUNDLED))
def test_every_transfer_syntax_is_stored_byte_for_byte(
    archive: Archive, tmp_path: Path, syntax: str
) -> None:
    path = samples.write_samples(tmp_path, [syntax])[syntax]
    sent = path.read_bytes()
    result = archive.store(sent, source_aet="MODALITY")
    assert (result.status, result.transfer_syntax_uid) == ("stored", syntax)
    [row] = archive.instances(sop_uid=result.sop_instance_uid)
    stored = archive.read_instance(row)
    assert dataset_bytes(stored) == dataset_bytes(sent)
    meta = dcmread(BytesIO(stored)).file_meta
    assert (meta.TransferSyntaxUID, meta.MediaStorageSOPInstanceUID) == (
        syntax,
        result.sop_instance_uid,
    )
    assert meta.SourceApplicationEntityTitle == "MODALITY"
    assert row.transfer_syntax_uid == syntax and row.size == len(stored)


@pytest.mark.parametrize("syntax", [s for s in samples.BUNDLED if s != "1.2.840.10008.1.2.1.99"])
def test_pixel_offset_points_at_the_stored_pixel_value(
    archive: Archive, tmp_path: Path, syntax: str
) -> None:
    path = samples.write_samples(tmp_path, [syntax])[syntax]
    result = archive.store(path.read_bytes())
    [row] = archive.instances(sop_uid=result.sop_instance_uid)
    stored = archive.read_instance(row)
    assert row.pixel_offset is not None
    if dcmread(path).file_meta.TransferSyntaxUID.is_encapsulated:
        assert row.pixel_length == 0xFFFFFFFF
        assert stored[row.pixel_offset : row.pixel_offset + 4] == ITEM_TAG_LE  # offset table
    else:
        raw = dcmread(path)["PixelData"].value
        assert stored[row.pixel_offset : row.pixel_offset + row.pixel_length] == raw


def test_deflated_dataset_has_no_pixel_offset(archive: Archive, tmp_path: Path) -> None:
    path = samples.write_samples(tmp_path, ["1.2.840.10008.1.2.1.99"])["1.2.840.10008.1.2.1.99"]
    result = archive.store(path.read_bytes())
    [row] = archive.instances(sop_uid=result.sop_instance_uid)
    assert row.pixel_offset is None


@pytest.mark.parametrize(
    "implicit, syntax", [(True, "1.2.840.10008.1.2"), (False, "1.2.840.10008.1.2.1")]
)
def test_bare_dataset_is_kept_as_received_plus_file_meta(
    archive: Archive, implicit: bool, syntax: str
) -> None:
    ds = next(study(StudySpec(instances_per_series=1)))
    data = bare(ds, implicit)
    result = archive.store(data, transfer_syntax=syntax)
    assert result.status == "stored"
    [row] = archive.instances(sop_uid=result.sop_instance_uid)
    stored = archive.read_instance(row)
    assert dataset_bytes(stored) == data
    assert dcmread(BytesIO(stored)).PatientName == "DOE^JANE"


def test_bare_dataset_without_syntax_is_recognised(archive: Archive) -> None:
    ds = next(study(StudySpec(instances_per_series=1)))
    assert archive.store(bare(ds, implicit=True)).transfer_syntax_uid == "1.2.840.10008.1.2"
    ds2 = next(study(StudySpec(instances_per_series=1)))
    assert archive.store(bare(ds2, implicit=False)).transfer_syntax_uid == "1.2.840.10008.1.2.1"


def _without(keyword: str) -> bytes:
    ds = next(study(StudySpec(instances_per_series=1)))
    delattr(ds, keyword)
    return bare(ds)


def _with(keyword: str, value: str) -> bytes:
    ds = next(study(StudySpec(instances_per_series=1)))
    setattr(ds, keyword, value)
    return bare(ds)


def _truncated() -> bytes:
    data = bare(next(study(StudySpec(instances_per_series=1))))
    return data[:-100]


@pytest.mark.parametrize(
    "data, syntax",
    [
        (b"", "1.2.840.10008.1.2.1"),
        (b"garbage that is no DICOM at all", "1.2.840.10008.1.2.1"),
        (random.Random(7).randbytes(4096), "1.2.840.10008.1.2"),
        (b"\x00" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\x7f", None),  # broken file meta
        (_without("SOPInstanceUID"), "1.2.840.10008.1.2.1"),
        (_without("StudyInstanceUID"), "1.2.840.10008.1.2.1"),
        (_with("SOPInstanceUID", "not a uid"), "1.2.840.10008.1.2.1"),
        (_truncated(), "1.2.840.10008.1.2.1"),  # pixel data cut short
        (b"\x08\x00\x18\x00UI\x40\x00" + b"1.2.3", "1.2.840.10008.1.2.1"),  # value cut short
        (_with("PatientName", "X"), "1.2.840.10008.1.2.1.99"),  # says deflated, is not
    ],
    ids=[
        "empty",
        "text",
        "random",
        "bad-meta",
        "no-sop-uid",
        "no-study-uid",
        "bad-uid",
        "truncated-pixels",
        "truncated-element",
        "not-deflated",
    ],
)
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_malformed_input_fails_as_invalid_and_stores_nothing(
    archive: Archive, data: bytes, syntax: str | None
) -> None:
    result = archive.store(data, transfer_syntax=syntax)
    assert (result.status, result.failure) == ("failed", "invalid")
    assert result.reason
    assert archive.counts() == {"patient": 0, "study": 0, "series": 0, "image": 0}
    assert blob_count(archive) == 0


def test_unknown_transfer_syntax_is_its_own_outcome_and_stores_nothing(archive: Archive) -> None:
    result = archive.store(_with("PatientName", "X"), transfer_syntax="1.2.3.4.5.6")
    assert (result.status, result.failure) == ("failed", StoreOutcome.UNKNOWN_TRANSFER_SYNTAX)
    assert result.outcome.failure_reason == 0xC122 and result.reason
    assert archive.counts()["image"] == 0 and blob_count(archive) == 0


def test_dataset_not_matching_the_announced_instance_is_refused(archive: Archive) -> None:
    ds = next(study(StudySpec(instances_per_series=1)))
    result = archive.store(
        bare(ds), "1.2.840.10008.1.2.1", expected=(str(ds.SOPClassUID), "1.2.3.4")
    )
    assert (result.status, result.failure) == ("failed", "mismatch")
    assert archive.counts()["image"] == 0 and blob_count(archive) == 0


def _file_meta_elements(implicit: bool = False, little: bool = True) -> bytes:
    """Group 0002 elements as a careless sender puts them in a data set: a group length,
    a SOP class and a Transfer Syntax UID that contradict the data set and its context."""
    ds = Dataset()
    ds.FileMetaInformationGroupLength = 58
    ds.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    ds.TransferSyntaxUID = "1.2.840.10008.1.2.2"  # Explicit VR Big Endian
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = little, implicit
    write_dataset(buf, ds)
    return buf.getvalue()


def _encoded(ds, syntax: str) -> bytes:
    """`ds` encoded as a C-STORE of `syntax` carries it (deflated too)."""
    implicit, little, deflated = uids.encoding(syntax)
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = little, implicit
    write_dataset(buf, ds)
    return buf.getvalue()


@pytest.mark.parametrize(
    "syntax",
    ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"],
    ids=["explicit-le", "implicit-le", "explicit-be", "deflated"],
)
def test_file_meta_elements_in_a_data_set_are_dropped_and_the_meta_is_the_archives(
    archive: Archive, syntax: str
) -> None:
    """PS3.10 7.1: group 0002 is a Part 10 file's meta, never a data set's.  The stored
    file has one meta, built from the context's transfer syntax and the data set's UIDs,
    and the data set without them; the metadata has none."""
    ds = next(study(StudySpec(instances_per_series=1)))
    implicit, little, deflated = uids.encoding(syntax)
    data = _file_meta_elements(implicit, little) + _encoded(ds, syntax)
    if deflated:
        packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        data = packer.compress(data) + packer.flush()
    result = archive.store(data, transfer_syntax=syntax, source_aet="CARELESS")
    assert result.status == "stored"
    [row] = archive.instances(sop_uid=result.sop_instance_uid)
    stored = archive.read_instance(row)
    back = dcmread(BytesIO(stored))
    assert back.file_meta.TransferSyntaxUID == syntax
    assert back.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID
    assert not [elem for elem in back if elem.tag.group == 2]
    assert (back.PatientName, back.PixelData) == (ds.PatientName, ds.PixelData)
    if not deflated:
        assert dataset_bytes(stored) == _encoded(ds, syntax)
        assert stored[row.pixel_offset : row.pixel_offset + row.pixel_length] == ds.PixelData
    [text] = archive.metadata(
        result.study_instance_uid, result.series_instance_uid, result.sop_instance_uid
    )
    assert not [key for key in json.loads(text) if key.startswith("0002")]


def test_file_meta_elements_dropped_from_a_data_set_are_a_warning_naming_them(
    archive: Archive,
) -> None:
    """PS3.4 B.2.3: the archive stored the instance but discarded elements it was sent,
    so the store is 0xB006 Elements Discarded, saying which (its Offending Element and
    Error Comment), not a plain success; the stored one is as in the test above."""
    ds = next(study(StudySpec(instances_per_series=1)))
    data = _file_meta_elements() + _encoded(ds, uids.EXPLICIT_VR_LITTLE_ENDIAN)
    result = archive.store(data, transfer_syntax=uids.EXPLICIT_VR_LITTLE_ENDIAN)
    assert (result.outcome, result.warning) == (
        StoreOutcome.STORED,
        StoreWarning.ELEMENTS_DISCARDED,
    )
    assert result.dimse_status == 0xB006
    assert result.discarded == (0x00020000, 0x00020002, 0x00020010)
    assert result.reason and "(0002,0000) (0002,0002) (0002,0010)" in result.reason
    assert archive.contains(ds.SOPInstanceUID)


def test_a_store_that_changes_nothing_has_no_warning(archive: Archive) -> None:
    """Only what the archive really changes is a warning: a data set kept as it was
    sent is plain success (0x0000), and so is a duplicate of a warned store (policy
    "keep": nothing of the new copy is kept, so nothing of it was discarded)."""
    ds = next(study(StudySpec(instances_per_series=1)))
    plain = archive.store(
        _encoded(ds, uids.EXPLICIT_VR_LITTLE_ENDIAN), uids.EXPLICIT_VR_LITTLE_ENDIAN
    )
    assert (plain.outcome, plain.warning, plain.dimse_status) == (StoreOutcome.STORED, None, 0)
    again = archive.store(
        _file_meta_elements() + _encoded(ds, uids.EXPLICIT_VR_LITTLE_ENDIAN),
        transfer_syntax=uids.EXPLICIT_VR_LITTLE_ENDIAN,
    )
    assert (again.outcome, again.warning, again.dimse_status) == (
        StoreOutcome.DUPLICATE,
        None,
        0x0000,
    )


def test_a_staged_store_carries_its_warning_through_the_commit(archive: Archive) -> None:
    """A STOW-RS body's instances are staged, then committed: the warning of what was
    discarded reaches the result the door answers from."""
    ds = next(study(StudySpec(instances_per_series=1)))
    meta = part10.file_meta(ds.SOPClassUID, ds.SOPInstanceUID, uids.EXPLICIT_VR_BIG_ENDIAN, None)
    data = meta + _file_meta_elements(little=False) + _encoded(ds, uids.EXPLICIT_VR_BIG_ENDIAN)
    staged = archive.stage(data)
    assert isinstance(staged, Staged)
    [result] = archive.commit([staged])
    assert (result.outcome, result.warning) == (
        StoreOutcome.STORED,
        StoreWarning.ELEMENTS_DISCARDED,
    )


def test_a_file_meta_element_amid_the_data_set_is_refused(archive: Archive) -> None:
    """After other elements the data set is out of tag order (PS3.5 7.1): not dropped
    from its middle, refused."""
    data = bare(next(study(StudySpec(instances_per_series=1))))
    at = data.index(b"\x08\x00\x18\x00UI")  # SOP Instance UID (0008,0018)
    moved = data[:at] + _file_meta_elements()[12:] + data[at:]  # no group length
    result = archive.store(moved, transfer_syntax="1.2.840.10008.1.2.1")
    assert (result.status, result.failure) == ("failed", "invalid")
    assert result.reason and "File Meta Information" in result.reason
    assert archive.counts()["image"] == 0 and blob_count(archive) == 0


def _encapsulated_pixels(implicit: bool = False) -> bytes:
    ds = next(study(StudySpec(instances_per_series=1)))
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return bare(ds, implicit)


def _in_part10(data: bytes, syntax: str) -> bytes:
    """A Part 10 file whose meta names `syntax` for the dataset `data` (as STOW-RS gets)."""
    ds = dcmread(BytesIO(data), force=True)
    return part10.file_meta(str(ds.SOPClassUID), str(ds.SOPInstanceUID), syntax) + data


@pytest.mark.parametrize(
    "data, syntax",
    [
        (_encapsulated_pixels(), "1.2.840.10008.1.2.1"),
        (_encapsulated_pixels(implicit=True), "1.2.840.10008.1.2"),
        (bare(next(study(StudySpec(instances_per_series=1)))), "1.2.840.10008.1.2.4.50"),
        (bare(next(study(StudySpec(instances_per_series=1)))), "1.2.840.10008.1.2.5"),
        (_in_part10(_encapsulated_pixels(), "1.2.840.10008.1.2.1"), None),
    ],
    ids=[
        "encapsulated-in-explicit-le",
        "encapsulated-in-implicit-le",
        "native-in-jpeg",
        "native-in-rle",
        "part10-encapsulated-in-explicit-le",
    ],
)
def test_pixel_data_contradicting_the_transfer_syntax_is_refused_and_stores_nothing(
    archive: Archive, data: bytes, syntax: str | None
) -> None:
    """PS3.5 A.4, 8.2: encapsulated Pixel Data in exactly the encapsulated syntaxes; an
    instance against it can be neither decoded nor transcoded (cannot understand)."""
    result = archive.store(data, transfer_syntax=syntax)
    assert (result.status, result.failure) == ("failed", "invalid")
    assert result.outcome.dimse_status == 0xC000 and result.sop_instance_uid
    assert result.reason and len(result.reason) <= 64 and "Pixel Data" in result.reason
    assert archive.counts()["image"] == 0 and blob_count(archive) == 0


# -------------------------------------------------------------------- duplicates
def _instance_and_changed_copy(tmp_path: Path, **changes: str) -> tuple[bytes, bytes]:
    path = write_study(StudySpec(instances_per_series=1), tmp_path / "in")[0]
    original = path.read_bytes()
    ds = dcmread(path)
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return original, buf.getvalue()


def test_duplicate_keep_policy_keeps_the_first_copy(archive: Archive, tmp_path: Path) -> None:
    original, changed = _instance_and_changed_copy(tmp_path, StudyDescription="CHANGED")
    assert archive.store(original).status == "stored"
    assert archive.store(changed).status == "duplicate"
    [row] = archive.instances()
    assert archive.read_instance(row) == archive.read_instance(row)
    assert dataset_bytes(archive.read_instance(row)) == dataset_bytes(original)
    assert archive.counts()["image"] == 1 and blob_count(archive) == 1
    match = archive.find(query_from_keywords("STUDY", {"StudyDescription": ""})).matches[0]
    assert match["00081030"]["Value"] == ["CT CHEST"]


def test_staged_instances_are_invisible_until_committed(archive: Archive, tmp_path: Path) -> None:
    paths = write_study(StudySpec(instances_per_series=3), tmp_path / "in")
    staged = [archive.stage(p.read_bytes()) for p in paths]
    assert all(isinstance(s, Staged) for s in staged)
    assert archive.counts()["image"] == 0 and blob_count(archive) == 3
    assert archive.check(repair=False)["orphans"] == 3  # what a crash here would leave
    results = archive.commit(staged)  # type: ignore[arg-type]
    assert [r.status for r in results] == ["stored"] * 3
    assert archive.counts()["image"] == 3 and archive.check(repair=False)["orphans"] == 0


def test_abandoned_instances_leave_nothing(archive: Archive, tmp_path: Path) -> None:
    paths = write_study(StudySpec(instances_per_series=2), tmp_path / "in")
    staged = [archive.stage(p.read_bytes()) for p in paths]
    archive.abandon(staged)  # type: ignore[arg-type]
    assert archive.counts()["image"] == 0 and blob_count(archive) == 0


def test_a_staged_copy_of_a_stored_instance_commits_as_a_duplicate(
    archive: Archive, tmp_path: Path
) -> None:
    original, changed = _instance_and_changed_copy(tmp_path, StudyDescription="CHANGED")
    assert archive.store(original).status == "stored"
    staged = archive.stage(changed)
    assert isinstance(staged, Staged)
    [result] = archive.commit([staged])
    assert result.status == "duplicate" and blob_count(archive) == 1


def test_staging_refuses_what_store_refuses(archive: Archive) -> None:
    refused = archive.stage(b"not dicom at all" * 20)
    assert not isinstance(refused, Staged) and refused.outcome is StoreOutcome.INVALID
    assert blob_count(archive) == 0


def _overwriting(index_url: str, tmp_path: Path) -> Archive:
    return Archive(index_url, f"file://{tmp_path / 'blobs'}", duplicates="overwrite")


def test_duplicate_overwrite_policy_replaces_the_stored_copy(
    index_url: str, tmp_path: Path
) -> None:
    archive = _overwriting(index_url, tmp_path)
    try:
        original, changed = _instance_and_changed_copy(tmp_path, InstitutionName="CORRECTED")
        assert archive.store(original).status == "stored"
        assert archive.store(changed).status == "stored"
        [row] = archive.instances()
        assert dataset_bytes(archive.read_instance(row)) == dataset_bytes(changed)
        assert archive.counts()["image"] == 1 and blob_count(archive) == 1
        [meta] = [json.loads(t) for t in archive.metadata(row.study_instance_uid)]
        assert meta["00080080"]["Value"] == ["CORRECTED"]
    finally:
        archive.close()


def test_duplicate_overwrite_updates_indexed_attributes(index_url: str, tmp_path: Path) -> None:
    archive = _overwriting(index_url, tmp_path)
    try:
        original, changed = _instance_and_changed_copy(
            tmp_path, StudyDescription="CORRECTED", SeriesDescription="CORRECTED SERIES"
        )
        archive.store(original)
        archive.store(changed)
        study_match = archive.find(query_from_keywords("STUDY", {"StudyDescription": ""}))
        series_match = archive.find(query_from_keywords("SERIES", {"SeriesDescription": ""}))
        assert study_match.matches[0]["00081030"]["Value"] == ["CORRECTED"]
        assert series_match.matches[0]["0008103E"]["Value"] == ["CORRECTED SERIES"]
    finally:
        archive.close()


def test_duplicate_overwrite_into_another_series_leaves_no_empty_series(
    index_url: str, tmp_path: Path
) -> None:
    archive = _overwriting(index_url, tmp_path)
    try:
        original, moved = _instance_and_changed_copy(tmp_path, SeriesInstanceUID="1.2.3.4.5.6")
        archive.store(original)
        archive.store(moved)
        assert archive.counts() == {"patient": 1, "study": 1, "series": 1, "image": 1}
        [row] = archive.instances()
        assert row.series_instance_uid == "1.2.3.4.5.6"
    finally:
        archive.close()


def test_duplicate_overwrite_with_another_patient_moves_the_study(
    index_url: str, tmp_path: Path
) -> None:
    archive = _overwriting(index_url, tmp_path)
    try:
        original, corrected = _instance_and_changed_copy(
            tmp_path, PatientID="PID-RIGHT", PatientName="RIGHT^PATIENT"
        )
        archive.store(original)
        archive.store(corrected)
        assert archive.counts() == {"patient": 1, "study": 1, "series": 1, "image": 1}
        found = archive.find(query_from_keywords("PATIENT", {"PatientID": "", "PatientName": ""}))
        assert [m["00100020"]["Value"] for m in found.matches] == [["PID-RIGHT"]]
    finally:
        archive.close()


def test_the_same_instance_stored_concurrently_is_kept_once(
    archive: Archive, tmp_path: Path
) -> None:
    data = write_study(StudySpec(instances_per_series=1), tmp_path / "in")[0].read_bytes()
    statuses: list[str] = []
    barrier = threading.Barrier(8, timeout=30)

    def store() -> None:
        barrier.wait()
        statuses.append(archive.store(data).status)

    threads = [threading.Thread(target=store) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(statuses) == ["duplicate"] * 7 + ["stored"]
    assert archive.counts()["image"] == 1 and blob_count(archive) == 1


# ------------------------------------------------------------------------ delete
@pytest.fixture
def two_studies(archive: Archive, tmp_path: Path) -> Archive:
    """Patient PID1 with study S1 (2 series x 2 instances) and S2 (1 x 1)."""
    for uid, series, per in (("1.2.3.1", 2, 2), ("1.2.3.2", 1, 1)):
        spec = StudySpec(
            patient_id="PID1",
            study_uid=uid,
            series_count=series,
            instances_per_series=per,
            rows=8,
            columns=8,
        )
        for path in write_study(spec, tmp_path / uid):
            assert archive.store(path.read_bytes()).status == "stored"
    return archive


def _study_rows(archive: Archive, uid: str) -> list:
    return archive.instances(study_uid=uid)


def test_delete_instance_removes_its_row_and_blob(two_studies: Archive) -> None:
    row = _study_rows(two_studies, "1.2.3.1")[0]
    assert (
        two_studies.delete(row.study_instance_uid, row.series_instance_uid, row.sop_instance_uid)
        == 1
    )
    assert row.blob_key not in set(two_studies.blobs.keys())
    assert two_studies.counts() == {"patient": 1, "study": 2, "series": 3, "image": 4}
    assert blob_count(two_studies) == 4


def test_delete_series_removes_the_series_and_its_blobs(two_studies: Archive) -> None:
    row = _study_rows(two_studies, "1.2.3.1")[0]
    assert two_studies.delete("1.2.3.1", row.series_instance_uid) == 2
    assert two_studies.counts() == {"patient": 1, "study": 2, "series": 2, "image": 3}
    assert not two_studies.instances(series_uid=row.series_instance_uid)
    assert blob_count(two_studies) == 3


def test_delete_last_instance_removes_empty_parents(two_studies: Archive) -> None:
    row = _study_rows(two_studies, "1.2.3.2")[0]
    assert two_studies.delete("1.2.3.2", row.series_instance_uid, row.sop_instance_uid) == 1
    assert two_studies.counts() == {"patient": 1, "study": 1, "series": 2, "image": 4}


def test_delete_every_study_of_a_patient_removes_the_patient(two_studies: Archive) -> None:
    assert two_studies.delete("1.2.3.1") == 4
    assert two_studies.delete("1.2.3.2") == 1
    assert two_studies.counts() == {"patient": 0, "study": 0, "series": 0, "image": 0}
    assert blob_count(two_studies) == 0


def test_delete_of_unknown_uids_deletes_nothing(two_studies: Archive) -> None:
    assert two_studies.delete("9.9.9") == 0
    assert two_studies.delete("1.2.3.1", "9.9.9") == 0
    assert two_studies.counts()["image"] == 5


# ------------------------------------------------------------------------- check
def test_check_repairs_orphan_blobs_missing_blobs_and_partial_writes(two_studies: Archive) -> None:
    gone = _study_rows(two_studies, "1.2.3.2")[0]
    two_studies.blobs.delete(gone.blob_key)  # row without its blob
    two_studies.blobs.put("ab/cd/orphan.dcm", [b"no row points here"])  # blob without a row
    # An interrupted write: a partial file in the file store; S3 never shows one.
    partial = isinstance(two_studies.blobs, FileBlobStore)
    root = Path(two_studies.blobs.local_path("ab/cd/orphan.dcm")).parent if partial else Path()
    if partial:
        (root / "x.dcm.123.abc.partial").write_bytes(b"half a file")

    report = two_studies.check(repair=False)
    assert (report["partial"], report["orphans"], report["missing"]) == (0, 1, 1)
    assert two_studies.counts()["image"] == 5  # nothing changed yet

    report = two_studies.check(repair=True)
    assert (report["partial"], report["orphans"], report["missing"]) == (int(partial), 1, 1)
    assert report["instances"] == 4
    assert two_studies.counts() == {"patient": 1, "study": 1, "series": 2, "image": 4}
    assert not list(root.glob("*.partial"))
    again = two_studies.check()
    assert (again["partial"], again["orphans"], again["missing"]) == (0, 0, 0)


def test_check_on_a_consistent_archive_finds_nothing(two_studies: Archive) -> None:
    assert two_studies.check() == {"partial": 0, "orphans": 0, "missing": 0, "instances": 5}


# ------------------------------------------------------------ reading, metadata
def test_instances_are_listed_in_series_and_instance_order(two_studies: Archive) -> None:
    rows = _study_rows(two_studies, "1.2.3.1")
    numbers = [
        (
            dcmread(BytesIO(two_studies.read_instance(r))).SeriesNumber,
            dcmread(BytesIO(two_studies.read_instance(r))).InstanceNumber,
        )
        for r in rows
    ]
    assert numbers == [(1, 1), (1, 2), (2, 1), (2, 2)]
    picked = two_studies.instances(sop_uid=[rows[0].sop_instance_uid, rows[3].sop_instance_uid])
    assert [r.sop_instance_uid for r in picked] == [
        rows[0].sop_instance_uid,
        rows[3].sop_instance_uid,
    ]


def test_metadata_is_precomputed_and_needs_no_file(two_studies: Archive) -> None:
    rows = _study_rows(two_studies, "1.2.3.1")
    for row in rows:
        two_studies.blobs.delete(row.blob_key)
    documents = [json.loads(text) for text in two_studies.metadata("1.2.3.1")]
    assert [d["00080018"]["Value"][0] for d in documents] == [r.sop_instance_uid for r in rows]
    first = documents[0]
    assert first["00100020"]["Value"] == ["PID1"]
    assert first["7FE00010"]["BulkDataURI"].endswith(
        f"/studies/1.2.3.1/series/{rows[0].series_instance_uid}/instances/"
        f"{rows[0].sop_instance_uid}/bulkdata/7FE00010"
    )
    assert len(list(two_studies.metadata("1.2.3.1", rows[0].series_instance_uid))) == 2


def test_read_instance_gives_a_readable_part10_file(archive: Archive) -> None:
    ds = ct_instance(StudySpec(rows=8, columns=8), "1.2.3", "1.2.3.1", 1, 1)
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    archive.store(buf.getvalue())
    [row] = archive.instances()
    back = dcmread(BytesIO(archive.read_instance(row)))
    assert back.PixelData == ds.PixelData and back.SOPInstanceUID == ds.SOPInstanceUID


def test_reopening_an_archive_keeps_everything(index_url: str, tmp_path: Path) -> None:
    paths = write_study(StudySpec(instances_per_series=3, rows=8, columns=8), tmp_path / "in")
    first = Archive(index_url, f"file://{tmp_path / 'blobs'}")
    for path in paths:
        first.store(path.read_bytes())
    first.close()
    second = Archive(index_url, f"file://{tmp_path / 'blobs'}")
    try:
        assert second.counts()["image"] == 3
        assert second.store(paths[0].read_bytes()).status == "duplicate"
        assert second.check()["instances"] == 3
    finally:
        second.close()


def test_values_are_indexed_in_their_character_set_and_sequences_returned(archive: Archive) -> None:
    ds = ct_instance(
        StudySpec(rows=8, columns=8, charset="ISO_IR 100", patient_name="Müller^Hans"),
        "1.2.3.9",
        "1.2.3.9.1",
        1,
        1,
    )
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "CTHEAD", "L", "CT Kopf"
    ds.ProcedureCodeSequence = [code]
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    assert archive.store(buf.getvalue()).status == "stored"
    query = query_from_keywords("STUDY", {"PatientName": "müller*", "ProcedureCodeSequence": ""})
    [match] = archive.find(query).matches
    assert match["00100010"]["Value"] == [{"Alphabetic": "Müller^Hans"}]
    [item] = match["00081032"]["Value"]
    assert item["00080100"]["Value"] == ["CTHEAD"]
