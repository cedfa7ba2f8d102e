"""QIDO-RS through dicomweb-client and plain HTTP: every resource, every matching kind."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import httpx
import pytest
from dicomweb_client import DICOMwebClient
from requests import HTTPError
from tests.web.conftest import parse_multipart

from isthmus.testing.generate import patients, study

NAMES = {
    "SMITH^JOHN",
    "Smith^Anna",
    "DOE^JANE",
    "MÜLLER^HANS",
    "O'BRIEN^PAT",
    "NGUYEN^VAN",
    "GARCIA^MARIA",
    "SMYTHE^JOHN",
}


@pytest.fixture(scope="module")
def stored(dicomweb: DICOMwebClient) -> list:
    """Eight patients, one study each, one series of two instances."""
    datasets = [ds for spec in patients(8, instances_per_series=2) for ds in study(spec)]
    dicomweb.store_instances(datasets)
    return datasets


def names(results: list[dict]) -> set[str]:
    return {r["00100010"]["Value"][0]["Alphabetic"] for r in results}


def test_all_studies_are_found(dicomweb, stored):
    assert names(dicomweb.search_for_studies()) == NAMES


def test_single_value_matching(dicomweb, stored):
    found = dicomweb.search_for_studies(search_filters={"PatientID": "PID0002"})
    assert names(found) == {"DOE^JANE"}


def test_wildcard_matching_ignores_case_of_person_names(dicomweb, stored):
    found = dicomweb.search_for_studies(search_filters={"PatientName": "smi*"})
    assert names(found) == {"SMITH^JOHN", "Smith^Anna"}


def test_question_mark_wildcard(dicomweb, stored):
    found = dicomweb.search_for_studies(search_filters={"PatientName": "DOE^JAN?"})
    assert names(found) == {"DOE^JANE"}


def test_date_range_matching(dicomweb, stored):
    # patients() spaces study dates 37 days apart from 2020-01-01
    found = dicomweb.search_for_studies(search_filters={"StudyDate": "20200101-20200310"})
    assert names(found) == {"SMITH^JOHN", "Smith^Anna"}
    open_ended = dicomweb.search_for_studies(search_filters={"StudyDate": "20200701-"})
    assert len(open_ended) == 3


def test_uid_list_matching(dicomweb, stored):
    uids = sorted({ds.StudyInstanceUID for ds in stored})[:3]
    found = dicomweb.search_for_studies(search_filters={"StudyInstanceUID": ",".join(uids)})
    assert {r["0020000D"]["Value"][0] for r in found} == set(uids)


def test_fuzzy_matching_matches_any_name_component(dicomweb, stored):
    found = dicomweb.search_for_studies(fuzzymatching=True, search_filters={"PatientName": "john"})
    assert names(found) == {"SMITH^JOHN", "SMYTHE^JOHN"}
    strict = dicomweb.search_for_studies(search_filters={"PatientName": "john"})
    assert strict == []


def test_keys_by_tag_match_like_keywords(http, stored):
    response = http.get("/studies", params={"00100020": "PID0003"})
    assert response.status_code == 200
    assert names(response.json()) == {"MÜLLER^HANS"}


def test_includefield_returns_attributes_not_indexed(dicomweb, stored):
    found = dicomweb.search_for_series(
        fields=["InstitutionName"], search_filters={"PatientID": "PID0000"}
    )
    assert found[0]["00080080"]["Value"] == ["ISTHMUS GENERAL"]


def test_includefield_all(http, stored):
    found = http.get("/series", params={"includefield": "all", "PatientID": "PID0000"}).json()
    assert found[0]["00080080"]["Value"] == ["ISTHMUS GENERAL"]  # from the stored metadata
    assert "7FE00010" not in found[0]


# Instance-level attributes of the generated CT images: Image Plane, VOI LUT, Image Pixel.
INSTANCE_ONLY = ("00200032", "00180050", "00280030", "00281050", "00280100", "00080018")


def test_includefield_all_returns_only_attributes_of_the_level_searched(http, stored):
    """PS3.18 10.6.3.3.1/.2: a study search returns study (and patient) attributes, a
    series search those of the series and its study, never the first instance's."""
    [series] = http.get("/series", params={"includefield": "all", "PatientID": "PID0000"}).json()
    assert not [tag for tag in INSTANCE_ONLY if tag in series]
    assert series["0008103E"]["Value"] and series["00100010"]["Value"]
    [study] = http.get("/studies", params={"includefield": "all", "PatientID": "PID0000"}).json()
    assert not [tag for tag in (*INSTANCE_ONLY, "00080080", "0008103E") if tag in study]
    assert study["00081030"]["Value"] and study["00100010"]["Value"]
    [instance, _] = http.get(
        "/instances", params={"includefield": "all", "PatientID": "PID0000"}
    ).json()
    assert all(tag in instance for tag in INSTANCE_ONLY)


