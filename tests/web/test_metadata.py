"""WADO-RS metadata at three levels (JSON and XML) and bulk data by BulkDataURI."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pydicom
import pytest
from dicomweb_client import DICOMwebClient
from pydicom.data import get_testdata_file
from tests.web.conftest import make_study, parse_multipart, root_of


@pytest.fixture(scope="module")
def stored(dicomweb: DICOMwebClient) -> list[pydicom.Dataset]:
    """Two series of two CT images, the first with a 4 KiB overlay (a non-pixel bulk value),
    and a 2-frame RLE image."""
    datasets = make_study(series_count=2, instances_per_series=2)
    datasets[0].add_new(0x60003000, "OW", bytes(range(256)) * 16)
    rle = pydicom.dcmread(get_testdata_file("SC_rgb_rle_2frame.dcm"))
    dicomweb.store_instances(datasets + [rle])
    return datasets + [rle]


def test_study_metadata_lists_every_instance(dicomweb, stored):
    ds = stored[0]
    metadata = dicomweb.retrieve_study_metadata(ds.StudyInstanceUID)
    assert len(metadata) == 4
    assert {m["00080018"]["Value"][0] for m in metadata} == {d.SOPInstanceUID for d in stored[:4]}
    first = pydicom.Dataset.from_json(metadata[0], bulk_data_uri_handler=lambda uri: b"")
    assert first.PatientName == ds.PatientName and first.Rows == 64


def test_series_and_instance_metadata(dicomweb, stored):
    ds = stored[2]
    series = dicomweb.retrieve_series_metadata(ds.StudyInstanceUID, ds.SeriesInstanceUID)
    assert [m["00200013"]["Value"][0] for m in series] == [1, 2]
    instance = dicomweb.retrieve_instance_metadata(
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
    )
    assert instance["00080018"]["Value"] == [ds.SOPInstanceUID]


def test_bulk_data_uris_are_absolute(web_node, dicomweb, stored):
    ds = stored[0]
    [meta] = [
        m
        for m in dicomweb.retrieve_study_metadata(ds.StudyInstanceUID)
        if m["00080018"]["Value"][0] == ds.SOPInstanceUID
    ]
    assert meta["7FE00010"]["BulkDataURI"].startswith(root_of(web_node) + "/studies/")
    assert meta["60003000"]["BulkDataURI"].endswith("/bulkdata/60003000")


def test_pixel_data_by_its_bulk_data_uri_round_trips(dicomweb, stored):
    ds = stored[1]
    meta = dicomweb.retrieve_instance_metadata(
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
    )
    [value] = dicomweb.retrieve_bulkdata(meta["7FE00010"]["BulkDataURI"])
    assert value == ds.PixelData


def test_other_bulk_data_by_uri(dicomweb, stored):
    ds = stored[0]
    meta = dicomweb.retrieve_instance_metadata(
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
    )
    [value] = dicomweb.retrieve_bulkdata(meta["60003000"]["BulkDataURI"])
    assert value == bytes(range(256)) * 16


def test_bulk_data_range_requests(http, dicomweb, stored):
    ds = stored[1]
    meta = dicomweb.retrieve_instance_metadata(
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
    )
    uri = meta["7FE00010"]["BulkDataURI"]
    part = http.get(uri, headers={"Accept": "application/octet-stream", "Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-199/{len(ds.PixelData)}"
    assert part.content == ds.PixelData[100:200]
    tail = http.get(uri, headers={"Accept": "application/octet-stream", "Range": "bytes=-10"})
    assert tail.content == ds.PixelData[-10:]
    [ranged] = dicomweb.retrieve_bulkdata(uri, byte_range=(0, 9))
    assert ranged == ds.PixelData[:10]
    beyond = http.get(uri, headers={"Range": f"bytes={len(ds.PixelData)}-"})
    assert beyond.status_code == 416


@pytest.mark.parametrize("header", ["items=0-9", "bytes=0-9,20-29"])
def test_a_range_the_server_does_not_serve_is_ignored(http, dicomweb, stored, header):
    """RFC 9110 14.2: an origin server MUST ignore a Range of a unit it does not
    understand, and MAY ignore any Range: the whole value comes back, 200, never 400."""
    ds = stored[1]
    meta = dicomweb.retrieve_instance_metadata(
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
    )
    uri = meta["7FE00010"]["BulkDataURI"]
    whole = http.get(uri, headers={"Accept": "application/octet-stream", "Range": header})
    assert whole.status_code == 200
    assert "content-range" not in whole.headers
    assert whole.content == ds.PixelData


def test_encapsulated_pixel_data_comes_as_frames(http, dicomweb, stored):
    rle = stored[4]
    meta = dicomweb.retrieve_instance_metadata(
        rle.StudyInstanceUID, rle.SeriesInstanceUID, rle.SOPInstanceUID
    )
    response = http.get(
        meta["7FE00010"]["BulkDataURI"],
        headers={"Accept": 'multipart/related; type="image/dicom-rle"'},
    )
    parts = parse_multipart(response)
    assert len(parts) == 2
    assert all(h["content-type"].startswith("image/dicom-rle") for h, _ in parts)


def test_unknown_bulk_data_tag_is_404(http, stored):
    ds = stored[1]
    response = http.get(
        f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}/bulkdata/60003000"
    )
    assert response.status_code == 404
    bad = http.get(
        f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}/bulkdata/..%2Fx"
    )
    assert bad.status_code in (400, 404)


def test_metadata_as_xml(http, stored):
    ds = stored[0]
    response = http.get(
        f"/studies/{ds.StudyInstanceUID}/metadata",
        headers={"Accept": 'multipart/related; type="application/dicom+xml"'},
    )
    parts = parse_multipart(response)
    assert len(parts) == 4
    roots = [ET.fromstring(body) for _, body in parts]
    uids = {
        a.find("{*}Value").text for r in roots for a in r if a.get("keyword") == "SOPInstanceUID"
    }
    assert uids == {d.SOPInstanceUID for d in stored[:4]}
    bulk = [a.find("{*}BulkData") for r in roots for a in r if a.get("tag") == "7FE00010"]
    assert all(b is not None and b.get("uri").startswith("http://") for b in bulk)


def test_unknown_study_metadata_is_404(http, stored):
    assert http.get("/studies/1.2.3/metadata").status_code == 404
