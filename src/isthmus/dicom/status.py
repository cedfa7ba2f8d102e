"""DIMSE statuses: one table of the codes Isthmus sends or reads, with their meaning.

Every DIMSE response carries a Status (0000,0900) (PS3.7 9.1, E.1).  Its class -
success, pending, cancel, warning or failure (PS3.7 C.1-C.5) - follows from the
code; the general codes (01xx, 02xx) are defined in PS3.7 Annex C (warnings C.4,
failures C.5), the service-specific ones (Axxx, Bxxx, Cxxx, FF01) by each service
class in PS3.4.  The same code can
mean different things in different services (0xC000 is "Cannot understand" for
C-STORE and "Unable to process" for C-FIND; 0xB000 is "Coercion of data elements"
for C-STORE and "Sub-operations complete, one or more failures" for C-MOVE), so a
code has a name per service here, and `meaning()` takes the service.

A `Status` is an `int` - it goes into a command set as it is - that also knows its
name, meaning and where the standard defines it.
"""

from __future__ import annotations

from enum import Enum


class Category(Enum):
    """The class of a status (PS3.7 Annex C): what the requestor does with a response."""

    SUCCESS = "success"
    PENDING = "pending"
    CANCEL = "cancel"
    WARNING = "warning"
    FAILURE = "failure"


class Status(int):
    """A DIMSE status code with its name, meaning and defining section."""

    name: str
    meaning: str
    section: str

    def __new__(cls, code: int, name: str, meaning: str, section: str) -> Status:
        self = super().__new__(cls, code)
        self.name = name
        self.meaning = meaning
        self.section = section
        return self

    @property
    def category(self) -> Category:
        return category(self)

    def __repr__(self) -> str:
        return f"<Status {self.name} 0x{int(self):04X}>"

    def __str__(self) -> str:
        return f"0x{int(self):04X} {self.meaning}"


# -- general statuses (PS3.7 Annex C) -------------------------------------------
SUCCESS = Status(0x0000, "SUCCESS", "Success", "PS3.7 C.1")
CANCEL = Status(0xFE00, "CANCEL", "Cancel: operation terminated by a C-CANCEL", "PS3.7 C.3")
PENDING = Status(
    0xFF00, "PENDING", "Pending: matches or sub-operations are continuing", "PS3.7 C.2"
)
PENDING_WARNING = Status(
    0xFF01,
    "PENDING_WARNING",
    "Pending: matches are continuing, optional keys not supported",
    "PS3.4 C.4.1.1.4",
)
ATTRIBUTE_LIST_ERROR = Status(
    0x0107, "ATTRIBUTE_LIST_ERROR", "Warning: attribute list error", "PS3.7 C.4"
)
ATTRIBUTE_VALUE_OUT_OF_RANGE = Status(
    0x0116, "ATTRIBUTE_VALUE_OUT_OF_RANGE", "Warning: attribute value out of range", "PS3.7 C.4"
)
PROCESSING_FAILURE = Status(
    0x0110, "PROCESSING_FAILURE", "Failure: processing failure", "PS3.7 C.5"
)
DUPLICATE_SOP_INSTANCE = Status(
    0x0111, "DUPLICATE_SOP_INSTANCE", "Failure: duplicate SOP instance", "PS3.7 C.5"
)
NO_SUCH_SOP_INSTANCE = Status(
    0x0112, "NO_SUCH_SOP_INSTANCE", "Failure: no such SOP instance", "PS3.7 C.5"
)
NO_SUCH_SOP_CLASS = Status(0x0118, "NO_SUCH_SOP_CLASS", "Failure: no such SOP class", "PS3.7 C.5")
SOP_CLASS_NOT_SUPPORTED = Status(
    0x0122, "SOP_CLASS_NOT_SUPPORTED", "Refused: SOP class not supported", "PS3.7 C.5"
)
NOT_AUTHORIZED = Status(0x0124, "NOT_AUTHORIZED", "Refused: not authorized", "PS3.7 C.5")
# DIMSE-N failures (PS3.7 C.5)
NO_SUCH_ATTRIBUTE = Status(0x0105, "NO_SUCH_ATTRIBUTE", "Failure: no such attribute", "PS3.7 C.5")
INVALID_ATTRIBUTE_VALUE = Status(
    0x0106, "INVALID_ATTRIBUTE_VALUE", "Failure: invalid attribute value", "PS3.7 C.5"
)
NO_SUCH_EVENT_TYPE = Status(
    0x0113, "NO_SUCH_EVENT_TYPE", "Failure: no such event type", "PS3.7 C.5"
)
INVALID_ARGUMENT_VALUE = Status(
    0x0115, "INVALID_ARGUMENT_VALUE", "Failure: invalid argument value", "PS3.7 C.5"
)
INVALID_OBJECT_INSTANCE = Status(
    0x0117, "INVALID_OBJECT_INSTANCE", "Failure: invalid SOP instance", "PS3.7 C.5"
)
CLASS_INSTANCE_CONFLICT = Status(
    0x0119, "CLASS_INSTANCE_CONFLICT", "Failure: class-instance conflict", "PS3.7 C.5"
)
MISSING_ATTRIBUTE = Status(0x0120, "MISSING_ATTRIBUTE", "Failure: missing attribute", "PS3.7 C.5")
MISSING_ATTRIBUTE_VALUE = Status(
    0x0121, "MISSING_ATTRIBUTE_VALUE", "Failure: missing attribute value", "PS3.7 C.5"
)
NO_SUCH_ACTION = Status(0x0123, "NO_SUCH_ACTION", "Failure: no such action", "PS3.7 C.5")
DUPLICATE_INVOCATION = Status(
    0x0210, "DUPLICATE_INVOCATION", "Failure: duplicate invocation", "PS3.7 C.5"
)
UNRECOGNIZED_OPERATION = Status(
    0x0211, "UNRECOGNIZED_OPERATION", "Failure: unrecognized operation", "PS3.7 C.5"
)
MISTYPED_ARGUMENT = Status(0x0212, "MISTYPED_ARGUMENT", "Failure: mistyped argument", "PS3.7 C.5")
RESOURCE_LIMITATION = Status(
    0x0213, "RESOURCE_LIMITATION", "Failure: resource limitation", "PS3.7 C.5"
)

