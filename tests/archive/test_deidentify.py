"""De-identification inside the archive: project keys in the index, stored studies
de-identified into new studies (originals untouched), on SQLite and PostgreSQL."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest
import sqlalchemy as sa

from isthmus.archive import (
    Archive,
    DeidentificationOptions,
    DeidentificationOptionsError,
    Event,
    StoreOutcome,
)
from isthmus.archive import index as idx
from isthmus.testing.generate import StudySpec, study

BUNDLED = Path(pydicom.__file__).parent / "data" / "test_files"


def store_study(archive: Archive, **spec: object) -> list[pydicom.Dataset]:
    datasets = list(study(StudySpec(series_count=2, instances_per_series=2, **spec)))  # type: ignore[arg-type]
    for ds in datasets:
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        assert archive.store(out.getvalue()).outcome is StoreOutcome.STORED
    return datasets


def test_a_project_key_is_made_once_kept_in_the_index_and_differs_per_project(
    archive: Archive, index_url: str, tmp_path: object
) -> None:
    first = archive.deidentifier("trial-1").pseudonyms.uid("1.2.3")
    assert archive.deidentifier("trial-1").pseudonyms.uid("1.2.3") == first
    assert archive.deidentifier("trial-2").pseudonyms.uid("1.2.3") != first
    with archive.engine.connect() as conn:
        names = set(conn.execute(sa.select(idx.deid_project.c.name)).scalars())
    assert names == {"trial-1", "trial-2"}
    again = Archive(index_url, f"file://{tmp_path}/other-blobs")
    try:
        assert again.deidentifier("trial-1").pseudonyms.uid("1.2.3") == first
    finally:
        again.close()


def test_a_project_name_must_be_a_plain_word(archive: Archive) -> None:
    for bad in ("", "a b", "../x", "x" * 65):
        with pytest.raises(DeidentificationOptionsError, match="project name"):
            archive.deidentifier(bad)


def test_a_stored_study_becomes_a_new_study_and_the_original_stays(archive: Archive) -> None:
    originals = store_study(archive, patient_name="SMITH^ALICE", patient_id="MRN-77")
    source = originals[0].StudyInstanceUID
    before = [archive.read_instance(r) for r in archive.instances(source)]
    events: list[Event] = []
    archive.events.subscribe("deid.", events.append)

    result = archive.deidentify_studies([source], "trial")

    new = result.studies[source]
    assert new != source and new.startswith("2.25.") and result.stored == 4
    assert [archive.read_instance(r) for r in archive.instances(source)] == before
    rows = archive.instances(new)
    assert len(rows) == 4 and {r.sop_instance_uid for r in rows}.isdisjoint(
        ds.SOPInstanceUID for ds in originals
    )
    for row in rows:
        data = archive.read_instance(row)
        assert b"SMITH" not in data and b"MRN-77" not in data and source.encode() not in data
        assert pydicom.dcmread(io.BytesIO(data)).PatientIdentityRemoved == "YES"
    assert archive.counts()["patient"] == 2 and archive.counts()["study"] == 2
    assert [e.payload for e in events] == [{"project": "trial", "source": source, "study": new}]


def test_running_again_in_a_project_stores_nothing_twice_and_another_project_differs(
    archive: Archive,
) -> None:
    source = store_study(archive)[0].StudyInstanceUID
    first = archive.deidentify_studies([source], "p1").studies[source]
    again = archive.deidentify_studies([source], "p1")
    assert again.studies[source] == first and (again.stored, again.duplicates) == (0, 4)
    assert archive.counts()["image"] == 8
    other = archive.deidentify_studies([source], "p2").studies[source]
    assert other != first and archive.counts()["image"] == 12


def test_what_cannot_be_deidentified_is_reported_not_stored(archive: Archive) -> None:
    source = store_study(archive)[0].StudyInstanceUID
    with pytest.raises(DeidentificationOptionsError, match="retain_uids"):
        archive.deidentify_studies([source], "p", DeidentificationOptions(retain_uids=True))
    result = archive.deidentify_studies(["1.2.3.404", source], "p")
    assert result.missing == ["1.2.3.404"] and result.stored == 4


def test_the_export_hook_deidentifies_a_stream_with_the_project_key(archive: Archive) -> None:
    datasets = list(study(StudySpec(instances_per_series=2)))
    datasets[1].BurnedInAnnotation = "YES"
    excluded: list[str] = []
    out = list(archive.deidentify(datasets, "share", None, lambda ds, e: excluded.append(str(e))))
    assert len(out) == 1 and len(excluded) == 1
    expected = archive.deidentifier("share").pseudonyms.uid(datasets[0].StudyInstanceUID)
    assert out[0].StudyInstanceUID == expected


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_pydicoms_bundled_files_deidentify_into_instances_the_archive_accepts(
    tmp_path: Path,
) -> None:
    archive = Archive(f"sqlite:///{tmp_path / 'i.sqlite'}", f"file://{tmp_path / 'blobs'}")
    try:
        for path in sorted(BUNDLED.rglob("*.dcm")):
            archive.store(path.read_bytes())
        sources = {r.study_instance_uid for r in archive.instances()}
        count = archive.counts()["image"]
        assert count > 30  # bundled files share UIDs: 37 distinct instances in pydicom 3.0
        result = archive.deidentify_studies(sorted(sources), "bundled")
        assert not result.failed and not result.excluded, (result.failed, result.excluded)
        assert result.stored == count and archive.counts()["image"] == 2 * count
        assert set(result.studies) == sources
    finally:
        archive.close()


def test_an_index_made_before_deidentification_gains_the_project_table(index_url: str) -> None:
    engine = idx.create_engine(index_url)
    try:
        with engine.begin() as conn:  # an index at schema version 1, as older releases made
            idx.schema_version.create(conn)
            idx.MIGRATIONS[0](conn)
            conn.execute(idx.schema_version.insert().values(version=1, applied_at=sa.func.now()))
        assert not sa.inspect(engine).has_table("deid_project")
        assert idx.migrate(engine) == len(idx.MIGRATIONS)
        assert sa.inspect(engine).has_table("deid_project")
    finally:
        engine.dispose()
