"""STOW-RS: both request forms, the PS3.18 response, and every kind of bad input."""

from __future__ import annotations

import base64
import json
import socket
import time
import zlib

import httpx
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from tests.web.conftest import make_study, multipart_body, part10, root_of

from isthmus.dicom import part10 as dicom_part10
from isthmus.dicom.json import dumps

DICOM_MULTIPART = 'multipart/related; type="application/dicom"; boundary=b0undary'


def post(http, body: bytes, content_type: str = DICOM_MULTIPART, path: str = "/studies", **kw):
    return http.post(path, content=body, headers={"Content-Type": content_type, **kw})


def referenced(response) -> list[str]:
    items = response.json().get("00081199", {}).get("Value", [])
    return [item["00081155"]["Value"][0] for item in items]


def failed(response) -> list[dict]:
    return response.json().get("00081198", {}).get("Value", [])


def test_store_with_dicomweb_client_and_find_it_over_dimse_too(web_node, dicomweb):
    datasets = make_study(instances_per_series=3)
    result = dicomweb.store_instances(datasets)
    assert len(result.ReferencedSOPSequence) == 3
    assert "FailedSOPSequence" not in result
    assert result.RetrieveURL.endswith("/studies/" + datasets[0].StudyInstanceUID)
    assert web_node.archive.contains(datasets[2].SOPInstanceUID)


def test_response_references_each_instance_with_its_retrieve_url(http):
    datasets = make_study(instances_per_series=2)
    response = post(http, multipart_body([("application/dicom", part10(d)) for d in datasets]))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/dicom+json"
    assert referenced(response) == [d.SOPInstanceUID for d in datasets]
    item = response.json()["00081199"]["Value"][0]
    assert item["00081150"]["Value"] == [datasets[0].SOPClassUID]
    assert item["00081190"]["Value"][0].endswith("/instances/" + datasets[0].SOPInstanceUID)


def test_a_non_dicom_part_among_good_ones_is_reported_and_the_rest_stored(web_node, http):
    good = make_study(instances_per_series=2)
    body = multipart_body(
        [
            ("application/dicom", part10(good[0])),
            ("application/dicom", b"this is not DICOM at all, just text " * 10),
            ("application/dicom", part10(good[1])),
        ]
    )
    response = post(http, body)
    assert response.status_code == 202
    assert referenced(response) == [d.SOPInstanceUID for d in good]
    [failure] = failed(response)
    assert failure["00081197"]["Value"] == [0xC000]
    assert "part 2" in response.headers["warning"]
    assert all(web_node.archive.contains(d.SOPInstanceUID) for d in good)


def test_a_refused_instance_whose_uids_were_read_is_named_in_the_failed_sop_sequence(http):
    """PS3.18 Annex I: each Failed SOP Sequence item is a SOP Instance Reference Macro
    (PS3.3 Table 10-11, Referenced SOP Class / Instance UID Type 1) with its Failure
    Reason; an instance refused for a bad Study Instance UID still has both."""
    ds = make_study(instances_per_series=1)[0]
    ds.StudyInstanceUID = "1.2.3.abc"
    response = post(http, multipart_body([("application/dicom", part10(ds))]))
    assert response.status_code == 409
    [failure] = failed(response)
    assert failure["00081197"]["Value"] == [0xC000]
    assert failure["00081150"]["Value"] == [ds.SOPClassUID]
    assert failure["00081155"]["Value"] == [ds.SOPInstanceUID]


def test_a_part_of_another_media_type_is_refused(http):
    good = make_study(instances_per_series=1)
    body = multipart_body([("application/dicom", part10(good[0])), ("text/plain", b"hello")])
    response = post(http, body)
    assert response.status_code == 202
    assert "text/plain" in response.headers["warning"]


def test_nothing_stored_is_409(http):
    response = post(http, multipart_body([("application/dicom", b"\x00" * 300)]))
    assert response.status_code == 409
    assert len(failed(response)) == 1


def test_truncated_multipart_is_400_and_stores_nothing(web_node, http):
    datasets = make_study(instances_per_series=2)
    body = multipart_body([("application/dicom", part10(d)) for d in datasets])
    response = post(http, body[: len(body) - 3000])
    assert response.status_code == 400
    assert "truncated" in response.json()["message"]
    assert not any(web_node.archive.contains(d.SOPInstanceUID) for d in datasets)


