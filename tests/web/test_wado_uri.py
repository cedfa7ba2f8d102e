"""WADO-URI (PS3.18 9): /wado?requestType=WADO&studyUID=…&seriesUID=…&objectUID=…"""

from __future__ import annotations

from io import BytesIO

import httpx
import pydicom
import pytest
from PIL import Image
from pydicom.uid import RLELossless
from tests.web.conftest import make_study


@pytest.fixture(scope="module")
def stored(dicomweb):
    datasets = make_study(instances_per_series=2)
    dicomweb.store_instances(datasets)
    return datasets


@pytest.fixture(scope="module")
def wado(web_node):
    base = f"http://127.0.0.1:{web_node.http_port}/wado"

    def get(ds=None, **params):
        query = {"requestType": "WADO"}
        if ds is not None:
            query.update(
                studyUID=ds.StudyInstanceUID,
                seriesUID=ds.SeriesInstanceUID,
                objectUID=ds.SOPInstanceUID,
            )
        query.update(params)
        return httpx.get(base, params=query, timeout=30)

    return get


def test_default_is_a_jpeg(wado, stored):
    response = wado(stored[0])
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert Image.open(BytesIO(response.content)).size == (64, 64)


def test_png_with_size_and_window(wado, stored):
    response = wado(
        stored[0],
        contentType="image/png",
        rows="32",
        columns="32",
        windowCenter="40",
        windowWidth="400",
    )
    assert response.headers["content-type"] == "image/png"
    assert Image.open(BytesIO(response.content)).size == (32, 32)


def test_dicom_as_stored_and_transcoded(wado, stored):
    as_stored = wado(stored[1], contentType="application/dicom")
    ds = pydicom.dcmread(BytesIO(as_stored.content))
    assert ds.SOPInstanceUID == stored[1].SOPInstanceUID and ds.PixelData == stored[1].PixelData
    rle = wado(stored[1], contentType="application/dicom", transferSyntax=RLELossless)
    assert pydicom.dcmread(BytesIO(rle.content)).file_meta.TransferSyntaxUID == RLELossless


@pytest.mark.parametrize(
    "params, status",
    [
        ({"requestType": "WADO-RS"}, 400),
        ({"anonymize": "yes"}, 400),
        ({"region": "0,0,0.5,0.5"}, 400),
        ({"frameNumber": "2"}, 404),
        ({"contentType": "text/html"}, 406),
        ({"windowCenter": "40"}, 400),
        ({"bogus": "1"}, 400),
        ({"objectUID": "1.2.3"}, 404),
        ({"objectUID": "../../etc/passwd"}, 400),
    ],
)
def test_bad_requests(wado, stored, params, status):
    response = wado(stored[0], **params)
    assert response.status_code == status
    assert response.json()["message"]


def test_missing_uids_is_400(wado, stored):
    assert wado().status_code == 400
