"""N-EVENT-REPORT to a remote AE on an association of our own (PS3.7 10.1.1).

When the association a request came on has ended, the performing SCP reports on a
new association that it requests: Storage Commitment results (PS3.4 J.3.3) and UPS
events to subscribed AEs (PS3.4 CC.2.4).  Then the archive, as association
requestor, is the SCP of the SOP class, so it proposes SCP/SCU Role Selection with
the SCP role only (PS3.7 D.3.3.4; PS3.4 J.3.3 requires it for Storage Commitment).

This side uses pynetdicom's AE, as the CLI's SCU does: one report at a time, no
bulk bytes to keep as stored, so the lean requestor's reason (sending stored
datasets unchanged) does not apply, and pynetdicom already negotiates roles and
encodes the event information.
"""

from __future__ import annotations

import logging

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_role

from isthmus.config import Peer

log = logging.getLogger(__name__)


class ReportFailed(ConnectionError):
    """The report could not be delivered: no association, or no context for it."""


def send_event_report(
    peer: Peer,
    calling_aet: str,
    sop_class: str,
    sop_instance: str,
    event_type: int,
    information: Dataset | None,
    timeout: float = 30.0,
) -> int:
    """Open an association to `peer`, send one N-EVENT-REPORT-RQ as SCP of `sop_class`,
    release; returns the response status.  Raises ReportFailed when nothing was
    delivered (unreachable, rejected, context or role refused, no response)."""
    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    role = build_role(sop_class, scu_role=False, scp_role=True)
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.aet, ext_neg=[role])
    if not assoc.is_established:
        raise ReportFailed(f"no association with {peer}")
    try:
        status, _reply = assoc.send_n_event_report(information, event_type, sop_class, sop_instance)
        if "Status" not in status:  # an empty Dataset: no (valid) response
            raise ReportFailed(f"{peer} did not answer the N-EVENT-REPORT")
        return int(status.Status)
    except (ValueError, RuntimeError) as exc:  # pynetdicom: no context with the SCP role
        raise ReportFailed(f"{peer}: {exc}") from exc
    finally:
        if assoc.is_established:
            assoc.release()
