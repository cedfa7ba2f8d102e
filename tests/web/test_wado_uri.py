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
        ({"anonymize": "yes"}, 400),  # a rendered image: anonymize goes with application/dicom
        ({"anonymize": "no", "contentType": "application/dicom"}, 400),
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


def test_anonymize_gives_the_object_de_identified_with_new_uids(wado, stored):
    first = wado(stored[0], contentType="application/dicom", anonymize="yes")
    assert first.status_code == 200 and first.headers["content-type"] == "application/dicom"
    ds = pydicom.dcmread(BytesIO(first.content))
    original = stored[0]
    assert ds.SOPInstanceUID != original.SOPInstanceUID
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.StudyInstanceUID != original.StudyInstanceUID
    assert str(ds.PatientName) != str(original.PatientName)
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.PixelData == original.PixelData
    again = pydicom.dcmread(
        BytesIO(wado(original, contentType="application/dicom", anonymize="yes").content)
    )
    other = pydicom.dcmread(
        BytesIO(wado(stored[1], contentType="application/dicom", anonymize="yes").content)
    )
    assert again.SOPInstanceUID == ds.SOPInstanceUID  # the same new UIDs each time
    assert other.StudyInstanceUID == ds.StudyInstanceUID  # one study still


def test_anonymize_with_a_transfer_syntax_transcodes_then_de_identifies(wado, stored):
    response = wado(
        stored[1], contentType="application/dicom", anonymize="yes", transferSyntax=RLELossless
    )
    ds = pydicom.dcmread(BytesIO(response.content))
    assert ds.file_meta.TransferSyntaxUID == RLELossless
    assert ds.SOPInstanceUID != stored[1].SOPInstanceUID


def test_an_object_with_burned_in_annotation_is_not_anonymized(wado, dicomweb):
    (ds,) = make_study(series_count=1, instances_per_series=1)
    ds.BurnedInAnnotation = "YES"
    dicomweb.store_instances([ds])
    response = wado(ds, contentType="application/dicom", anonymize="yes")
    assert response.status_code == 409
    assert "Burned In Annotation" in response.json()["message"]
