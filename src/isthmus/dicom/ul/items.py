"""Variable items of the association PDUs and user information sub-items (PS3.8 9.3.2-9.3.3,
PS3.8 Annex D, PS3.7 D.3.3).

Every item is `type(1) reserved(1) length(2) value`.  Sub-items this module does not
know are kept as `UnknownItem` (PS3.7 D.3.3: a receiver ignores what it does not
support), so that a decoded PDU re-encodes to the bytes it came from.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from isthmus.dicom.ul.errors import (
    INVALID_PARAMETER,
    UNEXPECTED_PARAMETER,
    PDUError,
)

# Item types (PS3.8 tables 9-11, 9-17, D.1-1; PS3.7 D.3.3)
APPLICATION_CONTEXT_ITEM = 0x10
PRESENTATION_CONTEXT_RQ = 0x20
PRESENTATION_CONTEXT_AC = 0x21
ABSTRACT_SYNTAX = 0x30
TRANSFER_SYNTAX = 0x40
USER_INFORMATION = 0x50
MAXIMUM_LENGTH = 0x51
IMPLEMENTATION_CLASS_UID = 0x52
ASYNCHRONOUS_OPERATIONS_WINDOW = 0x53
ROLE_SELECTION = 0x54
IMPLEMENTATION_VERSION_NAME = 0x55
SOP_CLASS_EXTENDED_NEGOTIATION = 0x56
SOP_CLASS_COMMON_EXTENDED_NEGOTIATION = 0x57
USER_IDENTITY_RQ = 0x58
USER_IDENTITY_AC = 0x59

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"  # PS3.7 A.2.1

# Presentation context results (PS3.8 table 9-18)
ACCEPTANCE = 0
USER_REJECTION = 1
NO_REASON = 2
ABSTRACT_SYNTAX_NOT_SUPPORTED = 3
TRANSFER_SYNTAXES_NOT_SUPPORTED = 4


def item(item_type: int, value: bytes) -> bytes:
    """One item or sub-item: type, reserved, 2-byte length, value (PS3.8 9.3.2.1)."""
    return struct.pack(">BBH", item_type, 0, len(value)) + value


def iter_items(data: bytes | memoryview, start: int, end: int) -> Iterator[tuple[int, bytes]]:
    """(type, value) of each item in data[start:end]; an item overrunning its container is
    an invalid parameter (PS3.8 table 9-26)."""
    pos = start
    while pos < end:
        if end - pos < 4:
            raise PDUError("truncated item header", INVALID_PARAMETER)
        item_type = data[pos]
        length = (data[pos + 2] << 8) | data[pos + 3]
        if pos + 4 + length > end:
            raise PDUError(f"item 0x{item_type:02X} overruns its container", INVALID_PARAMETER)
        yield item_type, bytes(data[pos + 4 : pos + 4 + length])
        pos += 4 + length


def text(value: bytes) -> str:
    """A UID or name from an item.  Trailing NUL or space padding is dropped: PS3.8 9.3.2.2
    says UIDs are not padded, but devices pad them to even length as PS3.5 does."""
    return value.decode("ascii", "replace").rstrip(" \x00")


def _short(value: bytes, what: str) -> tuple[bytes, bytes]:
    """A 2-byte-length-prefixed field and what follows it (PS3.7 D.3.3.3-D.3.3.7)."""
    if len(value) < 2:
        raise PDUError(f"{what} is truncated", INVALID_PARAMETER)
    length = struct.unpack(">H", value[:2])[0]
    if len(value) < 2 + length:
        raise PDUError(f"{what} is truncated", INVALID_PARAMETER)
    return value[2 : 2 + length], value[2 + length :]


def _prefixed(value: bytes) -> bytes:
    return struct.pack(">H", len(value)) + value


@dataclass(frozen=True)
class PresentationContextRQ:
    """Presentation context item of an A-ASSOCIATE-RQ (PS3.8 9.3.2.2)."""

    context_id: int
    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]
    # Abstract syntax sub-items seen: the validator wants one (PS3.8 9.3.2.2).
    abstract_count: int = field(default=1, compare=False, repr=False)
    # The reserved byte where an AC has its result: not tested (PS3.8 9.3.2.2) but kept,
    # DCMTK sends 0xFF there, so that a decoded item re-encodes to the same bytes.
    reserved: int = 0

    def encode(self) -> bytes:
        sub = item(ABSTRACT_SYNTAX, self.abstract_syntax.encode())
        sub += b"".join(item(TRANSFER_SYNTAX, ts.encode()) for ts in self.transfer_syntaxes)
        fixed = bytes([self.context_id, 0, self.reserved, 0])
        return item(PRESENTATION_CONTEXT_RQ, fixed + sub)

    @classmethod
    def decode(cls, value: bytes) -> PresentationContextRQ:
        if len(value) < 4:
            raise PDUError("presentation context item too short", INVALID_PARAMETER)
        abstract, count, syntaxes = "", 0, []
        for sub_type, sub in iter_items(value, 4, len(value)):
            if sub_type == ABSTRACT_SYNTAX:
                abstract, count = text(sub), count + 1
            elif sub_type == TRANSFER_SYNTAX:
                syntaxes.append(text(sub))
            else:
                raise PDUError(
                    f"unexpected sub-item 0x{sub_type:02X} in presentation context {value[0]}",
                    UNEXPECTED_PARAMETER,
                )
        return cls(value[0], abstract, tuple(syntaxes), count, value[2])


@dataclass(frozen=True)
class PresentationContextAC:
    """Presentation context item of an A-ASSOCIATE-AC (PS3.8 9.3.3.2); `transfer_syntax`
    is None when the item has no transfer syntax sub-item."""

    context_id: int
    result: int
    transfer_syntax: str | None
    # Transfer syntax sub-items seen: the validator wants one when accepted (PS3.8 9.3.3.2).
    transfer_count: int = field(default=1, compare=False, repr=False)

    def encode(self) -> bytes:
        sub = b"" if self.transfer_syntax is None else item(0x40, self.transfer_syntax.encode())
        return item(PRESENTATION_CONTEXT_AC, bytes([self.context_id, 0, self.result, 0]) + sub)

    @classmethod
    def decode(cls, value: bytes) -> PresentationContextAC:
        if len(value) < 4:
            raise PDUError("presentation context item too short", INVALID_PARAMETER)
        syntax, count = None, 0
        for sub_type, sub in iter_items(value, 4, len(value)):
            if sub_type != TRANSFER_SYNTAX:
                raise PDUError(
                    f"unexpected sub-item 0x{sub_type:02X} in presentation context {value[0]}",
                    UNEXPECTED_PARAMETER,
                )
            syntax, count = text(sub), count + 1
        return cls(value[0], value[2], syntax, count)


@dataclass(frozen=True)
class RoleSelection:
    """SCP/SCU role selection sub-item (PS3.7 D.3.3.4)."""

    sop_class: str
    scu_role: bool
    scp_role: bool

    def encode(self) -> bytes:
        value = _prefixed(self.sop_class.encode()) + bytes([self.scu_role, self.scp_role])
        return item(ROLE_SELECTION, value)

    @classmethod
    def decode(cls, value: bytes) -> RoleSelection:
        uid, rest = _short(value, "role selection sub-item")
        if len(rest) != 2:
            raise PDUError("role selection sub-item is truncated", INVALID_PARAMETER)
        return cls(text(uid), bool(rest[0]), bool(rest[1]))


@dataclass(frozen=True)
class ExtendedNegotiation:
    """SOP class extended negotiation sub-item (PS3.7 D.3.3.5): opaque service info."""

    sop_class: str
    info: bytes

    def encode(self) -> bytes:
        return item(SOP_CLASS_EXTENDED_NEGOTIATION, _prefixed(self.sop_class.encode()) + self.info)

    @classmethod
    def decode(cls, value: bytes) -> ExtendedNegotiation:
        uid, rest = _short(value, "extended negotiation sub-item")
        return cls(text(uid), rest)


@dataclass(frozen=True)
class CommonExtendedNegotiation:
    """SOP class common extended negotiation sub-item (PS3.7 D.3.3.6)."""

    sop_class: str
    service_class: str
    related_classes: tuple[str, ...]

    def encode(self) -> bytes:
        related = b"".join(_prefixed(uid.encode()) for uid in self.related_classes)
        value = (
            _prefixed(self.sop_class.encode())
            + _prefixed(self.service_class.encode())
            + _prefixed(related)
        )
        return item(SOP_CLASS_COMMON_EXTENDED_NEGOTIATION, value)

    @classmethod
    def decode(cls, value: bytes) -> CommonExtendedNegotiation:
        what = "common extended negotiation sub-item"
        sop_class, rest = _short(value, what)
        service_class, rest = _short(rest, what)
        related_field, rest = _short(rest, what)
        if rest:
            raise PDUError(f"{what} has trailing bytes", INVALID_PARAMETER)
        related = []
        while related_field:
            uid, related_field = _short(related_field, what)
            related.append(text(uid))
        return cls(text(sop_class), text(service_class), tuple(related))


@dataclass(frozen=True)
class UserIdentityRQ:
    """User identity negotiation sub-item of a request (PS3.7 D.3.3.7.1)."""

    identity_type: int
    response_requested: bool
    primary: bytes
    secondary: bytes = b""

    def encode(self) -> bytes:
        value = bytes([self.identity_type, self.response_requested])
        value += _prefixed(self.primary) + _prefixed(self.secondary)
        return item(USER_IDENTITY_RQ, value)

    @classmethod
    def decode(cls, value: bytes) -> UserIdentityRQ:
        if len(value) < 2:
            raise PDUError("user identity sub-item is truncated", INVALID_PARAMETER)
        primary, rest = _short(value[2:], "user identity sub-item")
        secondary, rest = _short(rest, "user identity sub-item")
        if rest:
            raise PDUError("user identity sub-item has trailing bytes", INVALID_PARAMETER)
        return cls(value[0], bool(value[1]), primary, secondary)


@dataclass(frozen=True)
class UserIdentityAC:
    """User identity negotiation sub-item of an acceptance (PS3.7 D.3.3.7.2)."""

    server_response: bytes

    def encode(self) -> bytes:
        return item(USER_IDENTITY_AC, _prefixed(self.server_response))

    @classmethod
    def decode(cls, value: bytes) -> UserIdentityAC:
        response, rest = _short(value, "user identity sub-item")
        if rest:
            raise PDUError("user identity sub-item has trailing bytes", INVALID_PARAMETER)
        return cls(response)


@dataclass(frozen=True)
class UnknownItem:
    """A sub-item this implementation does not know, kept as it came."""

    item_type: int
    value: bytes

    def encode(self) -> bytes:
        return item(self.item_type, self.value)


SubItem = (
    RoleSelection
    | ExtendedNegotiation
    | CommonExtendedNegotiation
    | UserIdentityRQ
    | UserIdentityAC
    | UnknownItem
)


@dataclass(frozen=True)
class UserInformation:
    """User information item (PS3.8 9.3.2.3, Annex D; PS3.7 D.3.3).

    `max_length` is None when the Maximum Length sub-item is missing (the validator
    refuses that); 0 means unlimited (PS3.8 D.1).  `async_window` is (maximum invoked,
    maximum performed).  Sub-items encode in item-type order, unknown ones last.
    """

    max_length: int | None = None
    implementation_class_uid: str = ""
    implementation_version_name: str = ""
    async_window: tuple[int, int] | None = None
    roles: tuple[RoleSelection, ...] = ()
    extended: tuple[ExtendedNegotiation, ...] = ()
    common_extended: tuple[CommonExtendedNegotiation, ...] = ()
    user_identity: UserIdentityRQ | UserIdentityAC | None = None
    unknown: tuple[UnknownItem, ...] = field(default=())

    def encode(self) -> bytes:
        parts = []
        if self.max_length is not None:
            parts.append(item(MAXIMUM_LENGTH, struct.pack(">I", self.max_length)))
        if self.implementation_class_uid:
            parts.append(item(IMPLEMENTATION_CLASS_UID, self.implementation_class_uid.encode()))
        if self.async_window is not None:
            parts.append(
                item(ASYNCHRONOUS_OPERATIONS_WINDOW, struct.pack(">HH", *self.async_window))
            )
        parts += [role.encode() for role in self.roles]
        if self.implementation_version_name:
            name = self.implementation_version_name.encode()
            parts.append(item(IMPLEMENTATION_VERSION_NAME, name))
        parts += [sub.encode() for sub in self.extended]
        parts += [sub.encode() for sub in self.common_extended]
        if self.user_identity is not None:
            parts.append(self.user_identity.encode())
        parts += [sub.encode() for sub in self.unknown]
        return item(USER_INFORMATION, b"".join(parts))

    @classmethod
    def decode(cls, value: bytes) -> UserInformation:
        fields: dict[str, object] = {}
        lists: dict[str, list[SubItem]] = {"roles": [], "extended": [], "common_extended": []}
        unknown: list[UnknownItem] = []
        for sub_type, sub in iter_items(value, 0, len(value)):
            if sub_type in _SINGLE:
                name, decode = _SINGLE[sub_type]
                if name in fields:
                    raise PDUError(f"user information sub-item 0x{sub_type:02X} twice")
                fields[name] = decode(sub)
            elif sub_type in _REPEATED:
                name, decode = _REPEATED[sub_type]
                lists[name].append(decode(sub))
            else:
                unknown.append(UnknownItem(sub_type, sub))
        return cls(
            **fields,  # type: ignore[arg-type]
            roles=tuple(lists["roles"]),  # type: ignore[arg-type]
            extended=tuple(lists["extended"]),  # type: ignore[arg-type]
            common_extended=tuple(lists["common_extended"]),  # type: ignore[arg-type]
            unknown=tuple(unknown),
        )


def _max_length(value: bytes) -> int:
    if len(value) != 4:
        raise PDUError("maximum length sub-item is not 4 bytes", INVALID_PARAMETER)
    return int(struct.unpack(">I", value)[0])


def _async_window(value: bytes) -> tuple[int, int]:
    if len(value) != 4:
        raise PDUError("asynchronous operations window sub-item is not 4 bytes")
    invoked, performed = struct.unpack(">HH", value)
    return int(invoked), int(performed)


def _name(value: bytes) -> str:
    return value.decode("ascii", "replace").rstrip(" \x00")


_SINGLE: dict[int, tuple[str, Callable[[bytes], Any]]] = {
    MAXIMUM_LENGTH: ("max_length", _max_length),
    IMPLEMENTATION_CLASS_UID: ("implementation_class_uid", text),
    ASYNCHRONOUS_OPERATIONS_WINDOW: ("async_window", _async_window),
    IMPLEMENTATION_VERSION_NAME: ("implementation_version_name", _name),
    USER_IDENTITY_RQ: ("user_identity", UserIdentityRQ.decode),
    USER_IDENTITY_AC: ("user_identity", UserIdentityAC.decode),
}
_REPEATED: dict[int, tuple[str, Callable[[bytes], Any]]] = {
    ROLE_SELECTION: ("roles", RoleSelection.decode),
    SOP_CLASS_EXTENDED_NEGOTIATION: ("extended", ExtendedNegotiation.decode),
    SOP_CLASS_COMMON_EXTENDED_NEGOTIATION: ("common_extended", CommonExtendedNegotiation.decode),
}
