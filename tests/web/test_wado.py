"""WADO-RS retrieval of studies, series and instances, through dicomweb-client and HTTP."""

from __future__ import annotations

import subprocess
from io import BytesIO

import pydicom
import pytest
from dicomweb_client import DICOMwebClient
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless
from pynetdicom import AE
from tests.web.conftest import make_study, parse_multipart, part10

from isthmus.archive import InstanceRow
from isthmus.dicom.part10 import split_part10
from isthmus.web import wado


@pytest.fixture(scope="module")
def stored(dicomweb: DICOMwebClient) -> list[pydicom.Dataset]:
    """Two series of three CT images; the second series stored Implicit VR Little Endian."""
    datasets = make_study(series_count=2, instances_per_series=3)
    for ds in datasets[3:]:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    dicomweb.store_instances(datasets)
    return datasets


def by_uid(datasets):
    return {ds.SOPInstanceUID: ds for ds in datasets}


def test_study_retrieval_returns_every_instance_with_identical_pixels(dicomweb, stored):
    retrieved = dicomweb.retrieve_study(stored[0].StudyInstanceUID)
    assert len(retrieved) == 6
    originals = by_uid(stored)
    for ds in retrieved:
        assert ds.PixelData == originals[ds.SOPInstanceUID].PixelData


def test_series_retrieval_in_instance_order(dicomweb, stored):
    retrieved = dicomweb.retrieve_series(stored[0].StudyInstanceUID, stored[0].SeriesInstanceUID)
    assert [ds.InstanceNumber for ds in retrieved] == [1, 2, 3]


def test_default_transfer_syntax_is_explicit_vr_little_endian(http, stored):
    implicit = stored[4]
    response = http.get(
        f"/studies/{implicit.StudyInstanceUID}/series/{implicit.SeriesInstanceUID}"
        f"/instances/{implicit.SOPInstanceUID}",
        headers={"Accept": 'multipart/related; type="application/dicom"'},
    )
    [(headers, body)] = parse_multipart(response)
    assert f"transfer-syntax={ExplicitVRLittleEndian}" in headers["content-type"]
    ds = pydicom.dcmread(BytesIO(body))
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.PixelData == implicit.PixelData


def test_any_transfer_syntax_returns_the_stored_bytes(http, stored):
    implicit = stored[4]
    response = http.get(
        f"/studies/{implicit.StudyInstanceUID}/series/{implicit.SeriesInstanceUID}"
        f"/instances/{implicit.SOPInstanceUID}",
        headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
    )
    assert response.status_code == 200
    [(headers, body)] = parse_multipart(response)
    assert f"transfer-syntax={ImplicitVRLittleEndian}" in headers["content-type"]
    _, sent = split_part10(part10(implicit))
    _, got = split_part10(body)
    assert bytes(got) == bytes(sent)


def test_transcoding_to_a_compressed_syntax_and_back(dicomweb, stored):
    ds = stored[0]
    compressed = dicomweb.retrieve_instance(
        ds.StudyInstanceUID,
        ds.SeriesInstanceUID,
        ds.SOPInstanceUID,
        media_types=(("application/dicom", RLELossless),),
    )
    assert compressed.file_meta.TransferSyntaxUID == RLELossless
    assert (compressed.pixel_array == ds.pixel_array).all()


def test_single_part_instance_when_asked(http, stored):
    ds = stored[1]
    response = http.get(
        f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}",
        headers={"Accept": "application/dicom"},
    )
    assert response.headers["content-type"].startswith("application/dicom")
    assert pydicom.dcmread(BytesIO(response.content)).SOPInstanceUID == ds.SOPInstanceUID


def test_unknown_study_is_404(http, stored):
    response = http.get("/studies/1.2.3.4.5")
    assert response.status_code == 404
    assert "1.2.3.4.5" in response.json()["message"]


def test_instance_of_another_series_is_404(http, stored):
    a, b = stored[0], stored[4]
    response = http.get(
        f"/studies/{a.StudyInstanceUID}/series/{a.SeriesInstanceUID}/instances/{b.SOPInstanceUID}"
    )
    assert response.status_code == 404


