"""N-EVENT-REPORTs on an association of our own (dimse/notify.py) to a peer that must be
called over TLS (PS3.15 B.9): a pynetdicom receiver behind a TLS server context."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import StorageCommitmentPushModel  # type: ignore[attr-defined]

from isthmus.config import Peer, Settings
from isthmus.dimse.notify import ReportFailed, reporting_context, send_event_report
from isthmus.testing.certs import CertificateAuthority
from isthmus.testing.net import free_port

WELL_KNOWN = "1.2.840.10008.1.20.1.1"


class Receiver:
    """Takes N-EVENT-REPORTs of Storage Commitment, over TLS when given a context."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.port = free_port()
        self.reports: list[str] = []
        self.lock = threading.Lock()
        ae = AE(ae_title="RECEIVER")
        ae.add_supported_context(StorageCommitmentPushModel, scu_role=False, scp_role=True)
        self.server = ae.start_server(
            ("127.0.0.1", self.port),
            block=False,
            ssl_context=tls,
            evt_handlers=[(evt.EVT_N_EVENT_REPORT, self.on_report)],
        )

    def on_report(self, event: Any) -> tuple[int, None]:
        with self.lock:
            self.reports.append(str(event.event_information.TransactionUID))
        return 0x0000, None


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_receiver(ca: CertificateAuthority) -> Iterator[Receiver]:
    issued = ca.issue("receiver")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(issued.cert, issued.key)
    receiver = Receiver(context)
    try:
        yield receiver
    finally:
        receiver.server.shutdown()


def report() -> Dataset:
    ds = Dataset()
    ds.TransactionUID = generate_uid()
    ds.ReferencedSOPSequence = []
    return ds


def test_a_peer_with_tls_gets_its_report_over_tls(
    ca: CertificateAuthority, tls_receiver: Receiver, tmp_path: Path
) -> None:
    peer = Peer("RECEIVER", "127.0.0.1", tls_receiver.port, tls=True)
    context = reporting_context(Settings(data=tmp_path, dicom_tls_ca=str(ca.bundle)), peer)
    assert context is not None
    sent = report()
    status = send_event_report(
        peer, "ISTHMUS", StorageCommitmentPushModel, WELL_KNOWN, 1, sent, 10, context
    )
    assert status == 0
    assert str(sent.TransactionUID) in tls_receiver.reports


def test_a_peer_with_tls_is_never_reported_to_in_clear() -> None:
    """The receiver listens in clear here, so a report that ignored `tls` would arrive."""
    plain = Receiver()
    try:
        peer = Peer("RECEIVER", "127.0.0.1", plain.port, tls=True)
        with pytest.raises(ReportFailed):
            send_event_report(peer, "ISTHMUS", StorageCommitmentPushModel, WELL_KNOWN, 1, report())
        assert plain.reports == []
    finally:
        plain.server.shutdown()


def test_unloadable_tls_files_are_a_report_failure(tmp_path: Path) -> None:
    peer = Peer("RECEIVER", "127.0.0.1", 1, tls=True)
    with pytest.raises(ReportFailed, match="over TLS"):
        reporting_context(Settings(data=tmp_path, dicom_tls_ca=str(tmp_path / "none.pem")), peer)