# -- C-STORE (PS3.4 B.2.3) ------------------------------------------------------
OUT_OF_RESOURCES = Status(0xA700, "OUT_OF_RESOURCES", "Refused: out of resources", "PS3.4 B.2.3")
DATASET_DOES_NOT_MATCH_SOP_CLASS = Status(
    0xA900,
    "DATASET_DOES_NOT_MATCH_SOP_CLASS",
    "Error: data set does not match SOP class",
    "PS3.4 B.2.3",
)
CANNOT_UNDERSTAND = Status(0xC000, "CANNOT_UNDERSTAND", "Error: cannot understand", "PS3.4 B.2.3")
COERCION_OF_DATA_ELEMENTS = Status(
    0xB000, "COERCION_OF_DATA_ELEMENTS", "Warning: coercion of data elements", "PS3.4 B.2.3"
)
ELEMENTS_DISCARDED = Status(
    0xB006, "ELEMENTS_DISCARDED", "Warning: elements discarded", "PS3.4 B.2.3"
)
DATASET_MISMATCH_WARNING = Status(
    0xB007,
    "DATASET_MISMATCH_WARNING",
    "Warning: data set does not match SOP class",
    "PS3.4 B.2.3",
)

# -- C-FIND, C-MOVE, C-GET (PS3.4 C.4.1.1.4, C.4.2.1.5, C.4.3.1.4) ---------------
IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS = Status(
    0xA900,
    "IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS",
    "Error: identifier does not match SOP class",
    "PS3.4 C.4.1.1.4",
)
UNABLE_TO_PROCESS = Status(
    0xC000, "UNABLE_TO_PROCESS", "Failed: unable to process", "PS3.4 C.4.1.1.4"
)
OUT_OF_RESOURCES_MATCHES = Status(
    0xA701,
    "OUT_OF_RESOURCES_MATCHES",
    "Refused: out of resources, unable to calculate number of matches",
    "PS3.4 C.4.2.1.5",
)
OUT_OF_RESOURCES_SUB_OPERATIONS = Status(
    0xA702,
    "OUT_OF_RESOURCES_SUB_OPERATIONS",
    "Refused: out of resources, unable to perform sub-operations",
    "PS3.4 C.4.2.1.5",
)
MOVE_DESTINATION_UNKNOWN = Status(
    0xA801, "MOVE_DESTINATION_UNKNOWN", "Refused: move destination unknown", "PS3.4 C.4.2.1.5"
)
SUB_OPERATIONS_WITH_FAILURES = Status(
    0xB000,
    "SUB_OPERATIONS_WITH_FAILURES",
    "Warning: sub-operations complete, one or more failures or warnings",
    "PS3.4 C.4.2.1.5",
)