def test_unsupported_transfer_syntax_is_406(http, stored):
    response = http.get(
        f"/studies/{stored[0].StudyInstanceUID}",
        headers={
            "Accept": 'multipart/related; type="application/dicom"; '
            "transfer-syntax=1.2.840.10008.1.2.4.50"
        },
    )
    assert response.status_code == 406
    assert "transfer-syntax=*" in response.json()["message"]


def test_a_syntax_the_encoder_refuses_for_the_instance_is_406_not_the_stored_syntax(dicomweb, http):
    """PS3.18 8.7.8.2, 9.4.2.4: the part is sent in the syntax asked for, or the request
    is Not Acceptable.  32-bit samples are outside every JPEG-LS profile (PS3.5 8.2.3):
    the syntaxes alone allow it, the encoder refuses this image, so the answer is 406,
    never 200 with a part in the stored syntax the client did not accept."""
    ds = make_study(instances_per_series=1)[0]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 32, 32, 31, 0
    ds.PixelData = bytes(4 * ds.Rows * ds.Columns)
    dicomweb.store_instances([ds])
    jpeg_ls = "1.2.840.10008.1.2.4.80"
    instance = f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    for path in (instance, f"/studies/{ds.StudyInstanceUID}"):
        response = http.get(
            path,
            headers={
                "Accept": f'multipart/related; type="application/dicom"; transfer-syntax={jpeg_ls}'
            },
        )
        assert response.status_code == 406, path
        assert "JPEG-LS" in response.json()["message"]


def test_the_preferred_syntax_that_can_be_produced_is_sent(http, stored):
    """PS3.18 8.7.3.5.2: several acceptable transfer syntaxes are listed as media types
    with quality values; 8.7.8: the one selected is the most preferred the origin server
    supports.  JPEG Baseline (q=1) cannot be made of a native CT here, RLE (q=0.5) can."""
    ds = stored[0]
    dicom = 'multipart/related; type="application/dicom"; transfer-syntax='
    response = http.get(
        f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}",
        headers={"Accept": f"{dicom}1.2.840.10008.1.2.4.50, {dicom}{RLELossless}; q=0.5"},
    )
    assert response.status_code == 200
    [(headers, content)] = parse_multipart(response)
    assert headers["content-type"] == f"application/dicom; transfer-syntax={RLELossless}"
    assert pydicom.dcmread(BytesIO(content)).file_meta.TransferSyntaxUID == RLELossless


@pytest.mark.parametrize(
    "fallback",
    ['multipart/related; type="application/dicom"; q=0.5', "*/*; q=0.1"],
)
def test_a_syntax_that_cannot_be_produced_falls_back_to_an_accepted_range_naming_none(
    http, stored, fallback
):
    """PS3.18 8.7.8: of the acceptable media types the most preferred that can be
    produced is sent; a range naming no transfer syntax asks for the default, Explicit VR
    Little Endian (8.7.3.5.2).  JPEG Baseline (q=1) cannot be made of a native CT here;
    only other ranges naming a syntax were tried, and the answer was 406."""
    ds = stored[0]
    baseline = 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50'
    for path in (
        f"/studies/{ds.StudyInstanceUID}",
        f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}",
    ):
        response = http.get(path, headers={"Accept": f"{baseline}, {fallback}"})
        assert response.status_code == 200, (path, response.text)
        syntaxes = {h["content-type"] for h, _ in parse_multipart(response)}
        assert syntaxes == {f"application/dicom; transfer-syntax={ExplicitVRLittleEndian}"}


def test_a_fallback_to_the_default_syntax_the_client_refused_is_406(http, stored):
    """RFC 9110 12.5.1: q=0 means not acceptable; the default syntax refused so is not
    the fallback of a range naming no syntax."""
    dicom = 'multipart/related; type="application/dicom"'
    accept = (
        f"{dicom}; transfer-syntax=1.2.840.10008.1.2.4.50, "
        f"{dicom}; transfer-syntax={ExplicitVRLittleEndian}; q=0, */*; q=0.1"
    )
    response = http.get(f"/studies/{stored[0].StudyInstanceUID}", headers={"Accept": accept})
    assert response.status_code == 406