@pytest.mark.parametrize(
    "content_type, status",
    [
        ("application/json", 415),
        ("text/plain", 415),
        ('multipart/related; type="image/png"; boundary=b0undary', 415),
        ('multipart/related; type="application/dicom"', 400),
    ],
)
def test_wrong_content_type(http, content_type, status):
    body = multipart_body([("application/dicom", part10(make_study(instances_per_series=1)[0]))])
    response = post(http, body, content_type)
    assert response.status_code == status
    assert response.json()["message"]


def test_empty_body_is_400(http):
    assert post(http, b"").status_code == 400


def test_study_scoped_store_refuses_other_studies(web_node, http):
    mine = make_study(instances_per_series=1)
    other = make_study(instances_per_series=1)
    body = multipart_body(
        [("application/dicom", part10(mine[0])), ("application/dicom", part10(other[0]))]
    )
    response = post(http, body, path=f"/studies/{mine[0].StudyInstanceUID}")
    assert response.status_code == 202
    assert referenced(response) == [mine[0].SOPInstanceUID]
    [failure] = failed(response)
    assert failure["00081197"]["Value"] == [0xC409]
    assert not web_node.archive.contains(other[0].SOPInstanceUID)
    only_other = post(
        http,
        multipart_body([("application/dicom", part10(other[0]))]),
        path=f"/studies/{mine[0].StudyInstanceUID}",
    )
    assert only_other.status_code == 409


def test_storing_twice_is_idempotent(http):
    datasets = make_study(instances_per_series=1)
    body = multipart_body([("application/dicom", part10(datasets[0]))])
    assert post(http, body).status_code == 200
    again = post(http, body)
    assert again.status_code == 200
    assert referenced(again) == [datasets[0].SOPInstanceUID]


def test_single_part_application_dicom_body(http):
    ds = make_study(instances_per_series=1)[0]
    response = post(http, part10(ds), "application/dicom")
    assert response.status_code == 200 and referenced(response) == [ds.SOPInstanceUID]


DEFLATED = "1.2.840.10008.1.2.1.99"


def _careless_deflated(ds: Dataset) -> bytes:
    """A Part 10 file in Deflated Explicit VR Little Endian whose (deflated) data set
    begins with File Meta Information elements, as a careless writer makes one."""
    stray = Dataset()
    stray.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    stray.ImplementationVersionName = "CARELESS"
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, False
    write_dataset(buf, stray)
    write_dataset(buf, ds)
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    deflated = packer.compress(buf.getvalue()) + packer.flush()
    return dicom_part10.file_meta(ds.SOPClassUID, ds.SOPInstanceUID, DEFLATED) + deflated


def test_an_instance_stored_with_elements_discarded_has_a_warning_reason(web_node, http):
    """PS3.18 10.5.3, Table I.2-1: the archive stored the instance but left out the
    group 0002 elements its data set held: its Referenced SOP Sequence item has Warning
    Reason 0xB006 (Elements Discarded), a Warning header says which, and the response is
    202 (PS3.18 10.5.3.1: warnings exist), even beside an instance stored as it was."""
    careless, clean = make_study(instances_per_series=2)
    body = multipart_body(
        [("application/dicom", part10(clean)), ("application/dicom", _careless_deflated(careless))]
    )
    response = post(http, body)
    assert response.status_code == 202
    assert referenced(response) == [clean.SOPInstanceUID, careless.SOPInstanceUID]
    assert not failed(response)
    plain, warned = response.json()["00081199"]["Value"]
    assert "00081196" not in plain
    assert warned["00081196"] == {"vr": "US", "Value": [0xB006]}
    assert (
        "part 2: group 0002 in the data set discarded: (0002,0002) (0002,0013)"
        in (response.headers["warning"])
    )
    assert web_node.archive.contains(careless.SOPInstanceUID)


