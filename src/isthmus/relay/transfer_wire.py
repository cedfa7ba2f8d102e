"""What a transfer puts on the wire (docs/relay.md, "Transfers"): names, subjects,
the sealed bodies of announcements, manifests and progress reports, and the stream.

A transfer id is ``<source>.<destination>.<uuid hex>``.  Instance n of a transfer is
stored in parts of at most PART_SIZE bytes (before compression), as the objects
``transfers/<id>/<n>.<p>``, each a sealed envelope of kind "instance" whose clear
header carries the transfer id, n, p, the number of parts, the part's size and
whether it is compressed with Zstandard (`zstd`) - never a UID.  The announcement (JetStream, ``relay.<destination>.transfer.<id>``,
kind "announce") carries in its sealed body what identifies the instance; the
manifest (kind "manifest") names the object ``transfers/<id>/manifest`` whose sealed
body lists every instance sent.  Everything is signed by the source site and sealed
to the destination site; progress reports (core NATS, kind "progress") are signed by
the destination site and sealed to the originator's.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

STREAM = "RELAY_TRANSFERS"
STREAM_SUBJECTS = ["relay.*.transfer.>"]
STREAM_MAX_AGE = 7 * 24 * 3600.0  # an unconsumed transfer is dropped after a week
PART_SIZE = 8 * 1024 * 1024  # bytes of an instance per object, before compression
MANIFEST = "manifest"  # the manifest's object name

# Transfer syntaxes whose pixel data is not compressed (PS3.5 A.1-A.4, A.4.11):
# instances in these are compressed (Zstandard) before sealing, each part kept
# compressed when it shrank (crypto.compress_if_worth); any other (JPEG, JPEG-LS, JPEG 2000, RLE, MPEG,
# HEVC, Deflated Explicit VR) is already compressed and sealed as it is, which spends
# no CPU on bytes that would not shrink.
UNCOMPRESSED_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2",  # Implicit VR Little Endian
        "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
        "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired)
        "1.2.840.10008.1.2.1.98",  # Encapsulated Uncompressed Explicit VR Little Endian
    }
)

# Clear header kinds.
INSTANCE, ANNOUNCE, MANIFEST_KIND, ABORT, PROGRESS = (
    "instance",
    "announce",
    "manifest",
    "abort",
    "progress",
)


class TransferError(RuntimeError):
    """A transfer that cannot go on (unknown site, refused envelope, bad manifest)."""


class TransferUnavailable(ConnectionError):
    """NATS or the object store did not take an instance within the bounded time: the
    C-STORE that brought it must fail (0xA700, out of resources)."""


def new_transfer_id(source: str, destination: str) -> str:
    return f"{source}.{destination}.{uuid.uuid4().hex}"


def transfer_subject(destination: str, transfer_id: str) -> str:
    return f"relay.{destination}.transfer.{transfer_id}"


def consumer_name(site: str) -> str:
    """The durable pull consumer of a destination site."""
    return f"site-{site}"


def part_name(seq: int, part: int) -> str:
    return f"{seq}.{part}"


def worth_compressing_syntax(transfer_syntax: str) -> bool:
    """Might an instance of this transfer syntax shrink (is its pixel data raw)?"""
    return transfer_syntax in UNCOMPRESSED_SYNTAXES


def part_count(size: int) -> int:
    return max(1, -(-size // PART_SIZE))


@dataclass(frozen=True)
class Announcement:
    """One instance of a transfer, as its announcement's sealed body describes it."""

    transfer_id: str
    seq: int
    source: str
    destination: str
    destination_aet: str
    origin: dict[str, Any]
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    size: int
    sha256: str
    parts: int
    expected: int | None = None  # instances the source expects to send in all

    def objects(self) -> list[str]:
        return [part_name(self.seq, p) for p in range(self.parts)]

    def part_size(self, part: int) -> int:
        return min(PART_SIZE, self.size - part * PART_SIZE) if self.size else 0

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, body: bytes) -> Announcement:
        return cls(**_fields(cls, body))


@dataclass(frozen=True)
class ManifestEntry:
    seq: int
    sop_instance_uid: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """Every instance sent, and what the source device reported at the end (the
    number of instances it failed to send to the source router, its final status)."""

    transfer_id: str
    entries: tuple[ManifestEntry, ...]
    failed_at_source: int = 0
    source_status: int = 0x0000
    failed_uids: tuple[str, ...] = field(default_factory=tuple)

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, body: bytes) -> Manifest:
        doc = _fields(cls, body)
        doc["entries"] = tuple(ManifestEntry(**e) for e in doc["entries"])
        doc["failed_uids"] = tuple(doc.get("failed_uids", ()))
        return cls(**doc)


@dataclass(frozen=True)
class Progress:
    """A destination router's report to the originator of a C-MOVE or C-GET: the
    sub-operation counts of PS3.4 C.4.2.1.5 (C-MOVE) and C.4.3.1.3 (C-GET); the last
    report (`final`) carries the final status and the Failed SOP Instance UID List."""

    transfer_id: str
    completed: int
    failed: int
    warning: int
    remaining: int | None
    final: bool = False
    status: int | None = None
    failed_uids: tuple[str, ...] = field(default_factory=tuple)
    reason: str | None = None

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, body: bytes) -> Progress:
        doc = _fields(cls, body)
        doc["failed_uids"] = tuple(doc.get("failed_uids", ()))
        return cls(**doc)


def _fields(cls: type, body: bytes) -> dict[str, Any]:
    """The known fields of a JSON body (TransferError when it is not one of ours)."""
    try:
        doc = json.loads(body)
        names = cls.__dataclass_fields__  # type: ignore[attr-defined]
        return {k: v for k, v in doc.items() if k in names}
    except (ValueError, AttributeError, TypeError) as exc:
        raise TransferError(f"malformed {cls.__name__}: {exc}") from None


async def ensure_stream(js: JetStreamContext) -> None:
    """Create RELAY_TRANSFERS when it is missing (file storage, kept a week)."""
    try:
        await js.stream_info(STREAM)
        return
    except NotFoundError:
        pass
    config = StreamConfig(
        name=STREAM,
        subjects=STREAM_SUBJECTS,
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=STREAM_MAX_AGE,
        duplicate_window=120.0,
    )
    try:
        await js.add_stream(config)
    except BadRequestError:  # another router created it at the same moment
        await js.stream_info(STREAM)
