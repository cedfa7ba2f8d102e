"""The DIMSE door's job kind: C-STORE a job's instances to a known peer.

The job machinery is the core's (archive/jobs.py); this is its sending part for the
kinds ``forward`` (forwarding rules, archive/forwarding.py) and ``move`` (C-MOVE
sub-operations left when the association that asked for them dropped, retrieve.py).
Both are "send these SOP instances to AE `destination`": one association per attempt
with the lean requestor (requestor.py) and the contexts of contexts.py, instances as
stored or transcoded to what the peer accepted (PS3.4 C.4.2.3 for sub-operations),
over TLS to a peer with `tls` (PS3.15 B.9, node.tls.client_context).

Per instance: a success or warning status (PS3.4 B.2.3) is ``done``; a failure status
is ``failed`` with the peer's answer as the reason (not retried by itself: a peer that
refuses an instance will refuse it again; the admin page's retry does that).  A peer
that cannot be reached, rejects the association or drops it is transient: `Retry`,
with the instances not yet confirmed still pending.  `Activity` events
(``association.opened``/``closed``, direction ``outbound``) record the contact.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from isthmus.archive import Archive, Fail, InstanceRow, Retry, RunningJob
from isthmus.config import ConfigError, Settings
from isthmus.dicom import status
from isthmus.dimse.contexts import accepted_syntaxes, contexts_for
from isthmus.dimse.requestor import AssociationFailed, Requestor
from isthmus.node.access import AccessControl
from isthmus.node.tls import peer_context

log = logging.getLogger(__name__)

SEND_KINDS = ("forward", "move")
_CHUNK = 500  # SOP Instance UIDs per index query


def store_kind(
    archive: Archive, settings: Settings, access: AccessControl
) -> Callable[[RunningJob], None]:
    """The `run` of the kinds ``forward`` and ``move`` (params: ``destination``, and for
    ``move`` the ``originator`` AE title and message ID of the C-MOVE, PS3.7 9.1.1.1)."""

    def run(job: RunningJob) -> None:
        destination = str(job.params.get("destination", ""))
        peer = access.destination(destination)
        if peer is None:
            raise Fail(f"destination {destination!r} is not a known peer")
        pending = job.pending()
        rows: list[InstanceRow] = []
        for start in range(0, len(pending), _CHUNK):
            rows += archive.instances(sop_uid=pending[start : start + _CHUNK])
        found = {r.sop_instance_uid for r in rows}
        for uid in pending:
            if uid not in found:
                job.failed(uid, "no longer in the archive")
        if not rows:
            return
        originator = job.params.get("originator")
        try:
            tls = peer_context(settings, peer)
        except ConfigError as exc:  # no retry mends it: the settings must change
            raise Fail(f"cannot call {destination} over TLS: {exc}") from exc
        try:
            requestor = Requestor(
                peer, settings.aet, contexts_for(rows), timeout=settings.network_timeout, tls=tls
            ).open()
        except (AssociationFailed, OSError) as exc:
            raise Retry(str(exc)) from exc
        contact = announce_outbound(archive, settings.aet, destination, f"{peer.host}:{peer.port}")
        # The audit trail's "DICOM Instances Transferred" (PS3.15 A.5.3.7), one message
        # per attempt naming its studies; the metrics count the instances sent.
        tally = archive.activity.transfer(
            "transferred", "dimse", local=settings.aet, peer=destination, address=peer.host
        )
        try:
            for row in rows:
                if job.cancelled():
                    return
                ok = _send(archive, requestor, row, job, destination, originator)
                tally.add(row.study_instance_uid, row.sop_class_uid, row.size, ok)
        finally:
            requestor.release()
            contact()
            tally.close()

    return run


def _send(
    archive: Archive,
    requestor: Requestor,
    row: InstanceRow,
    job: RunningJob,
    destination: str,
    originator: list[object] | None,
) -> bool:
    """Send one instance; True when the destination stored it."""
    uid = row.sop_instance_uid
    syntaxes = accepted_syntaxes(requestor.accepted, row.sop_class_uid)
    try:
        syntax, dataset = archive.dataset_for(row, syntaxes)
    except Exception as exc:  # no accepted context, unreadable blob, codec error
        job.failed(uid, f"cannot send: {exc}")
        return False
    move_originator = (str(originator[0]), int(str(originator[1]))) if originator else None
    try:
        code = requestor.store(syntaxes[syntax], row.sop_class_uid, uid, dataset, move_originator)
    except AssociationFailed as exc:
        raise Retry(f"association with {destination} failed: {exc}") from exc
    if code == status.SUCCESS or status.is_warning(code):
        job.done(uid)
        return True
    job.failed(uid, f"{destination} answered 0x{code:04X} ({status.meaning(code, 'C-STORE')})")
    return False


def announce_outbound(
    archive: Archive, calling: str, called: str, address: str
) -> Callable[[], None]:
    """Publish an outbound association; returns the function that publishes its end."""
    payload = {
        "id": uuid.uuid4().hex,
        "direction": "outbound",
        "calling_aet": calling,
        "called_aet": called,
        "address": address,
    }
    archive.events.publish("association.opened", payload, local=True)
    return lambda: archive.events.publish("association.closed", payload, local=True)
