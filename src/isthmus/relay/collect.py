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

from pydicom.dataset import Dataset

from isthmus.config import Peer
from isthmus.dicom.part10 import file_meta
from isthmus.dimse import scu
from isthmus.dimse.get_requestor import GetRequestor, OnStore, Progress, open_get
from isthmus.relay.delivery import OUT_OF_RESOURCES

log = logging.getLogger(__name__)

# add(SOP Class UID, SOP Instance UID, Transfer Syntax UID, Part 10 bytes): durable in
# the transfer when it returns; raises when it cannot be.
AddInstance = Callable[[str, str, str, bytes], None]

GET_UIDS = {  # the C-GET information models (PS3.4 C.6.1.1, C.6.2.1)
    "PATIENT": "1.2.840.10008.5.1.4.1.2.1.3",
    "STUDY": "1.2.840.10008.5.1.4.1.2.2.3",
}
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
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> scu.RetrieveReport:
    """C-GET `identifier` from `device`, each instance into `add`; the device's counts.

    An instance `add` cannot make durable is answered 0xA700 (out of resources), so the
    device counts it failed and the final status stays honest.  Setting `cancel` aborts
    the association with the device (AssociationFailed): a C-CANCEL of the C-MOVE served."""
    requestor = open_device(device, model, calling_aet)
    try:
        return requestor.get(identifier, store_handler(add), progress, cancel)
    finally:
        requestor.release()


def open_device(device: Peer, model: str, calling_aet: str) -> GetRequestor:
    """An association with the device for C-GETs of `model` ("PATIENT" or "STUDY")."""
    return open_get(device, GET_UIDS[model], scu.common_storage_classes(), calling_aet)


def store_handler(add: AddInstance) -> OnStore:
    """The C-STORE sub-operations into `add`: success once durable, 0xA700 (out of
    resources) when it cannot be, so the device counts it failed and the final status
    stays honest."""

    def on_store(sop_class: str, sop_instance: str, syntax: str, dataset: memoryview) -> int:
        try:
            add(
                sop_class,
                sop_instance,
                syntax,
                file_meta(sop_class, sop_instance, syntax) + dataset,
            )
        except Exception as exc:  # NATS or the object store down: the device retries later
            log.warning("relay: could not put an instance in the transfer: %s", exc)
            return OUT_OF_RESOURCES
        return 0x0000

    return on_store