def test_dicomweb_client_takes_a_warned_store_for_stored(web_node, dicomweb):
    """A client reads the 202 and its Referenced SOP Sequence: stored, with a Warning
    Reason, nothing failed."""
    ds = make_study(instances_per_series=1)[0]
    result = dicomweb._http_post_multipart_application_dicom(
        root_of(web_node) + "/studies", [_careless_deflated(ds)]
    )
    [item] = result.ReferencedSOPSequence
    assert (item.ReferencedSOPInstanceUID, item.WarningReason) == (ds.SOPInstanceUID, 0xB006)
    assert "FailedSOPSequence" not in result


def test_a_warning_reason_in_the_xml_response(http):
    ds = make_study(instances_per_series=1)[0]
    response = post(
        http,
        multipart_body([("application/dicom", _careless_deflated(ds))]),
        Accept="application/dicom+xml",
    )
    assert response.status_code == 202
    assert b'tag="00081196" vr="US"' in response.content
    assert b'<Value number="1">45062</Value>' in response.content


def test_xml_response_when_asked(http):
    ds = make_study(instances_per_series=1)[0]
    response = post(
        http, multipart_body([("application/dicom", part10(ds))]), Accept="application/dicom+xml"
    )
    assert response.headers["content-type"] == "application/dicom+xml"
    assert (
        b"NativeDicomModel" in response.content and ds.SOPInstanceUID.encode() in response.content
    )


def _metadata_with(charset: list[str] | None, name: str, description: str) -> dict:
    ds = make_study(instances_per_series=1, rows=8, columns=8)[0]
    metadata = ds.to_json_dict(bulk_data_threshold=1 << 30)
    metadata.pop("00080005", None)
    if charset is not None:
        metadata["00080005"] = {"vr": "CS", "Value": charset}
    metadata["00100010"] = {"vr": "PN", "Value": [{"Alphabetic": name}]}
    metadata["00081030"] = {"vr": "LO", "Value": [description]}
    return metadata


@pytest.mark.parametrize("kind", ["json", "xml"])
@pytest.mark.parametrize("charset", [None, ["ISO_IR 100"], ["", "ISO 2022 IR 87"]])
def test_metadata_text_the_declared_character_set_cannot_hold_is_stored_in_utf8(
    http, dicomweb, kind, charset
):
    """PS3.18 F.2 / F.3: the metadata's text is Unicode, whatever Specific Character Set
    it names (that of the data set it came from).  Written in that set, a character it
    lacks became '?' (pydicom's replacement) and the store still answered 200; the
    instance declares ISO_IR 192 instead (PS3.3 C.12.1.1.2), every character kept."""
    from isthmus.web.dicom_xml import to_xml

    name, description = "山田^太郎=Ямада", "Étude Ключ 검사"
    metadata = _metadata_with(charset, name, description)
    content = json.dumps([metadata]).encode() if kind == "json" else to_xml(metadata)
    body = multipart_body([(f"application/dicom+{kind}", content)])
    response = post(
        http, body, f'multipart/related; type="application/dicom+{kind}"; boundary=b0undary'
    )
    assert response.status_code == 200, response.text
    uids = [metadata[t]["Value"][0] for t in ("0020000D", "0020000E", "00080018")]
    back = dicomweb.retrieve_instance(*uids)
    assert back.SpecificCharacterSet == "ISO_IR 192"
    assert (str(back.PatientName), back.StudyDescription) == (name, description)


def test_metadata_in_ascii_keeps_its_specific_character_set(http, dicomweb):
    metadata = _metadata_with(["ISO_IR 100"], "SMITH^ANNA", "CT HEAD")
    body = multipart_body([("application/dicom+json", json.dumps([metadata]).encode())])
    response = post(
        http, body, 'multipart/related; type="application/dicom+json"; boundary=b0undary'
    )
    assert response.status_code == 200, response.text
    uids = [metadata[t]["Value"][0] for t in ("0020000D", "0020000E", "00080018")]
    assert dicomweb.retrieve_instance(*uids).SpecificCharacterSet == "ISO_IR 100"


