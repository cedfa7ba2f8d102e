"""WADO-RS frames: native and compressed, multipart and single part, bit-exact."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from dicomweb_client import DICOMwebClient
from pydicom.data import get_testdata_file
from tests.web.conftest import make_study, parse_multipart


@pytest.fixture(scope="module")
def stored(dicomweb: DICOMwebClient) -> dict[str, pydicom.Dataset]:
    """A CT image (native), a 15-frame dose (Implicit VR), a 2-frame RGB RLE image."""
    ct = make_study(instances_per_series=1)[0]
    dose = pydicom.dcmread(get_testdata_file("rtdose.dcm"))
    rle = pydicom.dcmread(get_testdata_file("SC_rgb_rle_2frame.dcm"))
    dicomweb.store_instances([ct, dose, rle])
    return {"ct": ct, "dose": dose, "rle": rle}


def frames_url(ds: pydicom.Dataset, frames: str) -> str:
    return (
        f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}/frames/{frames}"
    )


def test_native_frame_round_trips_bit_exact(dicomweb, stored):
    ct = stored["ct"]
    [frame] = dicomweb.retrieve_instance_frames(
        ct.StudyInstanceUID, ct.SeriesInstanceUID, ct.SOPInstanceUID, [1]
    )
    assert frame == ct.PixelData


def test_frames_of_a_multiframe_instance_in_the_order_asked(dicomweb, stored):
    dose = stored["dose"]
    frames = dicomweb.retrieve_instance_frames(
        dose.StudyInstanceUID,
        dose.SeriesInstanceUID,
        dose.SOPInstanceUID,
        [5, 2],
        media_types=("application/octet-stream",),
    )
    expected = dose.pixel_array
    assert frames == [expected[4].astype("<u4").tobytes(), expected[1].astype("<u4").tobytes()]


def test_compressed_frames_keep_their_bitstream_when_asked(http, stored):
    rle = stored["rle"]
    response = http.get(
        frames_url(rle, "2"), headers={"Accept": 'multipart/related; type="image/dicom-rle"'}
    )
    assert response.status_code == 200
    [(headers, data)] = parse_multipart(response)
    assert headers["content-type"] == "image/dicom-rle; transfer-syntax=1.2.840.10008.1.2.5"
    fragments = list(pydicom.encaps.generate_frames(rle.PixelData, number_of_frames=2))
    assert data == fragments[1]


def test_compressed_frames_are_decoded_for_octet_stream(http, stored):
    rle = stored["rle"]
    response = http.get(
        frames_url(rle, "1"),
        headers={"Accept": 'multipart/related; type="application/octet-stream"'},
    )
    [(headers, data)] = parse_multipart(response)
    assert headers["content-type"].startswith("application/octet-stream")
    pixels = np.frombuffer(data, dtype=np.uint8).reshape(100, 100, 3)
    assert (pixels == rle.pixel_array[0]).all()


def test_any_transfer_syntax_with_octet_stream_sends_frames_as_stored(http, stored):
    """OHIF's Accept: the parts say what they hold."""
    rle = stored["rle"]
    response = http.get(
        frames_url(rle, "1,2"),
        headers={"Accept": "multipart/related; type=application/octet-stream; transfer-syntax=*"},
    )
    parts = parse_multipart(response)
    assert [h["content-type"] for h, _ in parts] == [
        "image/dicom-rle; transfer-syntax=1.2.840.10008.1.2.5"
    ] * 2


def test_single_frame_as_single_part(http, stored):
    ct = stored["ct"]
    response = http.get(frames_url(ct, "1"), headers={"Accept": "application/octet-stream"})
    assert response.headers["content-type"].startswith("application/octet-stream")
    assert response.content == ct.PixelData


def test_frame_beyond_the_instance_is_404(http, stored):
    response = http.get(frames_url(stored["dose"], "3,16"))
    assert response.status_code == 404
    assert "16" in response.json()["message"]


@pytest.mark.parametrize("frames", ["0", "a", "1,,2", "-1"])
def test_malformed_frame_list_is_400(http, stored, frames):
    assert http.get(frames_url(stored["ct"], frames)).status_code == 400


def test_lossless_jpeg_asked_as_baseline_or_octet_stream_falls_back_to_octet_stream(dicomweb, http):
    # The viewer's Accept: native, or JPEG baseline, at equal preference.  A lossless
    # JPEG cannot become baseline, so the native frame is chosen, not 406.
    jpeg = pydicom.dcmread(get_testdata_file("SC_rgb_jpeg_gdcm.dcm"))  # JPEG lossless SV1
    dicomweb.store_instances([jpeg])
    response = http.get(
        frames_url(jpeg, "1"),
        headers={
            "Accept": (
                'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1, '
                'multipart/related; type="image/jpeg"; transfer-syntax=1.2.840.10008.1.2.4.50'
            )
        },
    )
    assert response.status_code == 200
    [(headers, data)] = parse_multipart(response)
    assert headers["content-type"].startswith("application/octet-stream")
    assert data == jpeg.pixel_array.astype(jpeg.pixel_array.dtype.newbyteorder("<")).tobytes()


def test_a_native_frame_asked_for_as_jpeg_ls_is_sent_encoded(dicomweb, http, stored):
    """PS3.18 8.7.3.5: a frame asked for in another media type than stored, here
    image/jls, is encoded; the JPEG-LS encoder's bytearray was handed to the response as
    if it were text, and the answer broke off after its headers."""
    import jpeg_ls

    ct = stored["ct"]
    [frame] = dicomweb.retrieve_instance_frames(
        ct.StudyInstanceUID,
        ct.SeriesInstanceUID,
        ct.SOPInstanceUID,
        [1],
        media_types=(("image/jls", "1.2.840.10008.1.2.4.80"),),
    )
    single = http.get(frames_url(ct, "1"), headers={"Accept": "image/jls"})
    assert single.status_code == 200
    assert single.headers["content-type"] == "image/jls; transfer-syntax=1.2.840.10008.1.2.4.80"
    for data in (frame, single.content):
        assert (jpeg_ls.decode(np.frombuffer(data, np.uint8)) == ct.pixel_array).all()
