"""Forwarding rules: parsing with clear errors, matching on calling AE, modality and
attributes, and one job per (rule, study) from the archive's instance.stored events."""

from __future__ import annotations

import time
from io import BytesIO

import pytest

from isthmus.archive import Archive, Forwarding, parse_rules
from isthmus.testing.generate import StudySpec, study


def part10(ds: object) -> bytes:
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)  # type: ignore[attr-defined]
    return buffer.getvalue()


def test_rules_are_parsed_with_their_criteria() -> None:
    (rule,) = parse_rules(
        [
            {
                "name": "mr-chest",
                "from": ["CT01", "CT02"],
                "modality": "MR",
                "match": {"BodyPartExamined": ["CHEST", "THORAX*"]},
                "to": "PACS2",
                "settle": 10,
                "delete_after_days": 90,
            }
        ],
        ["PACS2"],
    )
    assert rule.calling_aets == {"CT01", "CT02"} and rule.modalities == {"MR"}
    assert rule.attributes == (("BodyPartExamined", ("CHEST", "THORAX*")),)
    assert rule.settle == 10 and rule.delete_after_days == 90


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"to": "NOWHERE"}, "not a known peer"),
        ({"to": "PACS2", "match": {"NoSuchKeyword": "x"}}, "no DICOM keyword"),
        ({"to": "PACS2", "form": "CT01"}, "unknown keys"),
        ({"to": "PACS2", "settle": -1}, ">= 0"),
        ({"to": "PACS2", "modality": []}, "modality must be"),
    ],
)
def test_a_bad_rule_is_refused_with_what_is_wrong(table: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_rules([table], ["PACS2"])


def test_rules_match_calling_aet_modality_and_attribute_wildcards() -> None:
    (rule,) = parse_rules(
        [{"from": "CT01", "modality": "CT", "match": {"BodyPartExamined": "CHE*"}, "to": "P"}],
        ["P"],
    )
    chest = {"00180015": {"vr": "CS", "Value": ["CHEST"]}}
    head = {"00180015": {"vr": "CS", "Value": ["HEAD"]}}
    stored = {"source_aet": "CT01", "modality": "CT"}
    assert rule.matches(stored, lambda: chest)
    assert not rule.matches(stored, lambda: head)
    assert not rule.matches({**stored, "source_aet": "CT02"}, lambda: chest)
    assert not rule.matches({**stored, "modality": "MR"}, lambda: chest)


def test_stored_instances_become_one_job_per_rule_and_study(archive: Archive) -> None:
    rules = parse_rules(
        [
            {"name": "all-ct01", "from": "CT01", "to": "P", "settle": 30},
            {"name": "mr", "modality": "MR", "to": "P", "settle": 30},
        ],
        ["P"],
    )
    forwarding = Forwarding(archive, rules).start()
    try:
        ct = list(study(StudySpec(patient_id="F1", instances_per_series=3)))
        mr = list(study(StudySpec(patient_id="F2", instances_per_series=2, modality="MR")))
        for ds in ct:
            assert archive.store(part10(ds), source_aet="CT01").ok
        for ds in mr:
            assert archive.store(part10(ds), source_aet="OTHER").ok
        assert archive.store(part10(ct[0]), source_aet="CT01").status == "duplicate"
        deadline = time.monotonic() + 30
        while sum(j.counts["total"] for j in archive.jobs.search()) < 5:
            assert time.monotonic() < deadline, archive.jobs.search()
            time.sleep(0.05)
    finally:
        forwarding.stop()
    jobs = {(j.label, j.subject): j for j in archive.jobs.search(kind="forward")}
    assert set(jobs) == {
        ("all-ct01", str(ct[0].StudyInstanceUID)),
        ("mr", str(mr[0].StudyInstanceUID)),
    }
    assert jobs["all-ct01", str(ct[0].StudyInstanceUID)].counts["total"] == 3
    assert all(j.status == "queued" and j.params == {"destination": "P"} for j in jobs.values())


def test_each_stored_instance_is_published_once_and_a_dropped_duplicate_not(
    archive: Archive,
) -> None:
    got: list = []
    archive.events.subscribe("instance.stored", got.append)
    (ds,) = study(StudySpec(patient_id="EV1", instances_per_series=1, modality="MR"))
    assert archive.store(part10(ds), source_aet="CT01").ok
    assert archive.store(part10(ds), source_aet="CT01").status == "duplicate"
    assert [e.payload for e in got] == [
        {
            "study": str(ds.StudyInstanceUID),
            "series": str(ds.SeriesInstanceUID),
            "sop_instance": str(ds.SOPInstanceUID),
            "sop_class": str(ds.SOPClassUID),
            "modality": "MR",
            "source_aet": "CT01",
        }
    ]


def test_instances_stored_before_a_crash_without_their_job_get_one_at_start(
    archive: Archive,
) -> None:
    (rule,) = parse_rules([{"name": "r", "from": "CT01", "to": "P", "settle": 0}], ["P"])
    first, second, other = study(StudySpec(patient_id="CU1", instances_per_series=3))
    for ds, aet in ((first, "CT01"), (second, "CT01"), (other, "CT02")):
        assert archive.store(part10(ds), source_aet=aet).ok  # no Forwarding running: "crash"
    covered = archive.jobs.enqueue("forward", [str(first.SOPInstanceUID)], label="r")
    forwarding = Forwarding(archive, [rule]).start()
    try:
        deadline = time.monotonic() + 30
        while len(archive.jobs.search(kind="forward")) < 2:
            assert time.monotonic() < deadline, archive.jobs.search()
            time.sleep(0.05)
    finally:
        forwarding.stop()
    (new,) = [j for j in archive.jobs.search(kind="forward") if j.id != covered]
    assert archive.jobs.items(new.id) == [(str(second.SOPInstanceUID), "pending", None)]
    assert new.subject == str(second.StudyInstanceUID)
    assert Forwarding(archive, [rule]).catch_up() == 0
