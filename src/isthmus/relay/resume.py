"""Transfers a source router was sending when it stopped, taken up at its next start
(docs/relay.md, "Transfers", "Rules": a source restart).

A router that serves a C-MOVE for another site records the transfer as SENDING with
the request it serves (AE titles, information model, identifier, destination, origin:
relay/moves.py) and each instance SENT once JetStream acknowledged it
(relay/transfer_send.py).  When it starts, `MoveSource` takes up every transfer of
this site still SENDING - those a killed process left - unless `why_not` says why not:

- no request recorded (a transfer begun by an older version): nothing to re-issue;
- the source fell silent longer ago than RESUME_WITHIN (the destination's own bound
  for what a manifest announces, transfer_receive.Limits.manifest_wait): the caller
  stopped waiting long ago;
- nobody waits for it any more: the caller's router listens for the transfer's progress
  only while its C-MOVE waits, so a probe on that subject (`awaited`) tells whether
  the caller still waits, cancelled (a C-CANCEL sent while this router was down is
  lost, but its listener remembers it), or is gone - which is also what follows when
  the destination already finished the transfer (its final report ended the wait).

A transfer not taken up is aborted (`TransferSender.abort`, with the reason) so the
destination ends it and the record does not stay SENDING; one taken up re-runs the
C-GET from the device, skipping what was SENT, then sends the manifest as usual.  One
relay process per site (it alone answers `relay.<site>.move`), so a transfer left
SENDING at start is no other live process's.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from nats.errors import NoRespondersError

from isthmus.archive import RelayTransfer, RelayTransfers
from isthmus.dicom.status import CANCEL, UNABLE_TO_PROCESS
from isthmus.relay.link import Link
from isthmus.relay.transfer_progress import PROBE_CANCELLED
from isthmus.relay.transfer_receive import Limits

log = logging.getLogger(__name__)
RESUME_WITHIN = Limits().manifest_wait  # seconds a source may have been silent
PROBE_WAIT = 5.0  # seconds the caller's router has to answer a probe


def left_sending(state: RelayTransfers, site: str) -> list[RelayTransfer]:
    """This site's transfers still SENDING, oldest first (call it before this process
    begins any of its own)."""
    return [t for t in state.in_flight() if t.status == state.SENDING and t.source == site]


def why_not(
    transfer: RelayTransfer, request: dict[str, Any] | None, link: Link
) -> tuple[str, int] | None:
    """Why `transfer` is not to be resumed, with the status to abort it with; None
    when it is to be."""
    if request is None:
        return "not resumed: no request recorded to re-issue", int(UNABLE_TO_PROCESS)
    last = max(transfer.created_at, transfer.updated_at or transfer.created_at)
    silent = (datetime.now(UTC) - last).total_seconds()
    if silent > RESUME_WITHIN:
        return (
            f"not resumed: the source was silent {silent:.0f} s (more than {RESUME_WITHIN:g} s)",
            int(UNABLE_TO_PROCESS),
        )
    answer = awaited(link, str(transfer.origin.get("subject", "")))
    if answer is None:
        return "not resumed: the C-MOVE's caller no longer waits", int(UNABLE_TO_PROCESS)
    if answer == PROBE_CANCELLED:
        return "not resumed: the caller cancelled the C-MOVE", int(CANCEL)
    return None


def awaited(link: Link, subject: str) -> bytes | None:
    """The answer of whoever listens on the progress subject `subject` to a probe (an
    empty request): PROBE_AWAITED or PROBE_CANCELLED; None when nobody listens (NATS
    answers "no responders" at once).  A listener that does not answer in time, or a
    failure to ask, counts as awaited: a transfer is not given up on a doubt."""
    if not subject:
        return None
    try:
        reply = link.call(link.nc.request(subject, b"", timeout=PROBE_WAIT), PROBE_WAIT + 2)
    except NoRespondersError:
        return None
    except Exception as exc:  # a timeout, NATS busy: resume; the caller's wait is bounded
        log.info("relay: probe of %s unanswered (%s): resuming", subject, exc)
        return b""
    return bytes(reply.data)