def test_wrong_media_type_is_406(http, stored):
    response = http.get(f"/studies/{stored[0].StudyInstanceUID}", headers={"Accept": "text/html"})
    assert response.status_code == 406


def test_accept_query_parameter_takes_precedence(http, stored):
    ds = stored[1]
    response = http.get(
        f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}",
        params={"accept": "application/dicom"},
        headers={"Accept": "*/*"},
    )
    assert response.headers["content-type"].startswith("application/dicom")


def test_retrieval_streams_in_chunks(web_node, http, stored):
    """A study larger than the read chunk comes through whole (the stream is not cut)."""
    from isthmus.web import wado

    big = make_study(instances_per_series=4, rows=512, columns=512)
    response = http.post(
        "/studies",
        content=b"".join(
            b"--b\r\nContent-Type: application/dicom\r\n\r\n" + part10(ds) + b"\r\n" for ds in big
        )
        + b"--b--\r\n",
        headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=b'},
    )
    assert response.status_code == 200
    with http.stream(
        "GET",
        f"/studies/{big[0].StudyInstanceUID}",
        headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
    ) as streamed:
        sizes = [len(chunk) for chunk in streamed.iter_raw()]
    assert sum(sizes) > 4 * 512 * 512 * 2
    assert max(sizes) <= wado.CHUNK + 4096


DICOM_AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def test_retrieval_as_stored_announces_its_exact_length(http, stored):
    response = http.get(
        f"/studies/{stored[0].StudyInstanceUID}", headers={"Accept": DICOM_AS_STORED}
    )
    assert response.status_code == 200
    assert "chunked" not in response.headers.get("transfer-encoding", "")
    assert int(response.headers["content-length"]) == len(response.content)
    assert len(parse_multipart(response)) == 6


def test_retrieval_that_transcodes_does_not_announce_a_length(http, stored):
    """The implicit VR series goes out as Explicit VR Little Endian: sizes are not known
    before transcoding, so the body is sent chunked."""
    response = http.get(
        f"/studies/{stored[0].StudyInstanceUID}",
        headers={"Accept": 'multipart/related; type="application/dicom"'},
    )
    assert response.status_code == 200
    assert "content-length" not in response.headers
    assert len(parse_multipart(response)) == 6


def test_instances_too_large_to_read_at_once_are_streamed_in_pieces(http, stored, monkeypatch):
    from isthmus.web import wado

    monkeypatch.setattr(wado, "WHOLE", 1024)
    monkeypatch.setattr(wado, "CHUNK", 4096)
    response = http.get(
        f"/studies/{stored[0].StudyInstanceUID}", headers={"Accept": DICOM_AS_STORED}
    )
    assert int(response.headers["content-length"]) == len(response.content)
    originals = by_uid(stored)
    parts = parse_multipart(response)
    assert len(parts) == 6
    for _, body in parts:
        ds = pydicom.dcmread(BytesIO(body))
        assert ds.PixelData == originals[ds.SOPInstanceUID].PixelData
    single = http.get(
        f"/studies/{stored[0].StudyInstanceUID}/series/{stored[0].SeriesInstanceUID}"
        f"/instances/{stored[0].SOPInstanceUID}",
        headers={"Accept": "application/dicom; transfer-syntax=*"},
    )
    assert pydicom.dcmread(BytesIO(single.content)).PixelData == stored[0].PixelData


