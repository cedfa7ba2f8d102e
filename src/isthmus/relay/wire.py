"""The bodies of the association relay's envelopes (docs/relay.md, "Association relay").

Every message between two relay routers is an envelope (relay/crypto.py) whose clear
header says only `kind`, the association's ids, a sequence number and the parts of a
split body - never an AE title, a patient name, an ID or a UID.  The sealed bodies:

- `open` (A -> B, request/reply): JSON - calling and called AE titles, the proposed
  presentation contexts `[[id, abstract syntax, [transfer syntaxes]]]`, the role
  selections `[[SOP class, SCU role, SCP role]]` (PS3.7 D.3.3.4), the SOP class
  extended negotiation sub-items `extended: [[SOP class, hex info]]` (D.3.3.5) and the
  common extended ones `common: [[SOP class, service class, [related classes]]]`
  (D.3.3.6), the user identity `identity: [type, response requested, hex primary, hex
  secondary]` or null (D.3.3.7.1), and `cid`, the id of the caller's inbox
  `relay.<A>.r.<cid>`;
- its reply, `accept`: JSON `{"aid", "contexts": [[id, result, transfer syntax]],
  "roles": [...], "extended": [...], "identity": hex server response or null}` (the
  device's answers), or `reject`:
  `{"reject": [result, source, reason], "why": text}`
  (PS3.8 9.3.4 table 9-21);
- `dimse`: one whole DIMSE message (PS3.7 6.3): `context id (u8) | flags (u8, bit 0:
  a data set follows) | command length (u32, big endian) | command set | data set`;
- `ping`, `release`, `released`, `abort`: no body (an empty one, sealed all the same).

A body larger than `PART_SIZE` is sealed in several envelopes (`part` 0..`parts`-1 in
the clear header, each sealed on its own) so that no NATS message exceeds the server's
1 MiB maximum payload.  Messages of one association in one direction carry `seq`
0, 1, 2...; a gap means NATS dropped one, and the association is aborted.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from isthmus.dicom.ul.items import (
    CommonExtendedNegotiation,
    ExtendedNegotiation,
    PresentationContextAC,
    PresentationContextRQ,
    RoleSelection,
    UserIdentityRQ,
)

OPEN, ACCEPT, REJECT = "open", "accept", "reject"
DIMSE, PING, RELEASE, RELEASED, ABORT = "dimse", "ping", "release", "released", "abort"
KINDS = frozenset({OPEN, ACCEPT, REJECT, DIMSE, PING, RELEASE, RELEASED, ABORT})
PART_SIZE = 512 * 1024  # bytes of body per envelope: well under NATS's 1 MiB payload
_MESSAGE = struct.Struct(">BBI")
HAS_DATASET = 1


class WireError(ValueError):
    """A body that is not what its kind says."""


@dataclass(frozen=True)
class OpenRequest:
    """What the calling site asks the far site to open (the A-ASSOCIATE-RQ's gist)."""

    calling_aet: str
    called_aet: str
    contexts: tuple[PresentationContextRQ, ...]
    roles: tuple[RoleSelection, ...]
    cid: str
    extended: tuple[ExtendedNegotiation, ...] = ()
    common_extended: tuple[CommonExtendedNegotiation, ...] = ()
    user_identity: UserIdentityRQ | None = None

    def encode(self) -> bytes:
        identity = self.user_identity
        return _json(
            {
                "calling": self.calling_aet,
                "called": self.called_aet,
                "contexts": [
                    [c.context_id, c.abstract_syntax, list(c.transfer_syntaxes)]
                    for c in self.contexts
                ],
                "roles": [[r.sop_class, r.scu_role, r.scp_role] for r in self.roles],
                "extended": _extended(self.extended),
                "common": [
                    [c.sop_class, c.service_class, list(c.related_classes)]
                    for c in self.common_extended
                ],
                "identity": None
                if identity is None
                else [
                    identity.identity_type,
                    identity.response_requested,
                    identity.primary.hex(),
                    identity.secondary.hex(),
                ],
                "cid": self.cid,
            }
        )

    @classmethod
    def decode(cls, body: bytes) -> OpenRequest:
        doc = _load(body)
        try:
            return cls(
                calling_aet=str(doc["calling"]),
                called_aet=str(doc["called"]),
                contexts=tuple(
                    PresentationContextRQ(int(i), str(a), tuple(map(str, ts)))
                    for i, a, ts in doc["contexts"]
                ),
                roles=tuple(RoleSelection(str(u), bool(s), bool(p)) for u, s, p in doc["roles"]),
                cid=_token(doc["cid"]),
                extended=_extended_of(doc),
                common_extended=tuple(
                    CommonExtendedNegotiation(str(u), str(c), tuple(map(str, r)))
                    for u, c, r in doc.get("common", ())
                ),
                user_identity=_identity_of(doc.get("identity")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise WireError(f"bad open request: {exc}") from None


@dataclass(frozen=True)
class OpenAnswer:
    """The far site's answer: accepted (`aid`, contexts, roles) or `reject`ed."""

    aid: str = ""
    contexts: tuple[PresentationContextAC, ...] = ()
    roles: tuple[RoleSelection, ...] = ()
    extended: tuple[ExtendedNegotiation, ...] = ()
    server_response: bytes | None = None  # the device's user identity answer
    reject: tuple[int, int, int] | None = None
    why: str = field(default="")

    @property
    def kind(self) -> str:
        return REJECT if self.reject else ACCEPT

    def encode(self) -> bytes:
        if self.reject:
            return _json({"reject": list(self.reject), "why": self.why})
        return _json(
            {
                "aid": self.aid,
                "contexts": [[c.context_id, c.result, c.transfer_syntax] for c in self.contexts],
                "roles": [[r.sop_class, r.scu_role, r.scp_role] for r in self.roles],
                "extended": _extended(self.extended),
                "identity": None if self.server_response is None else self.server_response.hex(),
            }
        )

    @classmethod
    def decode(cls, body: bytes) -> OpenAnswer:
        doc = _load(body)
        try:
            if "reject" in doc:
                result, source, reason = (int(v) for v in doc["reject"])
                return cls(reject=(result, source, reason), why=str(doc.get("why", "")))
            return cls(
                aid=_token(doc["aid"]),
                contexts=tuple(
                    PresentationContextAC(int(i), int(r), None if ts is None else str(ts))
                    for i, r, ts in doc["contexts"]
                ),
                roles=tuple(RoleSelection(str(u), bool(s), bool(p)) for u, s, p in doc["roles"]),
                extended=_extended_of(doc),
                server_response=None
                if doc.get("identity") is None
                else bytes.fromhex(doc["identity"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise WireError(f"bad open answer: {exc}") from None


@dataclass(frozen=True)
class Message:
    """One whole DIMSE message as relayed: its context, command set and data set."""

    context_id: int
    command: bytes
    dataset: bytes | memoryview | None

    def encode(self) -> bytes:
        flags = HAS_DATASET if self.dataset is not None else 0
        head = _MESSAGE.pack(self.context_id, flags, len(self.command))
        return b"".join((head, self.command, self.dataset or b""))

    @classmethod
    def decode(cls, body: bytes) -> Message:
        if len(body) < _MESSAGE.size:
            raise WireError("DIMSE body shorter than its header")
        context_id, flags, size = _MESSAGE.unpack_from(body)
        end = _MESSAGE.size + size
        if end > len(body):
            raise WireError("DIMSE command set overruns its body")
        view = memoryview(body)
        dataset = view[end:] if flags & HAS_DATASET else None
        if dataset is None and end != len(body):
            raise WireError("DIMSE body has bytes after a command set without data set")
        return cls(context_id, bytes(view[_MESSAGE.size : end]), dataset)


def split(body: bytes) -> Iterator[tuple[int, int, bytes | memoryview]]:
    """(part, parts, piece) of a body, every piece at most PART_SIZE bytes."""
    parts = max(1, -(-len(body) // PART_SIZE))
    view = memoryview(body)
    for part in range(parts):
        yield part, parts, view[part * PART_SIZE : (part + 1) * PART_SIZE]


class Reassembler:
    """Joins the parts of each body of one direction of one association, in order.

    NATS core delivers one publisher's messages on one subject in order, so parts come
    one after the other and `seq` grows by one; anything else means a message was lost.
    """

    def __init__(self) -> None:
        self.next_seq = 0
        self._pieces: list[bytes] = []

    def add(self, header: dict[str, Any], piece: bytes) -> bytes | None:
        """The whole body once its last part came, else None; WireError on a gap."""
        seq, part, parts = (header.get(k) for k in ("seq", "part", "parts"))
        if not (isinstance(seq, int) and isinstance(part, int) and isinstance(parts, int)):
            raise WireError("envelope without seq/part/parts")
        if seq != self.next_seq or part != len(self._pieces) or not 0 <= part < parts:
            raise WireError(
                f"message {seq} part {part}/{parts} out of order (expected {self.next_seq} "
                f"part {len(self._pieces)}): a message was lost"
            )
        self._pieces.append(piece)
        if part + 1 < parts:
            return None
        self.next_seq += 1
        whole, self._pieces = b"".join(self._pieces), []
        return whole


def _json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _load(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except ValueError:
        raise WireError("body is not JSON") from None
    if not isinstance(doc, dict):
        raise WireError("body is not a JSON object")
    return doc


def _extended(items: tuple[ExtendedNegotiation, ...]) -> list[list[str]]:
    return [[e.sop_class, e.info.hex()] for e in items]


def _extended_of(doc: dict[str, Any]) -> tuple[ExtendedNegotiation, ...]:
    """The extended negotiation sub-items of an open request or answer (none from a
    router that does not send them)."""
    return tuple(
        ExtendedNegotiation(str(u), bytes.fromhex(info)) for u, info in doc.get("extended", ())
    )


def _identity_of(value: Any) -> UserIdentityRQ | None:
    if value is None:
        return None
    kind, requested, primary, secondary = value
    return UserIdentityRQ(
        int(kind), bool(requested), bytes.fromhex(primary), bytes.fromhex(secondary)
    )


def _token(value: Any) -> str:
    """An id that goes into a NATS subject: letters and digits only."""
    text = str(value)
    if not text or not text.isalnum() or not text.isascii() or len(text) > 64:
        raise WireError(f"bad id {text!r}")
    return text
