"""The first hop of a transfer: the source site's router retrieves the instances a C-MOVE
asked for from its own device, with C-GET (PS3.4 C.4.3), and hands each to the transfer
as it arrives, so the destination receives the first instances while the last are still
being read.

C-GET needs no configuration at the device (the instances come back on the router's own
association, PS3.7 D.3.3.4 role selection); the router calls with the AE title of the
original caller, so the device's own access rules see who asks.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from pydicom.dataset import Dataset

from isthmus.config import Peer
from isthmus.dimse import scu
from isthmus.relay.delivery import OUT_OF_RESOURCES

log = logging.getLogger(__name__)

# add(SOP Class UID, SOP Instance UID, Transfer Syntax UID, Part 10 bytes): durable in
# the transfer when it returns; raises when it cannot be.
AddInstance = Callable[[str, str, str, bytes], None]

# The Maximum Length the router receives from its device: a 512 x 512 CT image comes in
# two P-DATA-TF PDUs instead of thirty-two of pynetdicom's default 16 KiB.
MAX_PDU = 262_144

# The C-MOVE information model's C-GET twin (PS3.4 C.6): same root, same identifier.
GET_MODEL_OF_MOVE = {
    "1.2.840.10008.5.1.4.1.2.1.2": "PATIENT",  # Patient Root Q/R MOVE
    "1.2.840.10008.5.1.4.1.2.2.2": "STUDY",  # Study Root Q/R MOVE
}


def collect_by_get(
    device: Peer,
    calling_aet: str,
    identifier: Dataset,
    model: str,
    add: AddInstance,
    progress: Callable[[Dataset], None] | None = None,
    cancel: threading.Event | None = None,
) -> scu.RetrieveReport:
    """C-GET `identifier` from `device`, each instance into `add`; the device's counts.

    An instance `add` cannot make durable is answered 0xA700 (out of resources), so the
    device counts it failed and the final status stays honest.  Setting `cancel` aborts
    the association with the device (scu.SCUError): a C-CANCEL of the C-MOVE served."""

    return scu.get(
        device,
        identifier,
        store_handler(add),
        scu.common_storage_classes(),
        model=model,
        calling_aet=calling_aet,
        progress=progress,
        max_pdu=MAX_PDU,
        cancel=cancel,
    )


def store_handler(add: AddInstance) -> Callable[[Any], int]:
    """The C-STORE handler (pynetdicom's EVT_C_STORE) putting each instance into `add`:
    success once durable, 0xA700 (out of resources) when it cannot be, so the device
    counts it failed and the final status stays honest."""

    def on_store(event: Any) -> int:
        request = event.request
        try:
            add(
                str(request.AffectedSOPClassUID),
                str(request.AffectedSOPInstanceUID),
                str(event.context.transfer_syntax),
                bytes(event.encoded_dataset(include_meta=True)),
            )
        except Exception as exc:  # NATS or the object store down: the device retries later
            log.warning("relay: could not put an instance in the transfer: %s", exc)
            return OUT_OF_RESOURCES
        return 0x0000

    return on_store
