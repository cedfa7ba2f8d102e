"""Issue 15, HTTP side: what hostile or broken clients found, each kept as a regression.

No input may break the door: every answer is a 2xx, or a 4xx with a JSON message.
"""

from __future__ import annotations

import httpx
import pytest
from dicomweb_client import DICOMwebClient
from tests.web.conftest import make_study, root_of

from isthmus.server import Node


@pytest.fixture(scope="module")
def stored(dicomweb: DICOMwebClient) -> dict[str, str]:
    """Study A: a CT series and a PT series; study B: one MR series."""
    a = make_study(patient_id="A", series_count=2, instances_per_series=2, modality="CT")
    second = a[0].SeriesInstanceUID
    pt_series = next(ds.SeriesInstanceUID for ds in a if ds.SeriesInstanceUID != second)
    for ds in a:
        if ds.SeriesInstanceUID == pt_series:
            ds.Modality = "PT"
    b = make_study(patient_id="B", instances_per_series=3, modality="MR")
    dicomweb.store_instances(a + b)
    return {"A": a[0].StudyInstanceUID, "B": b[0].StudyInstanceUID}


def _json_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["status"] == status and body["message"]
    return body


# ---------------------------------------------------- a study attribute below study level
def test_modalities_in_study_in_a_series_search(http, stored):
    """PS3.18 10.6.1.2: a study attribute may key a series search (was a 500)."""
    response = http.get("/series", params={"ModalitiesInStudy": "PT"})
    assert response.status_code == 200, response.text
    found = response.json()
    # both series of study A (its CT series too: the key is the study's), none of B's
    assert {r["0020000D"]["Value"][0] for r in found} == {stored["A"]}
    assert {r["00080060"]["Value"][0] for r in found} == {"CT", "PT"}
    # returned as the study's modalities, not the series' own modality
    assert all(r["00080061"]["Value"] == ["CT", "PT"] for r in found)


def test_modalities_in_study_in_an_instance_search(http, stored):
    response = http.get("/instances", params={"ModalitiesInStudy": "MR"})
    assert response.status_code == 200, response.text
    found = response.json()
    assert len(found) == 3
    assert {r["0020000D"]["Value"][0] for r in found} == {stored["B"]}
    response = http.get(f"/studies/{stored['A']}/instances", params={"ModalitiesInStudy": "CT"})
    assert response.status_code == 200 and len(response.json()) == 4


def test_sop_classes_in_study_in_lower_level_searches(http, stored):
    ct_image = "1.2.840.10008.5.1.4.1.1.2"
    for path in ("/series", "/instances"):
        response = http.get(path, params={"SOPClassesInStudy": ct_image})
        assert response.status_code == 200, (path, response.text)
    assert http.get("/series", params={"SOPClassesInStudy": "1.2.3"}).status_code == 204


def test_study_counts_in_a_series_search_are_the_studys(http, stored):
    response = http.get(
        "/series", params={"PatientID": "A", "includefield": "NumberOfStudyRelatedInstances"}
    )
    assert [r["00201208"]["Value"] for r in response.json()] == [[4], [4]]


def test_study_attributes_in_lower_level_searches_on_an_empty_archive(fresh_node: Node):
    with httpx.Client(base_url=root_of(fresh_node), timeout=30, trust_env=False) as client:
        for path in ("/series", "/instances"):
            for key in ("ModalitiesInStudy", "SOPClassesInStudy"):
                value = "CT" if key == "ModalitiesInStudy" else "1.2.3"
                assert client.get(path, params={key: value}).status_code == 204


# ------------------------------------------------------------------------ invalid UIDs
@pytest.mark.parametrize("key", ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"])
@pytest.mark.parametrize("value", ["A" * 100, "AAAA", "1.2.x", "1.2,abc", "1." + "2" * 80])
def test_an_invalid_uid_key_is_a_400_with_a_message(http, stored, key, value):
    for path in ("/studies", "/series", "/instances"):
        _json_error(http.get(path, params={key: value}), 400)