def _table(*statuses: Status) -> dict[int, Status]:
    return {int(s): s for s in statuses}


# Which name a code has in a service (PS3.4); the general ones hold in every service.
GENERAL = _table(
    SUCCESS,
    CANCEL,
    PENDING,
    ATTRIBUTE_LIST_ERROR,
    ATTRIBUTE_VALUE_OUT_OF_RANGE,
    PROCESSING_FAILURE,
    DUPLICATE_SOP_INSTANCE,
    NO_SUCH_SOP_INSTANCE,
    NO_SUCH_SOP_CLASS,
    SOP_CLASS_NOT_SUPPORTED,
    NOT_AUTHORIZED,
    NO_SUCH_ATTRIBUTE,
    INVALID_ATTRIBUTE_VALUE,
    NO_SUCH_EVENT_TYPE,
    INVALID_ARGUMENT_VALUE,
    INVALID_OBJECT_INSTANCE,
    CLASS_INSTANCE_CONFLICT,
    MISSING_ATTRIBUTE,
    MISSING_ATTRIBUTE_VALUE,
    NO_SUCH_ACTION,
    DUPLICATE_INVOCATION,
    UNRECOGNIZED_OPERATION,
    MISTYPED_ARGUMENT,
    RESOURCE_LIMITATION,
)
_RETRIEVE = (
    IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS,
    UNABLE_TO_PROCESS,
    OUT_OF_RESOURCES_MATCHES,
    OUT_OF_RESOURCES_SUB_OPERATIONS,
    SUB_OPERATIONS_WITH_FAILURES,
)
BY_SERVICE: dict[str, dict[int, Status]] = {
    "C-ECHO": {},
    "C-STORE": _table(
        OUT_OF_RESOURCES,
        DATASET_DOES_NOT_MATCH_SOP_CLASS,
        CANNOT_UNDERSTAND,
        COERCION_OF_DATA_ELEMENTS,
        ELEMENTS_DISCARDED,
        DATASET_MISMATCH_WARNING,
    ),
    "C-FIND": _table(
        OUT_OF_RESOURCES,
        PENDING_WARNING,
        IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS,
        UNABLE_TO_PROCESS,
    ),
    "C-MOVE": _table(*_RETRIEVE, MOVE_DESTINATION_UNKNOWN),
    "C-GET": _table(*_RETRIEVE),
}


def category(code: int) -> Category:
    """The class of a status code (PS3.7 Annex C)."""
    if code == 0x0000:
        return Category.SUCCESS
    if code in (0xFF00, 0xFF01):
        return Category.PENDING
    if code == 0xFE00:
        return Category.CANCEL
    if is_warning(code):
        return Category.WARNING
    return Category.FAILURE


def is_warning(code: int) -> bool:
    """A status of the Warning class (PS3.7 Annex C): 0001, Bxxx, 0107 or 0116."""
    return code in (0x0001, 0x0107, 0x0116) or 0xB000 <= code <= 0xBFFF


def is_failure(code: int) -> bool:
    """A status of the Failure class (refused, error, failed; PS3.7 Annex C)."""
    return category(code) is Category.FAILURE


def lookup(code: int, service: str | None = None) -> Status | None:
    """The named status for `code` in `service` ("C-STORE", "C-FIND", ...), if named."""
    named = BY_SERVICE.get(service or "", {})
    if code in named:
        return named[code]
    if code in GENERAL:
        return GENERAL[code]
    # Service-specific ranges (PS3.4 B.2.3, C.4.1.1.4): A7xx, A9xx, Cxxx.
    base = code & 0xFF00 if code & 0xF000 == 0xA000 else code & 0xF000
    if base in (0xA700, 0xA900, 0xC000):
        return named.get(base)
    return None


def meaning(code: int, service: str | None = None) -> str:
    """What `code` means in `service`, for logs and messages; its class when not named."""
    status = lookup(code, service)
    if status is not None:
        return status.meaning
    return f"{category(code).value} (0x{code:04X})"
