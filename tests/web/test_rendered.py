"""WADO-RS rendered and thumbnail resources at every level, with their parameters."""

from __future__ import annotations

from io import BytesIO

import numpy as np
import pydicom
import pytest
from dicomweb_client import DICOMwebClient
from PIL import Image
from pydicom.data import get_testdata_file
from tests.web.conftest import make_study, parse_multipart


@pytest.fixture(scope="module")
def stored(dicomweb: DICOMwebClient) -> dict:
    ct = make_study(series_count=2, instances_per_series=3)
    dose = pydicom.dcmread(get_testdata_file("rtdose.dcm"))
    dicomweb.store_instances(ct + [dose])
    return {"ct": ct, "dose": dose}


def image(data: bytes) -> Image.Image:
    return Image.open(BytesIO(data))


def instance_url(ds) -> str:
    return f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"


def test_instance_rendered_as_jpeg_by_default(dicomweb, stored):
    ds = stored["ct"][0]
    data = dicomweb.retrieve_instance_rendered(
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
    )
    picture = image(data)
    assert picture.format == "JPEG" and picture.size == (64, 64)


def test_png_with_window_and_viewport(http, stored):
    ds = stored["ct"][1]
    response = http.get(
        instance_url(ds) + "/rendered",
        params={"window": "40,400,LINEAR", "viewport": "32,32"},
        headers={"Accept": "image/png"},
    )
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    picture = image(response.content)
    assert picture.size == (32, 32)
    # the circle (HU ~ +40..60) is mid-grey in a 40/400 window, the background (-1000) black
    pixels = np.asarray(picture.convert("L"))
    assert pixels[16, 16] > 100 and pixels[0, 0] < 10


def test_window_changes_the_image(http, stored):
    url = instance_url(stored["ct"][1]) + "/rendered"
    narrow = http.get(url, params={"window": "40,10"}, headers={"Accept": "image/png"}).content
    wide = http.get(url, params={"window": "40,4000"}, headers={"Accept": "image/png"}).content
    assert narrow != wide


def test_frame_rendered(dicomweb, stored):
    dose = stored["dose"]
    data = dicomweb.retrieve_instance_frames_rendered(
        dose.StudyInstanceUID,
        dose.SeriesInstanceUID,
        dose.SOPInstanceUID,
        [3],
        media_types=("image/gif",),
    )
    assert image(data).format == "GIF"


def test_series_rendered_as_one_image_when_a_single_image_is_asked(dicomweb, stored):
    ds = stored["ct"][0]
    data = dicomweb.retrieve_series_rendered(
        ds.StudyInstanceUID, ds.SeriesInstanceUID, media_types=("image/jpeg",)
    )
    assert image(data).format == "JPEG"


def test_study_rendered_as_multipart_has_every_instance(http, stored):
    ds = stored["ct"][0]
    response = http.get(
        f"/studies/{ds.StudyInstanceUID}/rendered",
        headers={"Accept": 'multipart/related; type="image/png"'},
    )
    parts = parse_multipart(response)
    assert len(parts) == 6
    assert all(image(body).format == "PNG" for _, body in parts)


@pytest.mark.parametrize("level", ["study", "series", "instance", "frame"])
def test_thumbnails_at_every_level(http, stored, level):
    ds = stored["ct"][0]
    url = {
        "study": f"/studies/{ds.StudyInstanceUID}",
        "series": f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}",
        "instance": instance_url(ds),
        "frame": instance_url(ds) + "/frames/1",
    }[level]
    response = http.get(url + "/thumbnail", params={"viewport": "16,16"})
    assert response.status_code == 200
    assert image(response.content).size == (16, 16)


@pytest.mark.parametrize(
    "params",
    [
        {"window": "40"},
        {"window": "a,b"},
        {"window": "40,400,CUBIC"},
        {"viewport": "0,10"},
        {"viewport": "10"},
        {"quality": "0"},
        {"quality": "101"},
        {"annotation": "everything"},
    ],
)
def test_bad_rendering_parameters_are_400(http, stored, params):
    response = http.get(instance_url(stored["ct"][0]) + "/rendered", params=params)
    assert response.status_code == 400
    assert response.json()["message"]


def test_quality_changes_jpeg_size(http, stored):
    url = instance_url(stored["ct"][2]) + "/rendered"
    low = http.get(url, params={"quality": "5", "viewport": "256,256"}).content
    high = http.get(url, params={"quality": "100", "viewport": "256,256"}).content
    assert len(low) < len(high)


def test_unrenderable_media_type_is_406(http, stored):
    response = http.get(
        instance_url(stored["ct"][0]) + "/rendered", headers={"Accept": "application/pdf"}
    )
    assert response.status_code == 406


def test_several_frames_are_rendered_as_multipart_or_refused_never_cut_to_one(http, stored):
    """PS3.18 10.4.1.1.3, 8.3.5.1: several frames rendered are a multi-frame media type;
    one image/jpeg would silently drop all frames but the first."""
    url = instance_url(stored["dose"]) + "/frames/1,2,3/rendered"
    refused = http.get(url, headers={"Accept": "image/jpeg"})
    assert refused.status_code == 406
    assert "frames" in refused.json()["message"]
    for accept in ('multipart/related; type="image/jpeg"', "*/*"):
        parts = parse_multipart(http.get(url, headers={"Accept": accept}))
        assert [image(body).format for _, body in parts] == ["JPEG"] * 3
    one = http.get(instance_url(stored["dose"]) + "/frames/2/rendered", headers={"Accept": "*/*"})
    assert one.headers["content-type"] == "image/jpeg"


def test_frame_outside_instance_is_404(http, stored):
    assert http.get(instance_url(stored["ct"][0]) + "/frames/2/rendered").status_code == 404


def test_each_frame_of_a_stored_multiframe_instance_renders_as_from_the_whole_file(http, stored):
    """The door reads only the header and the frame asked for; the picture is the one the
    render module makes from the complete file."""
    from isthmus.render.image import render

    dose = stored["dose"]
    whole = open(get_testdata_file("rtdose.dcm"), "rb").read()
    for frame in (1, 7, dose.NumberOfFrames):
        response = http.get(
            instance_url(dose) + f"/frames/{frame}/rendered", headers={"Accept": "image/png"}
        )
        assert response.status_code == 200
        expected = render(whole, frame=frame, media_type="image/png")
        assert np.array_equal(np.asarray(image(response.content)), np.asarray(image(expected)))