def test_a_file_missing_from_a_response_of_announced_length_cuts_it_short(fresh_node):
    """Announced bytes that cannot be sent must not look like a complete answer."""

    import httpx
    from tests.web.conftest import root_of

    datasets = make_study(instances_per_series=3)
    with httpx.Client(base_url=root_of(fresh_node), timeout=60) as client:
        body = (
            b"".join(
                b"--b\r\nContent-Type: application/dicom\r\n\r\n" + part10(ds) + b"\r\n"
                for ds in datasets
            )
            + b"--b--\r\n"
        )
        stored = client.post(
            "/studies",
            content=body,
            headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=b'},
        )
        assert stored.status_code == 200
        rows = fresh_node.archive.instances(datasets[0].StudyInstanceUID)
        fresh_node.archive.blobs.delete(rows[1].blob_key)  # behind the archive's back
        with pytest.raises(httpx.RemoteProtocolError):
            client.get(
                f"/studies/{datasets[0].StudyInstanceUID}", headers={"Accept": DICOM_AS_STORED}
            )
        one = client.get(
            f"/studies/{datasets[0].StudyInstanceUID}/series/"
            f"{rows[1].series_instance_uid}/instances/{rows[1].sop_instance_uid}",
            headers={"Accept": "application/dicom; transfer-syntax=*"},
        )
        assert one.status_code == 500 and "missing" in one.json()["message"]


def _row(size: int) -> InstanceRow:
    return InstanceRow(
        "1.2",
        "1.2.3",
        f"1.2.3.{size}",
        "1.2.840.10008.5.1.4.1.1.2",
        "1.2.840.10008.1.2.1",
        f"ab/{size}",
        size,
        None,
        None,
        None,
    )


def test_instances_are_read_in_groups_bounded_in_bytes_and_count_large_ones_alone() -> None:
    big = wado.GROUP + 1
    sizes = [wado.GROUP // 3] * 4 + [big, 10] + [1] * (wado.GROUP_COUNT + 1)
    found = [[row.size for row in group] for group in wado.groups([_row(s) for s in sizes])]
    third = wado.GROUP // 3
    assert found == [
        [third] * 3,
        [third],
        [big],
        [10] + [1] * (wado.GROUP_COUNT - 1),
        [1, 1],
    ]
    assert wado.groups([]) == []


@pytest.mark.parametrize(
    "accept",
    [
        'multipart/related; type="application/dicom"; transfer-syntax=*',
        'multipart/related; type="application/dicom"',
        'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2',
    ],
    ids=["as-stored", "default", "transcoded"],
)
def test_an_instance_sent_with_file_meta_in_its_data_set_is_retrieved_with_one_meta(
    web_node, http, tmp_path, accept
):
    """A C-STORE whose data set holds group 0002 (pynetdicom sends it as given): the file
    WADO-RS returns has one meta, the archive's, that pydicom and DCMTK read as it is;
    its metadata and QIDO-RS results name no group 0002 element (PS3.10 7.1)."""
    [ds] = make_study(instances_per_series=1)
    ds.TransferSyntaxUID = "1.2.840.10008.1.2.2"  # in the data set, against the context
    ae = AE(ae_title="CARELESS")
    ae.add_requested_context(ds.SOPClassUID, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", web_node.dicom_port, ae_title=web_node.settings.aet)
    try:
        assert assoc.send_c_store(ds).Status == 0xB006  # elements discarded, stored
    finally:
        assoc.release()
    path = f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
    response = http.get(f"{path}/instances/{ds.SOPInstanceUID}", headers={"Accept": accept})
    [(_headers, body)] = parse_multipart(response)
    back = pydicom.dcmread(BytesIO(body))
    assert back.file_meta.TransferSyntaxUID != "1.2.840.10008.1.2.2"
    assert not [elem for elem in back if elem.tag.group == 2]
    assert back.PixelData == ds.PixelData
    (tmp_path / "back.dcm").write_bytes(body)
    dump = subprocess.run(
        ["/usr/bin/dcmdump", str(tmp_path / "back.dcm")], capture_output=True, text=True
    )
    assert dump.returncode == 0 and "Invalid Element" not in dump.stdout + dump.stderr
    assert dump.stdout.count("(0002,0010)") == 1
    [metadata] = http.get(f"{path}/instances/{ds.SOPInstanceUID}/metadata").json()
    found = http.get(f"{path}/instances", params={"includefield": "all"}).json()
    for model in (metadata, *found):
        assert not [key for key in model if key.startswith("0002")]
