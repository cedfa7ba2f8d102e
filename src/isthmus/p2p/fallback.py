"""The relay fallback (docs/p2p.md, "Relay fallback"): when no WebRTC path exists, the
sharing site sends the study through the relay's encrypted object-store transfers.

The fetching site asks on ``relay.<sharer>.p2p`` (kind ``p2p-relay``, proving the
link's secret, p2p/bridge_signal.py) for the study to go to its own AE title, with
an origin subject it registered beforehand (`RelaySite.invite`): its relay receiver
then lets that transfer, and no other, deliver into this node's archive.  The sharing
site runs an ordinary `TransferSender` (sealed objects, JetStream announcements,
manifest; relay/transfer_send.py) from its archive, checking before each instance that
the share is still active (a revocation aborts the transfer).  The fetching site's
receiver verifies every instance (size, SHA-256) against the sealed announcement and
completes against the manifest (relay/transfer_receive.py); `fetch_via_relay` follows
that transfer in the index until it ends, then checks the archive holds every instance.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol

from isthmus.archive import InstanceRow, Share
from isthmus.p2p.offers import still_active
from isthmus.p2p.receiver import Progress, TransferFailed
from isthmus.p2p.signalling import relay_proof
from isthmus.relay.tally import TransferTally
from isthmus.relay.transfer import TransferSender
from isthmus.relay.transfer_progress import progress_subject
from isthmus.relay.transfer_status import SUCCESS, UNABLE_TO_PERFORM_SUBOPERATIONS

if TYPE_CHECKING:
    from isthmus.relay.site import RelaySite

log = logging.getLogger(__name__)
SENDERS = 4  # instances put and announced at once (as the relay's C-MOVE source)
STALL = 180.0  # seconds the fetching site waits for a transfer that does not move
REVOKED = "the share link was revoked"


class Asking(Protocol):
    """The fetching side of p2p/bridge_signal.py's `BridgeSignalling` (a Protocol, so
    that the responder, which calls this module, is not imported back)."""

    site: RelaySite

    def ask(self, sharer: str, kind: str, body: dict[str, Any]) -> dict[str, Any]: ...


def send_study(
    site: RelaySite, row: Share, destination: str, aet: str, origin: dict[str, Any]
) -> dict[str, Any]:
    """Begin the transfer of the shared study to `destination`'s `aet` (blocking: the
    sender asks NATS), run it on a thread; what the fetching site is told."""
    assert site.link is not None
    rows = site.archive.instances(row.study_instance_uid)
    sender = TransferSender(
        site.link,
        site.identity,
        site.directory,
        site.objects,
        destination_site=destination,
        destination_aet=aet,
        origin={"site": origin["site"], "subject": str(origin.get("subject", ""))},
        timeout=site.settings.relay_timeout,
        state=site.archive.relay_transfers,
    )
    sender.expected = len(rows)
    tally = TransferTally()

    def one(instance: InstanceRow) -> None:
        data = site.archive.read_instance(instance)
        sender.add(
            instance.sop_class_uid, instance.sop_instance_uid, instance.transfer_syntax_uid, data
        )
        tally.count(instance.sop_class_uid, instance.transfer_syntax_uid, data)

    def send() -> int:
        """Every instance, SENDERS at a time (each waits for S3 and JetStream), the share
        checked before each; the first failure stops the rest."""
        slots = threading.BoundedSemaphore(SENDERS)
        with ThreadPoolExecutor(SENDERS, thread_name_prefix="p2p-relay-send") as pool:
            futures: list[Future[None]] = []
            for instance in rows:
                slots.acquire()
                failed = next((f for f in futures if f.done() and f.exception()), None)
                if failed is not None or not still_active(site.archive.shares, row.link_id):
                    slots.release()
                    break
                future = pool.submit(one, instance)
                future.add_done_callback(lambda _f: slots.release())
                futures.append(future)
        for future in futures:
            future.result()  # raises the first failure
        if len(futures) < len(rows):
            log.info("p2p: relay transfer %s stopped: %s", sender.transfer_id, REVOKED)
            sender.abort(REVOKED, status=int(UNABLE_TO_PERFORM_SUBOPERATIONS))
            return int(UNABLE_TO_PERFORM_SUBOPERATIONS)
        sender.finish(int(SUCCESS))
        return int(SUCCESS)

    def run() -> None:
        status = 0xC000
        try:
            status = send()
        except Exception as exc:  # NATS or S3 gone: the fetching site's wait is bounded
            log.warning("p2p: relay transfer %s failed: %s", sender.transfer_id, exc)
            try:
                sender.abort(f"the sharing site failed: {exc}", status=status)
            except Exception:  # nothing more to tell
                log.debug("p2p: abort not sent", exc_info=True)
        tally.tell(  # DICOM Instances Transferred, "sent" (PS3.15 A.5.3.7), as MoveSource
            site.archive.activity,
            direction="sent",
            transfer_id=sender.transfer_id,
            peer_site=destination,
            local_aet=site.settings.aet,
            status=status,
        )

    threading.Thread(target=run, name="p2p-relay-send", daemon=True).start()
    return {
        "transfer": sender.transfer_id,
        "study": row.study_instance_uid,
        "instances": len(rows),
        "sop_instance_uids": [r.sop_instance_uid for r in rows],
        "bytes": sum(r.size for r in rows),
    }


def fetch_via_relay(
    signalling: Asking,
    sharer: str,
    link_id: str,
    secret: str,
    on_progress: Callable[[Progress], None] | None = None,
    stopped: Callable[[], bool] = lambda: False,
) -> Progress:
    """Ask `sharer` to send the study through the relay and follow the transfer into
    this node's archive (blocking); the final progress, or TransferFailed."""
    site = signalling.site
    own, aet = site.name, site.settings.aet
    origin = {"site": own, "subject": progress_subject(own, secrets.token_hex(8))}
    site.invite(origin["subject"])
    body = {
        "link_id": link_id,
        "proof": relay_proof(secret, link_id, own, aet),
        "destination_aet": aet,
        "origin": origin,
    }
    from isthmus.p2p.bridge_wire import RELAY, SignallingRefused

    try:
        reply = signalling.ask(sharer, RELAY, body)
    except SignallingRefused as exc:
        raise TransferFailed(f"the sharing site refused the relay fallback: {exc}") from None
    uids = [str(u) for u in reply.get("sop_instance_uids", [])]
    transfers = site.archive.relay_transfers
    progress = Progress(
        study_uid=str(reply.get("study", "")),
        instances=int(reply.get("instances", len(uids))),
        bytes_total=int(reply.get("bytes", 0)),
    )
    transfer_id = str(reply["transfer"])
    changed, last = time.monotonic(), (-1, -1)
    while True:
        record = transfers.get(transfer_id)
        if record is not None:
            done = (record.completed + record.warning, record.failed)
            progress.stored = done[0]
            if progress.instances:
                progress.bytes_received = progress.bytes_total * done[0] // progress.instances
            if done != last:
                last, changed = done, time.monotonic()
                if on_progress is not None:
                    on_progress(progress)
            if record.finished:
                break
        if stopped():
            raise TransferFailed("the fetch was stopped")
        if time.monotonic() - changed > STALL:
            raise TransferFailed(f"the relay transfer {transfer_id} did not move for {STALL:g} s")
        time.sleep(0.2)
    if record.status != transfers.COMPLETE or record.dicom_status not in (0, None):
        raise TransferFailed(
            f"the relay transfer {transfer_id} {record.status}: {record.reason or ''}"
            f" (status 0x{record.dicom_status or 0:04X}, {record.completed} of"
            f" {progress.instances} stored)"
        )
    missing = [u for u in uids if not site.archive.contains(u)]
    if missing:
        raise TransferFailed(f"{len(missing)} instance(s) did not arrive through the relay")
    progress.stored = len(uids)
    progress.bytes_received = progress.bytes_total
    progress.complete = True
    return progress
