"""`isthmus worklist add FILE` / `isthmus worklist list`, run as users run them."""

from __future__ import annotations

import json
from pathlib import Path

from tests.test_cli import isthmus
from tests.web.conftest import node_settings, root_of

from isthmus.archive import Archive
from isthmus.server import Node

CSV = """patient_id,patient_name,accession,modality,station_aet,start,label
P100,Doe^Jane,A100,CT,CT01,2026-01-02T09:30,CT head
P101,Roe^John,A101,MR,MR01,2026-01-03T10:00,MR knee
"""


def search(index_url: str, data: Path, **params: str) -> list[dict]:
    archive = Archive(index_url, f"file://{data / 'blobs'}")
    try:
        return archive.workitems.search(params)
    finally:
        archive.close()


def test_add_a_csv_file_then_list_by_date_and_modality(index_url: str, tmp_path: Path):
    data = tmp_path / "data"
    (tmp_path / "w.csv").write_text(CSV)
    common = ("--data", str(data), "--index-url", index_url)
    done = isthmus("worklist", "add", str(tmp_path / "w.csv"), *common)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.split()) == 2
    found = search(index_url, data, **{"ReferencedRequestSequence.AccessionNumber": "A101"})
    assert found[0]["00404025"]["Value"][0]["00080100"]["Value"] == ["MR01"]
    assert found[0]["00741000"]["Value"] == ["SCHEDULED"]
    listed = isthmus("worklist", "list", "--date", "20260102", *common)
    assert listed.returncode == 0, listed.stderr
    rows = listed.stdout.strip().splitlines()
    assert rows[0].startswith("start\tmodality") and len(rows) == 2 and "CT01" in rows[1]
    listed = isthmus("worklist", "list", "--modality", "mr", "--json", *common)
    assert [d["00100020"]["Value"] for d in json.loads(listed.stdout)] == [["P101"]]


def test_adding_to_the_archive_files_writes_a_procedure_record_each(tmp_path: Path):
    """PS3.15 A.5.3.15: each work item created by `worklist add` on the archive's own
    files is audited as over UPS-RS (110111, action C), the operator its user."""
    data = tmp_path / "data"
    (tmp_path / "w.csv").write_text(CSV)
    common = ("--data", str(data), "--index-url", f"sqlite:///{tmp_path / 'i.sqlite'}")
    assert isthmus("worklist", "add", str(tmp_path / "w.csv"), *common).returncode == 0
    found = isthmus("audit", "--event", "procedure-record", "--json", "--data", str(data))
    assert found.returncode == 0, found.stderr
    records = [json.loads(line) for line in found.stdout.splitlines()]
    assert sorted(r["patients"][0]["id"] for r in records) == ["P100", "P101"]
    assert {(r["action"], r["outcome"]) for r in records} == {("C", 0)}
    assert all(r["user"] and "SCHEDULED" in r["xml"] for r in records)


def test_a_file_with_a_bad_entry_creates_nothing(tmp_path: Path):
    data = tmp_path / "data"
    index_url = f"sqlite:///{tmp_path / 'i.sqlite'}"
    entries = {
        "entries": [{"start": "202601020930", "label": "ok"}, {"start": "soon", "label": "x"}]
    }
    (tmp_path / "w.json").write_text(json.dumps(entries))
    done = isthmus(
        "worklist", "add", str(tmp_path / "w.json"), "--data", str(data), "--index-url", index_url
    )
    assert done.returncode == 1
    assert "entry 2: start" in done.stderr and "Traceback" not in done.stderr
    assert search(index_url, data) == []


def test_add_a_toml_file_to_a_running_node_over_ups_rs(tmp_path: Path):
    (tmp_path / "w.toml").write_text(
        '[[entry]]\npatient_id = "T1"\nmodality = "US"\nstart = "202601051200"\nlabel = "US abdomen"\n'
    )
    with Node(node_settings(tmp_path)) as node:
        done = isthmus("worklist", "add", str(tmp_path / "w.toml"), "--url", root_of(node))
        assert done.returncode == 0, done.stderr
        (uid,) = done.stdout.split()
        assert node.archive.workitems.get(uid)["00100020"]["Value"] == ["T1"]


def test_the_example_worklist_file_is_valid():
    from isthmus.worklist import datasets

    example = Path(__file__).resolve().parents[1] / "examples" / "worklist.csv"
    assert len(datasets(example)) == 2