@pytest.mark.parametrize("path", ["/studies", "/series"])
def test_an_instance_attribute_named_in_includefield_is_not_returned_above_its_level(
    http, stored, path
):
    params = {"includefield": "ImagePositionPatient,WindowCenter", "PatientID": "PID0001"}
    [found] = http.get(path, params=params).json()
    assert "00200032" not in found and "00281050" not in found
    [first, _] = http.get("/instances", params=params).json()
    assert "00200032" in first and first["00281050"]["Value"] == [40]


def test_study_results_carry_the_required_attributes(dicomweb, stored):
    result = dicomweb.search_for_studies(search_filters={"PatientID": "PID0001"})[0]
    for tag in (
        "00080020",
        "00080050",
        "00080061",
        "00100010",
        "00100020",
        "0020000D",
        "00201206",
        "00201208",
        "00081190",
    ):
        assert tag in result, tag
    assert result["00201208"]["Value"] == [2]
    assert result["00081190"]["Value"][0].endswith("/studies/" + result["0020000D"]["Value"][0])


def test_all_series_include_study_attributes(dicomweb, stored):
    series = dicomweb.search_for_series(search_filters={"PatientID": "PID0004"})
    assert len(series) == 1
    result = series[0]
    assert result["00100010"]["Value"][0]["Alphabetic"] == "O'BRIEN^PAT"
    assert result["00201206"]["Value"] == [1]  # Number of Study Related Series
    assert result["00080061"]["Value"] == ["CT"]  # Modalities in Study
    assert result["00201209"]["Value"] == [2]  # Number of Series Related Instances


def test_series_of_a_study(dicomweb, stored):
    ds = stored[0]
    series = dicomweb.search_for_series(ds.StudyInstanceUID)
    assert [s["0020000E"]["Value"][0] for s in series] == [ds.SeriesInstanceUID]
    assert dicomweb.search_for_series(ds.StudyInstanceUID, search_filters={"Modality": "MR"}) == []


def test_all_instances_include_study_and_series_attributes(dicomweb, stored):
    found = dicomweb.search_for_instances(
        search_filters={"SOPInstanceUID": stored[3].SOPInstanceUID}
    )
    assert len(found) == 1
    result = found[0]
    assert result["00080016"]["Value"] == [stored[3].SOPClassUID]
    assert result["00200011"]["Value"] == [1]  # Series Number
    assert result["00080020"]["Value"] == [stored[3].StudyDate]
    assert result["00081190"]["Value"][0].endswith("/instances/" + stored[3].SOPInstanceUID)


def test_instances_of_a_study_and_of_a_series(dicomweb, stored):
    ds = stored[4]
    of_study = dicomweb.search_for_instances(ds.StudyInstanceUID)
    of_series = dicomweb.search_for_instances(ds.StudyInstanceUID, ds.SeriesInstanceUID)
    assert len(of_study) == len(of_series) == 2
    assert "0008103E" in of_study[0]  # series attributes merged in
    by_number = dicomweb.search_for_instances(
        ds.StudyInstanceUID, ds.SeriesInstanceUID, search_filters={"InstanceNumber": "2"}
    )
    assert [r["00200013"]["Value"] for r in by_number] == [[2]]


def test_limit_and_offset_page_through_results_with_a_warning(http, stored):
    first = http.get("/studies", params={"limit": 3})
    assert first.status_code == 200 and len(first.json()) == 3
    assert first.headers["warning"].startswith("299")
    rest = http.get("/studies", params={"limit": 10, "offset": 3})
    assert len(rest.json()) == 5 and "warning" not in rest.headers
    seen = [r["0020000D"]["Value"][0] for r in first.json() + rest.json()]
    assert len(set(seen)) == 8


def test_no_match_is_204(http, stored):
    response = http.get("/studies", params={"PatientID": "NOBODY"})
    assert response.status_code == 204 and response.content == b""


