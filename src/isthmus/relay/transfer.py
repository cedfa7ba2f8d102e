"""Transfers: how instances of a C-MOVE or C-GET cross from one site's relay router to
another's (docs/relay.md, "Transfers"; issue 11, "Transfers a radiologist can trust").

Not one WAN round trip per instance, but a stream: the source router seals each
instance to the destination site and PUTs it in the object store, announces it on
JetStream (`TransferSender`); the destination router consumes its durable consumer,
fetches, verifies, delivers and records each instance (`TransferReceiver`, state in
the index: `isthmus.archive.RelayTransfers`), completes the transfer against its
manifest and reports progress to the originator (`ProgressListener`).

This module gathers the public names; each concept lives in its own module:
transfer_wire (names, subjects, bodies, the stream), transfer_send, transfer_receive,
transfer_progress, transfer_status (DICOM statuses), objects_s3 (S3Objects).
"""

from isthmus.archive import RelayDelivery, RelayTransfer, RelayTransfers
from isthmus.relay.objects import MissingObject, ObjectsUnavailable, TransferObjects
from isthmus.relay.objects_s3 import S3Objects
from isthmus.relay.transfer_progress import ProgressListener, progress_subject, publish_progress
from isthmus.relay.transfer_receive import Deliver, Limits, TransferReceiver
from isthmus.relay.transfer_send import TransferSender
from isthmus.relay.transfer_status import final_status, store_outcome
from isthmus.relay.transfer_wire import (
    STREAM,
    Announcement,
    Manifest,
    ManifestEntry,
    Progress,
    TransferError,
    TransferUnavailable,
)

# The receiver's resumable state: the archive's record of transfers received.
TransferState = RelayTransfers

__all__ = [
    "STREAM",
    "Announcement",
    "Deliver",
    "Limits",
    "Manifest",
    "ManifestEntry",
    "MissingObject",
    "ObjectsUnavailable",
    "Progress",
    "ProgressListener",
    "RelayDelivery",
    "RelayTransfer",
    "RelayTransfers",
    "S3Objects",
    "TransferError",
    "TransferObjects",
    "TransferReceiver",
    "TransferSender",
    "TransferState",
    "TransferUnavailable",
    "final_status",
    "progress_subject",
    "publish_progress",
    "store_outcome",
]
