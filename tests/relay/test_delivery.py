"""The last hop of a transfer (relay/delivery.py) to a device that must be called over
TLS (PS3.15 B.9): DCMTK's storescp with TLS, requiring a client certificate."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread

from isthmus.config import Peer, Settings
from isthmus.node.tls import client_context
from isthmus.relay.delivery import OUT_OF_RESOURCES, Delivery
from isthmus.testing import dcmtk
from isthmus.testing.certs import CertificateAuthority
from isthmus.testing.generate import StudySpec, write_study


class Site:
    def __init__(self, folder: Path) -> None:
        self.ca = CertificateAuthority(folder)
        self.node = self.ca.issue("isthmus")
        self.device = self.ca.issue("storescp")

    def context(self) -> object:
        return client_context(
            Settings(
                dicom_tls_ca=str(self.ca.bundle),
                dicom_tls_cert=str(self.node.cert),
                dicom_tls_key=str(self.node.key),
            )
        )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return Site(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def device(site: Site, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dcmtk.StoreSCP]:
    missing = dcmtk.missing_tools()
    if missing:
        pytest.fail(f"DCMTK tools missing: {missing} (run scripts/system-deps.sh)")
    options = ["+tls", str(site.device.key), str(site.device.cert), "+cf", str(site.ca.bundle)]
    scp = dcmtk.StoreSCP(
        tmp_path_factory.mktemp("device"), "DEVICE", extra=[*options, "--require-peer-cert"]
    )
    with scp:
        yield scp


def instance(tmp_path: Path) -> tuple[str, str, str, bytes]:
    (path,) = write_study(StudySpec(patient_id="PID-DELIVER", instances_per_series=1), tmp_path)
    ds = dcmread(path, stop_before_pixels=True)
    syntax = str(ds.file_meta.TransferSyntaxUID)
    return str(ds.SOPClassUID), str(ds.SOPInstanceUID), syntax, path.read_bytes()


def test_a_device_with_tls_receives_the_instance_over_tls(
    site: Site, device: dcmtk.StoreSCP, tmp_path: Path
) -> None:
    peer = Peer("DEVICE", "127.0.0.1", device.port, tls=True)
    delivery = Delivery(peer, "ISTHMUS", tls=site.context)  # type: ignore[arg-type]
    sop_class, sop_instance, syntax, data = instance(tmp_path)
    try:
        assert delivery.store(sop_class, sop_instance, syntax, data) == 0
    finally:
        delivery.close()
    received = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in device.received()}
    assert sop_instance in received


def test_a_device_with_tls_and_no_context_is_never_called_in_clear(tmp_path: Path) -> None:
    """The device listens in clear here, so a delivery that ignored `tls` would store."""
    with dcmtk.StoreSCP(tmp_path / "plain", "DEVICE") as plain:
        delivery = Delivery(Peer("DEVICE", "127.0.0.1", plain.port, tls=True), "ISTHMUS")
        sop_class, sop_instance, syntax, data = instance(tmp_path)
        assert delivery.store(sop_class, sop_instance, syntax, data) == OUT_OF_RESOURCES
        delivery.close()
        assert plain.received() == []