def test_xml_results_are_multipart_native_dicom_model(http, stored):
    response = http.get(
        "/studies",
        params={"PatientID": "PID0001"},
        headers={"Accept": 'multipart/related; type="application/dicom+xml"'},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("multipart/related")
    parts = parse_multipart(response)
    assert len(parts) == 1
    root = ET.fromstring(parts[0][1])
    assert root.tag.endswith("NativeDicomModel")
    attrs = {a.get("keyword"): a for a in root}
    assert attrs["PatientName"].find("{*}PersonName/{*}Alphabetic/{*}GivenName").text == "Anna"


@pytest.mark.parametrize(
    "params, words",
    [
        ({"StudyDate": "20200301-20200101"}, "ends before it starts"),
        ({"StudyDate": "2020-01-01"}, "StudyDate"),
        ({"NoSuchAttribute": "x"}, "NoSuchAttribute"),
        ({"limit": "-1"}, "limit"),
        ({"fuzzymatching": "maybe"}, "fuzzymatching"),
        ({"00081111.00081150": "1.2"}, "sequence"),
        ({"includefield": "PatientName.PatientID"}, "includefield"),
        ({"includefield": "ReferencedStudySequence.NoSuchAttribute"}, "includefield"),
    ],
)
def test_bad_queries_are_400_with_a_readable_message(http, stored, params, words):
    response = http.get("/studies", params=params)
    assert response.status_code == 400
    assert words in response.json()["message"]


@pytest.mark.parametrize(
    "name, matching", [("emptyvaluematching", "Empty"), ("multiplevaluematching", "Multiple")]
)
def test_matching_asked_for_and_not_supported_is_left_out_with_a_warning(
    http, stored, name, matching
):
    """PS3.18 Table 8.3.4-1: every origin server takes emptyvaluematching and
    multiplevaluematching; one without that matching searches without it and says so
    (8.3.4.5, 8.3.4.6).  Both were refused as unknown attributes (400)."""
    asked = http.get("/studies", params={"PatientID": "PID0001", name: "true"})
    assert asked.status_code == 200 and len(asked.json()) == 1
    assert f"{matching} Value Matching has not been performed" in asked.headers["warning"]
    none = http.get("/studies", params={"PatientID": "NOBODY", name: "TRUE"})
    assert none.status_code == 204 and "not been performed" in none.headers["warning"]
    plain = http.get("/series", params={"PatientID": "PID0001", name: "false"})
    assert plain.status_code == 200 and "warning" not in plain.headers
    assert http.get("/instances", params={name: "yes"}).status_code == 400


@pytest.mark.parametrize("field", ["300C0002.00081155", "ReferencedRTPlanSequence.00081155"])
def test_includefield_of_a_sequence_path_returns_the_sequence(http, stored, field):
    """PS3.18 8.3.4.3: includefield names attributes to return, a sequence among them;
    a path into one is an include, not a match: its top-level sequence is returned."""
    response = http.get("/instances", params={"includefield": field, "PatientID": "PID0001"})
    assert response.status_code == 200, response.text
    assert all(found["300C0002"] == {"vr": "SQ"} for found in response.json())


def test_invalid_date_range_through_dicomweb_client(dicomweb, stored):
    with pytest.raises(HTTPError) as caught:
        dicomweb.search_for_studies(search_filters={"StudyDate": "20201301-20201401"})
    assert caught.value.response.status_code == 400


def test_unacceptable_media_type_is_406(http, stored):
    response = http.get("/studies", headers={"Accept": "image/png"})
    assert response.status_code == 406
    assert "application/dicom+json" in response.json()["message"]


def test_invalid_uid_in_path_is_400(http, stored):
    assert http.get("/studies/1.2.abc/series").status_code == 400
    assert http.get("/studies/..%2F..%2Fetc/series").status_code in (400, 404)


def test_dimse_and_web_see_the_same_studies(web_node, stored):
    from isthmus.archive import query_from_keywords

    via_archive = web_node.archive.find(
        query_from_keywords("STUDY", {"PatientName": "SM*"}, include_defaults=True)
    )
    via_web = httpx.get(
        f"http://127.0.0.1:{web_node.http_port}/dicom-web/studies", params={"PatientName": "SM*"}
    ).json()
    assert names(via_archive.matches) == names(via_web)


@pytest.mark.postgres
def test_the_same_searches_on_a_postgresql_index(postgres, tmp_path):
    import uuid

    from tests.web.conftest import node_settings, root_of

    from isthmus.server import Node

    index_url = postgres.create_database("t_" + uuid.uuid4().hex[:12])
    with Node(node_settings(tmp_path, index_url=index_url)) as node:
        client = DICOMwebClient(root_of(node))
        client.store_instances([ds for spec in patients(8) for ds in study(spec)][::5])
        assert names(client.search_for_studies(search_filters={"PatientName": "smi*"})) == {
            "SMITH^JOHN",
            "Smith^Anna",
        }
        assert len(client.search_for_series(search_filters={"StudyDate": "20200101-20200310"})) == 2
        assert names(
            client.search_for_studies(fuzzymatching=True, search_filters={"PatientName": "john"})
        ) == {"SMITH^JOHN", "SMYTHE^JOHN"}


def test_names_differing_in_trailing_delimiters_are_one_name(index_url, tmp_path):
    """PS3.5 6.2.1.1: ``JONES^MARY^^^`` is ``JONES^MARY`` whichever side has the
    delimiters; wildcards match as before, and a result carries the name as stored."""
    from tests.web.conftest import make_study, node_settings, root_of

    from isthmus.server import Node

    with Node(node_settings(tmp_path, index_url=index_url)) as node:
        client = DICOMwebClient(root_of(node))
        client.store_instances(
            make_study(patient_name="JONES^MARY^^^", patient_id="PNT1", instances_per_series=1)
            + make_study(patient_name="BROWN^BOB", patient_id="PNT2", instances_per_series=1)
        )

        def found(name: str) -> set[str]:
            return names(client.search_for_studies(search_filters={"PatientName": name}))

        assert found("JONES^MARY") == {"JONES^MARY^^^"}
        assert found("brown^bob^^^") == {"BROWN^BOB"}
        assert found("BROWN^BOB^^^==") == {"BROWN^BOB"}
        assert found("BROWN^") == set()
        assert found("JONES^M*") == {"JONES^MARY^^^"}
        assert found("*^*") == {"JONES^MARY^^^", "BROWN^BOB"}
        assert found("BROWN^BOB^*") == {"BROWN^BOB"}