def test_json_metadata_with_bulk_data(web_node, http, dicomweb):
    ds = make_study(instances_per_series=1)[0]
    metadata = ds.to_json_dict(
        bulk_data_threshold=1024, bulk_data_element_handler=lambda elem: "pixels"
    )
    metadata["7FE00010"] = {"vr": "OW", "BulkDataURI": "pixels"}
    body = (
        b"--b0undary\r\nContent-Type: application/dicom+json\r\n\r\n"
        + json.dumps([metadata]).encode()
        + b"\r\n"
        + b"--b0undary\r\nContent-Type: application/octet-stream\r\n"
        + b"Content-Location: pixels\r\n\r\n"
        + ds.PixelData
        + b"\r\n--b0undary--\r\n"
    )
    response = post(
        http, body, 'multipart/related; type="application/dicom+json"; boundary=b0undary'
    )
    assert response.status_code == 200, response.text
    back = dicomweb.retrieve_instance(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    assert back.PixelData == ds.PixelData and back.PatientName == ds.PatientName


def test_json_metadata_with_compressed_pixel_data_and_a_missing_reference(http, dicomweb):
    rle = pydicom.dcmread(pydicom.data.get_testdata_file("SC_rgb_rle.dcm"))
    frame = next(pydicom.encaps.generate_frames(rle.PixelData, number_of_frames=1))
    metadata = rle.to_json_dict(bulk_data_threshold=1 << 30)
    metadata["7FE00010"] = {"vr": "OB", "BulkDataURI": "cid:frame1"}
    broken = dict(
        metadata,
        **{
            "00080018": {"vr": "UI", "Value": ["1.2.3.4.5.6.7"]},
            "7FE00010": {"vr": "OB", "BulkDataURI": "cid:nowhere"},
        },
    )
    body = (
        b"--b0undary\r\nContent-Type: application/dicom+json\r\n\r\n"
        + dumps([metadata, broken]).encode()
        + b"\r\n"
        + b"--b0undary\r\nContent-Type: image/dicom-rle; transfer-syntax=1.2.840.10008.1.2.5\r\n"
        + b"Content-ID: <frame1>\r\n\r\n"
        + frame
        + b"\r\n--b0undary--\r\n"
    )
    response = post(
        http, body, 'multipart/related; type="application/dicom+json"; boundary=b0undary'
    )
    assert response.status_code == 202, response.text
    assert referenced(response) == [rle.SOPInstanceUID]
    assert failed(response)[0]["00081155"]["Value"] == ["1.2.3.4.5.6.7"]
    back = dicomweb.retrieve_instance(
        rle.StudyInstanceUID, rle.SeriesInstanceUID, rle.SOPInstanceUID
    )
    assert (back.pixel_array == rle.pixel_array).all()


def test_xml_metadata_with_inline_pixels(http, dicomweb):
    from isthmus.web.dicom_xml import to_xml

    ds = make_study(instances_per_series=1, rows=8, columns=8)[0]
    metadata = ds.to_json_dict(bulk_data_threshold=1 << 30)
    assert "InlineBinary" in metadata["7FE00010"]
    body = (
        b"--b0undary\r\nContent-Type: application/dicom+xml\r\n\r\n"
        + to_xml(metadata)
        + b"\r\n--b0undary--\r\n"
    )
    response = post(
        http, body, 'multipart/related; type="application/dicom+xml"; boundary=b0undary'
    )
    assert response.status_code == 200, response.text
    back = dicomweb.retrieve_instance(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    assert back.PixelData == base64.b64decode(metadata["7FE00010"]["InlineBinary"])


def test_body_is_spooled_to_disk_not_kept(web_node, http):
    """The temporary file of a request is gone once it is answered."""
    folder = web_node.settings.data / "tmp"
    post(
        http, multipart_body([("application/dicom", part10(make_study(instances_per_series=1)[0]))])
    )
    assert folder.is_dir() and list(folder.iterdir()) == []


def test_spooled_bodies_are_released_once_answered(web_node, http):
    """The temporary file (and its mapping) of every request is closed after the answer,
    whether the body was stored or refused."""
    import os
    import time

    folder = os.path.realpath(web_node.settings.data / "tmp")

    def open_spools() -> list[str]:
        found = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if target.startswith(folder + "/"):
                found.append(target)
        return found

    datasets = make_study(instances_per_series=3)
    body = multipart_body([("application/dicom", part10(d)) for d in datasets])
    assert post(http, body).status_code == 200
    assert post(http, body[: len(body) - 3000]).status_code == 400
    deadline = time.monotonic() + 30  # the release runs in a worker thread after the answer
    while open_spools() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert open_spools() == []


def _request_head(node, length: int) -> bytes:
    return (
        f"POST /dicom-web/studies HTTP/1.1\r\nHost: 127.0.0.1:{node.http_port}\r\n"
        f"Content-Type: {DICOM_MULTIPART}\r\nContent-Length: {length}\r\n"
        "Accept: application/dicom+json\r\n\r\n"
    ).encode()


def _large_study_body() -> tuple[list[pydicom.Dataset], bytes, int]:
    """Six 512×512 CT instances (about 3 MB) and where the fifth part begins."""
    datasets = make_study(instances_per_series=6, rows=512, columns=512)
    body = multipart_body([("application/dicom", part10(d)) for d in datasets])
    fifth = 0
    for _ in range(5):
        fifth = body.index(b"--b0undary", fifth + 1)
    return datasets, body, fifth


def _wait_for(condition, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_parts_are_written_while_the_body_arrives_and_shown_once_it_is_whole(fresh_node):
    """PS3.18 10.5: the parts that have arrived are written (staged) while the rest is
    still on its way, and none is visible before the whole body is in and well formed."""
    datasets, body, fifth = _large_study_body()
    with socket.create_connection(("127.0.0.1", fresh_node.http_port), timeout=60) as conn:
        conn.sendall(_request_head(fresh_node, len(body)) + body[:fifth])
        assert _wait_for(lambda: fresh_node.archive.check(repair=False)["orphans"] >= 2)
        assert not any(fresh_node.archive.contains(d.SOPInstanceUID) for d in datasets)
        conn.sendall(body[fifth:])
        answer = conn.makefile("rb").readline()
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert all(fresh_node.archive.contains(d.SOPInstanceUID) for d in datasets)
    assert fresh_node.archive.check(repair=False)["orphans"] == 0


def test_a_client_gone_mid_body_leaves_nothing_of_what_was_written(fresh_node):
    """A client that disconnects after some parts were staged: they are removed, and the
    spool file with them; nothing is stored."""
    datasets, body, fifth = _large_study_body()
    with socket.create_connection(("127.0.0.1", fresh_node.http_port), timeout=60) as conn:
        conn.sendall(_request_head(fresh_node, len(body)) + body[:fifth])
        assert _wait_for(lambda: fresh_node.archive.check(repair=False)["orphans"] >= 2)
    assert _wait_for(lambda: fresh_node.archive.check(repair=False)["orphans"] == 0)
    assert not any(fresh_node.archive.contains(d.SOPInstanceUID) for d in datasets)
    tmp = fresh_node.settings.data / "tmp"
    assert _wait_for(lambda: not list(tmp.iterdir()))


def test_a_malformed_end_after_staged_parts_stores_nothing(fresh_node):
    """The body's end decides: a last part without its closing boundary refuses the
    request (400), and the parts staged before it are removed."""
    datasets, body, _ = _large_study_body()
    with httpx.Client(base_url=root_of(fresh_node), timeout=60) as client:
        response = post(client, body[: len(body) - 3000])
    assert response.status_code == 400
    assert "truncated" in response.json()["message"]
    assert not any(fresh_node.archive.contains(d.SOPInstanceUID) for d in datasets)
    assert fresh_node.archive.check(repair=False)["orphans"] == 0


def test_parts_beyond_the_staged_bound_are_stored_once_the_body_is_whole(fresh_node, monkeypatch):
    """At most STAGED_AT_MOST instances wait staged in memory; the rest of a large body
    is stored from the spool after it has been accepted, with the same answer."""
    from isthmus.web import stow

    monkeypatch.setattr(stow, "STAGED_AT_MOST", 2)
    datasets = make_study(instances_per_series=5)
    body = multipart_body([("application/dicom", part10(d)) for d in datasets])
    with httpx.Client(base_url=root_of(fresh_node), timeout=60) as client:
        response = post(client, body)
    assert response.status_code == 200, response.text
    assert referenced(response) == [d.SOPInstanceUID for d in datasets]
    assert all(fresh_node.archive.contains(d.SOPInstanceUID) for d in datasets)
