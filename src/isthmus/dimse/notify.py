"""N-EVENT-REPORT to a remote AE on an association of our own (PS3.7 10.1.1).

When the association a request came on has ended, the performing SCP reports on a
new association that it requests: Storage Commitment results (PS3.4 J.3.3) and UPS
events to subscribed AEs (PS3.4 CC.2.4).  Then the archive, as association
requestor, is the SCP of the SOP class, so it proposes SCP/SCU Role Selection with
the SCP role only (PS3.7 D.3.3.4; PS3.4 J.3.3 requires it for Storage Commitment).

This side uses pynetdicom's AE, as the CLI's SCU does: a few reports at a time, no
stored bytes to send unchanged (the lean requestor's reason to exist), and pynetdicom
already negotiates roles and encodes the event information.
"""

from __future__ import annotations

import logging
import ssl

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_role
from pynetdicom.association import Association

from isthmus.config import ConfigError, Peer, Settings
from isthmus.dimse.scu import SCUError, associate
from isthmus.node.tls import peer_context

log = logging.getLogger(__name__)


class ReportFailed(ConnectionError):
    """The report could not be delivered: no association, or no context for it."""


class EventReporter:
    """One association to `peer` on which the archive sends N-EVENT-REPORTs as SCP of
    `abstract_syntax` (the presentation context's SOP class)."""

    def __init__(
        self,
        peer: Peer,
        calling_aet: str,
        abstract_syntax: str,
        timeout: float = 30.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """Associate with `peer`, over TLS with `tls` for a peer with `tls` (PS3.15 B.9;
        such a peer is never called in clear: ReportFailed without a context)."""
        self.peer = peer
        ae = AE(ae_title=calling_aet)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
        ae.add_requested_context(abstract_syntax, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        role = build_role(abstract_syntax, scu_role=False, scp_role=True)
        try:
            self.assoc: Association = associate(ae, peer, tls, ext_neg=[role])
        except SCUError as exc:
            raise ReportFailed(f"no association with {peer}: {exc}") from exc
        self._next_id = 1

    def send(
        self, sop_class: str, sop_instance: str, event_type: int, information: Dataset | None
    ) -> int:
        """One N-EVENT-REPORT-RQ; the response status.  ReportFailed if none came."""
        message_id, self._next_id = self._next_id, self._next_id % 65535 + 1
        try:
            status, _reply = self.assoc.send_n_event_report(
                information, event_type, sop_class, sop_instance, msg_id=message_id
            )
        except (ValueError, RuntimeError) as exc:  # pynetdicom: no context, association gone
            raise ReportFailed(f"{self.peer}: {exc}") from exc
        if "Status" not in status:  # an empty Dataset: no (valid) response
            raise ReportFailed(f"{self.peer} did not answer the N-EVENT-REPORT")
        return int(status.Status)

    def close(self) -> None:
        if self.assoc.is_established:
            self.assoc.release()

    def __enter__(self) -> EventReporter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def reporting_context(settings: Settings, peer: Peer) -> ssl.SSLContext | None:
    """node.tls.peer_context, with our TLS files that cannot be loaded a ReportFailed."""
    try:
        return peer_context(settings, peer)
    except ConfigError as exc:
        raise ReportFailed(f"cannot call {peer} over TLS: {exc}") from exc


def send_event_report(
    peer: Peer,
    calling_aet: str,
    sop_class: str,
    sop_instance: str,
    event_type: int,
    information: Dataset | None,
    timeout: float = 30.0,
    tls: ssl.SSLContext | None = None,
) -> int:
    """Open an association to `peer`, send one N-EVENT-REPORT-RQ as SCP of `sop_class`,
    release; returns the response status.  Raises ReportFailed when nothing was
    delivered (unreachable, rejected, context or role refused, no response)."""
    with EventReporter(peer, calling_aet, sop_class, timeout, tls) as reporter:
        return reporter.send(sop_class, sop_instance, event_type, information)
